"""OpenAPI glue for drf-spectacular: the error envelope, both auth headers (and Bearer), and the errors every
operation can give."""

from typing import Any

import uritemplate
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance, is_list_serializer, is_serializer
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from aitbc_site import amounts
from aitbc_site.strict import StrictSerializer

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable, SCREAMING_SNAKE; listed in the README."),
                "message": serializers.CharField(),
                "details": serializers.DictField(help_text="Field errors for VALIDATION_ERROR, else context."),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: (
        "Invalid input (VALIDATION_ERROR, MALFORMED_JSON, MALFORMED_REQUEST, INVALID_JOB_TYPE, INVALID_ADDRESS, "
        "AMBIGUOUS_CREDENTIALS …)."
    ),
    401: "AUTHENTICATION_REQUIRED (no credential), INVALID_API_KEY or INVALID_SESSION.",
    402: "INSUFFICIENT_FUNDS: the available balance does not cover the job's price.",
    403: "PERMISSION_DENIED: the key's role may not use this endpoint.",
    404: "Not found, or not the caller's (JOB_NOT_FOUND, MINER_NOT_FOUND …).",
    405: "METHOD_NOT_ALLOWED.",
    409: (
        "Conflicts with the current state (INVALID_JOB_STATE, LEASE_EXPIRED, IDEMPOTENCY_KEY_REUSED, "
        "OUTPUT_OUT_OF_ORDER …)."
    ),
    425: "JOB_NOT_FINISHED: the job is still queued or running; its result does not exist yet.",
    429: "RATE_LIMITED: over the rate limit; retry after the seconds in the Retry-After header.",
    413: (
        "PAYLOAD_TOO_LARGE: bodies are limited to 1 MiB; OUTPUT_TOO_LARGE: a job's partial output is limited to "
        "JOB_OUTPUT_MAX_BYTES."
    ),
    414: "URI_TOO_LONG: the request line (method, path and query string) is limited to 4094 bytes.",
    415: "UNSUPPORTED_MEDIA_TYPE: send application/json.",
    431: "HEADERS_TOO_LARGE: at most 100 headers of at most 8190 bytes each.",
    500: "INTERNAL_ERROR.",
    503: "EXCHANGE_DISABLED: the exchange is not configured.",
}


def error_responses(*status_codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[code]) for code in status_codes}


class AutoSchema(SpectacularAutoSchema):
    """Adds to every operation the errors any request can meet, so no answer is undocumented."""

    def _get_parameters(self) -> list[dict[str, Any]]:
        # A path parameter declared once on a viewset (`@extend_schema(parameters=[JOB_ID])`) is meant for its detail
        # routes: on `/v1/client/jobs` (list, create) it would document an `id` the path does not have, and a client
        # generated from the schema would have to send it.
        path_variables = set(uritemplate.variables(self.path))
        return [
            parameter
            for parameter in super()._get_parameters()
            if parameter["in"] != "path" or parameter["name"] in path_variables
        ]

    def _is_list_view(self, serializer: Any = None) -> bool:
        # Our viewsets are plain ViewSets that declare a list response as `Serializer(many=True)`. drf-spectacular
        # also guesses "list" from an action named `list`, and would wrap the object such an action declares (a page:
        # `results`, `next`, `previous`) in an array the server never sends.
        if serializer is not None and is_serializer(serializer) and not is_list_serializer(serializer):
            return False
        return super()._is_list_view(serializer)

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        # StrictSerializer answers 400 to a field it does not know: say so, so clients (and generated tests) know.
        # One that takes the others (a receipt to verify) must not be documented as refusing them.
        instance = force_instance(serializer)
        if direction == "request" and isinstance(instance, StrictSerializer) and instance.refuses_unknown_fields:
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        common = [400, 405, 414, 429, 431, 500]
        if self.method in ("POST", "PUT", "PATCH"):
            common += [413, 415]
        if not any(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            common += [401, 403]
        for code, response in error_responses(*common).items():
            # The OpenApiResponse itself, so its description is used and the media types come from the renderers.
            responses.setdefault(str(code), self._get_response_for_code(response, str(code)))
        return responses


class _HeaderOrBearerScheme(OpenApiAuthenticationExtension):
    """A credential in its own header or as `Authorization: Bearer`: either one satisfies the operation. The bearer
    scheme has a name per credential, since drf-spectacular ties a security scheme to one authentication class."""

    header: str
    credential: str

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        bearer = {
            "type": "http",
            "scheme": "bearer",
            "description": f"{self.credential} as `Authorization: Bearer`, instead of {self.header}. Two different "
            "credentials in one request are refused with 400 AMBIGUOUS_CREDENTIALS.",
        }
        return [{"type": "apiKey", "in": "header", "name": self.header}, bearer]


class ApiKeyAuthenticationScheme(_HeaderOrBearerScheme):
    target_class = "aitbc_site.authentication.ApiKeyAuthentication"
    name = ["ApiKeyAuth", "ApiKeyBearer"]
    header = "X-Api-Key"
    credential = "An API key"


class SessionTokenAuthenticationScheme(_HeaderOrBearerScheme):
    target_class = "aitbc_site.authentication.SessionTokenAuthentication"
    name = ["SessionToken", "SessionBearer"]
    header = "X-Session-Token"
    credential = "A session token"


# Request fields whose values the API checks beyond their type: their patterns and values in the schema, so clients
# (and generated tests) know what is accepted. The fields' own validation is unchanged.


class AmountFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "accounts.serializers.AmountField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        pattern = amounts.AMOUNT_PATTERN if not self.target.positive else amounts.AMOUNT_PATTERN.removeprefix("-?")
        return {
            "type": "string",
            "pattern": f"^{pattern}$",
            "description": f"At most {amounts.MAX_TEXT} in magnitude; beyond is 400 AMOUNT_OUT_OF_RANGE.",
        }


class WalletAddressFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "accounts.serializers.WalletAddressField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "pattern": "^(0x|ait1|aitbc1)[0-9a-fA-F]{40}$"}


class JobTypeFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "miners.serializers.JobTypeField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "enum": list(settings.JOB_TYPES)}
