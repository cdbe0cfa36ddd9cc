""".env.example lists every environment variable the coordinator reads, and nothing it does not.

The names are taken from the source with `ast`, not from a list kept by hand, so a variable added to settings.py or
deploy/gunicorn.conf.py without a line in .env.example fails here, and so does a line left behind after a variable
is gone. The file is for operators: tests, bench/, hostile/ and .ci/ read variables of their own, which are not
counted.
"""

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
# Directories whose modules are not the application an operator configures (.venv is the interpreter's).
NOT_APPLICATION = {".venv", ".git", ".ci", "bench", "hostile", "tests", "data", "staticfiles", "__pycache__"}
# A listed variable: `NAME=value`, or `# NAME=value` where the default is fine.
LISTED_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=")


def application_modules() -> list[Path]:
    modules = [GUNICORN_CONF]
    for directory, subdirectories, files in os.walk(ROOT):
        # Pruned in place so os.walk never descends into the virtual environment or the test packages.
        subdirectories[:] = [name for name in subdirectories if name not in NOT_APPLICATION]
        for name in files:
            if name.endswith(".py") and name != "conftest.py" and not name.startswith("test_"):
                modules.append(Path(directory) / name)
    return modules


def env_readers() -> set[str]:
    """The typed readers of aitbc_site/env.py (env_str, env_int, …), so a new one is counted without editing this."""
    tree = ast.parse((ROOT / "aitbc_site" / "env.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("env_")}


def _is_environ(node: ast.expr) -> bool:
    # Only `os.environ`: a bare `environ` in this code base is a WSGI request's dict (aitbc_site/request_framing.py).
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _called_name(function: ast.expr) -> str | None:
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return None


def names_read(tree: ast.AST, readers: set[str]) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        name: str | None = None
        if isinstance(node, ast.Call) and node.args:
            function = node.func
            if _called_name(function) in readers:
                name = _constant(node.args[0])
            elif isinstance(function, ast.Attribute) and function.attr in {"get", "setdefault", "pop"}:
                if _is_environ(function.value):
                    name = _constant(node.args[0])
            elif _called_name(function) == "getenv":
                name = _constant(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _constant(node.slice)
        if name is not None:
            names.add(name)
    return names


def variables_read() -> dict[str, set[str]]:
    """Each variable the application reads, with the modules reading it (for the failure message)."""
    readers = env_readers()
    found: dict[str, set[str]] = {}
    for module in application_modules():
        for name in names_read(ast.parse(module.read_text(), filename=str(module)), readers):
            found.setdefault(name, set()).add(str(module.relative_to(ROOT)))
    return found


def variables_listed() -> set[str]:
    return {match.group(1) for line in ENV_EXAMPLE.read_text().splitlines() if (match := LISTED_LINE.match(line))}


def test_the_scan_finds_both_kinds_of_read() -> None:
    # Guards the scan itself: were it to find nothing, the comparison below would pass on an empty file.
    read = variables_read()
    assert "aitbc_site/settings.py" in read["SECRET_KEY"]
    assert "deploy/gunicorn.conf.py" in read["GUNICORN_TIMEOUT"]


def test_every_variable_read_is_listed_in_env_example() -> None:
    read = variables_read()
    missing = sorted(set(read) - variables_listed())
    assert not missing, "read but not in .env.example: " + ", ".join(
        f"{name} ({', '.join(sorted(read[name]))})" for name in missing
    )


def test_every_variable_listed_in_env_example_is_read() -> None:
    unread = sorted(variables_listed() - set(variables_read()))
    assert not unread, "in .env.example but read nowhere in the application: " + ", ".join(unread)
