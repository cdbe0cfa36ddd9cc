"""Serializers that refuse what they do not know, so a misspelt field is an error rather than silently ignored."""

from typing import Any

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
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
