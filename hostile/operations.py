"""The operations of the OpenAPI document and the hostile requests the gate sends to each: fixed ones (every
category at every field, query parameter and header, once) and generated ones (hypothesis mixes them)."""

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from hostile.inputs import (
    BODY_CAP,
    MAX_DEPTH,
    Hostile,
    Slot,
    baseline,
    deep,
    duplicate_key,
    fixed_values,
    hostile_key,
    hostile_value,
    named_values,
    slots,
    splice_key,
    splice_value,
)
from hostile.wire import Probe
from hostile.world import World

JSON_TYPE = ("Content-Type", b"application/json")
# The routes outside the document that must answer a foreign Host (load balancers' and Prometheus' probes).
PROBE_ROUTES = ("/health", "/ready")
_PATH_IDS = {
    ("/v1/client/jobs/{id}/cancel", "id"): "pending_job_id",
    ("/v1/jobs/{id}/cancel", "id"): "pending_job_id",
    ("/v1/miner/jobs/{id}/output", "id"): "job_id",  # partial output: the job running on the gate's miner
    ("*", "id"): "done_job_id",
    ("*", "job_id"): "job_id",  # the original dialect's result and fail: the job running on the gate's miner
    ("/v1/receipts/{id}", "id"): "receipt_id",
    ("/v1/users/{id}/balance", "id"): "user_id",
    ("*", "payment_id"): "payment_id",
    ("*", "key_id"): "key_id",
}


@dataclass
class Operation:
    method: str
    path: str
    statuses: set[int]
    parameters: list[dict[str, Any]]
    request_schema: dict[str, Any] | None
    security: list[list[str]]
    components: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def role(self) -> str | None:
        """The credential that gets a request past authentication and permissions."""
        schemes = {scheme for requirement in self.security for scheme in requirement}
        if not schemes:
            return None
        if "SessionToken" in schemes:
            return "logout" if self.path == "/v1/users/logout" else "session"
        return "miner" if self.path.startswith("/v1/miner") else "client"

    @property
    def wrong_role(self) -> str | None:
        # A route that takes an API key as well as a session (a balance) is wronged by a key of no one's: a miner's.
        takes_key = any("ApiKeyAuth" in requirement for requirement in self.security)
        session = "miner" if takes_key else "client"
        if self.path.startswith("/v1/receipts/"):
            return None  # a receipt is shown to its job's client and to the miner that produced it: both keys are right
        return {"client": "miner", "miner": "client", "session": session, "logout": "client"}.get(self.role or "")

    @property
    def reads_body(self) -> bool:
        return self.request_schema is not None

    @property
    def paginated(self) -> bool:
        return any(parameter["name"] == "cursor" for parameter in self.parameters)

    def query_parameters(self) -> list[dict[str, Any]]:
        return [parameter for parameter in self.parameters if parameter["in"] == "query"]


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append(Operation(
                method=method.upper(), path=path, statuses={int(code) for code in operation["responses"]},
                parameters=operation.get("parameters", []), request_schema=body,
                security=[list(requirement) for requirement in operation.get("security", [{}])],
                components=document["components"]["schemas"],
            ))
    return found


# --- the valid request each hostile one departs from --------------------------------------------------------------


def target(operation: Operation, world: World, *, path_values: dict[str, str] | None = None,
           query: list[tuple[str, str]] | None = None) -> str:
    path = operation.path
    for parameter in operation.parameters:
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        key = _PATH_IDS.get((operation.path, name)) or _PATH_IDS[("*", name)]
        value = (path_values or {}).get(name, quote(world.ids[key], safe=""))
        path = path.replace("{" + name + "}", value)
    pairs = baseline_query(operation, world) if query is None else query
    return path + ("?" + "&".join(f"{name}={value}" for name, value in pairs) if pairs else "")


def baseline_query(operation: Operation, world: World) -> list[tuple[str, str]]:
    pairs = []
    for parameter in operation.query_parameters():
        if parameter["name"] == "miner_id":
            pairs.append(("miner_id", world.ids["miner_id"]))
        elif parameter["name"] == "limit":
            pairs.append(("limit", "1" if operation.path == "/v1/miner/jobs" else "5"))
    return pairs


def credentials(world: World, role: str | None) -> list[tuple[str, bytes]]:
    if role is None:
        return []
    name, value = world.credentials[role]
    return [(name, value.encode())]


def baseline_body(operation: Operation, world: World, *, only: str | None = None) -> Any:
    """The operation's request body from its schema. Creating a payment takes one amount, not both: `only` keeps
    the property a hostile value goes into."""
    if operation.path == "/v1/receipts/verify":
        return json.loads(world.ids["receipt"])
    assert operation.request_schema is not None
    body = baseline(operation.request_schema, operation.components, named_values(world.ids))
    if operation.path == "/v1/exchange/create-payment":
        keep = only if only in body else "aitbc_amount"
        body = {keep: body[keep]}
    return body


def body_slots(operation: Operation, body: Any) -> list[Slot]:
    assert operation.request_schema is not None
    return list(slots(body, operation.request_schema, operation.components))


def body_probe(operation: Operation, world: World, payload: bytes, label: str, *, role: str | None = "right",
               hostile: Hostile | None = None, chunked: bool = False,
               headers: list[tuple[str, bytes]] | None = None) -> Probe:
    right = role == "right"
    who = operation.role if right else role
    probe = Probe(operation.method, target(operation, world), label,
                  headers=[JSON_TYPE, *credentials(world, who), *(headers or [])])
    if chunked:
        probe.chunked = chunk(payload)
    else:
        probe.body = payload
    if hostile is not None:
        probe.refuse = hostile.refuse
        if right:
            probe.status, probe.code = hostile.status, hostile.code
    if len(payload) > BODY_CAP:
        probe.refuse, probe.status, probe.code = True, 413, "PAYLOAD_TOO_LARGE"
    return probe


def chunk(payload: bytes, size: int = 65536) -> bytes:
    pieces = [payload[start:start + size] for start in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


# --- fixed probes -------------------------------------------------------------------------------------------------

FORGED_CURSORS = [
    base64.b64encode(b"p=not-a-date").decode(),  # a position that is no timestamp
    base64.b64encode(b"o=-1&p=2020-01-01").decode(),
    base64.b64encode(b"p=\x00").decode(),
    base64.b64encode(b"p=0001-01-01T00:00:00+01:00").decode(),  # converted to UTC, before the first day
    base64.b64encode(b"p=9999-12-31T23:59:59-01:00").decode(),  # converted to UTC, after the last day
    base64.b64encode(b"\xff\xfe\xfd").decode(),  # not UTF-8
    "%%",
    "%25%25",
    "not-base64!",
    "a",
]
# Cursors the API could have issued in form, whatever their content says: not refused, only held to the common checks.
ODD_CURSORS = [base64.b64encode(b"o=99999999999999999999999").decode(), base64.b64encode(b"r=1").decode()]
QUERY_JUNK = ["%00", "%ED%A0%80", "%FF", "%%", "%", "%D9%A1", "1e999", "NaN", "-1", "0", "99999999999999999999",
              "1.5", "", "a" * 3000]
PATH_JUNK = ["%00", "%ED%A0%80", "%FF", "%D9%A1%D9%A2", "a" * 3000, "..%2F..", "%2e%2e", quote("\u0661" * 36)]
HEADER_JUNK = [b"\x00", b"a\x00b", b"\xed\xa0\x80", b"\xff\xfe", "\u0661\u0662\u0663".encode(), b"a" * 8000,
               b"a" * 8191, b" ", b"1e999", b"NaN", b"\x1b[31m"]
FOREIGN_HOSTS = [b"evil.example", b"evil.example:80", b"127.0.0.2", b"[::2]", b"a" * 300, b"localhost.evil.example"]
CONTENT_TYPES = [b"application/json; charset=utf-16", b"application/json; charset=bogus", b"text/plain",
                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", b"", b"application/json\x00",
                 "application/jsön".encode()]
HEADERS = ["X-Api-Key", "X-Session-Token", "Idempotency-Key", "X-Request-ID", "Last-Event-ID", "Content-Type"]


def fixed_probes(operation: Operation, world: World) -> list[Probe]:
    probes: list[Probe] = []
    who = credentials(world, operation.role)
    if operation.reads_body:
        probes += _fixed_body_probes(operation, world)
    elif operation.method == "POST":
        # A body the route does not read must still not hurt it.
        for text in (deep(60000), '{"a":1,"a":2}', '{"a":NaN}', '"\\ud800"'):
            probes.append(body_probe(operation, world, text.encode(), f"unread body {text[:20]}"))
    for parameter in operation.query_parameters():
        name = parameter["name"]
        values = FORGED_CURSORS + ODD_CURSORS if name == "cursor" else QUERY_JUNK
        for value in values:
            query = [pair for pair in baseline_query(operation, world) if pair[0] != name] + [(name, value)]
            probe = Probe(operation.method, target(operation, world, query=query), f"query {name}={value[:40]}",
                          headers=list(who))
            if name == "cursor" and value in FORGED_CURSORS:
                probe.refuse, probe.status, probe.code = True, 400, "INVALID_CURSOR"
            elif name == "limit" and value not in ("%D9%A1", ""):
                probe.refuse = True
            probes.append(probe)
        duplicated = [*baseline_query(operation, world), (name, "1"), (name, "2")]
        probes.append(Probe(operation.method, target(operation, world, query=duplicated), f"query {name} twice",
                            headers=list(who)))
    for parameter in operation.parameters:
        if parameter["in"] == "path":
            for value in PATH_JUNK:
                probes.append(Probe(operation.method, target(operation, world, path_values={parameter["name"]: value}),
                                    f"path {parameter['name']}={value[:40]}", headers=list(who), refuse=True))
    body = json.dumps(baseline_body(operation, world)).encode() if operation.reads_body else None
    for name in HEADERS:
        for value in HEADER_JUNK + (CONTENT_TYPES if name == "Content-Type" else []):
            headers = [(key, val) for key, val in [*who, JSON_TYPE] if key.lower() != name.lower()]
            if body is None:
                headers = [(key, val) for key, val in headers if key != "Content-Type"]
            probes.append(Probe(operation.method, target(operation, world), f"header {name}: {value[:40]!r}",
                                headers=[*headers, (name, value)], body=body))
    for host in FOREIGN_HOSTS:
        probes.append(Probe(operation.method, target(operation, world), f"Host: {host[:40]!r}",
                            headers=[*who, ("Host", host)], refuse=True, status=400))
    for role, label in ((None, "no credential"), (operation.wrong_role, "wrong role")):
        if operation.role and (role is None or role != operation.role):
            probes.append(Probe(operation.method, target(operation, world), label,
                                headers=[*credentials(world, role), *([JSON_TYPE] if body else [])], body=body,
                                refuse=True))
    return probes


def _fixed_body_probes(operation: Operation, world: World) -> list[Probe]:
    probes: list[Probe] = []
    body = baseline_body(operation, world)
    for slot in body_slots(operation, body):
        variant = baseline_body(operation, world, only=slot.path[0] if slot.path else None)
        if slot.path and slot.path[0] not in variant:
            continue
        for hostile in fixed_values(slot):
            payload = splice_value(variant, slot, hostile.text)
            probes.append(body_probe(operation, world, payload, f"{slot.name} = {hostile.describe()}",
                                     hostile=hostile))
        if isinstance(_value_at(variant, slot), dict):
            for text in ('"\\ud800"', '"a\\u0000"'):
                probes.append(body_probe(operation, world, splice_key(variant, slot, text),
                                         f"{slot.name} key {text}", hostile=Hostile("key", text, refuse=True)))
            if _value_at(variant, slot):
                probes.append(body_probe(operation, world, duplicate_key(variant, slot), f"{slot.name} duplicate key",
                                         hostile=Hostile("duplicate-key", "", refuse=True, status=400,
                                                         code="MALFORMED_JSON")))
    too_deep = Hostile("deep", "", refuse=True, status=400, code="JSON_TOO_DEEP")
    first = next(iter(body))
    raw: list[tuple[str, str, Hostile | None]] = [
        ("60,000 [ at the root", deep(60000), too_deep),
        ("10,000 nested objects at the root", deep(10000, objects=True), too_deep),
        (f"{MAX_DEPTH + 1} levels at the root", deep(MAX_DEPTH + 1), too_deep),
        (f'{{"{first}": 60,000 [}}', json.dumps({first: 1}).replace("1", deep(60000)), too_deep),
        ('{"address": 60,000 [}', '{"address":' + deep(60000) + "}", too_deep),
        ("NaN at the root", "NaN", Hostile("non-finite", "", refuse=True, status=400, code="MALFORMED_JSON")),
        ("null body", "null", Hostile("wrong-type", "", refuse=True)),
        ("array body", "[]", Hostile("wrong-type", "", refuse=True)),
        ("string body", '"x"', Hostile("wrong-type", "", refuse=True)),
        ("number body", "1", Hostile("wrong-type", "", refuse=True)),
        ("empty body", "", None),
        ("truncated", json.dumps(body)[:-3], Hostile("malformed", "", refuse=True, status=400, code="MALFORMED_JSON")),
        ("huge string at the cap", json.dumps({**body, first: "a" * (BODY_CAP - 300 - len(json.dumps(body)))}), None),
    ]
    for label, text, hostile in raw:
        probes.append(body_probe(operation, world, text.encode("utf-8"), label, hostile=hostile))
    if operation.path in ("/v1/client/jobs", "/v1/jobs"):
        # The limit is a limit, not a ban on nesting: 64 levels from the root (the root object, `parameters` or
        # `payload`, and 62 arrays) is a job like any other.
        at_the_limit = json.dumps(body).replace('"prompt":', '"deep":' + deep(MAX_DEPTH - 2) + ',"prompt":', 1)
        probe = body_probe(operation, world, at_the_limit.encode(), f"{MAX_DEPTH} levels in parameters")
        probe.status = 201
        probes.append(probe)
    probes.append(body_probe(operation, world, b'{"x": "\xff\xfe"}', "invalid UTF-8",
                             hostile=Hostile("malformed", "", refuse=True)))
    probes.append(body_probe(operation, world, b"\xef\xbb\xbf" + json.dumps(body).encode(), "byte order mark"))
    # Transfer-Encoding: chunked: read like any body (the same answer as with Content-Length), its depth checked,
    # 413 past the cap, 400 MALFORMED_REQUEST for a malformed chunk.
    probes.append(body_probe(operation, world, deep(60000).encode(), "chunked: 60,000 [", chunked=True,
                             hostile=too_deep))
    probes.append(body_probe(operation, world, huge_json(BODY_CAP + 1024), "chunked: over the cap", chunked=True))
    malformed = Probe(operation.method, target(operation, world), "chunked: chunk size zz",
                      headers=[JSON_TYPE, *credentials(world, operation.role)],
                      chunked=b"zz\r\n{}\r\n0\r\n\r\n", refuse=True, status=400, code="MALFORMED_REQUEST")
    probes.append(malformed)
    return probes


def huge_json(size: int) -> bytes:
    return json.dumps({"x": "a" * size}).encode()


def _value_at(document: Any, slot: Slot) -> Any:
    for part in slot.path:
        document = document[part]
    return document


# --- generated probes ---------------------------------------------------------------------------------------------


@st.composite
def generated_probe(draw: st.DrawFn, operation: Operation, world: World) -> Probe:
    surfaces = ["header", "host"]
    if operation.reads_body:
        surfaces += ["body-value"] * 6 + ["body-key"] * 2 + ["duplicate-key"]
    if operation.query_parameters():
        surfaces += ["query"] * 3
    if any(parameter["in"] == "path" for parameter in operation.parameters):
        surfaces.append("path")
    surface = draw(st.sampled_from(surfaces))
    role = draw(st.sampled_from(["right"] * 6 + ["none", "wrong"]))
    who = operation.role if role == "right" else (operation.wrong_role if role == "wrong" else None)
    if surface.startswith("body") or surface == "duplicate-key":
        body = baseline_body(operation, world)
        candidates = body_slots(operation, body)
        if surface != "body-value":
            candidates = [slot for slot in candidates if isinstance(_value_at(body, slot), dict)]
            if surface == "duplicate-key":
                candidates = [slot for slot in candidates if _value_at(body, slot)]
        slot = draw(st.sampled_from(candidates))
        variant = baseline_body(operation, world, only=slot.path[0] if slot.path else None)
        if slot.path and slot.path[0] not in variant:
            variant = body
        if surface == "body-value":
            hostile = draw(hostile_value(slot))
            payload = splice_value(variant, slot, hostile.text)
        elif surface == "body-key":
            hostile = draw(hostile_key())
            payload = splice_key(variant, slot, hostile.text)
        else:
            hostile = Hostile("duplicate-key", "", refuse=True, status=400, code="MALFORMED_JSON")
            payload = duplicate_key(variant, slot)
        chunked = draw(st.booleans()) and len(payload) <= BODY_CAP and draw(st.booleans())
        return body_probe(operation, world, payload, f"{slot.name} = {hostile.describe()}"
                          + (" (chunked)" if chunked else ""), role=role if role == "right" else who,
                          hostile=hostile, chunked=chunked)
    headers = credentials(world, who)
    body = json.dumps(baseline_body(operation, world)).encode() if operation.reads_body else None
    if body is not None:
        headers = [*headers, JSON_TYPE]
    if surface == "query":
        parameter = draw(st.sampled_from(operation.query_parameters()))
        name = parameter["name"]
        value = draw(st.sampled_from(FORGED_CURSORS if name == "cursor" else QUERY_JUNK)
                     | st.text(max_size=30).map(lambda text: quote(text, safe="")))
        query = [pair for pair in baseline_query(operation, world) if pair[0] != name] + [(name, value)]
        probe = Probe(operation.method, target(operation, world, query=query), f"query {name}={value[:40]}",
                      headers=headers, body=body)
        if name == "cursor" and value in FORGED_CURSORS:
            probe.refuse = True
            if role == "right":
                probe.status, probe.code = 400, "INVALID_CURSOR"
        return probe
    if surface == "path":
        parameter = next(parameter for parameter in operation.parameters if parameter["in"] == "path")
        junk = st.text(min_size=1, max_size=40).map(lambda text: quote(text, safe=""))
        value = draw(st.sampled_from(PATH_JUNK) | junk)
        return Probe(operation.method, target(operation, world, path_values={parameter["name"]: value}),
                     f"path {parameter['name']}={value[:40]}", headers=headers, body=body)
    if surface == "host":
        host = draw(st.sampled_from(FOREIGN_HOSTS))
        return Probe(operation.method, target(operation, world), f"Host: {host[:40]!r}",
                     headers=[*headers, ("Host", host)], body=body, refuse=True, status=400)
    name = draw(st.sampled_from(HEADERS))
    value = draw(st.sampled_from(HEADER_JUNK + CONTENT_TYPES)
                 | st.binary(max_size=40).filter(lambda raw: b"\r" not in raw and b"\n" not in raw))
    headers = [(key, val) for key, val in headers if key.lower() != name.lower()]
    return Probe(operation.method, target(operation, world), f"header {name}: {value[:40]!r}",
                 headers=[*headers, (name, value)], body=body)
