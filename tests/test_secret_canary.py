"""A canary password in every URL and DSN shape appears in no output, log, export or store byte.

Issue 12, item 1: redaction must not depend on a URL parse succeeding. Each source below
carries the canary in a different well-formed or malformed shape; every command and output
format runs, and nothing anywhere may contain the canary or a recognisable part of it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.daemon_support import DaemonProcess, WebhookReceiver, wait_for

CANARY = "Cnry7Zq4Wx"
BAD = "127.0.0.1:1"  # nothing listens there: every driver fails and echoes what it parsed

SHAPES = {
    "one_slash_pg": ("postgres", f"postgresql:/u:{CANARY}@{BAD}/db"),
    "one_slash_my": ("mysql", f"mysql:/u:{CANARY}@{BAD}/db"),
    "raw_at_pg": ("postgres", f"postgresql://u:At@{CANARY}@{BAD}/db"),
    "raw_space_pg": ("postgres", f"postgresql://u:Sp {CANARY}@{BAD}/db"),
    "one_slash_sql": ("sql", f"postgresql+psycopg:/u:{CANARY}@{BAD}/db"),
    "raw_at_sql": ("sql", f"postgresql+psycopg://u:At@{CANARY}@{BAD}/db"),
    "raw_space_sql": ("sql", f"postgresql+psycopg://u:Sp {CANARY}@{BAD}/db"),
    "quoted_dsn": ("postgres", f"host=127.0.0.1 port=1 user=u password='Kw {CANARY}' dbname=x"),
    "plain_dsn": ("postgres", f"host=127.0.0.1 port=1 user=u password={CANARY} dbname=x"),
    "sslpassword": ("postgres", f"postgresql://u@{BAD}/db?sslpassword={CANARY}"),
    "query_password": ("postgres", f"postgresql://{BAD}/db?user=u&password={CANARY}"),
    "encoded_at": ("postgres", f"postgresql://u:{CANARY}%40x@{BAD}/db"),
    "well_formed_my": ("mysql", f"mysql+pymysql://root:{CANARY}@{BAD}/x"),
    "raw_at_my": ("mysql", f"mysql://root:Q@{CANARY}@{BAD}/x"),
}


def _inventory(folder: Path, hook_url: str) -> Path:
    lines = ["version: 1", "owners: [{id: team}]", "sources:"]
    for source_id, (connector, url) in SHAPES.items():
        lines.append(f"  - {{id: {source_id}, connector: {connector}, url: {json.dumps(url)}, "
                     "timeout: 5s, owner: team, schedule: 1h}")
    reads = ", ".join(f'{{asset: "{s}:public.t"}}' for s in SHAPES)
    lines += ["workflows:",
              f"  - {{id: wf, owner: team, stage: production, runs_as: {{one_slash_pg: bot}}, reads: [{reads}]}}",
              "notify:",
              f"  - {{type: webhook, url: {json.dumps(hook_url)}}}",
              "  - {type: file, path: notes.jsonl}",
              "  - {type: log}"]
    path = folder / "ctxscan.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _store_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob("state*.db*"))


def test_the_canary_appears_in_no_output(tmp_path: Path, ctxscan) -> None:
    receiver = WebhookReceiver(f"/hook?token={CANARY}")
    try:
        config = _inventory(tmp_path, receiver.url)
        state = str(tmp_path / "state.db")
        seen: list[str] = []

        def run(*args: str, codes: tuple[int, ...] = (0, 1)) -> None:
            result = ctxscan(*args, "-c", str(config), "--state", state, cwd=tmp_path)
            assert result.code in codes, result
            seen.append(f"$ {' '.join(args)}\n{result.out}\n{result.err}")

        run("validate")
        run("validate", "--json")
        run("scan")
        run("scan", "--json")
        for fmt in ("csv", "markdown", "sarif", "ocsf"):
            run("findings", "--format", fmt)
        for fmt in ("markdown", "junit"):
            run("readiness", "--format", fmt)
        for fmt in ((), ("--json",)):
            run("findings", *fmt)
            run("depends", "wf", *fmt)
            run("readiness", "wf", *fmt)
            run("feeds", "one_slash_pg", *fmt)
            run("why", "wf", "one_slash_pg:public.t", *fmt, codes=(0, 1, 2))
        exports = []
        for fmt in ("graphml", "gexf", "json", "dot", "mermaid", "html"):
            for part in ((), ("--workflow", "wf"), ("--source", "raw_at_pg")):
                target = tmp_path / f"g-{fmt}-{len(exports)}.{fmt}"
                run("graph", "export", "--format", fmt, *part, "-o", str(target))
                exports.append(target.read_text(encoding="utf-8"))

        # The probes really failed with the drivers' errors (which once quoted the password).
        findings = json.loads(ctxscan("findings", "--json", "-c", str(config), "--state", state).out)
        failed = {f["source"] for f in findings if f["kind"] == "probe_failed"}
        assert failed == set(SHAPES), failed

        # A state URL carrying the canary, malformed or not, is refused without echoing it.
        for url in (f"postgresql://postgres:State@{CANARY}@{BAD}/x", f"postgresql:/postgres:{CANARY}@{BAD}/x",
                    f"postgresql+psycopg://{BAD}/x?password={CANARY}"):
            result = ctxscan("findings", "-c", str(config), "--state", url)
            assert result.code == 2, result
            seen.append(result.out + result.err)

        logs = []
        for log_format in ("text", "json"):
            # A fresh store: with the CLI's scan just done, the next scheduled scan is an hour away.
            daemon = DaemonProcess(config, str(tmp_path / f"state-{log_format}.db"), "--log-format", log_format)
            try:
                daemon.wait_up()
                wait_for(lambda d=daemon: all(d.scans(s) >= 1 for s in SHAPES), 30,
                         f"a scan of every source\n{daemon.log}\n{daemon.health()}")
                health = daemon.get("/healthz")[1]
                assert "last_error" in health, health
                seen.append(health)
                seen.append(daemon.metrics())
            finally:
                assert daemon.stop(signal.SIGTERM) == 0, daemon.log
            logs.append(daemon.log)
        assert "failed" in logs[0] and '"level"' in logs[1], logs
        notes = (tmp_path / "notes.jsonl").read_text(encoding="utf-8")
        assert "probe_failed" in notes
        wait_for(lambda: receiver.received, 10, "a webhook delivery")
        hooks = json.dumps(receiver.received)
        everything = "\n".join(seen + exports + logs + [notes, hooks])
        assert CANARY not in everything
        assert CANARY.encode() not in _store_bytes(tmp_path)
        assert b"probe_failed" in _store_bytes(tmp_path)
    finally:
        receiver.close()


def test_a_password_in_the_state_url_never_leaves(tmp_path: Path, pg_database: str, ctxscan) -> None:
    """A shared PostgreSQL store whose URL carries a password (trust auth ignores it)."""
    state = pg_database.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{CANARY}%40x@")
    assert CANARY in state
    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: f, connector: fake, tables: [public.a], schedule: 1h}\n"
                      "notify:\n  - {type: log}\n")
    seen = []
    for args in (("scan",), ("scan", "--json"), ("findings", "--json"), ("graph", "export", "--format", "json", "-o", "-"),
                 ("daemon", "--once"), ("daemon", "--once", "--log-format", "json")):
        result = ctxscan(*args, "-c", str(config), "--state", state, cwd=tmp_path)
        assert result.code in (0, 1), result
        seen.append(result.out + result.err)
    assert "f" in json.loads(seen[1])["sources"][0]["id"]
    assert not any(CANARY in text or f"{CANARY}@x" in text for text in seen), seen
    broken = ctxscan("findings", "-c", str(config), "--state", state.replace("127.0.0.1:5432", "127.0.0.1:1"))
    assert broken.code == 2 and CANARY not in broken.err, broken
