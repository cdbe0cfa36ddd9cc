"""Serializers that refuse what they do not know, so a misspelt field is an error rather than silently ignored."""

import copy
from typing import Any
from uuid import UUID

from django.http import QueryDict
from rest_framework import serializers

from aitbc_site.exceptions import ApplicationError

# The JSON type each kind of field takes from a body. DRF coerces across types (`"5"` to 5, 5 to `"5"`, `"true"` and
# 1 to True, an integer to a UUID), which hides a client's bug and lets a value mean something other than what was
# sent. Query strings hold only text, so their serializers keep DRF's parsing. Order matters: subclasses first.
_JSON_TYPES: tuple[tuple[type[serializers.Field], tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.UUIDField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
)


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value`, decoded from a JSON body, is of the wrong JSON type for `field`; None when it is not."""
    if value is None or getattr(field, "checks_own_json_type", False):
        return None  # null is the field's own allow_null rule; some fields answer a wrong type with a code of theirs
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        return next(filter(None, (json_type_error(field.child, item) for item in value)), None)
    for field_class, accepted, described in _JSON_TYPES:
        if isinstance(field, field_class):
            # bool is an int subclass in Python, but true is not a number in JSON.
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
                return f"Must be {described}, not {_json_type_name(value)}."
            return None
    return None


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    return {int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__
    )


class StrictSerializer(serializers.Serializer):
    # A serializer of input. Its fields are never changed per instance (no `self.fields[...]` edits).
    # Not a docstring: drf-spectacular would inherit it as the public description of every request schema built on
    # this class (see test_no_description_in_the_schema_is_an_implementation_note).

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies every declared field for every instance, re-running each field's __init__, so that an
        # instance may change its fields; these never do, and a shallow copy is all that binding a field to this
        # instance needs. A nested serializer is still deep-copied, so its own bound fields are never shared.
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    # A serializer checking a few fields of a larger document it passes on (a receipt to verify) takes the others.
    refuses_unknown_fields = True

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            return super().to_internal_value(data)
        fields = self.fields
        unknown = sorted(set(data) - set(fields)) if self.refuses_unknown_fields else []
        errors: dict[str, Any] = {name: ["Unknown field."] for name in unknown}
        if not isinstance(data, QueryDict):
            for name, value in data.items():
                field = fields.get(name)
                problem = None if field is None or field.read_only else json_type_error(field, value)
                if problem is not None:
                    errors[name] = [problem]
        # Every problem in one answer: the fields' own validation runs too, on the values of the right JSON type
        # only (DRF would coerce the others and judge what was not sent). A field left out that way is reported
        # with its type error, not as missing.
        checked = data if isinstance(data, QueryDict) else {k: v for k, v in data.items() if k not in errors}
        try:
            value = super().to_internal_value(checked)
        except serializers.ValidationError as error:
            detail = error.detail if isinstance(error.detail, dict) else {"non_field_errors": error.detail}
            errors = {**detail, **errors}
            raise serializers.ValidationError(errors) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


class JSONObjectField(serializers.DictField):
    """A JSON object of any content (DictField without per-value coercion)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class ObjectIdField(serializers.UUIDField):
    """The id of an object the view looks up next. A malformed id names no object, so it answers that object's 404
    (before any other field's 400), like an unknown id or another owner's: the shape of an id tells nothing."""

    checks_own_json_type = True

    def __init__(self, *, not_found: type[ApplicationError], **kwargs: Any) -> None:
        self.not_found = not_found
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> UUID:
        if not isinstance(data, str):
            raise self.not_found()  # DRF's UUIDField would read an integer as a UUID
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            raise self.not_found() from None
