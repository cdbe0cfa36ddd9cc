"""Rate limits with django-ratelimit, counted in the shared cache per principal (or per IP when anonymous).

When the cache cannot be reached (Redis down), requests are let through and a warning is logged: the limits
protect capacity, and refusing every miner and client because the counter store is down would turn a cache
outage into a full outage. The database and the request timeouts still bound what one caller can do meanwhile.
"""

import logging
import sqlite3
from typing import Any

import diskcache
from django.conf import settings
from django_ratelimit.core import get_usage
from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.request import Request

from aitbc_site.exceptions import ApplicationError

logger = logging.getLogger(__name__)

RATE_LIMIT_BACKEND_ERRORS = Counter(
    "rate_limit_backend_errors_total", "Rate-limit checks skipped because the cache could not be reached"
)
_SETTING_OF_GROUP = {
    "client": "RATE_LIMIT_CLIENT",
    "miner": "RATE_LIMIT_MINER",
    "user": "RATE_LIMIT_USER",
    "login": "RATE_LIMIT_LOGIN",
    "explorer": "RATE_LIMIT_EXPLORER",
}


class RateLimited(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "RATE_LIMITED"
    default_message = "Too many requests; slow down and retry after the time in Retry-After."

    def __init__(self, *, retry_after: int) -> None:
        self.retry_after = max(retry_after, 1)
        super().__init__(details={"retry_after": self.retry_after})


def client_ip(request: Request) -> str:
    return request.META.get(settings.CLIENT_IP_META_KEY) or request.META.get("REMOTE_ADDR", "unknown")


def enforce(*, request: Request, group: str, key: str) -> None:
    """Count this request against `group`'s rate for `key`; raise RateLimited over the limit."""
    rate = getattr(settings, _SETTING_OF_GROUP[group])
    try:
        usage = get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except (ConnectionInterrupted, RedisError, OSError, sqlite3.Error, diskcache.Timeout) as error:
        RATE_LIMIT_BACKEND_ERRORS.inc()
        logger.warning("rate limit not checked (%s): the cache is unreachable: %s", group, error)
        return
    if usage is not None and usage["should_limit"]:
        raise RateLimited(retry_after=usage["time_left"])


class RateLimitedViewMixin:
    """Counts every request of a viewset, before it is served, against the viewset's group.

    The principal (the key's user or the session's user) is the key; callers that present no valid credential are
    counted by IP, so guessing keys is limited too. Actions may add a per-IP limit (`extra_rate_limit="login"`).
    """

    rate_limit_group: str
    extra_rate_limit: str | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        failure: exceptions.APIException | None = None
        try:
            self.perform_authentication(request)  # type: ignore[attr-defined]
        except exceptions.APIException as error:
            failure = error
        user = None if failure else request.user
        key = f"user:{user.pk}" if user is not None and user.is_authenticated else f"ip:{client_ip(request)}"
        if self.extra_rate_limit:
            enforce(request=request, group=self.extra_rate_limit, key=f"ip:{client_ip(request)}")
        enforce(request=request, group=self.rate_limit_group, key=key)
        if failure is not None:
            raise failure
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
