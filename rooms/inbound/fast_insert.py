"""INSERTs for the hot path, with the SQL built once per model, database and row count.

``Model.save()`` and ``bulk_create()`` recompile their INSERT on every call
(``bulk_create`` also wraps it in a savepoint); for the rows every message
writes (its RoomEvent and its Delivery rows) that was most of the inbound
path's time. The statements here come from the model's own field definitions
and every value still goes through the field's ``pre_save`` and
``get_db_prep_save``, so what lands in the database is what ``save()`` would
write. Model signals are not sent: the models inserted this way have no
receivers. An auto-increment primary key is read back with ``RETURNING``
(PostgreSQL, and SQLite since 3.35).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connections, models, router

M = TypeVar("M", bound=models.Model)

_Plan = tuple[str, list[tuple[models.Field, Callable[[object], bool] | None]], models.Field | None]
_plans: dict[tuple[type, str, int], _Plan] = {}


def _is_plain(field: models.Field) -> Callable[[object], bool] | None:
    """A test for values this field stores unchanged, if it has such values.

    For such a value ``pre_save`` is ``getattr`` and ``get_db_prep_save``
    returns it as it is, so both can be skipped; any other value goes through
    the field as ``save()`` would. For a character field that is any ``str``
    (``TextChoices`` members are ``str`` subclasses, handed back as they are)
    or None; for booleans and integers, exactly that type (a bool in an
    integer column is converted) or None.
    """
    target = field.target_field if field.is_relation else field
    if isinstance(target, (models.CharField, models.TextField)):
        return lambda value: value is None or isinstance(value, str)
    if isinstance(target, models.BooleanField):
        return lambda value: value is None or type(value) is bool
    if isinstance(target, models.IntegerField):
        return lambda value: value is None or type(value) is int
    return None


def _plan(model: type[models.Model], alias: str, rows: int) -> _Plan:
    key = (model, alias, rows)
    plan = _plans.get(key)
    if plan is None:
        connection = connections[alias]
        quote = connection.ops.quote_name
        pk = model._meta.pk
        auto_pk = pk if isinstance(pk, models.AutoField) else None  # BigAutoField is an AutoField
        fields = [f for f in model._meta.concrete_fields if f is not auto_pk]
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = "INSERT INTO {} ({}) VALUES {}".format(
            quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join([row] * rows)
        )
        if auto_pk is not None:
            sql += f" RETURNING {quote(auto_pk.column)}"
        plan = _plans[key] = (sql, [(f, _is_plain(f)) for f in fields], auto_pk)
    return plan


_templates: dict[type, list[tuple[str, Callable[[], object]]]] = {}


def new_instance(model: type[M], values: dict[str, object]) -> M:
    """``model(**values)`` for attribute names (``room_id``, not ``room``), several times faster.

    Django's keyword initialiser resolves each name against the model's
    fields on every call; its positional one (what ``from_db`` uses) only
    sets attributes. The fields not given get their defaults, as they would.
    """
    template = _templates.get(model)
    if template is None:
        template = _templates[model] = [(f.attname, f._get_default) for f in model._meta.concrete_fields]
    unknown = values.keys() - {name for name, _ in template}
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    return model(*[values[name] if name in values else default() for name, default in template])


def insert_plan(objs: Sequence[models.Model]) -> tuple[str, list, Callable[[list], None]]:
    """SQL and parameters to insert ``objs`` (one model) in one statement, and what to do with the returned rows."""
    sql, rows, assign = insert_plan_per_row(objs, one_statement=True)
    return sql, [value for row in rows for value in row], assign


def insert_plan_per_row(
    objs: Sequence[models.Model], *, one_statement: bool = False
) -> tuple[str, list[list], Callable[[list], None]]:
    """A one-row INSERT, each object's parameters, and what to do with the returned rows (in order).

    For ``executemany``: on PostgreSQL a statement with hundreds of
    parameters is re-parsed by the driver on every call (psycopg caches the
    parse of statements with at most 50), where a one-row statement is parsed
    once and sent for each row in the same round trip.
    """
    model = type(objs[0])
    alias = router.db_for_write(model)
    connection = connections[alias]
    sql, fields, auto_pk = _plan(model, alias, len(objs) if one_statement else 1)
    rows = []
    for obj in objs:
        params = []
        for f, plain in fields:
            value = getattr(obj, f.attname)
            if plain is None or not plain(value):
                value = f.get_db_prep_save(f.pre_save(obj, True), connection=connection)
            params.append(value)
        rows.append(params)

    def assign(rows: list) -> None:
        if auto_pk is not None:
            # RETURNING order follows VALUES order on both databases for a
            # single multi-row INSERT (Django's bulk_create relies on it too).
            for obj, (pk,) in zip(objs, rows, strict=True):
                setattr(obj, auto_pk.attname, pk)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = alias

    return sql, rows, assign


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert unsaved instances of one model in one statement; set their auto keys."""
    if not objs:
        return
    sql, params, assign = insert_plan(objs)
    connection = connections[router.db_for_write(type(objs[0]))]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        assign(cur.fetchall() if cur.description else [])


def insert_row(obj: models.Model) -> None:
    insert_rows([obj])
