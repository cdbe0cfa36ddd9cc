"""Cursor pagination for every list: `{"results", "next", "previous"}` with `limit` 1..100 (default 20)."""

import binascii
import datetime
from base64 import b64decode
from typing import Any
from urllib import parse

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from rest_framework import serializers
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from aitbc_site.exceptions import ApplicationError


class InvalidCursor(ApplicationError):
    code = "INVALID_CURSOR"
    default_message = "Not a cursor this API issued; start again from the first page."


class CursorPage(CursorPagination):
    model: type[Model]
    page_size = 20
    max_page_size = 100
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise serializers.ValidationError({"limit": [f"Must be a whole number from 1 to {self.max_page_size}."]})
        return size

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> list[Any] | None:
        # The cursor's position is read as a value of the ordering's first field, which needs the model.
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF's cursor reading, strict: DRF's drops what is not base64 (so junk reads as the first page) and
        passes the position to the database unchecked (a forged one is a 500 there)."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            tokens = parse.parse_qs(
                b64decode(encoded.encode("ascii"), validate=True).decode("ascii"),
                keep_blank_values=True, strict_parsing=True, max_num_fields=3,
            )
            offset = int(tokens.get("o", ["0"])[0])
            reverse = tokens.get("r", ["0"])[0]
            position = tokens.get("p", [None])[0]
        except (UnicodeError, binascii.Error, ValueError):
            raise InvalidCursor() from None
        if set(tokens) - {"o", "r", "p"} or not 0 <= offset <= self.offset_cutoff or reverse not in ("0", "1"):
            raise InvalidCursor()
        if position is not None:
            self._check_position(position)
        return Cursor(offset=offset, reverse=reverse == "1", position=position)

    def _check_position(self, position: str) -> None:
        field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
        try:
            value = field.to_python(position)
        except (ValidationError, OverflowError):
            raise InvalidCursor() from None
        # The positions this API issues are UTC times; another offset could be converted out of the date range
        # (0001-01-01T00:00+01:00) by the database adapter, a 500 there.
        if value is None or (isinstance(value, datetime.datetime) and value.utcoffset() != datetime.timedelta(0)):
            raise InvalidCursor()

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paged = super().get_paginated_response_schema(schema)
        paged["required"] = ["results", "next", "previous"]
        return paged

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


class OldestFirstCursorPage(CursorPage):
    ordering = ("at", "id")


class ReceiptCursorPage(CursorPage):
    ordering = ("created_at", "id")
