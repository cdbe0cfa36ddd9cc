"""Strict serializers: unknown fields are errors reported with every other problem at once, and each instance
validates with fields of its own."""

import threading
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from aitbc_site.strict import StrictSerializer
from aitbc_site.testing import assert_api_error
from jobs.models import Job


class Limits(StrictSerializer):
    low = serializers.IntegerField(min_value=0)
    high = serializers.IntegerField(max_value=9)


class Request(StrictSerializer):
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.CharField(max_length=3), required=False)
    limits = Limits(required=False)


def test_an_unknown_field_is_an_error_naming_it() -> None:
    payload = Request(data={"name": "a", "nmae": "b"})

    assert not payload.is_valid()
    assert payload.errors == {"nmae": ["Unknown field."]}


def test_unknown_missing_and_invalid_fields_are_reported_together() -> None:
    payload = Request(data={"nmae": "b", "tags": ["abcd"]})

    assert not payload.is_valid()
    assert set(payload.errors) == {"nmae", "name", "tags"}
    assert payload.errors["nmae"] == ["Unknown field."]
    assert payload.errors["name"] == ["This field is required."]


def test_a_value_of_the_wrong_json_type_is_reported_as_such_beside_the_other_problems() -> None:
    payload = Request(data={"name": 5, "extra": 1, "limits": {"low": -1}})

    assert not payload.is_valid()
    assert payload.errors["name"] == ["Must be a string, not a number."]
    assert payload.errors["extra"] == ["Unknown field."]
    assert set(payload.errors["limits"]) == {"low", "high"}


def test_a_nested_strict_serializer_reports_its_problems_together_too() -> None:
    payload = Request(data={"name": "a", "limits": {"low": "0", "hihg": 1}})

    assert not payload.is_valid()
    assert payload.errors == {
        "limits": {
            "low": ["Must be an integer, not a string."],
            "hihg": ["Unknown field."],
            "high": ["This field is required."],
        }
    }


def test_one_request_with_unknown_missing_and_invalid_fields_gets_one_400_listing_all(
    client_api: APIClient,
) -> None:
    body = {"parameters": {}, "priority": "high", "colour": "blue"}

    response = client_api.post("/v1/client/jobs", body, format="json")

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert error["details"]["colour"] == ["Unknown field."]
    assert error["details"]["job_type"] == ["This field is required."]
    assert error["details"]["priority"] == ["Must be an integer, not a string."]
    assert not Job.objects.exists()


def test_every_instance_binds_fields_of_its_own_to_itself() -> None:
    first, second = Request(data={}), Request(data={})

    for name in ("name", "tags", "limits"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    assert first.fields["limits"].fields["low"] is not second.fields["limits"].fields["low"]
    assert first.fields["limits"].fields["low"].parent is first.fields["limits"]
    assert first.fields["name"].field_name == "name"


def test_the_declared_fields_stay_unbound() -> None:
    Request(data={"name": "a"}).is_valid()

    assert all(field.parent is None for field in Request._declared_fields.values())


def test_validation_is_the_same_in_many_threads_at_once() -> None:
    bodies = [
        ({"name": "ok", "tags": ["a"], "limits": {"low": 0, "high": 9}}, True),
        ({"name": "too long", "tags": ["abcd"], "limits": {"low": -1, "high": 10}}, False),
    ]
    wrong: list[object] = []

    def validate(body: dict[str, object], valid: bool) -> None:
        for _ in range(200):
            payload = Request(data=body)
            if payload.is_valid() != valid or (not valid and set(payload.errors) != {"name", "tags", "limits"}):
                wrong.append(payload.errors)

    threads = [threading.Thread(target=validate, args=bodies[number % 2]) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert wrong == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"priority": "5"}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "\u0665"}, "priority"),
        ({"ttl_seconds": "600"}, "ttl_seconds"),
        ({"job_type": 1}, "job_type"),
        ({"requirements": {"min_gpu_memory_gb": "16"}}, "requirements"),
        ({"requirements": {"gpu_model": 4090}}, "requirements"),
        ({"requirements": {"models": [1]}}, "requirements"),
    ],
    ids=["priority a string", "priority true", "priority an Arabic-Indic digit", "ttl a string", "job_type a number",
         "memory a string", "gpu model a number", "a model a number"],
)
def test_a_body_value_of_the_wrong_json_type_is_refused_not_coerced(
    client_api: APIClient, overrides: dict[str, Any], field: str
) -> None:
    body = {"job_type": "llm_inference", "parameters": {}, **overrides}

    response = client_api.post("/v1/client/jobs", body, format="json")

    error = assert_api_error(response, status=400, code="VALIDATION_ERROR")

    assert field in error["details"], error
    assert not Job.objects.exists()
