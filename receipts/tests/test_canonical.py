"""RFC 8785 (JSON Canonicalization Scheme): the bytes receipts are signed and hashed over.

The expected outputs are RFC 8785's own published examples (section 3.2.2's sample, section 3.2.3's sorting example
and Appendix B's number table), so these tests check receipts.canonical against the standard, not against itself.
"""

import hashlib
import json
import struct
from typing import Any

import pytest
from rest_framework.test import APIClient

from aitbc_site.testing import assert_api_error
from conftest import post_result, register_miner, submit_job
from jobs.models import Job, JobAttempt, JobStatus
from receipts.canonical import CanonicalizationError, canonical_bytes, sha256_tag
from receipts.models import Receipt
from receipts.tests.factories import first_receipt, take_job

MAX_SAFE_INTEGER = 2**53 - 1

# RFC 8785, section 3.2.2: the sample input, as JSON text …
RFC_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
# … its canonical output, as printed in the RFC …
RFC_SAMPLE_OUTPUT = (
    r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]"""
    r""","string":"€$\u000f\nA'B\"\\\\\"/"}"""
)
# … and the same output as the UTF-8 bytes the RFC lists in hexadecimal (section 3.2.4).
RFC_SAMPLE_OUTPUT_HEX = """
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
"""

# RFC 8785, section 3.2.3: keys are sorted by their UTF-16 code units, so the emoji (a surrogate pair starting at
# 0xD83D) sorts before U+FB33 although its code point, U+1F600, is larger.
RFC_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_SORTED_VALUES = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]

# RFC 8785, Appendix B: IEEE 754 bit patterns and their canonical serialization.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),  # min pos number
    ("8000000000000001", "-5e-324"),  # min neg number
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # max neg number
    ("4340000000000000", "9007199254740992"),  # max pos int
    ("c340000000000000", "-9007199254740992"),  # max neg int
    ("4430000000000000", "295147905179352830000"),  # ~2**68
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # round to even
]
RFC_NOT_NUMBERS = ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"]  # NaN, Infinity, -Infinity


def _double(bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(bits))[0]


# --- RFC 8785's published examples ----------------------------------------------------------------------------------


def test_the_rfcs_sample_object_canonicalizes_to_the_rfcs_output() -> None:
    canonical = canonical_bytes(json.loads(RFC_SAMPLE_INPUT))

    assert canonical == RFC_SAMPLE_OUTPUT.encode("utf-8")
    assert canonical == bytes.fromhex(RFC_SAMPLE_OUTPUT_HEX)


def test_keys_are_sorted_by_utf16_code_units_as_in_the_rfcs_sorting_example() -> None:
    canonical = canonical_bytes(json.loads(RFC_SORTING_INPUT))

    assert list(json.loads(canonical).values()) == RFC_SORTED_VALUES
    assert canonical.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBERS)
def test_numbers_serialize_as_in_the_rfcs_appendix_b(bits: str, expected: str) -> None:
    assert canonical_bytes(_double(bits)) == expected.encode()
    assert canonical_bytes({"n": _double(bits)}) == b'{"n":' + expected.encode() + b"}"


@pytest.mark.parametrize("bits", RFC_NOT_NUMBERS)
def test_nan_and_infinities_cannot_be_canonicalized(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"n": _double(bits)})


# --- integers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, -1, 10**15])
def test_integers_within_plus_minus_2_to_the_53_minus_1_are_written_as_they_are(value: int) -> None:
    assert canonical_bytes([value]) == f"[{value}]".encode()


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**64, 10**30])
def test_integers_beyond_plus_minus_2_to_the_53_minus_1_are_refused(value: int) -> None:
    # A verifier in JavaScript (or any binary64 parser) would read a different number than was signed.
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"deep": [{"n": value}]})


def test_a_float_with_an_integral_value_is_written_without_a_fraction() -> None:
    assert canonical_bytes([1.0, -0.0, 100.0, 1e21]) == b"[1,0,100,1e+21]"


# --- strings and unicode ---------------------------------------------------------------------------------------------


def test_non_ascii_text_is_written_as_utf8_not_escaped() -> None:
    assert canonical_bytes({"text": "Grüße, 世界 😀"}) == '{"text":"Grüße, 世界 😀"}'.encode()


def test_only_quote_backslash_and_control_characters_are_escaped_with_lowercase_hex() -> None:
    value = "\"\\\b\f\n\r\t\x00\x1f\x7f/\u2028"

    assert canonical_bytes(value) == '"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f/\u2028"'.encode("utf-8")


def test_unicode_is_not_normalized() -> None:
    # "é" precomposed and decomposed are different strings to JCS: signatures cover exactly what was sent.
    assert canonical_bytes("\u00e9") != canonical_bytes("e\u0301")


def test_a_lone_surrogate_cannot_be_canonicalized() -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"text": "\ud800"})


# --- structure -------------------------------------------------------------------------------------------------------


def test_nested_objects_are_sorted_at_every_level_and_arrays_keep_their_order() -> None:
    value = {"b": {"z": [3, {"y": 1, "x": 2}], "a": None}, "a": [{"d": True, "c": False}, "s"]}

    assert canonical_bytes(value) == b'{"a":[{"c":false,"d":true},"s"],"b":{"a":null,"z":[3,{"x":2,"y":1}]}}'


def test_key_order_and_whitespace_of_the_input_do_not_change_the_bytes() -> None:
    pretty = '{\n  "b" : [1, 2.50, {"y": "é", "x": 1E2}],\n  "a" : {}\n}'
    compact = '{"a":{},"b":[1,2.5,{"x":100,"y":"\\u00e9"}]}'

    assert canonical_bytes(json.loads(pretty)) == canonical_bytes(json.loads(compact))
    assert canonical_bytes(json.loads(pretty)) == '{"a":{},"b":[1,2.5,{"x":100,"y":"é"}]}'.encode()


def test_sha256_tag_is_sha256_colon_lowercase_hex() -> None:
    assert sha256_tag(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# --- at the API boundary ---------------------------------------------------------------------------------------------


def test_a_receipts_result_hash_is_the_sha256_of_the_canonical_result(
    client_api: APIClient, miner_api: APIClient
) -> None:
    result = {"text": "Grüße 😀", "scores": [0.5, 1e-7, 1e21], "meta": {"z": 1, "a": [True, None]}}

    receipt, _ = first_receipt(client_api, miner_api, result=result)

    expected = '{"meta":{"a":[true,null],"z":1},"scores":[0.5,1e-7,1e+21],"text":"Grüße 😀"}'.encode()
    assert receipt["result"] == result
    assert receipt["result_hash"] == "sha256:" + hashlib.sha256(expected).hexdigest()


def test_a_failed_attempts_receipt_has_a_null_result_hash(client_api: APIClient, miner_api: APIClient) -> None:
    receipt, _ = first_receipt(
        client_api, miner_api, status="failed", result=None, error={"code": "E", "message": "m"}, retryable=False
    )

    assert receipt["result"] is None
    assert receipt["result_hash"] is None


@pytest.mark.parametrize(
    ("field", "body", "code"),
    [
        ("result", '{"big": 9007199254740992}', "VALIDATION_ERROR"),
        ("result", '{"deep": [{"small": -9007199254740992}]}', "VALIDATION_ERROR"),
        # Not even a number JSON can keep: the body's reader refuses it.
        ("result", '{"huge": 1e400}', "MALFORMED_JSON"),
        ("result", r'{"text": "lone surrogate \ud800"}', "VALIDATION_ERROR"),
        ("metrics", '{"tokens": 18446744073709551616}', "VALIDATION_ERROR"),
    ],
)
def test_a_result_or_metrics_that_json_canonicalization_cannot_represent_is_refused_and_nothing_is_recorded(
    client_api: APIClient, miner_api: APIClient, field: str, body: str, code: str
) -> None:
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    take_job(miner_api, miner_id, job["id"])
    other = "metrics" if field == "result" else "result"
    # Sent as raw text: the JSON encoder of the test client could not even write some of these values.
    raw = (
        f'{{"miner_id": "{miner_id}", "job_id": "{job["id"]}", "status": "completed", '
        f'"{field}": {body}, "{other}": {{}}}}'
    )

    response = miner_api.post("/v1/miner/result", raw, content_type="application/json")

    error = assert_api_error(response, status=400, code=code)
    assert code == "MALFORMED_JSON" or field in error["details"]
    assert Job.objects.get(pk=job["id"]).status == JobStatus.RUNNING
    assert JobAttempt.objects.get(job_id=job["id"]).reported_status is None
    assert not Receipt.objects.exists()


def test_the_largest_exact_integers_are_accepted_in_a_result(client_api: APIClient, miner_api: APIClient) -> None:
    miner_id = register_miner(miner_api)["id"]
    job = submit_job(client_api)
    take_job(miner_api, miner_id, job["id"])

    response = post_result(
        miner_api, miner_id, job["id"], result={"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER},
        metrics={"tokens": MAX_SAFE_INTEGER},
    )

    assert response.status_code == 200, response.content
    assert response.json()["receipt"]["result"] == {"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER}


def test_a_result_with_unicode_and_nesting_survives_signing_and_serving_unchanged(
    client_api: APIClient, miner_api: APIClient
) -> None:
    result: dict[str, Any] = {"\U0001f600": {"\u20ac": ["\r", 1.5, {"\u00f6": None}]}, "1": "\ufb33"}

    receipt, _ = first_receipt(client_api, miner_api, result=result)

    served = client_api.get(f"/v1/receipts/{receipt['id']}").json()
    assert served["result"] == result
    assert APIClient().post("/v1/receipts/verify", served, format="json").json()["valid"] is True
