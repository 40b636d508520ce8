"""Secrets never reach output: URL passwords, key=value secrets, known secret values."""

from __future__ import annotations

import pytest

from scanner.plugins import Setting
from scanner.redact import redact_settings, redact_text, redact_url, secrets_in_settings


@pytest.mark.parametrize("text,expected", [
    ("postgresql://bot:s3cret@db:5432/crm", "postgresql://bot:***@db:5432/crm"),
    ("mysql+pymysql://root:p%40ss@127.0.0.1/x", "mysql+pymysql://root:***@127.0.0.1/x"),
    ("postgresql://bot@db/crm", "postgresql://bot@db/crm"),
    ("failed (boom password=hunter2)", "failed (boom password=***)"),
    ("token: abc123, next", "token: ***, next"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG; rest", "AWS_SECRET_ACCESS_KEY=***; rest"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_known_secret_values_are_removed_anywhere() -> None:
    settings = {"url": "postgresql://u:pa%20ss@h/db", "token": "tok-123456", "bucket": "kb"}
    declared = [Setting("url"), Setting("token", secret=True), Setting("bucket")]
    secrets = secrets_in_settings(settings, declared)
    assert "tok-123456" in secrets and "pa ss" in secrets and "pa%20ss" in secrets
    message = "auth failed for tok-123456 (password 'pa ss', encoded pa%20ss) on bucket kb"
    cleaned = redact_text(message, secrets)
    assert "tok-123456" not in cleaned and "pa ss" not in cleaned and "pa%20ss" not in cleaned
    assert "bucket kb" in cleaned
    assert redact_settings(settings, declared) == {"url": "postgresql://u:***@h/db", "token": "***",
                                                   "bucket": "kb"}
    assert redact_url("s3://bucket/key") == "s3://bucket/key"


def test_query_string_and_dsn_passwords_stay_out_of_store_and_errors(write_inventory, tmp_path, ctxscan) -> None:
    import sqlite3

    path = write_inventory("""
        version: 1
        sources:
          - {id: q, connector: postgres, url: "postgresql://127.0.0.1:1/db?password=Qu3ryS3cret&user=x",
             timeout: 5s}
          - {id: d, connector: postgres, url: "host=127.0.0.1 port=1 password=Dsn5ecret dbname=x",
             timeout: 5s}
    """)
    state = tmp_path / "state.db"
    result = ctxscan("scan", "-c", str(path), "--state", str(state), "--json")  # a plain path works
    assert result.code == 1, result  # neither source could be probed
    listed = ctxscan("findings", "-c", str(path), "--state", str(state), "--json")
    assert {f["source"] for f in __import__("json").loads(listed.out)} >= {"q", "d"}
    with sqlite3.connect(state) as conn:
        dump = "\n".join(conn.iterdump())
    everything = dump + result.out + result.err + listed.out + listed.err
    assert "Qu3ryS3cret" not in everything and "Dsn5ecret" not in everything
    assert "password=***" in dump
    broken = ctxscan("findings", "-c", str(path), "--state",
                     "postgresql+psycopg://127.0.0.1:1/x?password=St4teS3cret")
    assert broken.code == 2 and "cannot open the state store" in broken.err
    assert "St4teS3cret" not in broken.err


def test_hostile_names_cannot_break_or_colour_output(tmp_path) -> None:
    from scanner.model import Finding
    from scanner.output import table
    from scanner.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    hostile = "kb:line\nbreak\x1b[31mred"
    store.sync_findings([Finding("stale", "high", f"{hostile} is old", "fp", asset=hostile)])
    stored = store.findings()[0]
    assert stored.message == "kb:line\\nbreak\\x1b[31mred is old"
    assert stored.asset == hostile  # the data keeps the real name; only text is escaped
    rendered = table(["asset"], [[hostile]])
    assert "\n" not in rendered.splitlines()[1] and "\x1b" not in rendered
