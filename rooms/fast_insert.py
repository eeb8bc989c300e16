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

from django.db import connections, models, router

_Plan = tuple[str, list[tuple[models.Field, type | None]], models.Field | None]
_plans: dict[tuple[type, str, int], _Plan] = {}


def _plain_type(field: models.Field) -> type | None:
    """The Python type this field stores unchanged, if any.

    For a value of exactly that type, ``pre_save`` is ``getattr`` and
    ``get_db_prep_save`` returns it as it is, so both can be skipped; any
    other value (None included) goes through the field as ``save()`` would.
    """
    target = field.target_field if field.is_relation else field
    if isinstance(target, (models.CharField, models.TextField)):
        return str
    if isinstance(target, models.BooleanField):
        return bool
    if isinstance(target, models.IntegerField):
        return int
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
        plan = _plans[key] = (sql, [(f, _plain_type(f)) for f in fields], auto_pk)
    return plan


def insert_plan(objs: Sequence[models.Model]) -> tuple[str, list, Callable[[list], None]]:
    """SQL and parameters to insert ``objs`` (one model), and what to do with the returned rows."""
    model = type(objs[0])
    alias = router.db_for_write(model)
    connection = connections[alias]
    sql, fields, auto_pk = _plan(model, alias, len(objs))
    params = []
    for obj in objs:
        for f, plain in fields:
            value = getattr(obj, f.attname)
            if plain is None or type(value) is not plain:
                value = f.get_db_prep_save(f.pre_save(obj, True), connection=connection)
            params.append(value)

    def assign(rows: list) -> None:
        if auto_pk is not None:
            # RETURNING order follows VALUES order on both databases for a
            # single multi-row INSERT (Django's bulk_create relies on it too).
            for obj, (pk,) in zip(objs, rows, strict=True):
                setattr(obj, auto_pk.attname, pk)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = alias

    return sql, params, assign


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
