"""The command line for daily use: exit codes, validate's warnings, findings show, accept,
errors as JSON, help, the store in --verbose, and output in a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from scanner.cli import main

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLOSED_PG = "postgresql://nobody@127.0.0.1:1/none"   # nothing listens on port 1: refused at once
LONG = "customer_interaction_history_with_a_really_long_table_name_for_wrapping"


def _estate(write_inventory, extra_sources: str = "") -> Path:
    return write_inventory(f"""\
        version: 1
        owners: [{{id: data-eng}}]   # who answers for what
        sources:
          - id: crm
            connector: fake
            owner: data-eng
            tables: ["public.customers@30d", "public.{LONG}@20d"]
            freshness: {{max_age: 7d}}
        {extra_sources}
        workflows:
          - id: bot
            owner: data-eng
            stage: production
            reads: ["crm:public.customers", "crm:public.{LONG}", "crm:public.gone"]

        # notifications go to the log
        notify: [{{type: log}}]
        """)


# ---------------------------------------------------------------------------------------
# 1. exit codes

def test_scan_exits_1_when_a_source_cannot_be_probed(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory, f"""  - {{id: down, connector: postgres, url: "{CLOSED_PG}", owner: data-eng}}
          - {{id: broken, connector: fake, fail: "injected failure", tables: [t], owner: data-eng}}""")
    state = f"sqlite:///{tmp_path / 's.db'}"
    result = ctxscan("scan", "-c", str(config), "--state", state)
    assert result.code == 1, result
    assert "2 sources could not be probed (down, broken)" in result.err
    as_json = ctxscan("scan", "-c", str(config), "--state", state, "--json")
    assert as_json.code == 1 and json.loads(as_json.out)["status"] == "partial"
    # Only healthy sources: 0, unless --fail-on is reached.
    assert ctxscan("scan", "-c", str(config), "--state", state, "--source", "crm").code == 0
    fail_on = ctxscan("scan", "-c", str(config), "--state", state, "--source", "crm", "--fail-on", "high")
    assert fail_on.code == 1 and "at or above high (--fail-on)" in fail_on.err


def test_daemon_once_exit_codes_and_fail_on(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory, f'  - {{id: down, connector: postgres, url: "{CLOSED_PG}", owner: data-eng}}')
    state = f"sqlite:///{tmp_path / 's.db'}"
    failing = ctxscan("daemon", "--once", "-c", str(config), "--state", state)
    assert failing.code == 1 and "1 source could not be probed (down)" in failing.err, failing
    healthy = _estate(write_inventory)
    state2 = f"sqlite:///{tmp_path / 's2.db'}"
    assert ctxscan("daemon", "--once", "-c", str(healthy), "--state", state2).code == 0
    reached = ctxscan("daemon", "--once", "--fail-on", "critical", "-c", str(healthy), "--state", state2)
    assert reached.code == 1 and "--fail-on" in reached.err  # a production stale asset is critical
    assert ctxscan("daemon", "--fail-on", "high", "-c", str(healthy), "--state", state2).code == 2


# ---------------------------------------------------------------------------------------
# 3. validate

def test_validate_warnings_strict_and_errors(write_inventory, ctxscan) -> None:
    config = write_inventory("""\
        version: 1
        owners: [{id: data-eng}]
        sources:
          - {id: crm, connector: fake, tables: [t], owner: data-enj}
          - {id: kb, connector: fake, tables: [a]}
        workflows:
          - id: bot
            owner: data-eng
            runs_as: {crm: bot, kb: bot}
            reads: ["kb:a"]
            rollout: {fallback: humans, rollback_owner: ghost}
        """)
    result = ctxscan("validate", "-c", str(config))
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {config}:4: sources[crm].owner: names owner 'data-enj', which is not in owners "
        "(did you mean 'data-eng'?)",
        f"warning: {config}:7: workflows[bot].rollout.rollback_owner: names owner 'ghost', which is not in "
        "owners (known: data-eng)",
        f"warning: {config}:7: workflows[bot].runs_as.crm: runs as 'bot' in crm, but reads nothing from crm "
        "(add a read of crm, or remove this runs_as entry)",
    ]
    listed = json.loads(ctxscan("validate", "-c", str(config), "--json").out)["warnings"]
    assert [w["check"] for w in listed] == ["unknown_owner", "unknown_owner", "unused_runs_as"]
    strict = ctxscan("validate", "--strict", "-c", str(config))
    assert strict.code == 2 and strict.err.count("error:") == 3 and "Traceback" not in strict.err

    mismatch = write_inventory('version: 1\nsources: [{id: db, connector: mysql, url: "postgres://u@127.0.0.1/x"}]\n',
                               "mismatch.yaml")
    result = ctxscan("validate", "-c", str(mismatch))
    assert result.code == 2
    assert "sources[0].url: a mysql source needs a mysql:// or mariadb:// URL, not postgres:// " \
           "(use connector: postgres)" in result.err
    pg_with_mysql = write_inventory('version: 1\nsources: [{id: db, connector: postgres, url: "mysql://r@h/x"}]\n',
                                    "mismatch2.yaml")
    assert "not mysql:// (use connector: mysql)" in ctxscan("validate", "-c", str(pg_with_mysql)).err
    empty = write_inventory("# nothing yet\n", "empty.yaml")
    result = ctxscan("validate", "-c", str(empty))
    assert result.code == 2 and "the file is empty" in result.err


def test_validate_connect_opens_each_source(write_inventory, ctxscan) -> None:
    config = write_inventory(f"""\
        version: 1
        sources:
          - {{id: maria, connector: mysql, url: "mysql://root@127.0.0.1:3306/mysql", timeout: 20s}}
          - {{id: down, connector: postgres, url: "{CLOSED_PG}", timeout: 10s}}
          - {{id: pg, connector: postgres, url: "postgresql://postgres@127.0.0.1:5432/postgres", timeout: 20s}}
        """)
    result = ctxscan("validate", "--connect", "-c", str(config), "--json")
    assert result.code == 1, result
    connections = {c["source"]: c for c in json.loads(result.out)["connections"]}
    assert connections["maria"]["ok"] and connections["pg"]["ok"]
    assert not connections["down"]["ok"] and "refused" in connections["down"]["detail"].lower()
    human = ctxscan("validate", "--connect", "-c", str(config))
    assert human.code == 1 and re.search(r"^down\s+postgres\s+FAILED", human.out, re.M)


# ---------------------------------------------------------------------------------------
# 4. findings show, accept

def test_findings_show_and_accept_keep_the_file_valid(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)
    stale = next(f for f in json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json").out)
                 if f["kind"] == "stale")
    short = stale["fingerprint"][:6]
    shown = ctxscan("findings", "show", short, "-c", str(config), "--state", state)
    assert shown.code == 0, shown
    for text in (stale["message"], stale["remediation"], "first seen", "opened      1 time",
                 f"declared:   {config}:4 (source crm)", '"sla_seconds"'):
        assert text in shown.out, text
    assert ctxscan("findings", "show", "zzzz", "-c", str(config), "--state", state).code == 2

    before = config.read_text()
    until = (date.today() + timedelta(days=30)).isoformat()
    accepted = ctxscan("accept", short, "--until", until, "--reason", 'loader fix: "ticket #42"',
                       "-c", str(config), "--state", state)
    assert accepted.code == 0, accepted
    after = config.read_text()
    assert after.startswith(before.rstrip("\n") + "\n")  # comments and layout untouched: appended
    assert "# notifications go to the log" in after and "# who answers for what" in after
    assert ctxscan("validate", "--strict", "-c", str(config)).code == 0
    listed = json.loads(ctxscan("findings", "--status", "accepted", "-c", str(config), "--state", state,
                                "--json").out)
    assert [(f["fingerprint"], f["accepted"]["reason"], f["accepted"]["expires"]) for f in listed] == [
        (stale["fingerprint"], 'loader fix: "ticket #42"', until)]
    # A second one joins the same block, at its indentation.
    other = next(f for f in json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json").out)
                 if f["fingerprint"] != stale["fingerprint"])
    assert ctxscan("accept", other["fingerprint"], "--until", until, "--reason", "known",
                   "-c", str(config), "--state", state).code == 0
    text = config.read_text()
    assert text.count("accept:") == 1 and text.count("  - {fingerprint:") == 2
    assert ctxscan("validate", "-c", str(config)).code == 0
    past = ctxscan("accept", short, "--until", "2001-01-01", "--reason", "x", "-c", str(config), "--state", state)
    assert past.code == 2 and "in the past" in past.err


def test_accept_appends_inside_an_existing_block_before_the_next_key(tmp_path: Path) -> None:
    from scanner.inventory_edit import append_accept

    text = ("version: 1\naccept:\n    # legacy\n    - {kind: orphan_source, source: a, reason: r, expires: 2030-01-01}\n"
            "\n# targets\nnotify: [{type: log}]\n")
    out = append_accept(text, "abc", "stale", "crm:x", date(2030, 2, 1), "why")
    assert out == ("version: 1\naccept:\n    # legacy\n    - {kind: orphan_source, source: a, reason: r, "
                   "expires: 2030-01-01}\n    # stale on crm:x\n    - {fingerprint: \"abc\", reason: \"why\", "
                   "expires: 2030-02-01}\n\n# targets\nnotify: [{type: log}]\n")
    assert "accept:\n  # stale" in append_accept("version: 1\naccept: []\n", "abc", "stale", "x", date(2030, 1, 1), "y")
    with pytest.raises(ValueError, match="flow style"):
        append_accept("accept: [{kind: stale, reason: r, expires: 2030-01-01}]\n", "a", "stale", "x",
                      date(2030, 1, 1), "y")


def test_public_table_remediation_speaks_postgres(pg_database: str, write_inventory, tmp_path: Path,
                                                  ctxscan) -> None:
    import psycopg

    dsn = pg_database.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.docs (id int)")
        conn.execute("GRANT SELECT ON public.docs TO PUBLIC")
    config = write_inventory(f"""\
        version: 1
        owners: [{{id: o}}]
        sources: [{{id: db, connector: postgres, url: "{dsn}", owner: o}}]
        workflows: [{{id: bot, owner: o, runs_as: {{db: postgres}}, reads: ["db:public.docs"]}}]
        """)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)
    public = [f for f in json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json").out)
              if f["subkind"] == "public_access"]
    assert public, "expected a public_access finding for a table granted to PUBLIC"
    shown = ctxscan("findings", "show", public[0]["fingerprint"], "-c", str(config), "--state", state).out
    assert "REVOKE" in shown
    for word in ("bucket", "allUsers", "chmod"):
        assert word not in shown


# ---------------------------------------------------------------------------------------
# 6. conventions

def test_bare_ctxscan_prints_help_and_exits_0(ctxscan) -> None:
    result = ctxscan()
    assert result.code == 0 and "Commands:" in result.out and "Exit codes:" in result.out
    # Whole descriptions, not cut at ~45 characters with "...".
    assert "..." not in result.out.split("Commands:", 1)[1].split("Examples:", 1)[0]
    assert "_CTXSCAN_COMPLETE=bash_source ctxscan" in result.out


def _all_commands() -> list[list[str]]:
    out = []
    for name, command in main.commands.items():
        out.append([name])
        for sub in getattr(command, "commands", {}):
            out.append([name, sub])
    return out


@pytest.mark.parametrize("command", _all_commands(), ids=" ".join)
def test_every_help_ends_with_examples_and_exit_codes(command: list[str]) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    tail = result.output.rstrip().splitlines()
    assert tail[-1].strip().startswith("Exit codes: 0"), result.output
    assert "Examples:" in result.output and "  ctxscan " in result.output.split("Examples:", 1)[1]


def test_json_errors_are_json_on_stderr_with_the_same_exit_code(write_inventory, tmp_path: Path, ctxscan) -> None:
    bad = write_inventory("version: 1\nsources: [{id: a, connector: fake, schedul: 1h}]\n")
    result = ctxscan("validate", "--json", "-c", str(bad))
    assert result.code == 2 and result.out == ""
    error = json.loads(result.err)
    assert error["exit_code"] == 2 and "unknown key 'schedul'" in error["error"]
    result = ctxscan("findings", "--json", "--kind", "stail", "-c", str(_estate(write_inventory)),
                     "--state", f"sqlite:///{tmp_path / 's.db'}")
    assert result.code == 2 and "did you mean 'stale'" in json.loads(result.err)["error"]
    usage = ctxscan("findings", "--json", "--severity", "huge", "-c", str(bad))
    assert usage.code == 2 and "Invalid value for '--severity'" in json.loads(usage.err)["error"]


def test_verbose_names_the_inventory_and_store(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory)
    for args in (("scan",), ("findings",), ("readiness",), ("depends", "bot"), ("depends", "bot"),
                 ("feeds", "crm"), ("why", "bot", "crm:public.customers"), ("findings", "show", "0000")):
        result = ctxscan(*args, "-v", "-c", str(config))
        assert f"store: sqlite:///{tmp_path}/.ctxscan/" in result.err, (args, result)


# ---------------------------------------------------------------------------------------
# 2 and 6: a real pseudo-terminal (util-linux `script`), never a faked isatty

def _in_terminal(args: list[str], cols: int, env: dict[str, str] | None = None) -> str:
    if shutil.which("script") is None:
        pytest.fail("util-linux `script` is needed for the terminal tests (apt-get install bsdutils)")
    command = f"stty cols {cols} rows 50; " + " ".join(shlex.quote(a) for a in [sys.executable, "-m", "scanner", *args])
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "CTXSCAN_CONFIG")}
    full_env.update({"TERM": "xterm-256color", **(env or {})})
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                          env=full_env, timeout=120, stdin=subprocess.DEVNULL)
    return proc.stdout.replace("\r\n", "\n")


def test_width_wrapping_and_colour_in_a_real_terminal(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)
    args = ["findings", "-c", str(config), "--state", state]

    piped = ctxscan(*args).out  # not a terminal: nothing cut, whatever the width
    assert LONG in piped and "…" not in piped and "\x1b[" not in piped
    message = next(line for line in piped.splitlines() if "crm:public.customers is" in line).split("  ")[-1]

    narrow = _in_terminal(args, 100)
    plain = ANSI.sub("", narrow)
    assert all(len(line) <= 100 for line in plain.splitlines()), plain
    assert "\x1b[31m" in narrow or "\x1b[91m" in narrow  # critical/high in red
    # The message column wraps: its words are all there, spread over several lines.
    assert len(plain.splitlines()) > len(piped.splitlines())
    assert " ".join(message.split()) in " ".join(plain.split())

    wide = ANSI.sub("", _in_terminal([*args, "--wide"], 100))
    assert LONG in wide and any(len(line) > 100 for line in wide.splitlines())
    assert "\x1b[" not in _in_terminal(args, 100, {"NO_COLOR": "1"})
    assert "\x1b[" not in _in_terminal([*args, "--no-color"], 100)
    big = ANSI.sub("", _in_terminal(args, 250))
    # 250 columns hold the whole subject; only the longest message wraps, within the width.
    assert f"crm:public.{LONG}  " in big and all(len(line) <= 250 for line in big.splitlines())
    assert len(piped.splitlines()) < len(big.splitlines()) < len(plain.splitlines())


# ---------------------------------------------------------------------------------------
# 5. wording

def test_mysql_says_whether_a_password_was_used_and_hides_the_password(write_inventory, tmp_path: Path,
                                                                       ctxscan) -> None:
    config = write_inventory("""\
        version: 1
        sources: [{id: maria, connector: mysql, url: "mysql://root:Wr0ngS3cret@127.0.0.1:3306/mysql", timeout: 20s}]
        """)
    state = f"sqlite:///{tmp_path / 's.db'}"
    scan = ctxscan("scan", "-c", str(config), "--state", state)
    assert scan.code == 1
    failed = json.loads(ctxscan("findings", "-c", str(config), "--state", state, "--json").out)
    message = next(f["message"] for f in failed if f["kind"] == "probe_failed")
    assert "(using password: YES)" in message and "Wr0ngS3cret" not in message + scan.out + scan.err


def test_schema_drift_sentence_agrees_with_its_subject(write_inventory, tmp_path: Path, ctxscan) -> None:
    text = """\
        version: 1
        sources: [{{id: crm, connector: fake, tables: [t@1h], columns: [{columns}]}}]
        workflows: [{{id: bot, reads: [{{asset: "crm:t", columns: [b]}}]}}]
        """
    config = write_inventory(text.format(columns='"a:int", "b:text"'))
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)
    write_inventory(text.format(columns='"a:int"'))
    ctxscan("scan", "-c", str(config), "--state", state)
    drift = [f["message"] for f in json.loads(ctxscan("findings", "-c", str(config), "--state", state,
                                                       "--json").out) if f["kind"] == "schema_drift"]
    assert drift and drift[0].endswith("; bot depends on it"), drift


def test_depends_table_says_who_set_each_sla(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory).read_text().replace('reads: ["crm:public.customers"',
                                                           'reads: [{asset: "crm:public.customers", max_age: 40d}')
    path = write_inventory(config)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(path), "--state", state)
    out = ctxscan("depends", "bot", "-c", str(path), "--state", state).out
    assert "SLA SET BY" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("crm:")}
    assert rows["crm:public.customers"][4:6] == ["40d", "bot"]
    assert rows[f"crm:public.{LONG}"][4:6] == ["7d", "source"]


def test_daemon_log_lines_do_not_repeat_or_contradict(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)  # the findings open before the daemon runs
    result = ctxscan("daemon", "--once", "-c", str(config), "--state", state)
    assert "ctxscan.findings: opened [critical]" in result.err, result
    assert "ctxscan: opened" not in result.err and "0 opened" not in result.err
    assert "scanned crm: ok" in result.err and "no finding changed" in result.err


def test_graph_never_labels_a_healthy_asset_past_its_sla(tmp_path: Path, ctxscan) -> None:
    ctxscan("demo", "--dir", str(tmp_path / "demo"))
    config = str(tmp_path / "demo" / "ctxscan.yaml")
    stale = next(f for f in json.loads(ctxscan("findings", "-c", config, "--json").out)
                 if f["asset"] == "helpdesk:main.sla_policies" and f["kind"] == "stale")
    until = (date.today() + timedelta(days=3)).isoformat()
    assert ctxscan("accept", stale["fingerprint"], "--until", until, "--reason", "r", "-c", config).code == 0
    data = json.loads(ctxscan("graph", "export", "-c", config, "--format", "json", "-o", "-").out)
    node = next(n for n in data["nodes"] if n["id"] == "asset:helpdesk:main.sla_policies")
    assert node["age_seconds"] > node["sla_seconds"] and node["status"] != "stale"  # accepted
    mermaid = ctxscan("graph", "export", "-c", config, "--format", "mermaid", "-o", "-").out
    label = next(line for line in mermaid.splitlines() if "main.sla_policies" in line and "old" in line)
    assert "SLA" not in label, label


def test_two_inventories_in_one_folder_keep_their_own_store(tmp_path: Path, ctxscan) -> None:
    folder = tmp_path / "estate"
    folder.mkdir()
    for name, table in (("crm", "customers"), ("kb", "articles")):
        (folder / f"{name}.yaml").write_text(
            f"version: 1\nsources: [{{id: {name}, connector: fake, tables: [{table}@1h]}}]\n")
    for name in ("crm", "kb"):
        result = ctxscan("scan", "-v", "-c", str(folder / f"{name}.yaml"))
        assert result.code == 0 and f"store: sqlite:///{folder}/.ctxscan/{name}.db" in result.err, result
    assert (folder / ".ctxscan" / "crm.db").exists() and (folder / ".ctxscan" / "kb.db").exists()
    # The default name keeps the default store.
    (folder / "ctxscan.yaml").write_text("version: 1\nsources: [{id: x, connector: fake, tables: [t@1h]}]\n")
    assert f"{folder}/.ctxscan/state.db" in ctxscan("scan", "-v", "-c", str(folder / "ctxscan.yaml")).err
    # An older shared store is still read by an inventory that has no store of its own yet.
    (folder / "new.yaml").write_text("version: 1\nsources: [{id: x, connector: fake, tables: [t@1h]}]\n")
    result = ctxscan("findings", "-v", "-c", str(folder / "new.yaml"))
    assert f"store: sqlite:///{folder}/.ctxscan/state.db" in result.err, result


def test_readiness_reasons_wrap_only_on_a_terminal(write_inventory, tmp_path: Path, ctxscan) -> None:
    config = _estate(write_inventory)
    state = f"sqlite:///{tmp_path / 's.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)
    args = ["readiness", "-c", str(config), "--state", state]
    piped = ctxscan(*args).out
    longest = max(piped.splitlines(), key=len)
    assert len(longest) > 70, piped  # a long reason stays on one line in a pipe
    shown = ANSI.sub("", _in_terminal(args, 70))
    assert all(len(line) <= 70 for line in shown.splitlines()), shown
    assert "".join(piped.split()) == "".join(shown.split())  # the same text, wrapped
