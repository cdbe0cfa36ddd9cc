"""`/`: what this server is and where its documentation and probes are, for a newcomer who opens the bare URL."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

LINKED_ROUTES = {"docs": "docs", "redoc": "redoc", "openapi": "openapi", "health": "health"}

RootSerializer = inline_serializer(
    name="Root",
    fields={
        "name": serializers.CharField(),
        "version": serializers.CharField(help_text="The API's version."),
        "links": inline_serializer(
            name="RootLinks",
            fields={name: serializers.CharField() for name in LINKED_ROUTES},
        ),
    },
)


@extend_schema(
    operation_id="root",
    tags=["meta"],
    description=(
        "The API's name and version, and the paths of the interactive documentation (`docs`, `redoc`), the OpenAPI "
        "document (`openapi`) and the liveness probe (`health`). The paths start at this server's root."
    ),
    responses={200: RootSerializer},
)
@api_view(["GET", "HEAD"])
@authentication_classes([])
@permission_classes([AllowAny])
def root(request: Request) -> Response:
    """Name, version and links. The links are paths from the server's root (no scheme or host): they carry
    URL_PREFIX through reverse(), so they stay right behind the proxy, and a client behind another name for this
    server resolves them against the URL it used. DRF rather than a plain JsonResponse, so that other methods get
    the 405 envelope."""
    return Response(
        {
            "name": settings.SPECTACULAR_SETTINGS["TITLE"],
            "version": settings.SPECTACULAR_SETTINGS["VERSION"],
            "links": {name: reverse(url_name) for name, url_name in LINKED_ROUTES.items()},
        }
    )
