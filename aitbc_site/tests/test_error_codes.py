"""The README's error table lists every code the API can answer, under its status, and nothing else: the codes are
collected from the code itself (error classes, DRF's mapping, envelopes written by hand, gunicorn's and nginx's)."""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

from rest_framework import exceptions as drf

from aitbc_site.exception_handler import _DRF_CODES
from aitbc_site.exceptions import ApplicationError, Conflict
from aitbc_site.gunicorn_classes import _PARSE_ERRORS
from aitbc_site.settings import BASE_DIR

PROJECT_PACKAGES = ("aitbc_site", "accounts", "miners", "receipts", "jobs", "exchange")
# Bases that only group their subclasses: raised nowhere themselves.
ABSTRACT_ERRORS = {ApplicationError, Conflict}
CODE = re.compile(r"^[A-Z][A-Z_]+$")


def _project_modules() -> list[Path]:
    return [
        path for package in PROJECT_PACKAGES for path in (BASE_DIR / package).rglob("*.py")
        if "tests" not in path.parts and "migrations" not in path.parts
    ]


def _import_every_module() -> None:
    for package in PROJECT_PACKAGES:
        for module in pkgutil.walk_packages([str(BASE_DIR / package)], prefix=f"{package}."):
            if ".tests" not in module.name and ".migrations" not in module.name and not module.name.endswith("wsgi"):
                importlib.import_module(module.name)


def _subclasses(base: type) -> set[type]:
    found = set(base.__subclasses__())
    return found.union(*(_subclasses(child) for child in list(found)))


def codes_with_status() -> set[tuple[int, str]]:
    _import_every_module()
    answered = {(error.status_code, error.code) for error in _subclasses(ApplicationError) - ABSTRACT_ERRORS}
    answered |= {(exception.status_code, code) for exception, code in _DRF_CODES.items()}
    answered |= {(exception.status_code, exception.default_code.upper()) for exception in _subclasses(drf.APIException)
                 if exception.__module__.startswith(PROJECT_PACKAGES)}
    answered |= {(status, code) for status, _, code in _PARSE_ERRORS.values()}
    answered |= {(status, code) for status, code in _json_error_response_calls()}
    nginx = (BASE_DIR / "deploy" / "nginx" / "aitbc.conf").read_text()
    nginx_answers = re.findall(r"return (\d{3}) '\{\"error\":\{\"code\":\"(\w+)\"", nginx)
    answered |= {(int(status), code) for status, code in nginx_answers}
    return answered


def _json_error_response_calls() -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for path in _project_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "json_error_response":
                status, code = node.args[:2]
                if isinstance(status, ast.Constant) and isinstance(code, ast.Constant):
                    found.add((status.value, code.value))
    return found


def codes_written_without_status() -> set[str]:
    """Codes put into an envelope by hand: `error_body("CODE", …)` and `{"code": "CODE"}` literals."""
    found: set[str] = set()
    for path in _project_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "error_body" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
            if isinstance(node, ast.Dict):
                found |= _envelope_codes(node)
    return found


def _envelope_codes(node: ast.Dict) -> set[str]:
    """The code of a `{"error": {"code": "CODE", …}}` literal (a failed job's own `error` has no such wrapper)."""
    found: set[str] = set()
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "error" and isinstance(value, ast.Dict):
            for inner_key, inner_value in zip(value.keys, value.values, strict=True):
                if (isinstance(inner_key, ast.Constant) and inner_key.value == "code"
                        and isinstance(inner_value, ast.Constant) and isinstance(inner_value.value, str)
                        and CODE.match(inner_value.value)):
                    found.add(inner_value.value)
    return found


def readme_table() -> set[tuple[int, str]]:
    section = (BASE_DIR / "README.md").read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    listed: set[tuple[int, str]] = set()
    for status, codes in re.findall(r"^\| (\d{3}) \| (.+) \|$", section, flags=re.MULTILINE):
        # Only the code of each entry, not the names in its parenthesised explanation.
        without_notes = re.sub(r"\([^)]*\)", "", codes)
        listed |= {(int(status), code) for code in re.findall(r"`([A-Z][A-Z_]+)`", without_notes)}
    return listed


def test_the_readme_lists_every_code_the_api_answers_under_its_status() -> None:
    missing = codes_with_status() - readme_table()

    assert missing == set(), f"add to the README's error table: {sorted(missing)}"


def test_every_code_written_into_an_envelope_by_hand_is_in_the_readme() -> None:
    listed = {code for _, code in readme_table()}

    assert codes_written_without_status() - listed == set()


def test_the_readme_lists_no_code_the_api_cannot_answer() -> None:
    known = {code for _, code in codes_with_status()} | codes_written_without_status()

    stale = {(status, code) for status, code in readme_table() if code not in known}

    assert stale == set(), f"remove from the README's error table: {sorted(stale)}"
