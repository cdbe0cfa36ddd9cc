"""Every error is `{"error": {"code", "message", "details"}}`: our own, DRF's and the ones Django answers by itself."""

import json
import uuid

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from rest_framework.test import APIClient

from aitbc_site.exception_handler import exception_handler, handler500
from aitbc_site.testing import assert_api_error
from conftest import register_miner, submit_job
from jobs.models import Job

MIB = 1024 * 1024
SOME_ID = str(uuid.uuid4())


# --- unmatched paths: a JSON 404, never a redirect -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/nowhere"),
        ("get", "/v1"),
        ("get", "/v1/"),
        ("get", "/v1/clients/jobs"),
        ("get", "/v1/client/jobs/"),
        ("post", "/v1/client/jobs/"),
        ("get", f"/v1/client/jobs/{SOME_ID}/"),
        ("get", f"/v1/client/jobs/{SOME_ID}/status/"),
        ("post", "/v1/miner/register/"),
        ("get", "/v1/miner/jobs/"),
        ("get", "/health/"),
        ("get", "/docs/"),
    ],
)
def test_a_path_that_matches_no_endpoint_is_a_json_404_without_redirect(
    client_api: APIClient, method: str, path: str
) -> None:
    response = getattr(client_api, method)(path)

    assert_api_error(response, status=404, code="NOT_FOUND")
    assert response.headers["Content-Type"] == "application/json"
    assert "Location" not in response.headers


def test_an_unmatched_path_is_a_json_404_without_a_key_too(anonymous_api: APIClient) -> None:
    assert_api_error(anonymous_api.get("/v1/client/jobs/"), status=404, code="NOT_FOUND")


# --- wrong method --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_name", "method", "path"),
    [
        ("client_api", "put", "/v1/client/jobs"),
        ("client_api", "patch", "/v1/client/jobs"),
        ("client_api", "delete", "/v1/client/jobs"),
        ("client_api", "delete", f"/v1/client/jobs/{SOME_ID}"),
        ("client_api", "post", f"/v1/client/jobs/{SOME_ID}"),
        ("client_api", "post", f"/v1/client/jobs/{SOME_ID}/status"),
        ("client_api", "get", f"/v1/client/jobs/{SOME_ID}/cancel"),
        ("client_api", "post", f"/v1/client/jobs/{SOME_ID}/events"),
        ("miner_api", "get", "/v1/miner/register"),
        ("miner_api", "get", "/v1/miner/heartbeat"),
        ("miner_api", "post", "/v1/miner/jobs"),
        ("miner_api", "get", "/v1/miner/result"),
    ],
)
def test_a_wrong_method_is_method_not_allowed(
    request: pytest.FixtureRequest, api_name: str, method: str, path: str
) -> None:
    api: APIClient = request.getfixturevalue(api_name)

    response = getattr(api, method)(path, {}, format="json")

    assert_api_error(response, status=405, code="METHOD_NOT_ALLOWED")
    assert method.upper() not in response.headers["Allow"]


# --- bodies: size, media type, syntax ------------------------------------------------------------------------------


def big_job_body(size: int) -> str:
    head = '{"job_type": "llm_inference", "parameters": {"blob": "'
    tail = '"}}'
    return head + "x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("path", ["/v1/client/jobs", "/v1/miner/result"])
def test_a_body_over_1_mib_is_payload_too_large(client_api: APIClient, path: str) -> None:
    response = client_api.post(path, big_job_body(MIB + 1), content_type="application/json")

    assert_api_error(response, status=413, code="PAYLOAD_TOO_LARGE")
    assert not Job.objects.exists()


def test_a_body_over_1_mib_is_refused_before_authentication(anonymous_api: APIClient) -> None:
    response = anonymous_api.post("/v1/client/jobs", big_job_body(2 * MIB), content_type="application/json")

    assert_api_error(response, status=413, code="PAYLOAD_TOO_LARGE")


def test_a_body_of_exactly_1_mib_is_accepted(client_api: APIClient) -> None:
    response = client_api.post("/v1/client/jobs", big_job_body(MIB), content_type="application/json")

    assert response.status_code == 201, response.content[:300]
    assert len(Job.objects.get().parameters["blob"]) > MIB - 100


def test_a_content_length_that_is_not_a_number_is_a_bad_request(client_api: APIClient) -> None:
    response = client_api.generic(
        "POST", "/v1/client/jobs", b'{"job_type": "llm_inference", "parameters": {}}',
        content_type="application/json", CONTENT_LENGTH="lots",
    )

    assert_api_error(response, status=400, code="BAD_REQUEST")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", "job_type=llm_inference"),
        ("application/x-www-form-urlencoded", "job_type=llm_inference&parameters=x"),
        ("application/xml", "<job><job_type>llm_inference</job_type></job>"),
    ],
)
def test_a_body_that_is_not_json_is_unsupported_media_type(client_api: APIClient, content_type: str, body: str) -> None:
    response = client_api.post("/v1/client/jobs", body, content_type=content_type)

    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")
    assert not Job.objects.exists()


def test_a_multipart_body_is_unsupported_media_type(miner_api: APIClient) -> None:
    response = miner_api.post("/v1/miner/register", {"address": "ait1" + "ab" * 20, "capabilities": "embedding"})

    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b'{"job_type": "llm_inference", "parameters": {}',
        b'{"job_type": "llm_inference", "parameters": {},}',
        b"{'job_type': 'llm_inference'}",
        b'{"job_type": "llm_inference", "parameters": {"x": NaN}}',
        b'{"job_type": "llm_inference", "parameters": {"x": Infinity}}',
        b'{"job_type": "\xff\xfe"}',
    ],
    ids=["garbage", "truncated", "trailing comma", "single quotes", "NaN", "Infinity", "not UTF-8"],
)
def test_a_body_that_is_not_valid_json_is_malformed_json(client_api: APIClient, body: bytes) -> None:
    response = client_api.generic("POST", "/v1/client/jobs", body, content_type="application/json")

    assert_api_error(response, status=400, code="MALFORMED_JSON")
    assert not Job.objects.exists()


def test_malformed_json_is_refused_on_miner_endpoints_too(miner_api: APIClient) -> None:
    for path in ("/v1/miner/register", "/v1/miner/heartbeat", "/v1/miner/result"):
        response = miner_api.generic("POST", path, b'{"miner_id": ', content_type="application/json")
        assert_api_error(response, status=400, code="MALFORMED_JSON")


def test_a_validation_error_lists_the_field_errors_in_details(client_api: APIClient) -> None:
    response = client_api.post("/v1/client/jobs", {"job_type": "llm_inference", "priority": 12}, format="json")

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert set(error["details"]) == {"parameters", "priority"}
    assert all(isinstance(messages, list) and messages for messages in error["details"].values())


def test_our_errors_and_drfs_share_the_envelope(client_api: APIClient, miner_api: APIClient) -> None:
    job = submit_job(client_api)
    miner = register_miner(miner_api)

    ours = miner_api.post(
        "/v1/miner/result", {"miner_id": miner["id"], "job_id": job["id"], "status": "completed", "result": {}},
        format="json",
    )
    drfs = client_api.get("/v1/client/jobs", {"limit": 0})

    assert_api_error(ours, status=404, code="JOB_NOT_FOUND")
    assert_api_error(drfs, status=400, code="VALIDATION_ERROR")


# --- errors nobody expected ----------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_a_500_that_tells_nothing_of_it() -> None:
    response = exception_handler(RuntimeError("secret connection string"), {"view": None})

    assert response is not None
    assert response.status_code == 500
    assert response.data == {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error.", "details": {}}}
    assert "secret" not in json.dumps(response.data)


def test_djangos_permission_denied_raised_in_a_view_is_permission_denied() -> None:
    response = exception_handler(PermissionDenied(), {"view": None})

    assert response is not None
    assert response.status_code == 403
    assert response.data["error"]["code"] == "PERMISSION_DENIED"


def test_a_crash_outside_drf_answers_the_envelope() -> None:
    response = handler500(RequestFactory().get("/v1/client/jobs"))

    assert response.status_code == 500
    assert json.loads(response.content) == {
        "error": {"code": "INTERNAL_ERROR", "message": "Internal server error.", "details": {}}
    }


# --- content negotiation: JSON, or a 406 in the envelope ----------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        (None, ""),
        ("*/*", ""),
        ("application/json", ""),
        (" application/json ", ""),
        ("*/*", "?format=json"),
        ("text/html, application/json;q=0.9", ""),
        ("application/*", ""),
        ("application/json; indent=2", ""),
    ],
    ids=repr,
)
def test_any_accept_header_that_takes_json_gets_json(client_api: APIClient, accept: str | None, query: str) -> None:
    job = submit_job(client_api)

    response = client_api.get(f"/v1/client/jobs/{job['id']}{query}", headers={"Accept": accept} if accept else {})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["id"] == job["id"]


def test_asking_for_anything_but_json_is_not_acceptable(client_api: APIClient) -> None:
    job = submit_job(client_api)

    response = client_api.get(f"/v1/client/jobs/{job['id']}", headers={"Accept": "text/html"})

    assert_api_error(response, status=406, code="NOT_ACCEPTABLE")
