"""Request bodies are read as strict JSON: too deep, not Unicode, NUL, numbers JSON cannot keep, duplicate keys are
each a clear 400 before anything is stored."""

import json
import subprocess
import sys

import pytest
from django.db import connection
from rest_framework.test import APIClient

from aitbc_site.json_input import MAX_JSON_DEPTH, nesting_exceeds
from aitbc_site.settings import BASE_DIR
from aitbc_site.testing import assert_api_error
from jobs.models import Job

JOBS = "/v1/client/jobs"


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (nested(MAX_JSON_DEPTH), False),
        (nested(MAX_JSON_DEPTH + 1), True),
        ('{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH, False),
        ('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), True),
        ('{"address": ' + nested(MAX_JSON_DEPTH) + "}", True),
        ("[" + "[]," * 10_000 + "[]]", False),
        (json.dumps(["[" * 1000, "{" * 1000]), False),
        (json.dumps(['\\"[[[' * 100]), False),
        ("[" * 60_000, True),
    ],
    ids=["64 deep", "65 deep", "objects 64 deep", "objects 65 deep", "deep inside an object", "wide", "in strings",
         "after escaped quotes", "60,000 openers"],
)
def test_nesting_is_counted_from_the_root_outside_strings(body: str, too_deep: bool) -> None:
    assert nesting_exceeds(body.encode()) is too_deep


def test_the_nesting_count_finishes_on_an_unterminated_string_full_of_escaped_quotes_at_the_cap() -> None:
    # One regex for "a string with its escapes" rescans the rest of the body from every quote of such a string:
    # about fifty minutes of CPU for this 1 MiB body, with the GIL held. Linear, it takes milliseconds; the bound
    # only turns a hang into a failure.
    script = (
        "from aitbc_site.json_input import nesting_exceeds\n"
        "assert nesting_exceeds(b'[' * 65 + b'\"' + b'\\\\\"' * (512 * 1024 - 40))\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, check=True, timeout=60)


JSON_ROUTES = [
    ("anonymous", "/v1/users/challenge"),
    ("anonymous", "/v1/users/login"),
    ("anonymous", "/v1/receipts/verify"),
    ("client", "/v1/client/jobs"),
    ("miner", "/v1/miner/register"),
    ("miner", "/v1/miner/heartbeat"),
    ("miner", "/v1/miner/result"),
]


def _caller(role: str, anonymous_api: APIClient, client_api: APIClient, miner_api: APIClient) -> APIClient:
    return {"anonymous": anonymous_api, "client": client_api, "miner": miner_api}[role]


def post_raw(api: APIClient, path: str, body: str | bytes) -> object:
    return api.post(path, data=body.encode() if isinstance(body, str) else body, content_type="application/json")


@pytest.mark.parametrize(
    "body",
    ["[" * 60_000, '{"address": ' + "[" * 60_000 + "]" * 60_000 + "}", nested(MAX_JSON_DEPTH + 1)],
    ids=["60,000 bare openers", "60,000 deep in a field", "65 deep"],
)
@pytest.mark.parametrize(("role", "path"), JSON_ROUTES, ids=[path for _, path in JSON_ROUTES])
def test_every_json_route_refuses_nesting_past_64_levels(
    role: str, path: str, body: str, anonymous_api: APIClient, client_api: APIClient, miner_api: APIClient
) -> None:
    api = _caller(role, anonymous_api, client_api, miner_api)

    assert_api_error(post_raw(api, path, body), status=400, code="JSON_TOO_DEEP")


def _job(parameters_json: str) -> str:
    return '{"job_type": "llm_inference", "parameters": ' + parameters_json + "}"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_job('{"x": "\\ud800"}'), "VALIDATION_ERROR"),
        (_job('{"x": ["ok", "\\udfff tail"]}'), "VALIDATION_ERROR"),
        (_job('{"\\ud800": 1}'), "VALIDATION_ERROR"),
        ('{"job_type": "llm_inference", "\\udc00": 1}', "VALIDATION_ERROR"),
        (_job('{"x": "a\\u0000b"}'), "VALIDATION_ERROR"),
        (_job('{"x\\u0000": 1}'), "VALIDATION_ERROR"),
        (_job('{"x": 9223372036854775808}'), "VALIDATION_ERROR"),
        (_job('{"x": -9223372036854775808}'), "VALIDATION_ERROR"),
        (_job('{"x": ' + "9" * 5000 + "}"), "VALIDATION_ERROR"),
        (_job('{"x": 1e999}'), "MALFORMED_JSON"),
        (_job('{"x": -1e999}'), "MALFORMED_JSON"),
        (_job('{"x": NaN}'), "MALFORMED_JSON"),
        (_job('{"x": Infinity}'), "MALFORMED_JSON"),
        (_job('{"x": -Infinity}'), "MALFORMED_JSON"),
        (_job('{"x": 1, "x": 2}'), "MALFORMED_JSON"),
        ('{"job_type": "llm_inference", "job_type": "embedding"}', "MALFORMED_JSON"),
        (_job('{"x": "\x00"}'), "MALFORMED_JSON"),
        (b'{"job_type": "llm_inference", "parameters": {"x": "\xed\xa0\x80"}}', "MALFORMED_JSON"),
        (b"\xef\xbb\xbf" + _job("{}").encode(), "MALFORMED_JSON"),
    ],
    ids=["lone high surrogate", "lone low surrogate in a list", "surrogate in a key", "surrogate in a top-level key",
         "NUL escape in a value", "NUL escape in a key", "2**63", "-(2**63)", "5000 digits", "1e999", "-1e999",
         "NaN", "Infinity", "-Infinity", "duplicate key", "duplicate top-level key", "raw NUL",
         "surrogate encoded as UTF-8", "byte order mark"],
)
def test_a_body_json_cannot_keep_exactly_is_refused_and_nothing_is_stored(
    client_api: APIClient, body: str | bytes, code: str
) -> None:
    assert_api_error(post_raw(client_api, "/v1/client/jobs", body), status=400, code=code)

    assert Job.objects.count() == 0


def test_a_refused_text_names_where_it_is(client_api: APIClient) -> None:
    text = _job('{"messages": [{"content": "\\ud83d"}]}')
    number = _job('{"options": {"n": 99999999999999999999}}')

    text_error = assert_api_error(post_raw(client_api, JOBS, text), status=400, code="VALIDATION_ERROR")
    number_error = assert_api_error(post_raw(client_api, JOBS, number), status=400, code="VALIDATION_ERROR")

    assert text_error["details"] == {
        "parameters": ["At parameters.messages[0].content: Text must be valid Unicode: a lone UTF-16 surrogate is not."]
    }
    assert number_error["details"] == {"parameters": ["At parameters.options.n: Integers must lie within ±(2⁶³-1)."]}


@pytest.mark.parametrize(
    "parameters",
    [
        '{"x": "\\ud83d\\ude00 \\u00e9"}',
        '{"x": 9223372036854775807, "y": -9223372036854775807}',
        '{"x": 1.5e308, "y": 0.1}',
        '{"x": "back\\\\u0000slash"}',
        # The body's object, `parameters` and "d"'s value: 64 levels from the root.
        '{"d": ' + nested(MAX_JSON_DEPTH - 3, "{}") + "}",
    ],
    ids=["surrogate pair and accent", "largest integers", "large finite float", "escaped backslash",
         "64 deep from the root"],
)
def test_valid_json_at_the_edges_is_accepted_as_sent(client_api: APIClient, parameters: str) -> None:
    response = post_raw(client_api, "/v1/client/jobs", _job(parameters))

    assert response.status_code == 201, response.content
    stored = Job.objects.get().parameters
    if connection.vendor == "postgresql":
        # jsonb keeps numbers as exact decimals: 1.5e308 reads back as the integer 15 followed by 307 zeros.
        assert json.loads(json.dumps(stored), parse_int=float) == json.loads(parameters, parse_int=float)
    else:
        assert stored == json.loads(parameters)
