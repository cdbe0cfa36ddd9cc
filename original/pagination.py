"""The original dialect's list shape, `{"items", "next"}`, over our cursor pagination (same `limit` and `cursor`)."""

from typing import Any

from rest_framework.response import Response

from aitbc_site.pagination import CursorPage


class ItemsCursorPage(CursorPage):
    """Newest first, as our own lists."""

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"items": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": schema,
                "next": {"type": "string", "format": "uri", "nullable": True, "description": "The next page."},
            },
        }
