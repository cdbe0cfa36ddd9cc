"""The shape of the code, as the README's "Architecture" section describes it, checked so it cannot drift.

Read from the source with `ast`, imports inside functions included: apps depend on each other one way only, SQL
lives in each app's query module, and no module of application code outgrows what one reader can hold.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
APPS = ("accounts", "miners", "receipts", "jobs", "exchange", "original")
# Which apps each app may import: the direction of dependency the README draws.
ALLOWED_DEPENDENCIES = {
    "accounts": set(),
    "miners": {"accounts"},
    "receipts": {"accounts", "miners"},
    "jobs": {"accounts", "miners", "receipts"},
    "exchange": {"accounts"},
    # The original dialect is views and serializers over the others' services; nothing depends on it.
    "original": {"accounts", "miners", "receipts", "jobs"},
}
# The modules that may run hand-written statements: each app's query module, the runner itself, and the two
# places that need plain SQL outside the ORM (a readiness probe; amount checks that migrations run).
STATEMENT_MODULES = {
    "aitbc_site/statements.py",
    "aitbc_site/health.py",
    "aitbc_site/amount_migrations.py",
    # PostgreSQL's LISTEN and NOTIFY, which no ORM call makes.
    "aitbc_site/wakeup_channels.py",
    *(f"{app}/queries.py" for app in APPS),
}
MAX_MODULE_LINES = 400


def application_modules() -> Iterator[Path]:
    for package in (*APPS, "aitbc_site"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" not in parts and "migrations" not in parts:
                yield path


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def app_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def test_apps_depend_on_each_other_one_way_only():
    wrong = []
    for path in application_modules():
        app = app_of(path)
        if app not in APPS:
            continue
        for name in imported_modules(path):
            other = name.split(".")[0]
            if other in APPS and other != app and other not in ALLOWED_DEPENDENCIES[app]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_the_allowed_dependencies_have_no_cycle():
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(app: str, trail: tuple[str, ...]) -> None:
        assert app not in visiting, f"import cycle: {' → '.join((*trail, app))}"
        if app in done:
            return
        visiting.add(app)
        for other in ALLOWED_DEPENDENCIES[app]:
            visit(other, (*trail, app))
        visiting.discard(app)
        done.add(app)

    for app in APPS:
        visit(app, ())


@pytest.mark.parametrize("path", list(application_modules()), ids=lambda path: str(path.relative_to(ROOT)))
def test_only_query_modules_run_hand_written_statements(path):
    relative = str(path.relative_to(ROOT))
    if relative in STATEMENT_MODULES:
        return
    names = imported_modules(path)
    assert "aitbc_site.statements" not in names and "django.db.connection" not in names, relative
    tree = ast.parse(path.read_text())
    sql = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        # SQL's verbs in capitals, as every statement here is written; prose ("Update …") does not count.
        and node.value.lstrip().startswith(("SELECT ", "UPDATE ", "INSERT ", "DELETE "))
    ]
    assert sql == [], relative


@pytest.mark.parametrize("path", list(application_modules()), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_outgrows_one_reader(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES
