"""Schema documentation: COMMENT ON from the spec, the changelog each applied migration extends, and
`airmigrate docs` (tables, comments, indexes, constraints, a foreign-key diagram in SVG)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import yaml

from airmigrate.db import connect
from airmigrate.spec import load_migration
from test_cli import airmigrate
from test_rollback import apply_migration


def _comment(target, column):
    with connect(target) as conn:
        return conn.execute("SELECT col_description('users'::regclass, attnum) FROM pg_attribute "
                            "WHERE attrelid = 'users'::regclass AND attname = %s", (column,)).fetchone()[0]


def test_applied_migration_comments_its_columns_and_extends_the_changelog(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRMIGRATE_DOCS_DIR", str(tmp_path / "docs"))
    folder = tmp_path / "0096_scores"
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN score int, ADD COLUMN tier text;")
    (folder / "down.sql").write_text("ALTER TABLE users DROP COLUMN score, DROP COLUMN tier;")
    (folder / "backfill.sql").write_text("UPDATE users SET score = id %% 7, tier = 'basic' "
                                         "WHERE id BETWEEN %(lo)s AND %(hi)s")
    (folder / "migration.yaml").write_text(yaml.safe_dump({
        "description": "Scores for the loyalty programme.\nSecond line.", "table": "users", "key": "id",
        "author": "Dana", "date": "2026-11-20",
        "comments": {"score": "Loyalty points, 0-6", "email": "Login; unique"},
        "backfill": {"sql": "backfill.sql", "columns": ["score", "tier"]}}))
    migration = load_migration(folder)
    apply_migration(fresh_db, migration)
    assert _comment(fresh_db, "score") == "Loyalty points, 0-6"
    assert _comment(fresh_db, "email") == "Login; unique"          # an existing column, commented on purpose
    assert _comment(fresh_db, "tier") == "0096_scores: Scores for the loyalty programme."  # added, no comment given
    assert _comment(fresh_db, "full_name") is None                 # untouched
    changelog = (tmp_path / "docs" / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Schema changelog")
    assert "## 0096_scores" in changelog and "Scores for the loyalty programme. Second line." in changelog
    assert "- written by: Dana on 2026-11-20" in changelog
    assert "- breaking changes: none" in changelog and "- applied: 20" in changelog and " by " in changelog

    from airmigrate.stages import rollback  # the rollback is in the changelog too, above the applied entry

    run_id = rollback.preflight_rollback(fresh_db, migration)["run_id"]
    rollback.down(fresh_db, migration, run_id)
    rollback.restore(fresh_db, migration, run_id)
    changelog = (tmp_path / "docs" / "CHANGELOG.md").read_text()
    assert changelog.index("## 0096_scores (rolled back)") < changelog.index("## 0096_scores\n")
    assert "- rolled back: 20" in changelog and "- what went back: Scores for the loyalty programme." in changelog


def test_docs_command_writes_tables_comments_and_a_foreign_key_diagram(fresh_db, tmp_path):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id), "
                     "total numeric(10, 2) NOT NULL DEFAULT 0)")
        conn.execute("CREATE INDEX orders_user ON orders (user_id)")
        conn.execute("COMMENT ON TABLE orders IS 'What users bought'")
        conn.execute("COMMENT ON COLUMN orders.total IS 'In EUR | incl. VAT'")
    done = airmigrate(fresh_db, "docs", "--out", str(tmp_path / "schema"))
    assert done.returncode == 0, done.stderr
    assert "2 table(s)" in done.stdout
    index = (tmp_path / "schema" / "README.md").read_text()
    assert "[public.orders](public.orders.md)" in index and "What users bought" in index and "schema.svg" in index
    orders = (tmp_path / "schema" / "public.orders.md").read_text()
    assert "| total | numeric(10,2) | no | 0 | In EUR \\| incl. VAT |" in orders
    assert "`orders_user`: `CREATE INDEX orders_user ON public.orders USING btree (user_id)`" in orders
    assert "FOREIGN KEY (user_id) REFERENCES users(id)" in orders
    svg = ET.parse(tmp_path / "schema" / "schema.svg").getroot()  # well-formed
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "public.orders" in texts and "public.users" in texts
    arrows = list(svg.iter("{http://www.w3.org/2000/svg}path"))
    assert any(p.find("{http://www.w3.org/2000/svg}title").text == "user_id" for p in arrows if
               p.find("{http://www.w3.org/2000/svg}title") is not None)
