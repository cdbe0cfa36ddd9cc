"""The site a wallet login message names follows the host, port and scheme the server is reached at (a declared
proxy's forwarded ones), SITE_DOMAIN / SITE_URI fix it, and a login must reach the site its challenge names."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from accounts.models import UserSession
from accounts.siwe import Site, site_in
from accounts.tests.test_api_users import ALICE, CHALLENGE, LOGIN
from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import assert_api_error, live_server
from conftest import live_env

HOST = "coordinator.example:8443"
FORWARDED = {"HTTP_X_FORWARDED_HOST": "public.example", "HTTP_X_FORWARDED_PROTO": "https"}


@pytest.fixture(autouse=True)
def _hosts(settings: Any) -> None:
    settings.SITE_DOMAIN = None
    settings.SITE_URI = None
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "coordinator.example", "public.example"]


def challenge(api: APIClient, **extra: Any) -> dict[str, Any]:
    response = api.post(CHALLENGE, {"address": ALICE.canonical}, format="json", **extra)
    assert response.status_code == 201, response.content
    return response.json()


def site_of_challenge(**extra: Any) -> Site | None:
    return site_in(challenge(APIClient(), **extra)["message"])


def login(body: dict[str, Any], **extra: Any) -> Any:
    api = APIClient()
    return api.post(
        LOGIN,
        {"address": ALICE.canonical, "nonce": body["nonce"], "signature": ALICE.sign(body["message"])},
        format="json",
        **extra,
    )


def test_the_message_names_the_host_and_port_the_request_reached(db: None) -> None:
    body = challenge(APIClient(), HTTP_HOST=HOST)

    lines = body["message"].split("\n")
    assert lines[0] == f"{HOST} wants you to sign in with your Ethereum account:"
    assert f"\nURI: http://{HOST}\n" in body["message"]


@pytest.mark.parametrize(("secure", "scheme"), [(False, "http"), (True, "https")])
def test_the_uri_follows_the_scheme_the_request_came_over(db: None, secure: bool, scheme: str) -> None:
    assert site_of_challenge(HTTP_HOST=HOST, secure=secure) == Site(domain=HOST, uri=f"{scheme}://{HOST}")


def test_forwarded_host_and_proto_are_ignored_without_a_declared_proxy(db: None, settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.USE_X_FORWARDED_HOST = False

    assert site_of_challenge(HTTP_HOST=HOST, **FORWARDED) == Site(domain=HOST, uri=f"http://{HOST}")


def test_forwarded_host_and_proto_are_honoured_from_a_declared_proxy(db: None, settings: Any) -> None:
    # What BEHIND_TLS_PROXY=true and TRUST_X_FORWARDED_HOST=true configure (see the settings test below).
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True

    assert site_of_challenge(HTTP_HOST=HOST, **FORWARDED) == Site(domain="public.example", uri="https://public.example")


def test_a_declared_proxy_forwarding_only_the_proto_keeps_the_host_it_sent(db: None, settings: Any) -> None:
    # deploy/nginx: Host is the public host, X-Forwarded-Proto the scheme; a client's X-Forwarded-Host is not trusted.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = False

    assert site_of_challenge(HTTP_HOST=HOST, **FORWARDED) == Site(domain=HOST, uri=f"https://{HOST}")


def test_a_forwarded_host_outside_allowed_hosts_is_invalid_host(db: None, settings: Any) -> None:
    settings.USE_X_FORWARDED_HOST = True

    response = APIClient().post(
        CHALLENGE, {"address": ALICE.canonical}, format="json", HTTP_HOST=HOST, HTTP_X_FORWARDED_HOST="evil.example"
    )

    assert_api_error(response, status=400, code="INVALID_HOST")


def test_an_unknown_host_is_still_invalid_host(db: None) -> None:
    response = APIClient().post(CHALLENGE, {"address": ALICE.canonical}, format="json", HTTP_HOST="evil.example")

    assert_api_error(response, status=400, code="INVALID_HOST")


@pytest.mark.parametrize(
    ("domain", "uri", "expected"),
    [
        ("coordinator.example", None, Site(domain="coordinator.example", uri="https://coordinator.example")),
        (None, "http://c.example:8080", Site(domain="c.example:8080", uri="http://c.example:8080")),
        ("a.example", "https://a.example/app", Site(domain="a.example", uri="https://a.example/app")),
    ],
    ids=["SITE_DOMAIN", "SITE_URI", "both"],
)
def test_site_domain_and_site_uri_override_the_request(
    db: None, settings: Any, domain: str | None, uri: str | None, expected: Site
) -> None:
    settings.SITE_DOMAIN, settings.SITE_URI = domain, uri

    assert site_of_challenge(HTTP_HOST=HOST, secure=False) == expected


def test_a_login_at_the_site_of_its_challenge_succeeds(db: None) -> None:
    body = challenge(APIClient(), HTTP_HOST=HOST, secure=True)

    assert login(body, HTTP_HOST=HOST, secure=True).status_code == 200


@pytest.mark.parametrize(
    "elsewhere",
    [{"HTTP_HOST": "public.example", "secure": True}, {"HTTP_HOST": "coordinator.example", "secure": True},
     {"HTTP_HOST": HOST, "secure": False}],
    ids=["another host", "another port", "another scheme"],
)
def test_a_login_at_another_site_than_its_challenge_is_refused(db: None, elsewhere: dict[str, Any]) -> None:
    body = challenge(APIClient(), HTTP_HOST=HOST, secure=True)

    response = login(body, **elsewhere)

    error = assert_api_error(response, status=401, code="CHALLENGE_FOR_ANOTHER_SITE")
    assert error["details"]["challenge"] == {"domain": HOST, "uri": f"https://{HOST}"}
    assert not UserSession.objects.exists()
    # The nonce is spent all the same: the same signature at the right site is refused too.
    assert_api_error(login(body, HTTP_HOST=HOST, secure=True), status=401, code="INVALID_NONCE")


def test_a_challenge_from_before_site_domain_was_set_is_refused_after(db: None, settings: Any) -> None:
    body = challenge(APIClient(), HTTP_HOST=HOST, secure=True)
    settings.SITE_DOMAIN = "coordinator.example"

    assert_api_error(login(body, HTTP_HOST=HOST, secure=True), status=401, code="CHALLENGE_FOR_ANOTHER_SITE")


def _settings_with(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "from django.conf import settings as s; import django; django.setup(); "
        "print(s.SECURE_PROXY_SSL_HEADER, s.USE_X_FORWARDED_HOST)"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "aitbc_site.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=environment, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "printed"),
    [
        ({}, "None False"),
        ({"BEHIND_TLS_PROXY": "true"}, "('HTTP_X_FORWARDED_PROTO', 'https') False"),
        ({"BEHIND_TLS_PROXY": "true", "TRUST_X_FORWARDED_HOST": "true"}, "('HTTP_X_FORWARDED_PROTO', 'https') True"),
    ],
    ids=["no proxy", "a TLS proxy", "a TLS proxy forwarding the host"],
)
def test_forwarded_headers_are_trusted_only_where_a_proxy_is_declared(env: dict[str, str], printed: str) -> None:
    completed = _settings_with(**{"BEHIND_TLS_PROXY": "false", "TRUST_X_FORWARDED_HOST": "false", **env})

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == printed


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TRUST_X_FORWARDED_HOST": "true", "BEHIND_TLS_PROXY": "false"}, "TRUST_X_FORWARDED_HOST"),
        ({"SITE_DOMAIN": "https://coordinator.example"}, "SITE_DOMAIN"),
        ({"SITE_URI": "coordinator.example"}, "SITE_URI"),
    ],
    ids=["forwarded host without a proxy", "a domain with a scheme", "a URI without one"],
)
def test_a_wrong_site_or_proxy_setting_stops_the_start(env: dict[str, str], named: str) -> None:
    completed = _settings_with(**env)

    assert completed.returncode != 0
    assert "ImproperlyConfigured" in completed.stderr and named in completed.stderr


@pytest.mark.live
def test_behind_a_declared_proxy_a_live_server_names_the_public_site_and_holds_logins_to_it(
    live_database_url: str, tmp_path: Path
) -> None:
    env = live_env(
        live_database_url, BEHIND_TLS_PROXY="true", TRUST_X_FORWARDED_HOST="true",
        ALLOWED_HOSTS="127.0.0.1,public.example",
    )
    proxied = {"X-Forwarded-Host": "public.example", "X-Forwarded-Proto": "https"}
    with live_server(env=env, log_path=tmp_path / "gunicorn.log", workers=1) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def live_challenge(headers: dict[str, str]) -> dict[str, Any]:
                answer = http.post(CHALLENGE, json={"address": ALICE.canonical}, headers=headers)
                assert answer.status_code == 201, answer.text
                return answer.json()

            def live_login(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
                signed = {"address": ALICE.canonical, "nonce": body["nonce"], "signature": ALICE.sign(body["message"])}
                return http.post(LOGIN, json=signed, headers=headers)

            direct = live_challenge({})
            origin = f"127.0.0.1:{server.port}"
            assert site_in(direct["message"]) == Site(domain=origin, uri=f"http://{origin}")
            public = live_challenge(proxied)
            assert site_in(public["message"]) == Site(domain="public.example", uri="https://public.example")
            refused = live_login(public, {})
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "CHALLENGE_FOR_ANOTHER_SITE"
            assert live_login(live_challenge(proxied), proxied).status_code == 200
