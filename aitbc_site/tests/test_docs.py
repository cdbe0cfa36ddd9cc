"""The public, unauthenticated pages: /health, the OpenAPI schema, Swagger UI and ReDoc with local assets only."""

import inspect
import json
import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from rest_framework import serializers
from rest_framework.test import APIClient

from accounts.serializers import AmountField, WalletAddressField
from aitbc_site.openapi import AutoSchema
from aitbc_site.ratelimits import RateLimitedViewMixin
from aitbc_site.strict import JSONObjectField, ObjectIdField, StrictSerializer
from miners.serializers import JobTypeField, MinerEndpointField

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


# drf-spectacular describes a component by its serializer's docstring, inherited from our base classes, and an
# operation by its view's: a docstring written for maintainers becomes public API text. These are the classes whose
# docstrings would leak that way, and words that only implementation notes use (none occurs in the API's own text).
INTERNAL_BASES = (
    StrictSerializer,
    JSONObjectField,
    ObjectIdField,
    AmountField,
    WalletAddressField,
    JobTypeField,
    MinerEndpointField,
    RateLimitedViewMixin,
    AutoSchema,
)
INTERNAL_MARKERS = re.compile(
    r"serializ|\bDRF\b|deep[- ]cop|\binstances?\b|per cent|%|\bself\b|__\w+__|\bfields\[|docstring|\bPython\b"
    r"|\bselectors?\b|\bservices?\.|\bqueryset|\bmodels?\.py|documentation only|\bcheck(ed)? here|\bbuilt here"
    r"|\bJOB_TYPES\b|\bsettings\b|\b\d+(\.\d+)?\s*(ms|µs|ns)\b|\bfaster\b|\bO\(n"
    r"|\b[a-z_]+(\.[a-z_]+){2,}\b|(?-i:\b[A-Z]\w*(Serializer|Field|ViewSet|View|Mixin|Schema)\b)",
    re.IGNORECASE,
)


def descriptions(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every description and summary in the document, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                found.append((where, value))
            else:
                found += descriptions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += descriptions(value, f"{where}/{index}")
    return found


def our_serializer_bases() -> list[type]:
    """Our serializers that other serializers of ours extend: their docstrings are inherited by the subclasses."""
    ours = ("accounts.", "exchange.", "jobs.", "miners.", "receipts.", "aitbc_site.")
    serializer_classes, pending = set(), [serializers.BaseSerializer]
    while pending:
        for subclass in pending.pop().__subclasses__():
            serializer_classes.add(subclass)
            pending.append(subclass)
    return [
        cls
        for cls in serializer_classes
        if cls.__module__.startswith(ours) and any(sub.__module__.startswith(ours) for sub in cls.__subclasses__())
    ]


def test_no_description_in_the_schema_is_an_implementation_note(anonymous_api: APIClient, db: None) -> None:
    found = descriptions(schema(anonymous_api))
    internal_docs = {
        " ".join(inspect.cleandoc(cls.__doc__).split())
        for cls in (*INTERNAL_BASES, *our_serializer_bases())
        if cls.__dict__.get("__doc__")
    }

    assert len(found) > 100  # the walk reaches operations, parameters, components and their properties
    leaks = [
        (where, text)
        for where, text in found
        if INTERNAL_MARKERS.search(text) or any(doc in " ".join(text.split()) for doc in internal_docs)
    ]
    assert not leaks, "\n".join(f"{where}: {text}" for where, text in leaks)


def test_only_request_schemas_that_refuse_unknown_fields_say_so(anonymous_api: APIClient, db: None) -> None:
    components = schema(anonymous_api)["components"]["schemas"]

    assert components["JobCreateRequest"]["additionalProperties"] is False
    # The receipt to verify is sent whole: its other fields are signed content, accepted.
    assert components["VerifyRequestRequest"].get("additionalProperties", True) is not False
