"""`Authorization: Bearer` carries an API key or a session token wherever X-Api-Key or X-Session-Token is accepted;
two different credentials in one request are refused, the same one twice is not."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.tests.test_api_users import ALICE, log_in
from aitbc_site.testing import assert_api_error
from conftest import register_miner, submit_job

ME = "/v1/users/me"


def bearer(token: str, **headers: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", **headers)
    return api


@pytest.fixture
def session_token(db: None) -> str:
    return log_in(APIClient(), ALICE)["token"]


def test_a_client_key_as_bearer_submits_and_reads_jobs(client_api: APIClient) -> None:
    api = bearer(client_api.raw_key)

    job = submit_job(api)

    assert api.get(f"/v1/client/jobs/{job['id']}").json()["id"] == job["id"]
    assert client_api.get(f"/v1/client/jobs/{job['id']}").status_code == 200  # the same principal as X-Api-Key


def test_a_miner_key_as_bearer_registers_and_polls(miner_api: APIClient) -> None:
    api = bearer(miner_api.raw_key)

    miner = register_miner(api)

    assert api.get("/v1/miner/jobs", {"miner_id": miner["id"]}).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(client_api: APIClient, scheme: str) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"{scheme} {client_api.raw_key}")

    assert api.get("/v1/client/jobs").status_code == 200


def test_a_session_token_as_bearer_reads_the_user(session_token: str) -> None:
    response = bearer(session_token).get(ME)

    assert response.status_code == 200, response.content
    assert response.json()["address"] == ALICE.canonical


def test_an_admin_key_as_bearer_reads_a_balance(admin_api: APIClient, session_token: str) -> None:
    user_id = bearer(session_token).get(ME).json()["id"]

    response = bearer(admin_api.raw_key).get(f"/v1/users/{user_id}/balance")

    assert response.status_code == 200, response.content


def test_a_session_token_as_bearer_reads_its_own_balance(session_token: str) -> None:
    api = bearer(session_token)
    user_id = api.get(ME).json()["id"]

    assert api.get(f"/v1/users/{user_id}/balance").status_code == 200


@pytest.mark.parametrize("path", ["/v1/client/jobs", ME])
def test_an_unknown_bearer_token_is_401(db: None, path: str) -> None:
    code = "INVALID_SESSION" if path == ME else "INVALID_API_KEY"

    for made_up in ("not-a-credential", "aitbc_deadbeef_" + "x" * 43):
        assert_api_error(bearer(made_up).get(path), status=401, code=code)


def test_a_bearer_session_token_on_a_client_route_is_not_a_client(session_token: str) -> None:
    assert_api_error(bearer(session_token).get("/v1/client/jobs"), status=401, code="AUTHENTICATION_REQUIRED")


def test_a_bearer_client_key_on_a_session_route_is_not_a_session(client_api: APIClient) -> None:
    assert_api_error(bearer(client_api.raw_key).get(ME), status=401, code="AUTHENTICATION_REQUIRED")


def test_basic_authorization_is_not_a_credential_of_this_api(client_api: APIClient) -> None:
    basic = APIClient()
    basic.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNzd29yZA==")

    assert_api_error(basic.get("/v1/client/jobs"), status=401, code="AUTHENTICATION_REQUIRED")
    # Beside a key, it is ignored rather than a second credential.
    client_api.credentials(HTTP_X_API_KEY=client_api.raw_key, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNzd29yZA==")
    assert client_api.get("/v1/client/jobs").status_code == 200


def test_an_empty_bearer_is_no_credential(db: None) -> None:
    assert_api_error(bearer("").get("/v1/client/jobs"), status=401, code="AUTHENTICATION_REQUIRED")


def test_the_same_key_as_x_api_key_and_bearer_is_one_credential(client_api: APIClient) -> None:
    api = bearer(client_api.raw_key, HTTP_X_API_KEY=client_api.raw_key)

    assert api.get("/v1/client/jobs").status_code == 200


def test_the_same_token_as_x_session_token_and_bearer_is_one_credential(session_token: str) -> None:
    assert bearer(session_token, HTTP_X_SESSION_TOKEN=session_token).get(ME).status_code == 200


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/v1/client/jobs", {"HTTP_X_API_KEY": "key", "HTTP_AUTHORIZATION": "session"}),
        (ME, {"HTTP_X_SESSION_TOKEN": "session", "HTTP_AUTHORIZATION": "key"}),
        ("/v1/client/jobs", {"HTTP_X_API_KEY": "key", "HTTP_X_SESSION_TOKEN": "session"}),
        (ME, {"HTTP_X_API_KEY": "key", "HTTP_X_SESSION_TOKEN": "session"}),
        ("/v1/client/jobs", {"HTTP_X_API_KEY": "key", "HTTP_AUTHORIZATION": "another key"}),
    ],
    ids=["key and bearer session", "session and bearer key", "key and session on a key route",
         "key and session on a session route", "two keys"],
)
def test_two_different_credentials_are_ambiguous(
    client_api: APIClient, other_client_api: APIClient, session_token: str, path: str, sent: dict[str, str]
) -> None:
    values = {"key": client_api.raw_key, "another key": other_client_api.raw_key, "session": session_token}
    headers = {header: values[value] for header, value in sent.items()}
    if "HTTP_AUTHORIZATION" in headers:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {headers['HTTP_AUTHORIZATION']}"
    api = APIClient()
    api.credentials(**headers)

    error = assert_api_error(api.get(path), status=400, code="AMBIGUOUS_CREDENTIALS")

    assert "two different credentials" in error["message"]


def test_an_ambiguous_request_counts_against_the_rate_limit_by_ip(
    client_api: APIClient, session_token: str, settings: Any
) -> None:
    settings.RATE_LIMIT_CLIENT = "2/m"
    api = bearer(session_token, HTTP_X_API_KEY=client_api.raw_key)

    statuses = [api.get("/v1/client/jobs").status_code for _ in range(3)]

    assert statuses == [400, 400, 429]


def test_a_bearer_key_and_its_x_api_key_share_one_rate_limit(client_api: APIClient, settings: Any) -> None:
    settings.RATE_LIMIT_CLIENT = "2/m"
    by_bearer = bearer(client_api.raw_key)

    statuses = [client_api.get("/v1/client/jobs").status_code, by_bearer.get("/v1/client/jobs").status_code]
    statuses += [by_bearer.get("/v1/client/jobs").status_code]

    assert statuses == [200, 200, 429]


def test_a_bearer_key_costs_no_more_queries_than_x_api_key(
    client_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    client_api.get("/v1/client/jobs")  # last_used_at is written on the first use

    with CaptureQueriesContext(connection) as by_header:
        assert client_api.get("/v1/client/jobs").status_code == 200
    with django_assert_max_num_queries(len(by_header)):
        assert bearer(client_api.raw_key).get("/v1/client/jobs").status_code == 200
