"""Hand-written SQL for the statements every job cycle runs, with Django's own conversion of every value.

Building and compiling an ORM query costs several times the CPU that SQLite then needs to run it, and Django
compiles every query afresh (bench/README.md, "Why the hot path is hand-written", has the figures). The statements
of the hot path (a submission, a hand-out, a result, a ledger posting, reading a job back) are written once as SQL
that SQLite and PostgreSQL both accept; every value still goes through its model field's conversion in both
directions (`get_db_prep_save` on the way in, the backend's and the field's converters on the way out), so they
store and read back exactly what the ORM would. They bypass no model signals: the project connects none, and
rows are loaded through Model.from_db whenever a pre_init or post_init receiver is connected.
Everything else uses the ORM.
"""

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache, cached_property, lru_cache
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.signals import post_init, pre_init

ModelT = TypeVar("ModelT", bound=models.Model)
Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


class _ThreadConnection(threading.local):
    wrapper: BaseDatabaseWrapper | None = None


_this_thread = _ThreadConnection()


def _connection() -> BaseDatabaseWrapper:
    """This thread's connection. Django finds it through asgiref's Local, slow for a lookup made for every value of
    every statement (bench/README.md has the figures); a thread keeps the same connection object all its life
    (Django reconnects it in place), and a thread that is handed another (Django's live test servers do that) is
    handed it before its first statement."""
    wrapper = _this_thread.wrapper
    if wrapper is None:
        wrapper = _this_thread.wrapper = connections[DEFAULT_DB_ALIAS]
    return wrapper


# Names are quoted once per process: a process talks to one database.
@cache
def quote(name: str) -> str:
    return _connection().ops.quote_name(name)


@cache
def table(model: type[models.Model]) -> str:
    return quote(model._meta.db_table)


@cache
def column(model: type[models.Model], name: str) -> str:
    """The quoted column of a field, by its name or (for a foreign key) its `_id` attribute name."""
    return quote(model._meta.get_field(name).column)


def _prepared(field: models.Field, value: Any, connection: BaseDatabaseWrapper) -> Any:
    if isinstance(value, models.Model):
        value = value.pk
    return field.get_db_prep_save(value, connection)


def db_value(model: type[models.Model], name: str, value: Any) -> Any:
    """`value` as the database stores it in this field (a model instance for a foreign key stands for its pk)."""
    return _prepared(model._meta.get_field(name), value, _connection())


@lru_cache(maxsize=1024)
def _native_sql(sql: str) -> str:
    """The statement in the driver's own placeholder style: sqlite3 takes `?` where Django's SQL has `%s`."""
    if _connection().vendor == "sqlite":
        return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
    return sql


@contextmanager
def _cursor_that_ran(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> Iterator[Any]:
    """A DB-API cursor that has run the statement.

    Django's cursor wrapper costs more CPU per statement than SQLite needs to run one of these (an async check, a
    wrapper object, a query-logging check, the placeholders converted anew every time). This keeps what guards
    correctness (the connection's health check and opening, no statement in a broken transaction, database errors
    raised as Django's) and converts the placeholders once per statement and process. While the queries are being
    watched (DEBUG, a test counting them, an execute wrapper), statements go through Django's cursor, which reports
    them."""
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as wrapped:
            wrapped.execute(sql, params)
            yield wrapped
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        # Django's SQLite cursor would convert the placeholders again; the driver's own cursor takes them as they are.
        cursor = connection.connection.cursor() if connection.vendor == "sqlite" else connection.create_cursor()
        try:
            cursor.execute(_native_sql(sql), params)
            yield cursor
        finally:
            cursor.close()


def _execute(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> int:
    with _cursor_that_ran(connection, sql, params) as cursor:
        return cursor.rowcount


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a statement; the number of rows it changed."""
    return _execute(_connection(), sql, params)


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with _cursor_that_ran(_connection(), sql, params) as cursor:
        return cursor.fetchone()


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with _cursor_that_ran(_connection(), sql, params) as cursor:
        return cursor.fetchall()


@cache
def _update_sql(model: type[models.Model], assigned: tuple[str, ...], compared: tuple[tuple[str, bool], ...]) -> str:
    assignments = ", ".join(f"{column(model, name)} = %s" for name in assigned)
    conditions = " AND ".join(
        f"{column(model, name)} IS NULL" if is_null else f"{column(model, name)} = %s" for name, is_null in compared
    )
    return f"UPDATE {table(model)} SET {assignments} WHERE {conditions}"


def update(model: type[models.Model], *, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
    """UPDATE the rows matching every condition in `where` (a None value means IS NULL); the number changed."""
    connection, field = _connection(), model._meta.get_field
    params = [_prepared(field(name), value, connection) for name, value in values.items()]
    params += [_prepared(field(name), value, connection) for name, value in where.items() if value is not None]
    compared = tuple((name, value is None) for name, value in where.items())
    return _execute(connection, _update_sql(model, tuple(values), compared), params)


def _stored_fields(instance: models.Model) -> tuple[models.Field, ...]:
    """The instance's columns to insert: all, less a primary key the database numbers itself."""
    return tuple(
        field
        for field in instance._meta.concrete_fields
        if not (field.primary_key and field.db_returning and getattr(instance, field.attname) is None)
    )


@cache
def _insert_sql(model: type[models.Model], fields: tuple[models.Field, ...], rows: int, suffix: str) -> str:
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {table(model)} ({columns}) VALUES {', '.join([row] * rows)}{suffix}"


def _insert_params(
    instances: Sequence[models.Model], fields: tuple[models.Field, ...], connection: BaseDatabaseWrapper
) -> list[Any]:
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for instance in instances for field in fields
    ]


def insert(instances: Sequence[ModelT]) -> None:
    """INSERT the instances (all of one model) in one statement. An id the database numbers is not read back:
    use `insert_returning_pk` when it is needed."""
    if not instances:
        return
    connection, fields = _connection(), _stored_fields(instances[0])
    sql = _insert_sql(type(instances[0]), fields, len(instances), "")
    _execute(connection, sql, _insert_params(instances, fields, connection))
    for instance in instances:
        instance._state.adding, instance._state.db = False, connection.alias


def insert_returning_pk(instance: models.Model, *, on_conflict_do_nothing: Sequence[str] = ()) -> bool:
    """INSERT one instance and set its database-numbered pk. With `on_conflict_do_nothing` (the columns of a unique
    constraint), a row already holding those values makes it insert nothing and return False."""
    model = type(instance)
    connection, fields = _connection(), _stored_fields(instance)
    suffix = ""
    if on_conflict_do_nothing:
        suffix = f" ON CONFLICT ({', '.join(column(model, name) for name in on_conflict_do_nothing)}) DO NOTHING"
    suffix += f" RETURNING {quote(model._meta.pk.column)}"
    with _cursor_that_ran(
        connection, _insert_sql(model, fields, 1, suffix), _insert_params([instance], fields, connection)
    ) as cursor:
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding, instance._state.db = False, connection.alias
    return True


class Columns(Generic[ModelT]):
    """Some columns of one model in a SELECT list (under a table alias), and how a row's values become an instance
    exactly as the ORM would make it."""

    def __init__(self, model: type[ModelT], names: Iterable[str] | None = None, *, alias: str) -> None:
        wanted = None if names is None else {model._meta.get_field(name).attname for name in names}
        # In the model's field order: Model.from_db fills the fields left out in that order.
        self._fields = [field for field in model._meta.concrete_fields if wanted is None or field.attname in wanted]
        self._model = model
        self._alias = alias
        self._attnames = [field.attname for field in self._fields]
        self.width = len(self._fields)
        self._builds_like_django = model.__init__ is models.Model.__init__ and model.from_db.__func__ is (
            models.Model.from_db.__func__  # type: ignore[attr-defined]
        )
        # `get`'s SELECT by the names it compares, built once each.
        self._select_by: dict[tuple[str, ...], str] = {}
        # Per connection (one per thread), since the backend's converters are methods of that connection.
        self._converters: weakref.WeakKeyDictionary[BaseDatabaseWrapper, list[tuple[int, Col, Converter]]] = (
            weakref.WeakKeyDictionary()
        )

    @cached_property
    def sql(self) -> str:
        return ", ".join(f"{self._alias}.{quote(field.column)}" for field in self._fields)

    def _converters_for(self, connection: BaseDatabaseWrapper) -> list[tuple[int, Col, Converter]]:
        """Every converter to apply, in order, with the position of its column: columns that need none (text,
        integers) cost nothing when a row is loaded."""
        converters = self._converters.get(connection)
        if converters is None:
            converters = []
            for index, field in enumerate(self._fields):
                expression = field.get_col(self._model._meta.db_table)
                backend, own = connection.ops.get_db_converters(expression), expression.get_db_converters(connection)
                converters += [(index, expression, convert) for convert in backend + own]
            self._converters[connection] = converters
        return converters

    def get(self, **equal: Any) -> ModelT | None:
        """The instance of the row whose fields (by name, `_id` names for foreign keys) equal these values, or None.
        A value its field cannot take (a malformed id) raises ValueError or ValidationError, as with the ORM."""
        connection = _connection()
        params = [_prepared(self._model._meta.get_field(name), value, connection) for name, value in equal.items()]
        row = fetch_one(self._where_sql(tuple(equal)), params)
        return None if row is None else self.load(row)

    def _where_sql(self, names: tuple[str, ...]) -> str:
        sql = self._select_by.get(names)
        if sql is None:
            conditions = " AND ".join(f"{self._alias}.{column(self._model, name)} = %s" for name in names)
            sql = self._select_by[names] = (
                f"SELECT {self.sql} FROM {table(self._model)} {self._alias} WHERE {conditions}"
            )
        return sql

    def load(self, row: Sequence[Any], start: int = 0) -> ModelT:
        """The instance of the columns `row[start : start + width]`."""
        connection = _connection()
        values = list(row[start : start + self.width])
        if len(values) != self.width:
            raise ValueError(f"a row of {len(row)} values has no {self.width} columns from {start}")
        for index, expression, convert in self._converters_for(connection):
            values[index] = convert(values[index], expression, connection)
        if pre_init.receivers or post_init.receivers or not self._builds_like_django:
            return self._model.from_db(connection.alias, self._attnames, values)
        # What Model.from_db makes, without Model.__init__'s generic walk over every field (measurably slower, see
        # bench/README.md):
        # loaded columns in the instance's __dict__, the others left out, so they load on access as deferred.
        instance = self._model.__new__(self._model)
        instance._state = ModelState()
        instance._state.adding, instance._state.db = False, connection.alias
        instance.__dict__.update(zip(self._attnames, values, strict=True))
        return instance
