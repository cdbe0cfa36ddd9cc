"""The public, unauthenticated pages: /health, the OpenAPI schema, Swagger UI and ReDoc with local assets only."""

import json
import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

V1_OPERATIONS = {
    ("/v1/client/jobs", "get"),
    ("/v1/client/jobs", "post"),
    ("/v1/client/jobs/{id}", "get"),
    ("/v1/client/jobs/{id}/status", "get"),
    ("/v1/client/jobs/{id}/cancel", "post"),
    ("/v1/client/jobs/{id}/events", "get"),
    ("/v1/miner/register", "post"),
    ("/v1/miner/heartbeat", "post"),
    ("/v1/miner/jobs", "get"),
    ("/v1/miner/result", "post"),
}


def schema(api: APIClient) -> dict[str, Any]:
    response = api.get("/openapi.json", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.content[:300]
    return json.loads(response.content)


def test_health_answers_ok_without_a_key(anonymous_api: APIClient) -> None:
    response = anonymous_api.get("/health")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_the_schema_at_openapi_json_is_json(anonymous_api: APIClient, db: None) -> None:
    response = anonymous_api.get("/openapi.json")

    assert response.status_code == 200
    assert "json" in response.headers["Content-Type"]
    assert json.loads(response.content)["openapi"].startswith("3.")


def test_the_schema_is_openapi_3_and_documents_every_v1_operation(anonymous_api: APIClient, db: None) -> None:
    document = schema(anonymous_api)

    assert document["openapi"].startswith("3.")
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert V1_OPERATIONS <= documented


def test_the_schema_documents_the_api_key_header_as_a_security_scheme(anonymous_api: APIClient, db: None) -> None:
    schemes = schema(anonymous_api)["components"]["securitySchemes"].values()

    assert {"type": "apiKey", "in": "header", "name": "X-Api-Key"} in list(schemes)


def test_every_v1_operation_documents_its_error_responses(anonymous_api: APIClient, db: None) -> None:
    paths = schema(anonymous_api)["paths"]

    for path, method in V1_OPERATIONS:
        responses = paths[path][method]["responses"]
        assert {"400", "401", "403", "414", "431"} <= set(responses), (path, method, sorted(responses))
        if "{id}" in path:
            assert "404" in responses, (path, method)
        if method == "post":
            assert {"413", "415"} <= set(responses), (path, method)


def asset_references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_page_loads_nothing_from_another_site(anonymous_api: APIClient, db: None, page: str) -> None:
    response = anonymous_api.get(page)

    assert response.status_code == 200
    html = response.content.decode()
    assert "http://" not in html and "https://" not in html
    for reference in asset_references(html):
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_page_answers_without_a_key_and_uses_assets_shipped_with_the_project(
    anonymous_api: APIClient, db: None, page: str
) -> None:
    response = anonymous_api.get(page)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.content.decode()
    static_assets = [ref for ref in asset_references(html) if ref.startswith(settings.STATIC_URL)]
    assert any(asset.endswith(".js") for asset in static_assets), static_assets
    for asset in static_assets:
        assert finders.find(asset.removeprefix(settings.STATIC_URL)), f"{asset} is not a static file of the project"
    assert "/openapi.json" in html
