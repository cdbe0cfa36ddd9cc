"""Content negotiation that answers the usual Accept values of a JSON API without parsing them."""

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

JSON = "application/json"
# What clients send when they take JSON: nothing, anything, or JSON itself. Each makes DRF pick the first renderer.
_USUAL_ACCEPT = frozenset({"", "*/*", JSON})


class JsonFirstNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, short-cut when its answer is known: for a usual Accept header and no `?format=`, a view
    whose first renderer is JSON answers JSON. DRF parses and ranks the header on every request otherwise, a few
    per cent of a request's CPU here; any other Accept header still goes through it (and may be a 406)."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        accept = request.META.get("HTTP_ACCEPT", "").strip()
        if (
            renderers
            and renderers[0].media_type == JSON
            and accept in _USUAL_ACCEPT
            and not format_suffix
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], JSON
        result: Any = super().select_renderer(request, renderers, format_suffix)
        return result
