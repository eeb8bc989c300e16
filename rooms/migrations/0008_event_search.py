"""The index behind the inbox's message search (see rooms.console.search)."""

from django.db import migrations

# By database vendor; written out here so that later code changes never change this migration.
POSTGRES_SQL = [
    "CREATE INDEX IF NOT EXISTS rooms_event_body_fts ON rooms_roomevent "
    "USING gin (to_tsvector('simple', coalesce(content->>'body', '')))",
]
POSTGRES_REVERSE = ["DROP INDEX IF EXISTS rooms_event_body_fts"]
SQLITE_SQL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS rooms_event_fts USING fts5(body, room_id UNINDEXED, tokenize='unicode61')",
    "INSERT INTO rooms_event_fts(rowid, body, room_id) SELECT rowid, json_extract(content, '$.body'), room_id "
    "FROM rooms_roomevent WHERE json_type(content, '$.body') = 'text'",
    "CREATE TRIGGER IF NOT EXISTS rooms_event_fts_ai AFTER INSERT ON rooms_roomevent "
    "WHEN json_type(new.content, '$.body') = 'text' BEGIN "
    "INSERT INTO rooms_event_fts(rowid, body, room_id) VALUES (new.rowid, json_extract(new.content, '$.body'), new.room_id); END",
    "CREATE TRIGGER IF NOT EXISTS rooms_event_fts_ad AFTER DELETE ON rooms_roomevent BEGIN "
    "DELETE FROM rooms_event_fts WHERE rowid = old.rowid; END",
    # An edit (or a redaction) replaces the indexed text.
    "CREATE TRIGGER IF NOT EXISTS rooms_event_fts_au AFTER UPDATE OF content ON rooms_roomevent BEGIN "
    "DELETE FROM rooms_event_fts WHERE rowid = old.rowid; "
    "INSERT INTO rooms_event_fts(rowid, body, room_id) SELECT new.rowid, json_extract(new.content, '$.body'), new.room_id "
    "WHERE json_type(new.content, '$.body') = 'text'; END",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS rooms_event_fts_ai",
    "DROP TRIGGER IF EXISTS rooms_event_fts_ad",
    "DROP TRIGGER IF EXISTS rooms_event_fts_au",
    "DROP TABLE IF EXISTS rooms_event_fts",
]


def create(apps, schema_editor):
    statements = {"postgresql": POSTGRES_SQL, "sqlite": SQLITE_SQL}.get(schema_editor.connection.vendor, [])
    for sql in statements:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    statements = {"postgresql": POSTGRES_REVERSE, "sqlite": SQLITE_REVERSE}.get(schema_editor.connection.vendor, [])
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("rooms", "0007_inbox")]

    operations = [migrations.RunPython(create, drop)]
