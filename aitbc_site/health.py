from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. It touches no database, so a slow database never restarts healthy workers."""
    return JsonResponse({"status": "ok"})


def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and, when configured, Redis too. 503 with the reason otherwise."""
    problems: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        problems["database"] = str(error)[:200]
    if settings.REDIS_URL:
        try:
            cache.get("aitbc-ready-probe")
        except (ConnectionInterrupted, RedisError, OSError) as error:
            problems["redis"] = str(error)[:200]
    if problems:
        return JsonResponse(
            {"error": {"code": "NOT_READY", "message": "A dependency is unavailable.", "details": problems}},
            status=503,
        )
    return JsonResponse({"status": "ready"})
