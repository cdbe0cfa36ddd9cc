"""`/`: the server's name, version and the links a newcomer needs, without a key."""

from django.urls import clear_script_prefix, set_script_prefix
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error

LINKS = {"docs": "/docs", "redoc": "/redoc", "openapi": "/openapi.json", "health": "/health"}


def test_the_root_names_the_server_and_links_to_the_docs_the_schema_and_health(anonymous_api: APIClient) -> None:
    response = anonymous_api.get("/")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["name"] == "AITBC Coordinator API"
    assert body["version"] == "1.0.0"
    assert body["links"] == LINKS


def test_every_link_of_the_root_answers(anonymous_api: APIClient, db: None) -> None:
    for path in anonymous_api.get("/").json()["links"].values():
        assert anonymous_api.get(path).status_code == 200, path


def test_the_root_answers_head_without_a_body(anonymous_api: APIClient) -> None:
    response = anonymous_api.head("/")

    assert response.status_code == 200
    assert response.content == b""


def test_the_root_refuses_other_methods_in_the_envelope(anonymous_api: APIClient) -> None:
    assert_api_error(anonymous_api.post("/", {}, format="json"), status=405, code="METHOD_NOT_ALLOWED")


def test_the_root_links_carry_the_url_prefix(anonymous_api: APIClient) -> None:
    # What Django's WSGI handler does with URL_PREFIX (FORCE_SCRIPT_NAME) for every request; the test client does not.
    set_script_prefix("/api/")
    try:
        links = anonymous_api.get("/").json()["links"]
    finally:
        clear_script_prefix()

    assert links == {name: f"/api{path}" for name, path in LINKS.items()}


def test_the_root_is_documented_in_the_schema(anonymous_api: APIClient, db: None) -> None:
    document = anonymous_api.get("/openapi.json").json()

    operation = document["paths"]["/"]["get"]
    assert operation["operationId"] == "root"
    assert operation["security"] == [{}]
