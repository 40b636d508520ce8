"""Hostile input is normal input (issue 12): each test is one reproduction of the red-team pass."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from scanner.redact import redact_text, secrets_in_text


# -- 1. secrets in malformed URLs and DSNs ---------------------------------------------------
@pytest.mark.parametrize("setting,secret", [
    ("postgresql:/u:PwOne51@h/db", "PwOne51"),
    ("mysql:/u:PwOne51@h/db", "PwOne51"),
    ("postgresql://u:At@Secret7@h/db", "Secret7"),
    ("postgresql://u:Sp Pw04x@h/db", "Pw04x"),
    ("host=h password='Kw Secret1' dbname=x", "Kw Secret1"),
    ("host=h password=\"Dq Secret2\" dbname=x", "Dq Secret2"),
    ("host=h sslpassword=Ssl5ecret dbname=x", "Ssl5ecret"),
    ("postgresql://h/db?sslpassword=Ssl5ecret&user=x", "Ssl5ecret"),
    ("https://hooks.local/x?api_token=T0kenValue", "T0kenValue"),
    ("postgresql://u:p%40ss%20word@h/db", "p@ss word"),
])
def test_secrets_are_derived_from_the_raw_text(setting: str, secret: str) -> None:
    found = secrets_in_text(setting)
    assert secret in found
    for echoed in (setting, f"could not translate host name \"{secret.split()[-1]}@h\"", secret):
        assert secret.split()[-1] not in redact_text(echoed, found)


def test_a_username_and_host_are_not_taken_for_secrets() -> None:
    assert secrets_in_text("mysql+pymysql://root@127.0.0.1:3306/x") == []
    assert secrets_in_text("postgresql://h:5432/db?options=a@b&application_name=x") == []


def test_malformed_url_password_stays_out_of_scan_output_and_store(tmp_path: Path, write_inventory, ctxscan) -> None:
    config = write_inventory("""
        version: 1
        sources:
          - {id: one, connector: postgres, url: "postgresql:/u:Leak0neSlash@127.0.0.1:1/db", timeout: 5s}
          - {id: at, connector: sql, url: "postgresql+psycopg://u:At@LeakRawAt@127.0.0.1:1/db", timeout: 5s}
          - {id: kw, connector: postgres, url: "host=127.0.0.1 port=1 password='Kw LeakQuoted' dbname=x", timeout: 5s}
    """)
    state = tmp_path / "s.db"
    result = ctxscan("scan", "--json", "-c", str(config), "--state", str(state))
    assert result.code in (0, 1), result
    errors = {s["id"]: s["error"] for s in json.loads(result.out)["sources"]}
    assert set(errors) == {"one", "at", "kw"} and all(errors.values()), errors
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    with sqlite3.connect(state) as conn:
        assert conn.execute("SELECT count(*) FROM source_results").fetchone()[0] == 3
    for leak in ("Leak0neSlash", "LeakRawAt", "LeakQuoted"):
        assert leak not in result.out + result.err and leak.encode() not in stored


# -- 8. a --state that is a keyword DSN or a malformed URL is refused --------------------
@pytest.mark.parametrize("state,says", [
    ("host=127.0.0.1 user=postgres password=StDsnPw dbname=x", "keyword DSN"),
    ("postgresql:/postgres:StDsnPw@127.0.0.1/x", "without `//`"),
    ("post gres://postgres:StDsnPw@127.0.0.1/x", "malformed scheme"),
])
def test_state_that_looks_like_a_dsn_is_refused(tmp_path: Path, write_inventory, ctxscan,
                                                 state: str, says: str) -> None:
    config = write_inventory("version: 1\n")
    result = ctxscan("findings", "-c", str(config), "--state", state, cwd=tmp_path)
    assert result.code == 2, result
    assert says in result.err and "StDsnPw" not in result.err + result.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctxscan.yaml"]  # no file named after it


# -- 7. an explicit --state in a missing folder is an error naming the folder -------------
def test_state_in_a_missing_folder_is_not_created(tmp_path: Path, write_inventory, ctxscan) -> None:
    config = write_inventory("version: 1\n")
    missing = tmp_path / "nonexistent"
    result = ctxscan("findings", "-c", str(config), "--state", str(missing / "x.db"))
    assert result.code == 2, result
    assert f"the folder {missing} does not exist" in result.err
    assert not missing.exists()
