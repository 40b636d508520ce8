"""Hostile input is normal input (issue 12): each test is one reproduction of the red-team pass."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from scanner.redact import redact_text, secrets_in_text


# -- 1. secrets in malformed URLs and DSNs ---------------------------------------------------
@pytest.mark.parametrize("setting,secret", [
    ("postgresql:/u:PwOne51@h/db", "PwOne51"),
    ("mysql:/u:PwOne51@h/db", "PwOne51"),
    ("postgresql://u:At@Secret7@h/db", "Secret7"),
    ("postgresql://u:Sp Pw04xy@h/db", "Pw04xy"),
    ("host=h password='Kw Secret1' dbname=x", "Kw Secret1"),
    ("host=h password=\"Dq Secret2\" dbname=x", "Dq Secret2"),
    ("host=h sslpassword=Ssl5ecret dbname=x", "Ssl5ecret"),
    ("postgresql://h/db?sslpassword=Ssl5ecret&user=x", "Ssl5ecret"),
    ("https://hooks.local/x?api_token=T0kenValue", "T0kenValue"),
    ("postgresql://u:p%40ss%20wordy12@h/db", "p@ss wordy12"),
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


# -- 6. every YAML-library crash is one line naming file and line, exit 2 -----------------
@pytest.mark.parametrize("text,line,says", [
    ("version: 1\nowners:\n  - {id: a, expires: 2027-02-30}\n", 3, "day is out of range"),
    ("version: 1\nowners:\n  - {id: !!int x}\n", 3, "as int"),
    ("version: 1\nowners:\n  - {id: !!float y}\n", 3, "as float"),
    ("version: 1\nowners:\n  - {id: !!bool maybe}\n", 3, "not a valid bool"),
    ("version: 1\nowners:\n  - {id: !!timestamp z}\n", 3, "not a valid timestamp"),
    ("version: 1\nowners:\n  - {id: a, at: 2026-01-01T00:00:00-25:00}\n", 3, "as timestamp"),
    ("version: 1\nsources:\n  - {id: s, connector: postgres, url: 'postgresql://h/x',\n     batch_size: .inf}\n",
     4, "expected a finite number"),
    ("version: 1\na: &a [*a]\n", 2, "recursive alias"),
    ("version: 1\nx: " + "[" * 5000 + "\n", 2, "nesting depth"),
])
def test_yaml_library_failures_are_one_line_with_file_and_line(write_inventory, ctxscan, text: str, line: int,
                                                               says: str) -> None:
    config = write_inventory(text)
    result = ctxscan("validate", "-c", str(config))
    assert result.code == 2, result
    assert "Traceback" not in result.err and says in result.err, result
    first = result.err.splitlines()[0]
    assert first.startswith(f"error: {config}:{line}:"), result


# -- 3. inputs that are not regular files, too big, or expand without bound ---------------
ALIAS_BOMB = "version: 1\nl0: &l0 [a,a,a,a,a,a,a,a,a,a]\n" + "".join(
    f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))


def test_inventory_that_is_not_a_regular_file_or_too_big_is_refused(tmp_path: Path, write_inventory,
                                                                     ctxscan) -> None:
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse: just past the 64 MiB cap
    bomb = write_inventory(ALIAS_BOMB, "bomb.yaml")
    assert len(ALIAS_BOMB) < 600
    for path, says in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"),
                       (str(big), "an inventory may have at most"), (str(bomb), "more than 1,000,000 nodes")):
        result = ctxscan("validate", "-c", path, timeout=30)
        assert result.code == 2, result
        assert result.err.startswith(f"error: {path}") and says in result.err and "Traceback" not in result.err


def test_a_refused_reload_keeps_the_daemon_running_and_stoppable(tmp_path: Path) -> None:
    import signal

    from tests.daemon_support import DaemonProcess, wait_for

    good = "version: 1\nsources:\n  - {id: f, connector: fake, tables: [public.a], schedule: 1h}\n"
    config = tmp_path / "ctxscan.yaml"
    config.write_text(good)
    daemon = DaemonProcess(config, str(tmp_path / "state.db"))
    try:
        daemon.wait_up()
        for bad, says in ((ALIAS_BOMB, "more than 1,000,000 nodes"),
                          (good.replace("1h", "99999999999999999999d"), "longer than 10 years")):
            config.write_text(bad)
            daemon.send(signal.SIGHUP)
            wait_for(lambda s=says: s in daemon.log, 15, f"the refusal ({says})\n{daemon.log}")
            assert daemon.health()["status"] == "ok" and daemon.proc.poll() is None
        assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    finally:
        daemon.kill()
    assert daemon.log.count("inventory reload refused") == 2 and "Traceback" not in daemon.log


# -- 2. durations are bounded at load time ---------------------------------------------------
@pytest.mark.parametrize("setting,says", [
    ("timeout: .inf", "inf is not a duration"),
    ("timeout: .nan", "nan is not a duration"),
    ("timeout: 99999999999s", "longer than 10 years"),
    ("schedule: 99999999999999999999d", "longer than 10 years"),
    ("freshness: {max_age: .inf}", "inf is not a duration"),
])
def test_durations_out_of_bounds_are_refused_at_load(tmp_path: Path, write_inventory, ctxscan,
                                                      setting: str, says: str) -> None:
    config = write_inventory(f"version: 1\nsources:\n  - id: s\n    connector: fake\n    {setting}\n")
    field = setting.split(":")[0] if "{" not in setting else "freshness.max_age"
    for command in ("validate", "scan"):
        result = ctxscan(command, "-c", str(config), "--state", str(tmp_path / "s.db"))
        assert result.code == 2, result
        assert result.err.startswith(f"error: {config}:5: sources[0].{field}: ") and says in result.err, result


# -- 4. the HTML slice export escapes every value; a slice names only what it holds --------
def test_hostile_names_do_not_run_in_the_html_slice(tmp_path: Path, write_inventory, ctxscan) -> None:
    import re

    from tests.test_export import chromium

    handler = "<img src=x onerror=document.body.setAttribute('data-pwned','1')>"
    config = write_inventory(f"""
        version: 1
        sources:
          - id: f
            connector: fake
            tables: ["public.{handler}", "public.t\\u2028</script>"]
          - {{id: other, connector: fake, tables: [public.secret_project]}}
        workflows:
          - id: x__DATA__
            reads: [{{asset: "f:public.*"}}]
          - id: secret-merger-plan
            reads: [{{asset: "other:public.secret_project"}}]
    """)
    assert ctxscan("scan", "-c", str(config), cwd=tmp_path).code in (0, 1)
    page = tmp_path / "slice.html"
    result = ctxscan("graph", "export", "-c", str(config), "--format", "html", "--workflow", "x__DATA__",
                     "-o", str(page), cwd=tmp_path)
    assert result.code == 0, result
    html = page.read_text(encoding="utf-8")
    assert "onerror" in html and "<img" not in html  # present, but only as escaped data
    assert "'unsafe-inline'" not in html.split("script-src", 1)[1].split(";", 1)[0]
    assert "secret-merger-plan" not in html
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-pwned="1"' not in dom.stdout and dom.stdout.count("<img") == 0
    rendered = re.search(r'data-rendered="(\d+)"', dom.stdout)
    assert rendered is not None and int(rendered.group(1)) >= 4, dom.stdout[:3000]
    assert "<title>ctxscan graph: workflow:x__DATA__</title>" in dom.stdout
    sliced = ctxscan("graph", "export", "-c", str(config), "--format", "json", "--workflow", "x__DATA__",
                     "-o", "-", cwd=tmp_path)
    header = json.loads(sliced.out)["graph"]
    assert header["workflows"] == ["x__DATA__"] and header["sources"] == ["f"]
    assert "secret-merger-plan" not in sliced.out


# -- 7. outputs are written atomically and never through a symlink or onto a device --------
def test_graph_export_refuses_links_devices_and_missing_folders(tmp_path: Path, write_inventory, ctxscan) -> None:
    import os

    config = write_inventory("version: 1\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "link.html"
    link.symlink_to(victim)
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    for target, says in ((link, "is a symlink"), (Path("/dev/full"), "not a regular file"),
                         (fifo, "not a regular file"),
                         (tmp_path / "missing" / "g.html", f"the folder {tmp_path / 'missing'} does not exist")):
        result = ctxscan("graph", "export", "-c", str(config), "-o", str(target), cwd=tmp_path, timeout=30)
        assert result.code == 2 and says in result.err, result
    assert victim.read_text() == "keep" and link.is_symlink() and Path("/dev/full").is_char_device()
    assert not (tmp_path / "missing").exists()
    good = tmp_path / "g.html"
    good.write_text("old")
    result = ctxscan("graph", "export", "-c", str(config), "-o", str(good), cwd=tmp_path)
    assert result.code == 0, result
    assert good.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temporary left


# -- 9. control and bidi characters in names reach no terminal and forge no log line -------
HOSTILE_NAMES = ["public.tab\nle 2026-01-01T00:00:00Z ERROR ctxscan.daemon: forged", "public.esc\x1b[31mred",
                 "public.bell\x07x\x1b]0;PWNED\x07", "public.\u202etxt.exe"]


def test_hostile_names_are_escaped_in_every_human_line(tmp_path: Path, ctxscan) -> None:
    import signal

    from tests.daemon_support import DaemonProcess, wait_for

    tables = json.dumps(HOSTILE_NAMES)
    config = tmp_path / "ctxscan.yaml"
    config.write_text(f"""version: 1
sources:
  - {{id: f, connector: fake, tables: {tables}, schedule: 1h, fail_tables: []}}
workflows:
  - {{id: w, stage: production, reads: [{{asset: "f:public.*"}}, {{asset: "f:public.gone\\n2026-01-01T00:00:00Z ERROR ctxscan.daemon: forged\\u202e\\x1b[2J"}}]}}
notify:
  - {{type: log}}
""".replace(", fail_tables: []", ""))
    outputs = []
    for args in (("scan",), ("findings",), ("depends", "w"), ("readiness", "w"), ("feeds", "f"),
                 ("graph", "export", "--format", "mermaid", "-o", "-")):
        result = ctxscan(*args, "-c", str(config), "--state", str(tmp_path / "s.db"), cwd=tmp_path)
        assert result.code in (0, 1), result
        outputs.append(result.out + result.err)
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text('version: 1\n"\\e[31mkey\\u202e\\nforged": 1\n')
    result = ctxscan("validate", "-c", str(bad_key))
    assert result.code == 2 and len(result.err.splitlines()) == 1, result
    outputs.append(result.err)
    daemon = DaemonProcess(config, str(tmp_path / "d.db"))
    try:
        daemon.wait_up()
        wait_for(lambda: "missing_asset" in daemon.log,
                 20, f"the finding log lines\n{daemon.log}")
    finally:
        assert daemon.stop(signal.SIGTERM) == 0
    outputs.append(daemon.log)
    for text in outputs:
        assert not any(c in text for c in "\x1b\x07\u202e"), text
    assert "tab\\nle" in "".join(outputs) and "\\u202etxt.exe" in "".join(outputs)
    for line in daemon.log.splitlines():
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [A-Z]+ ", line), line
    assert "forged" not in "".join(line.split(" ", 3)[2] for line in daemon.log.splitlines())


# -- 10a. a symlink loop at the top of a files source fails only that entry ---------------
def test_top_level_symlink_loop_is_one_note(tmp_path: Path, write_inventory, ctxscan) -> None:
    kb = tmp_path / "kb"
    (kb / "articles").mkdir(parents=True)
    (kb / "articles" / "a.md").write_text("x")
    (kb / "loop").symlink_to(kb / "loop")
    (kb / "ping").symlink_to(kb / "pong")
    (kb / "pong").symlink_to(kb / "ping")
    config = write_inventory("version: 1\nsources:\n  - {id: kb, connector: files, path: kb}\n")
    result = ctxscan("scan", "--json", "-c", str(config), "--state", str(tmp_path / "s.db"))
    assert result.code in (0, 1), result
    (source,) = json.loads(result.out)["sources"]
    assert source["status"] == "ok" and source["assets"] == 1, source
    assert {"loop: symlink loop; skipped", "ping: symlink loop; skipped", "pong: symlink loop; skipped"} <= set(
        source["notes"]), source


# -- 10d. queries work on a read-only filesystem ----------------------------------------------
def test_queries_answer_from_a_read_only_filesystem(tmp_path: Path, ctxscan) -> None:
    import shlex
    import subprocess
    import sys

    folder = tmp_path / "ro"
    folder.mkdir()
    config = folder / "ctxscan.yaml"
    config.write_text("version: 1\nowners: [{id: t}]\nsources:\n  - {id: f, connector: fake, tables: [public.a], owner: t}\n"
                      "workflows:\n  - {id: w, owner: t, runs_as: {f: bot}, reads: [{asset: 'f:public.a'}]}\n")
    assert ctxscan("scan", "-c", str(config)).code in (0, 1)
    # A clean close removes the WAL's -wal and -shm files, which a read-only mount cannot create.
    state = folder / ".ctxscan" / "state.db"
    conn = sqlite3.connect(state)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert not (folder / ".ctxscan" / "state.db-shm").exists()
    mount = f"mount --bind {shlex.quote(str(folder))} {shlex.quote(str(folder))} && " \
            f"mount -o remount,bind,ro {shlex.quote(str(folder))}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && ! touch {shlex.quote(str(folder / 'x'))}"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, f"this test needs root and mount namespaces (unshare -m): {probe.stderr}"
    for args, expect in ((["findings"], "no open findings"), (["depends", "w"], "public.a"),
                         (["feeds", "f"], "w"), (["readiness", "w"], "rollout"),
                         (["graph", "export", "--format", "json", "-o", "-"], "workflow:w"),
                         (["why", "w", "f:public.a"], "bot")):
        command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "scanner", *args, "-c", str(config)])
        result = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && {command}"], capture_output=True,
                                text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
        assert result.returncode == 0 and expect in result.stdout, (args, result.stdout, result.stderr)


# -- 10b. a webhook that drips its answer is cut at the delivery's deadline, and shows ------
class _Drip:
    """An HTTP server that answers one byte at a time, every 0.25 s, for a minute."""

    def __init__(self) -> None:
        import socket
        import threading

        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading
        import time

        def drip(conn) -> None:  # type: ignore[no-untyped-def]
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 240:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.25)
            except OSError:
                pass
            finally:
                conn.close()

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def test_a_dripping_webhook_times_out_per_delivery_and_shows_in_healthz(tmp_path: Path) -> None:
    import signal
    import time

    from scanner.inventory import load_inventory
    from scanner.notify import DeliveryError, WebhookNotifier, targets_for
    from tests.daemon_support import DaemonProcess, wait_for

    drip = _Drip()
    try:
        config = tmp_path / "ctxscan.yaml"
        config.write_text(f"""version: 1
sources:
  - {{id: f, connector: fake, tables: [public.a], schedule: 1h}}
notify:
  - {{type: webhook, url: "http://127.0.0.1:{drip.port}/hook", timeout: 1s}}
""")
        (target,) = targets_for(load_inventory([config]))
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"^timed out after 1s$"):
            WebhookNotifier(target).deliver({"text": "x"})
        assert time.monotonic() - started < 15  # the drip would take a minute; the deadline is 1 s
        daemon = DaemonProcess(config, str(tmp_path / "s.db"))
        try:
            daemon.wait_up()
            seen_in_flight = wait_for(lambda: any(n["delivering_since"] for n in daemon.health().get("notify", [])),
                                      20, "a delivery in flight in /healthz", interval=0.05)
            assert seen_in_flight
            wait_for(lambda: any(n["last_error"] == "timed out after 1s" and n["consecutive_failures"] >= 1
                                 for n in daemon.health()["notify"]), 20, f"the timeout in /healthz\n{daemon.log}")
        finally:
            assert daemon.stop(signal.SIGTERM) == 0
        assert "notification to" in daemon.log and "timed out after 1s" in daemon.log
    finally:
        drip.close()


# -- 10c. validate shows what was written, never an interpolated value -----------------------
def test_validate_never_echoes_an_interpolated_secret(tmp_path: Path, write_inventory, ctxscan) -> None:
    env = {"CRM_URL": "postgresql://u:EchoPw99x@127.0.0.1:1/x"}
    wrong = write_inventory("""
        version: 1
        sources:
          - {id: s, connector: postgres, url: "${CRM_URL}", schedule: "${CRM_URL}"}
        workflows:
          - {id: w, stage: "${CRM_URL}"}
    """, "wrong.yaml")
    result = ctxscan("validate", "-c", str(wrong), env=env)
    assert result.code == 2, result
    assert "sources[0].schedule: '${CRM_URL}' is neither" in result.err and "EchoPw99x" not in result.err
    misplaced = write_inventory("""
        version: 1
        sources:
          - {id: s, connector: postgres, url: "${CRM_URL}", owner: "${CRM_URL}"}
        workflows:
          - {id: w, owner: "${CRM_URL}", stage: poc, reads: [{asset: "s:public.t"}]}
    """, "misplaced.yaml")
    outputs = []
    for args in (("validate",), ("validate", "--json"), ("scan", "--json"), ("depends", "w", "--json"),
                 ("graph", "export", "--format", "json", "-o", "-"), ("graph", "export", "--format", "mermaid", "-o", "-")):
        result = ctxscan(*args, "-c", str(misplaced), "--state", str(tmp_path / "s.db"), env=env)
        assert result.code in (0, 1), result
        outputs.append(result.out + result.err)
    assert "postgresql://u:***@127.0.0.1:1/x" in outputs[0]  # the owner column: shown, password masked
    assert not any("EchoPw99x" in text for text in outputs), outputs


# -- 10e. a scan killed with kill -9 is marked interrupted by the next scan or daemon ---------
def test_a_scan_killed_with_sigkill_is_interrupted_at_the_next_start(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.daemon_support import DaemonProcess, wait_for

    config = tmp_path / "ctxscan.yaml"
    config.write_text("version: 1\nsources:\n  - {id: stuck, connector: fake, hang: true, timeout: 1h}\n"
                      "  - {id: quick, connector: fake, tables: [public.a], schedule: 1h}\n")
    state = tmp_path / "s.db"

    def statuses() -> list[str]:
        conn = sqlite3.connect(state)
        try:
            return [row[0] for row in conn.execute("SELECT status FROM scans ORDER BY id")]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    for restart in ("scan", "daemon"):
        killed = subprocess.Popen([sys.executable, "-m", "scanner", "scan", "--source", "stuck", "-c", str(config),
                                   "--state", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: statuses() and statuses()[-1] == "running", 30, "the scan to start")
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        before = len(statuses())
        assert statuses()[-1] == "running"
        if restart == "scan":
            result = subprocess.run([sys.executable, "-m", "scanner", "scan", "--source", "quick", "-c", str(config),
                                     "--state", str(state)], capture_output=True, text=True, timeout=60)
            assert result.returncode in (0, 1), result.stderr
        else:
            daemon = DaemonProcess(config, str(state), metrics=False)
            try:
                wait_for(lambda d=daemon: "marked interrupted" in d.log, 20, "the daemon's start")
            finally:
                assert daemon.stop(signal.SIGTERM) == 0
        assert statuses()[before - 1] == "interrupted", statuses()


# -- a damaged stored snapshot leaves its source without it, not every scan failing -------
@pytest.mark.parametrize("damage", [b"", b"\x00\xffnot zlib", b"x\x9c\x03\x00", "truncated"])
def test_a_damaged_stored_snapshot_is_one_warning_and_the_next_scan_replaces_it(
        tmp_path: Path, write_inventory, ctxscan, damage: bytes | str) -> None:
    config = write_inventory("""
        version: 1
        sources:
          - {id: crm, connector: fake, tables: [public.accounts, public.orders]}
          - {id: docs, connector: fake, tables: [kb.pages]}
        workflows:
          - {id: bot, reads: [{asset: "crm:public.accounts"}, {asset: "docs:kb.*"}]}
    """)
    state = tmp_path / "s.db"
    args = ("-c", str(config), "--state", str(state))
    assert ctxscan("scan", "--json", *args).code in (0, 1)
    with sqlite3.connect(state) as conn:
        result_id, blob = conn.execute("SELECT id, snapshot FROM source_results WHERE source_id = 'crm' "
                                       "ORDER BY id DESC LIMIT 1").fetchone()
        bad = blob[: len(blob) // 2] if damage == "truncated" else damage
        conn.execute("UPDATE source_results SET snapshot = ? WHERE id = ?", (bad or b"\x00", result_id))
    for command in (("feeds", "crm:public.accounts", "--json"), ("depends", "bot", "--json"), ("findings", "--json"), ("readiness", "--json")):
        answer = ctxscan(*command, *args)
        assert answer.code in (0, 1), answer
        assert "Traceback" not in answer.err and len(answer.err.splitlines()) <= 1, answer
        json.loads(answer.out)
    rescan = ctxscan("scan", "--json", *args)
    assert rescan.code in (0, 1), rescan
    assert "Traceback" not in rescan.err, rescan
    warnings = [line for line in rescan.err.splitlines() if "cannot be read" in line]
    assert len(warnings) == 1 and f"result {result_id}" in warnings[0] and "source crm" in warnings[0], rescan.err
    assert {s["id"]: s["status"] for s in json.loads(rescan.out)["sources"]} == {"crm": "ok", "docs": "ok"}
    with sqlite3.connect(state) as conn:  # nothing stored is lost: the damaged row is as it was
        assert conn.execute("SELECT snapshot FROM source_results WHERE id = ?", (result_id,)).fetchone()[0] == (
            bad or b"\x00")
    after = ctxscan("feeds", "crm:public.accounts", "--json", *args)  # the damaged one is now the previous
    assert after.code == 0 and len(after.err.splitlines()) <= 1 and "Traceback" not in after.err, after
    assert [w["id"] for w in json.loads(after.out)["workflows"]] == ["bot"]
    assert ctxscan("scan", "--json", *args).code in (0, 1)  # now it is history that no rule reads
    for command in (("feeds", "crm:public.accounts", "--json"), ("findings", "--json")):
        clean = ctxscan(*command, *args)
        assert clean.code == 0 and clean.err == "", clean
