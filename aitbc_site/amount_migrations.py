"""The migration operation that turns a DecimalField column into an AmountField one, converting every stored value
exactly (see aitbc_site.amounts). A plain AlterField would not: PostgreSQL's numeric → bigint cast rounds 1.5 to 2
instead of making it 150000000 units, and SQLite copies its REALs as they are."""

from decimal import Decimal
from typing import Any

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import ProjectState

from aitbc_site.amounts import COLUMN_MAX, QUANTUM, UNITS_PER_COIN, from_units, to_units


class AmountMigrationError(RuntimeError):
    pass


def _stored_units(value: Any, *, where: str) -> int:
    """The units of a value SQLite stored in a decimal column: an INTEGER, a REAL or (not well-formed) TEXT."""
    try:
        # A REAL is exactly its binary value: the nearest 8-place decimal to it is the amount that was written
        # (up to 2⁵³ units, about 9·10⁷ coins; above, the REAL had already lost the last digits when stored).
        amount = Decimal(value) if isinstance(value, int | float) else Decimal(str(value).strip())
    except ArithmeticError:
        raise AmountMigrationError(f"{where} holds {value!r}, which is not a number") from None
    if not amount.is_finite() or abs(amount) > COLUMN_MAX:
        raise AmountMigrationError(f"{where} holds {value!r}, beyond what an amount column holds ({COLUMN_MAX})")
    return to_units(amount.quantize(QUANTUM))


class ConvertToAmountUnits(migrations.AlterField):
    """AlterField from a DecimalField to an AmountField that converts the stored values: PostgreSQL's exact
    numerics by a cast, SQLite's REALs row by row in Python. A value beyond the column stops the migration,
    naming its row, rather than being clipped."""

    def reduce(self, operation: Any, app_label: str) -> bool:
        # AlterField's reduce would let squashmigrations fold this into a plain AlterField, dropping the conversion.
        return False

    def database_forwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        self._convert(app_label, schema_editor, from_state, to_state, forwards=True)

    def database_backwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        self._convert(app_label, schema_editor, from_state, to_state, forwards=False)

    def _convert(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
        *,
        forwards: bool,
    ) -> None:
        to_model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, to_model):
            return
        from_model = from_state.apps.get_model(app_label, self.model_name)
        old, new = from_model._meta.get_field(self.name), to_model._meta.get_field(self.name)
        decimal_field = old if forwards else new
        connection, quote = schema_editor.connection, schema_editor.quote_name
        table, column = quote(to_model._meta.db_table), quote(new.column)
        if connection.vendor == "postgresql":
            if forwards:
                self._refuse_beyond_column(schema_editor, to_model, table, column)
                using = f"({column} * {UNITS_PER_COIN})::bigint"
                new_type = "bigint"
            else:
                using = f"({column}::numeric / {UNITS_PER_COIN})"
                new_type = decimal_field.db_type(connection)
            schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type} USING {using}")
        elif connection.vendor == "sqlite":
            if forwards:
                # Values first, while the column is still `decimal` (NUMERIC affinity keeps an integer an INTEGER);
                # the table is then remade with the bigint column, copying them as they are.
                self._rewrite_rows(schema_editor, to_model, table, column, forwards=True)
                schema_editor.alter_field(from_model, old, new)
            else:
                schema_editor.alter_field(from_model, old, new)
                self._rewrite_rows(schema_editor, to_model, table, column, forwards=False)
        else:
            raise AmountMigrationError(f"no conversion of amounts written for {connection.vendor}")

    @staticmethod
    def _refuse_beyond_column(
        schema_editor: BaseDatabaseSchemaEditor, model: type[models.Model], table: str, column: str
    ) -> None:
        pk = schema_editor.quote_name(model._meta.pk.column)
        with schema_editor.connection.cursor() as cursor:
            # Names from model metadata, the value a parameter.
            sql = f"SELECT {pk}, {column} FROM {table} WHERE abs({column}) > %s LIMIT 1"  # noqa: S608
            cursor.execute(sql, [COLUMN_MAX])
            row = cursor.fetchone()
        if row is not None:
            raise AmountMigrationError(
                f"{table}.{column} of row {row[0]} holds {row[1]}, beyond what an amount column holds ({COLUMN_MAX})"
            )

    @staticmethod
    def _rewrite_rows(
        schema_editor: BaseDatabaseSchemaEditor, model: type[models.Model], table: str, column: str, *, forwards: bool
    ) -> None:
        """Convert every value of the column in place. A unique index may cover the column (payments' amounts on
        the shared address), so the rows go in an order where a converted value never meets an unconverted one:
        forwards the largest magnitudes first (each grows 10⁸ times past every value left), backwards the
        smallest first."""
        pk = schema_editor.quote_name(model._meta.pk.column)
        order = "DESC" if forwards else "ASC"
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} != 0"  # noqa: S608
                f" ORDER BY abs({column}) {order}"
            )
            rows = cursor.fetchall()
            if forwards:
                updates = [(_stored_units(value, where=f"{table}.{column} of row {key}"), key) for key, value in rows]
            else:
                # As text, which NUMERIC affinity stores as it stored what Django wrote before: a REAL or INTEGER.
                updates = [(f"{from_units(int(value)):f}", key) for key, value in rows]
            cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", updates)  # noqa: S608
