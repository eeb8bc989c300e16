"""INSERT for the hot path, with the SQL built once per model and database.

``Model.save()`` recompiles its INSERT on every call; for the one insert every
message pays (its RoomEvent) that was 40% of the inbound path. The statement
here comes from the model's own field definitions and each value still goes
through the field's ``pre_save`` and ``get_db_prep_save``, so what lands in
the database is what ``save()`` would write. Model signals are not sent: the
models inserted this way have no receivers.
"""
from __future__ import annotations

from django.db import connections, models, router

_plans: dict[tuple[type, str], tuple[str, list[models.Field]]] = {}


def insert_row(obj: models.Model) -> None:
    model = type(obj)
    alias = router.db_for_write(model)
    connection = connections[alias]
    plan = _plans.get((model, alias))
    if plan is None:
        fields = list(model._meta.concrete_fields)
        quote = connection.ops.quote_name
        sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
        )
        plan = _plans[(model, alias)] = (sql, fields)
    sql, fields = plan
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection=connection) for f in fields]
    with connection.cursor() as cur:
        cur.execute(sql, params)
    obj._state.adding = False
    obj._state.db = alias
