"""Serializers that refuse what they do not know, so a misspelt field is an error rather than silently ignored."""

import copy
from typing import Any
from uuid import UUID

from rest_framework import serializers

from aitbc_site.exceptions import ApplicationError


class StrictSerializer(serializers.Serializer):
    """A serializer of input. Its fields are never changed per instance (no `self.fields[...]` edits)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies every declared field for every instance, re-running each field's __init__, so that an
        # instance may change its fields; these never do, and a shallow copy is all that binding a field to this
        # instance needs. A nested serializer is still deep-copied, so its own bound fields are never shared.
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


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

    def __init__(self, *, not_found: type[ApplicationError], **kwargs: Any) -> None:
        self.not_found = not_found
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> UUID:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            raise self.not_found() from None
