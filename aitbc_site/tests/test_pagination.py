"""Every paginated list reads only the cursors it issued: anything else is 400 INVALID_CURSOR, never a 500 and never
silently the first page."""

import base64
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from accounts.tests.test_api_users import ALICE, logged_in
from aitbc_site.testing import assert_api_error
from conftest import submit_job


def _encoded(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


BAD_CURSORS = {
    "forged position": _encoded("p=not-a-date"),
    "position without a time zone": _encoded("p=2026-01-01 00:00:00"),
    "position with NUL": _encoded("p=2026-01-01 00:00:00\x00+00:00"),
    "position at the first day, not in UTC": _encoded("p=0001-01-01T00:00:00+01:00"),
    "position at the last day, not in UTC": _encoded("p=9999-12-31T23:59:59-01:00"),
    "offset past the cut-off": _encoded("o=100000"),
    "negative offset": _encoded("o=-1"),
    "reverse not 0 or 1": _encoded("r=2"),
    "unknown token": _encoded("x=1"),
    "not base64": "not-a-cursor!",
    "base64 of bytes that are not ASCII": base64.b64encode(b"\xff\xfe").decode(),
    "junk that base64 would skip": "%%",
}


def _client_jobs(api: APIClient) -> str:
    submit_job(api)
    return "/v1/client/jobs"


def _job_events(api: APIClient) -> str:
    return f"/v1/client/jobs/{submit_job(api)['id']}/events"


def _job_receipts(api: APIClient) -> str:
    return f"/v1/client/jobs/{submit_job(api)['id']}/receipts"


LISTS_OF_A_CLIENT_KEY: dict[str, Callable[[APIClient], str]] = {
    "client jobs": _client_jobs, "job events": _job_events, "job receipts": _job_receipts,
}
LISTS_OF_A_WALLET_SESSION = ["/v1/users/me/ledger", "/v1/users/me/api-keys", "/v1/exchange/payments"]


def _with_cursor(path: str, cursor: str) -> str:
    # Put into the query string as it is: "%%" must reach the server undecoded, as a browser would send it.
    return f"{path}?cursor={cursor}" if cursor == "%%" else f"{path}?cursor={base64_safe(cursor)}"


def base64_safe(cursor: str) -> str:
    return cursor.replace("+", "%2B").replace("=", "%3D").replace("/", "%2F")


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("make_list", LISTS_OF_A_CLIENT_KEY.values(), ids=LISTS_OF_A_CLIENT_KEY.keys())
def test_a_client_list_refuses_a_cursor_it_did_not_issue(
    client_api: APIClient, make_list: Callable[[APIClient], str], cursor: str
) -> None:
    path = make_list(client_api)

    assert_api_error(client_api.get(_with_cursor(path, cursor)), status=400, code="INVALID_CURSOR")


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("path", LISTS_OF_A_WALLET_SESSION)
def test_a_wallet_list_refuses_a_cursor_it_did_not_issue(db: None, path: str, cursor: str) -> None:
    assert_api_error(logged_in(ALICE).get(_with_cursor(path, cursor)), status=400, code="INVALID_CURSOR")


def test_the_cursors_a_list_issues_page_through_it_both_ways(client_api: APIClient) -> None:
    submitted = [submit_job(client_api)["id"] for _ in range(5)]

    first = client_api.get("/v1/client/jobs", {"limit": 2}).json()
    second = client_api.get(first["next"]).json()
    back = client_api.get(second["previous"]).json()

    assert [job["id"] for job in first["results"] + second["results"]] == submitted[::-1][:4]
    assert back["results"] == first["results"]
