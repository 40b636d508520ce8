"""The `ctxscan` command line. It only parses arguments and prints; the work is elsewhere.

Heavy modules (SQLAlchemy, networkx, connector SDKs) are imported inside commands so that
`ctxscan --help` stays fast. Data goes to stdout, progress and logs to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from scanner.formats import FINDING_FORMATS, READINESS_FORMATS

if TYPE_CHECKING:
    from scanner.inventory import Inventory
    from scanner.store import Store

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
SEVERITY_CHOICES = ("critical", "high", "medium", "low", "info")
FINDING_ID_CHARS = 12   # the short id `findings` shows; `findings show` takes any unique prefix

VALIDATE_ROWS = 10
QUERY_COMMANDS = frozenset({"findings", "show", "depends", "feeds", "why", "readiness", "export"})
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command shares: where the inventory and the store are."""

    config: list[str] = field(default_factory=list)
    state: str | None = None
    verbose: bool = False
    _inventory: Inventory | None = None
    _store: Store | None = None

    def config_paths(self) -> list[str]:
        if self.config:
            return self.config
        env = os.environ.get("CTXSCAN_CONFIG")
        if env:
            return [p for p in env.split(os.pathsep) if p]
        return ["ctxscan.yaml"]

    def inventory(self) -> Inventory:
        if self._inventory is None:
            from scanner.inventory import load_inventory

            # Only commands that probe or check the file need every ${VAR}; queries read the
            # store and must work without the sources' secrets.
            context = click.get_current_context(silent=True)
            command = context.command.name if context is not None else None
            strict = command in (None, "scan", "validate", "daemon", "main")
            if self.verbose:
                click.echo(f"inventory: {', '.join(self.config_paths())}", err=True)
            self._inventory = load_inventory(self.config_paths(), strict_env=strict)
        return self._inventory

    def state_url(self) -> str:
        if self.state:
            return self.state
        from scanner.locations import default_state_url

        return default_state_url(self.config_paths(), self.inventory().state)

    def store(self) -> Store:
        if self._store is None:
            from scanner.store import Store

            url = self.state_url()
            if self.verbose:
                from scanner.redact import redact_text, secrets_in_text

                click.echo(f"store: {redact_text(url, secrets_in_text(url))}", err=True)
            # Queries never write: they open the store read-only (a read-only filesystem works).
            context = click.get_current_context(silent=True)
            command = context.command.name if context is not None else None
            self._store = Store.open(url, read_only=command in QUERY_COMMANDS)
        return self._store


def common_options(func: F) -> F:
    """-c/--config and --state on every command (they may also come before the command)."""
    def set_config(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            ctx.ensure_object(App).config = list(value)

    def set_state(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            from scanner.locations import as_state_url, missing_state_folder

            try:
                url = as_state_url(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from None
            folder = missing_state_folder(url)
            if folder is not None:
                raise click.BadParameter(f"the folder {folder} does not exist (create it first)")
            ctx.ensure_object(App).state = url

    def set_wide(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            from scanner.formats.table import WIDE

            WIDE["on"] = True

    def set_no_color(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.color = ctx.find_root().color = False

    def set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(App).verbose = True

    func = click.option("--wide", is_flag=True, expose_value=False, callback=set_wide, is_eager=True,
                        help="Never cut or wrap text to the terminal's width.")(func)
    func = click.option("--no-color", is_flag=True, expose_value=False, callback=set_no_color, is_eager=True,
                        help="No colour (also when $NO_COLOR is set; colour is only used on a terminal).")(func)
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=set_verbose,
                        is_eager=True, help="Say which inventory and state store are used (on stderr).")(func)
    func = click.option("-c", "--config", "config", multiple=True, expose_value=False,
                        callback=set_config, is_eager=True,
                        help="Inventory file or folder (repeatable); default ctxscan.yaml or $CTXSCAN_CONFIG.")(func)
    func = click.option("--state", expose_value=False, callback=set_state, is_eager=True,
                        help="State store: a SQLite path or sqlite:/// URL, or a postgresql:// URL; "
                             "default SQLite next to the inventory.")(func)
    return func


def _app() -> App:
    return click.get_current_context().ensure_object(App)


def echo_json(value: Any) -> None:
    from scanner.output import dump_json

    click.echo(dump_json(value))


def echo_line(text: str, err: bool = False, **style: Any) -> None:
    """Echo a human line with names in it: secrets removed, control and bidi characters escaped."""
    from scanner.output import human_line

    click.secho(human_line(text), err=err, **style)


def progress_enabled() -> bool:
    return sys.stderr.isatty()


class CtxscanGroup(click.Group):
    """Turns ctxscan's own errors into one red line and exit code 2, never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())  # bare `ctxscan`: help, and success
            ctx.exit(EXIT_OK)
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Click cuts each description at ~45 characters; show the whole first paragraph.
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from scanner.errors import CtxscanError

        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        wants_json = "--json" in rest[: rest.index("--")] if "--" in rest else "--json" in rest
        try:
            return super().invoke(ctx)
        except CtxscanError as exc:
            if wants_json:
                _print_json_error(exc, EXIT_USAGE)
            else:
                _print_error(exc)
            ctx.exit(EXIT_USAGE)
        except click.UsageError as exc:
            if not wants_json:
                raise
            _print_json_error(exc, exc.exit_code)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="red", err=True)
            ctx.exit(130)


def _print_json_error(exc: Exception, code: int) -> None:
    """With `--json`, an error is one JSON object on stderr: {"error", "exit_code", "errors"}."""
    from scanner.output import dump_json

    errors = getattr(exc, "errors", None) or [exc]
    lines = [e.one_line() if hasattr(e, "one_line") else (e.format_message() if isinstance(e, click.ClickException)
                                                           else str(e)) for e in errors]
    payload: dict[str, Any] = {"error": lines[0], "exit_code": code, "errors": lines}
    click.echo(dump_json(payload), err=True)


def _print_error(exc: Exception) -> None:
    errors = getattr(exc, "errors", None)
    if errors:
        for error in errors:
            echo_line(f"error: {error.one_line()}", fg="red", err=True)
        if len(errors) > 1:
            click.secho(f"{len(errors)} problems; the inventory was not used", fg="red", err=True)
        return
    text = exc.one_line() if hasattr(exc, "one_line") else str(exc)
    echo_line(f"error: {text}", fg="red", err=True)


_PROGRAM = False  # set by run(): this process is the ctxscan program, not a caller of main()
_UNFREED: list[Any] = []  # what the program leaves to the operating system to free (`leave`)


def run() -> None:
    """The ctxscan program: the console script and `python -m scanner`."""
    global _PROGRAM
    _PROGRAM = True
    main(prog_name="ctxscan")


@click.group(cls=CtxscanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ctxscan", prog_name="ctxscan")
@common_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """ctxscan: inventory, freshness and access scanner for the context of AI workflows."""
    import atexit
    import gc
    import logging

    if ctx.invoked_subcommand != "daemon":
        # A one-shot command builds and decodes large snapshots (a 5,000-table database is
        # ~150,000 objects) that live until it exits; the cyclic collector would traverse
        # them again and again for garbage that is almost never cyclic. Pausing it took a
        # 5,000-table scan from 0.84 s to 0.55 s of CPU at the same peak memory. CPython
        # still runs one last collection at exit: freezing every object first spares it
        # (another ~60 ms). The daemon keeps the collector: it runs for months. A zone worker
        # runs for months too, but probes as a scan does: it collects every 30 s between tasks
        # (scanner/zones/worker.py: with the collector on, its probes took ~50% longer).
        gc.disable()
        atexit.register(gc.freeze)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="ctxscan: %(levelname)s: %(message)s")
    if os.environ.get("NO_COLOR"):  # https://no-color.org: any non-empty value
        ctx.color = False
    ctx.ensure_object(App)


# ---------------------------------------------------------------------------------------
# validate

@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 2).")
@click.option("--connect", is_flag=True,
              help="Also open each source within its timeout (one read-only probe, nothing stored) and "
                   "print ok or the reason; exit 1 when one fails.")
def validate(as_json: bool, strict: bool, connect: bool) -> None:
    """Check the inventory file and print a one-screen summary; warnings too (--strict: errors)."""
    from scanner.plugins import load_errors
    from scanner.validation import inventory_warnings

    inventory = _app().inventory()
    load_errors()  # discovers every plugin: one that cannot load or claims a built-in kind is logged
    warnings = inventory_warnings(inventory) + accept_warning_records(_app())
    if strict and warnings:
        if as_json:
            echo_json({"valid": False, "files": list(inventory.files), "errors": [w.to_json() for w in warnings]})
        for warning in warnings:
            click.secho(f"error: {warning.one_line()}", fg="red", err=True)
        click.secho(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''} (errors under --strict); "
                    "the inventory was not used", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    for warning in warnings:
        click.secho(f"warning: {warning.one_line()}", fg="yellow", err=True)
    connections = _connect_each(inventory) if connect else []
    summary: dict[str, Any] = {
        "valid": True,
        "warnings": [w.to_json() for w in warnings],
        "files": list(inventory.files),
        "sources": [{"id": s.id, "connector": s.connector, "owner": s.owner, "schedule": s.schedule}
                    for s in inventory.sources.values()],
        "workflows": [{"id": w.id, "stage": w.stage, "owner": w.owner, "reads": len(w.reads),
                       "feeds": list(w.feeds)} for w in inventory.workflows.values()],
        "owners": sorted(inventory.owners),
        "notify": [n.type for n in inventory.notify],
        "accept": len(inventory.accept),
        "zones": {zone: sorted(s.id for s in inventory.sources.values() if s.zone == zone)
                  for zone in inventory.zones},
    }
    if connect:
        summary["connections"] = connections
    failed = [c for c in connections if not c["ok"]]
    if as_json:
        echo_json(summary)
        if failed:
            sys.exit(EXIT_FINDINGS)
        return
    from collections import Counter

    from scanner.output import table

    files = inventory.files if len(inventory.files) <= 3 else (*inventory.files[:2], f"{len(inventory.files) - 2} more")
    echo_line(f"ok: {', '.join(files)} is valid", fg="green")
    from scanner.queries import counted

    click.echo(f"{counted(len(inventory.sources), 'source')}, {counted(len(inventory.workflows), 'workflow')}, "
               f"{counted(len(inventory.owners), 'owner')}, {counted(len(inventory.notify), 'notification target')}, "
               f"{counted(len(inventory.accept), 'accepted finding')}")
    by_connector = Counter(s["connector"] for s in summary["sources"])
    by_stage = Counter(w["stage"] for w in summary["workflows"])
    click.echo("connectors: " + (", ".join(f"{k} {v}" for k, v in sorted(by_connector.items())) or "-")
               + "; stages: " + (", ".join(f"{k} {v}" for k, v in sorted(by_stage.items())) or "-"))
    click.echo("zones: " + (", ".join(f"{zone} ({len(ids)} sources; `ctxscan worker --zone {zone}`)"
                                      for zone, ids in summary["zones"].items())
                            or "none (every source is scanned in-process)") + "\n")
    shown = VALIDATE_ROWS  # one screen: the first rows of each, `--json` has them all
    click.echo(table(["source", "connector", "owner", "schedule"],
                     [[s["id"], s["connector"], s["owner"], s["schedule"]] for s in summary["sources"][:shown]]))
    if len(summary["sources"]) > shown:
        click.echo(f"... and {len(summary['sources']) - shown} more sources (--json lists all)")
    click.echo()
    click.echo(table(["workflow", "stage", "owner", "reads", "feeds"],
                     [[w["id"], w["stage"], w["owner"], w["reads"], ", ".join(w["feeds"]) or "-"]
                      for w in summary["workflows"][:shown]]))
    if len(summary["workflows"]) > shown:
        click.echo(f"... and {len(summary['workflows']) - shown} more workflows (--json lists all)")
    if connect:
        click.echo()
        click.echo(table(["source", "connector", "connection", "time", "detail"],
                         [[c["source"], c["connector"], "ok" if c["ok"] else "FAILED", f"{c['duration']:.2f}s",
                           c["detail"]] for c in connections],
                         colours={2: {"ok": "green", "FAILED": "red"}}))
        if failed:
            click.echo(f"exit 1: {len(failed)} of {len(connections)} sources could not be opened", err=True)
            sys.exit(EXIT_FINDINGS)


def _connect_each(inventory: Any) -> list[dict[str, Any]]:
    """Probe every source once, in parallel, each bounded by its timeout; nothing is stored."""
    import threading
    import time

    from scanner.errors import ProbeError
    from scanner.model import utcnow
    from scanner.plugins import ProbeContext
    from scanner.scan import probe_source

    results: dict[str, dict[str, Any]] = {}

    def attempt(source: Any, timeout: float, cancelled: threading.Event) -> None:
        started = time.monotonic()
        principals = frozenset(w.runs_as[source.id] for w in inventory.workflows.values() if source.id in w.runs_as)
        try:
            snapshot = probe_source(source, ProbeContext(utcnow(), principals=principals, timeout=timeout,
                                                         cancelled=cancelled))
            detail = f"{len(snapshot.assets)} asset{'s' if len(snapshot.assets) != 1 else ''}" + (
                " (partial)" if snapshot.partial else "")
            results[source.id] = {"ok": True, "detail": detail}
        except ProbeError as exc:
            results[source.id] = {"ok": False, "detail": exc.message, "reason": exc.reason}
        results[source.id]["duration"] = time.monotonic() - started

    threads = []
    for source in inventory.sources.values():
        timeout = source.timeout or inventory.defaults.timeout
        cancelled = threading.Event()
        thread = threading.Thread(target=attempt, args=(source, timeout, cancelled), daemon=True)
        thread.start()
        threads.append((source, thread, timeout, cancelled, time.monotonic()))
    out = []
    for source, thread, timeout, cancelled, started in threads:
        thread.join(max(0.0, started + timeout - time.monotonic()))
        if thread.is_alive() or source.id not in results:
            cancelled.set()  # the probe is abandoned; a daemon thread does not hold the exit
            outcome: dict[str, Any] = {"ok": False, "detail": f"no answer within its timeout of {timeout:g}s", "reason": "timeout",
                       "duration": time.monotonic() - started}
        else:
            outcome = results[source.id]
        out.append({"source": source.id, "connector": source.connector, "ok": outcome["ok"],
                    "detail": outcome["detail"], "reason": outcome.get("reason"),
                    "duration": round(outcome["duration"], 3)})
    return out


# ---------------------------------------------------------------------------------------
# scan

def scan_to_json(report: Any) -> dict[str, Any]:
    """The JSON shape of `ctxscan scan --json`."""
    return {
        "scan_id": report.scan_id,
        "status": report.status,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat(),
        "sources": [
            {"id": o.source_id, "connector": o.connector, "status": o.status,
             "duration": round(o.duration, 3),
             "assets": len(o.snapshot.assets) if o.snapshot else None,
             "partial": o.snapshot.partial if o.snapshot else None,
             "notes": list(o.snapshot.notes) if o.snapshot else [],
             "error": o.error, "reason": o.reason}
            for o in report.outcomes
        ],
        "findings": {"opened": len(report.changes.opened) + len(report.changes.reopened),
                     "resolved": len(report.changes.resolved),
                     "escalated": len(report.changes.escalated)},
    }


def accept_warning_records(app: App) -> list[Any]:
    """`accept:` entries that expired or match no open finding, as `validate` warnings
    (check `accept`): validate prints them (errors under --strict), scan prints them too.

    Validate reads an existing store only: checking a file must not create one.
    """
    from scanner.acceptance import accept_warnings, utc_today
    from scanner.validation import ValidationWarning

    inventory = app.inventory()
    if not inventory.accept:
        return []
    from scanner.store import sqlite_path

    try:
        path = sqlite_path(app.state_url())
    except ValueError:
        path = None
    stored: list[Any] = []
    if path is None or (path != ":memory:" and os.path.exists(path)):
        from scanner.errors import CtxscanError

        try:
            stored = app.store().findings(None)
        except CtxscanError:
            stored = []
    return [ValidationWarning(message, entry.file, entry.line, None, "accept")
            for entry, message in accept_warnings(inventory.accept, stored, utc_today(), inventory.workflows)]


def parse_as_of(value: str | None) -> Any:
    """`--as-of TIMESTAMP` as an aware datetime, else now (UTC)."""
    from datetime import UTC, datetime

    from scanner.errors import UsageError
    from scanner.model import utcnow

    if value is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--as-of: {value!r} is not an ISO timestamp (e.g. 2026-01-01T12:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


AS_OF_HELP = "Judge ages as of this UTC time instead of now (reproducible output)."


def open_findings(app: App, now: Any = None, judge: bool = True) -> list[Any]:
    """Open findings that no unexpired `accept:` entry hides, with ages judged `now`
    (`judge=False`: as stored, for a scan of every source that has just judged them)."""
    from scanner.acceptance import acceptance_for
    from scanner.rules import TIME_KINDS, judge_now

    inventory = app.inventory()
    now = now or parse_as_of(None)
    today = now.date()
    store = app.store()
    if judge:
        # What can be open now: the open findings, and the time-dependent ones resolved at a
        # scan (they may fire again at `now`); a resolved finding of another kind stays so.
        found = judge_now(inventory, store, now, store.findings("open", any_status=TIME_KINDS))
    else:
        found = store.findings("open")
    return [f for f in found if f.status == "open" and acceptance_for(f, inventory.accept, today) is None]


@main.command()
@common_options
@click.option("--source", "source_ids", multiple=True, metavar="ID", help="Scan only this source (repeatable).")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Exit 1 when open, unaccepted findings reach this severity.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--broker", default=None, metavar="URL",
              help="Celery broker for sources with a `zone:` (redis://, rediss://, redis+socket:///path or amqp://); default $CTXSCAN_BROKER.")
def scan(source_ids: tuple[str, ...], fail_on: str | None, as_json: bool, broker: str | None) -> None:
    """Probe sources, store what they hold, and evaluate findings."""
    from scanner.scan import run_scan

    app = _app()
    inventory = app.inventory()
    show = progress_enabled()
    prober = _zone_dispatcher(inventory, broker, source_ids)

    def progress(message: str, _outcome: Any) -> None:
        if show:
            echo_line(f"  {message}", err=True)

    # The store opens while the probes run (run_scan calls app.store once they have started).
    report = run_scan(inventory, app.store, list(source_ids) or None, progress=progress, prober=prober)
    from scanner.output import SEVERITY_COLOURS, table

    # A scan of some sources only leaves the others judged at their own scan: judge them now.
    current = open_findings(app, judge=bool(source_ids))
    for warning in accept_warning_records(app):
        click.secho(f"warning: {warning.one_line()}", fg="yellow", err=True)
    if as_json:
        payload = scan_to_json(report)
        payload["findings"]["open"] = len(current)
        echo_json(payload)
    else:
        rows = [[o.source_id, o.connector, o.status, len(o.snapshot.assets) if o.snapshot else "-",
                 f"{o.duration:.2f}s", o.error or ("partial" if o.snapshot and o.snapshot.partial else "")]
                for o in report.outcomes]
        click.echo(table(["source", "connector", "status", "assets", "time", "note"], rows, max_width=90))
        counts: dict[str, int] = {}
        for finding in current:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        parts = [click.style(f"{counts[s]} {s}", fg=SEVERITY_COLOURS[s])
                 for s in SEVERITY_CHOICES if counts.get(s)]
        click.echo(f"\nscan {report.scan_id}: {report.status}; {len(current)} open findings"
                   + (f" ({', '.join(parts)})" if parts else "")
                   + f"; {len(report.changes.opened) + len(report.changes.reopened)} new, "
                     f"{len(report.changes.resolved)} resolved"
                   + (f", {len(report.changes.escalated)} escalated" if report.changes.escalated else "")
                   + ". `ctxscan findings` lists them.")
    unprobed = [o.source_id for o in report.outcomes if o.status != "ok"]
    code = scan_exit_code(_not_accepted(app, unprobed), current, fail_on)
    sys.stdout.flush()  # the report is out; what follows only readies the next query
    warm_graph_cache(app, current, report)
    leave(app, code)


def leave(app: App, code: int) -> NoReturn:
    """Exit with `code`. As the ctxscan program (`run`), without freeing what the command
    built: a 50,000-table snapshot and its graph take ~0.25 s to deallocate, which the
    operating system does for free at exit (output is flushed and the store closed first).
    Called as a function (tests, scripts), an ordinary exit."""
    if _PROGRAM:
        sys.stdout.flush()
        sys.stderr.flush()
        if app._store is not None:
            app._store.close()
        os._exit(code)
    sys.exit(code)


def _not_accepted(app: App, unprobed: list[str]) -> list[str]:
    """Sources that could not be probed, less those whose probe_failed finding is accepted in
    the inventory (a known outage someone signed off must not fail every CI run)."""
    from scanner.acceptance import acceptance_for, utc_today

    if not unprobed or not app.inventory().accept:
        return unprobed
    today = utc_today()
    accepted = {f.source for f in app.store().findings("open")
                if f.kind == "probe_failed" and acceptance_for(f, app.inventory().accept, today) is not None}
    return [source_id for source_id in unprobed if source_id not in accepted]


def scan_exit_code(unprobed: list[str], current: list[Any], fail_on: str | None) -> int:
    """1 when a source could not be probed or open findings reach `--fail-on`, else 0 (said on stderr)."""
    from scanner.store import SEVERITY_RANK

    code = EXIT_OK
    if unprobed:
        shown = ", ".join(unprobed[:5]) + (f" and {len(unprobed) - 5} more" if len(unprobed) > 5 else "")
        click.echo(f"exit 1: {len(unprobed)} source{'s' if len(unprobed) != 1 else ''} could not be probed "
                   f"({shown})", err=True)
        code = EXIT_FINDINGS
    if fail_on is not None:
        threshold = SEVERITY_RANK[fail_on]
        reached = sum(1 for f in current if SEVERITY_RANK.get(f.severity, 0) >= threshold)
        if reached:
            click.echo(f"exit 1: {reached} open finding{'s' if reached != 1 else ''} at or above {fail_on} "
                       "(--fail-on)", err=True)
            code = EXIT_FINDINGS
    return code


# ---------------------------------------------------------------------------------------
# findings

@main.group(invoke_without_command=True)
@common_options
@click.option("--kind", multiple=True, help="Only this kind (repeatable).")
@click.option("--severity", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Only findings at or above this severity.")
@click.option("--status", type=click.Choice(("open", "resolved", "accepted", "all")), default="open",
              show_default=True)
@click.option("--source", "source_id", default=None, help="Only findings about this source.")
@click.option("--workflow", "workflow_id", default=None, help="Only findings about this workflow.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (the same as --format json).")
@click.option("--format", "fmt", type=click.Choice(FINDING_FORMATS), default="table", show_default=True,
              help="table for people; json, csv, markdown; sarif (2.1.0, at the inventory entries) for code "
                   "scanning; ocsf (Detection Finding events) for security data lakes.")
@click.option("--as-of", "as_of", default=None, metavar="TIMESTAMP", help=AS_OF_HELP)
@click.pass_context
def findings(ctx: click.Context, kind: tuple[str, ...], severity: str | None, status: str,
             source_id: str | None, workflow_id: str | None, as_json: bool, fmt: str, as_of: str | None) -> None:
    """List findings from the latest scans; `findings show ID` prints one whole."""
    if ctx.invoked_subcommand is not None:
        return
    from scanner.acceptance import acceptance_for
    from scanner.output import SEVERITY_COLOURS, table
    from scanner.rules import judge_now
    from scanner.store import SEVERITY_RANK

    if as_json:
        fmt = "json"
    app = _app()
    inventory = app.inventory()
    now = parse_as_of(as_of)
    today = now.date()
    # one read serves the filter check and the listing; ages are judged now, not at the scan
    everything = judge_now(inventory, app.store(), now)
    _check_finding_filters(kind, source_id, workflow_id, inventory, everything)
    wanted_status = None if status in ("all", "accepted") else status
    rows = []
    for finding in everything:
        if wanted_status is not None and finding.status != wanted_status:
            continue
        accepted = acceptance_for(finding, inventory.accept, today) if finding.status == "open" else None
        if status == "accepted" and accepted is None:
            continue
        if status == "open" and accepted is not None:
            continue
        if kind and finding.kind not in kind:
            continue
        if severity and SEVERITY_RANK.get(finding.severity, 0) < SEVERITY_RANK[severity]:
            continue
        if source_id and finding.source != source_id:
            continue
        # Every workflow a finding affects (readers and downstream), not only the one it names.
        if workflow_id and finding.workflow != workflow_id and \
                workflow_id not in (finding.evidence.get("workflows") or ()):
            continue
        rows.append((finding, accepted))
    if fmt != "table":
        out = []
        for finding, accepted in rows:
            item = finding.to_json()
            if accepted is not None:
                item["status"] = "accepted"
                item["accepted"] = {"reason": accepted.reason,
                                    "expires": accepted.expires.isoformat() if accepted.expires else None}
            out.append(item)
        _emit_findings(fmt, out, inventory)
        return
    if not rows:
        if not app.store().scans(1):
            click.echo("no scan has run yet: run `ctxscan scan` first")
            return
        click.echo(f"no {status if status != 'all' else ''} findings".replace("  ", " "))
        return
    # The message goes last: on a terminal it wraps there instead of being cut.
    headers = ["severity", "kind", "subject", "first seen", "id", "message"]
    if status != "open":
        headers.insert(0, "status")
    if status == "accepted":
        headers[-1:-1] = ["accepted because", "until"]
    lines = []
    for f, accepted in rows:
        line = [f.severity, f.kind + (f"/{f.subkind}" if f.subkind else ""),
                f.subject, f.first_seen.strftime("%Y-%m-%d %H:%M"), f.fingerprint[:FINDING_ID_CHARS], f.message]
        if status != "open":
            line.insert(0, "accepted" if accepted is not None else f.status)
        if status == "accepted" and accepted is not None:
            line[-1:-1] = [accepted.reason, accepted.expires.isoformat() if accepted.expires else "-"]
        lines.append(line)
    click.echo(table(headers, lines, max_width=60,
                     colours={headers.index("severity"): SEVERITY_COLOURS}))


def _emit_findings(fmt: str, items: list[dict[str, Any]], inventory: Any) -> None:
    """Findings (their `--json` shape) in one of the machine formats."""
    from scanner.redact import scrub

    if fmt == "json":
        echo_json(items)
    elif fmt == "csv":
        from scanner.formats.csv_format import findings_csv

        click.echo(scrub(findings_csv(items)), nl=False)
    elif fmt == "markdown":
        from scanner.formats.markdown import findings_markdown

        click.echo(scrub(findings_markdown(items)), nl=False)
    elif fmt == "ocsf":
        from scanner.formats.ocsf import findings_ocsf

        echo_json(findings_ocsf(items, _version()))
    elif fmt == "sarif":
        from scanner.formats.locate import entry_locations
        from scanner.formats.sarif import findings_sarif

        echo_json(findings_sarif(items, entry_locations(inventory), _rule_help(), _version()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ctxscan")
    except PackageNotFoundError:
        return "0"


def _rule_help() -> dict[str, str]:
    """Each finding kind's one-line description: the first line of its rule's docstring."""
    from scanner.rules import RULES

    return {kind: " ".join((rule.__doc__ or kind).strip().split("\n\n")[0].split())
            for kind, rule in RULES.items()}


def _find_finding(app: App, finding_id: str) -> Any:
    """The stored finding whose fingerprint is, or starts with, `finding_id` (usage error otherwise)."""
    from scanner.errors import UsageError

    wanted = finding_id.strip().lower()
    if len(wanted) < 4:
        raise UsageError(f"finding id {finding_id!r} is too short: give at least 4 characters of it "
                         "(the ID column of `ctxscan findings`)")
    matches = [f for f in app.store().findings(None) if f.fingerprint.lower().startswith(wanted)]
    if not matches:
        raise UsageError(f"no finding with id {finding_id!r} (`ctxscan findings --status all` lists them)")
    if len(matches) > 1:
        raise UsageError(f"finding id {finding_id!r} is ambiguous: {len(matches)} findings start with it "
                         f"({', '.join(f.fingerprint[:FINDING_ID_CHARS + 4] for f in matches[:3])}...)")
    return matches[0]


@findings.command("show")
@common_options
@click.argument("finding_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the finding as JSON.")
def findings_show(finding_id: str, as_json: bool) -> None:
    """One finding whole: message, evidence, where it is declared, remediation and its history."""
    from scanner.acceptance import acceptance_for, utc_today
    from scanner.formats.locate import entry_locations, locate
    from scanner.output import SEVERITY_COLOURS
    from scanner.redact import printable

    app = _app()
    finding = _find_finding(app, finding_id)
    inventory = app.inventory()
    accepted = acceptance_for(finding, inventory.accept, utc_today()) if finding.status == "open" else None
    item = finding.to_json()
    if accepted is not None:
        item["status"] = "accepted"
        item["accepted"] = {"reason": accepted.reason,
                            "expires": accepted.expires.isoformat() if accepted.expires else None}
    at = locate(item, entry_locations(inventory))
    item["declared_at"] = ({"file": at.file, "line": at.line, "column": at.column, "entry": at.entry}
                           if at is not None else None)
    if as_json:
        echo_json(item)
        return
    from scanner.output import dump_json

    kind = finding.kind + (f"/{finding.subkind}" if finding.subkind else "")
    click.echo(click.style(finding.severity.upper(), fg=SEVERITY_COLOURS.get(finding.severity), bold=True)
               + f" {kind}: {printable(finding.subject)}  ({item['status']})")
    click.echo(f"id: {finding.fingerprint}")
    click.echo()
    click.echo(printable(finding.message))
    subject = [(name, getattr(finding, name)) for name in ("source", "asset", "workflow", "principal")]
    click.echo()
    for name, value in subject:
        if value:
            click.echo(f"{name + ':':<12}{printable(value)}")
    if at is not None:
        click.echo(f"{'declared:':<12}{at.file}:{at.line} ({at.entry})")
    if finding.remediation:
        click.echo("\nremediation:\n  " + printable(finding.remediation))
    click.echo("\nhistory:")
    click.echo(f"  first seen  {finding.first_seen.isoformat(timespec='seconds')}")
    click.echo(f"  last seen   {finding.last_seen.isoformat(timespec='seconds')}")
    click.echo(f"  opened      {finding.times_opened} time{'s' if finding.times_opened != 1 else ''}")
    if finding.resolved_at is not None:
        click.echo(f"  resolved    {finding.resolved_at.isoformat(timespec='seconds')}")
    if accepted is not None:
        until = accepted.expires.isoformat() if accepted.expires else "-"
        click.echo(f"  accepted    until {until}: {printable(accepted.reason)}")
    if finding.evidence:
        click.echo("\nevidence:")
        for line in dump_json(dict(finding.evidence)).splitlines():
            click.echo("  " + printable(line))
    if finding.status == "open" and accepted is None:
        click.echo(f"\naccept it: ctxscan accept {finding.fingerprint[:FINDING_ID_CHARS]} "
                   "--until YYYY-MM-DD --reason TEXT")


@main.command()
@common_options
@click.argument("finding_id", metavar="ID")
@click.option("--until", "until", required=True, metavar="YYYY-MM-DD",
              help="Last day the finding stays accepted; from the day after, it counts again.")
@click.option("--reason", required=True, help="Why it is accepted (shown with the finding).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def accept(finding_id: str, until: str, reason: str, as_json: bool) -> None:
    """Accept a finding: append an `accept:` entry to the inventory file that declares its subject."""
    from datetime import date

    from scanner.acceptance import utc_today
    from scanner.errors import CtxscanError, UsageError
    from scanner.formats.locate import entry_locations, locate
    from scanner.inventory import load_inventory
    from scanner.inventory_edit import append_accept

    try:
        expires = date.fromisoformat(until)
    except ValueError:
        raise UsageError(f"--until: {until!r} is not a date (write YYYY-MM-DD)") from None
    if expires < utc_today():
        raise UsageError(f"--until {until} is in the past: an acceptance must still be valid today")
    if not reason.strip():
        raise UsageError("--reason is empty: say why the finding is accepted")
    app = _app()
    finding = _find_finding(app, finding_id)
    inventory = app.inventory()
    at = locate(finding.to_json(), entry_locations(inventory))
    target = at.file if at is not None else inventory.files[0]
    from pathlib import Path

    path = Path(target)
    original = path.read_text(encoding="utf-8")
    try:
        updated = append_accept(original, finding.fingerprint, finding.kind, finding.subject, expires,
                                " ".join(reason.split()))
    except ValueError as exc:
        raise UsageError(f"{target}: {exc}") from None
    partial = path.with_name(f".{path.name}.accept.tmp")
    partial.write_text(updated, encoding="utf-8")
    try:
        # The edited inventory must still load, checked as `validate` would, before it replaces the file.
        others = [f if f != target else str(partial) for f in inventory.files]
        load_inventory(others, strict_env=False)
    except CtxscanError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    if as_json:
        echo_json({"fingerprint": finding.fingerprint, "file": target, "expires": expires.isoformat(),
                   "reason": reason})
        return
    click.echo(f"accepted {finding.kind} on {finding.subject} until {expires.isoformat()}: "
               f"appended to {target}")


def _check_finding_filters(kinds: tuple[str, ...], source_id: str | None, workflow_id: str | None,
                           inventory: Any, stored: list[Any]) -> None:
    """An unknown kind, source or workflow is a usage error, not an empty list."""
    import difflib

    from scanner.errors import UsageError
    from scanner.rules import RULES

    def check(value: str, known: set[str], what: str) -> None:
        if value not in known:
            close = difflib.get_close_matches(value, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"
            raise UsageError(f"unknown {what} {value!r}{hint}")

    for kind in kinds:
        check(kind, set(RULES), "finding kind")
    if source_id:
        check(source_id, set(inventory.sources) | {f.source for f in stored if f.source}, "source")
    if workflow_id:
        check(workflow_id, set(inventory.workflows) | {f.workflow for f in stored if f.workflow}, "workflow")


# ---------------------------------------------------------------------------------------
# demo

@main.command()
@click.option("--dir", "directory", default="ctxscan-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where to build the demo estate.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--graphs", "graphs", default=None, type=click.Path(file_okay=False),
              help="Where to write the graph exports (default: DIR/graphs).")
@click.option("--as-of", "as_of", default=None, metavar="TIMESTAMP",
              help="Build and scan the estate as if it were this UTC time (reproducible exports).")
def demo(directory: str, as_json: bool, graphs: str | None, as_of: str | None) -> None:
    """Build a small demo estate (SQLite + files), scan it and show the results."""
    from scanner.demo import run_demo

    now = None
    if as_of is not None:
        from datetime import UTC, datetime

        from scanner.errors import UsageError

        try:
            now = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--as-of: {as_of!r} is not an ISO timestamp (e.g. 2026-01-01T12:00:00Z)") from None
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        result = run_demo(directory, echo=None if as_json else click.echo, graphs=graphs, now=now)
    except OSError as exc:
        from scanner.errors import UsageError

        where = exc.filename or directory
        raise UsageError(f"cannot build the demo in {where}: {exc.strerror or exc} (choose another --dir)") from None
    if as_json:
        echo_json(result)


# Later features register their commands below this line (graph, readiness, daemon).


# ---------------------------------------------------------------------------------------
# daemon

def _duration_option(value: str, name: str) -> float:
    from scanner.durations import parse_duration
    from scanner.errors import UsageError

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


@main.command()
@common_options
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve /healthz and /metrics on this port (0: any free port, logged). Default: off.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the HTTP endpoint binds to.")
@click.option("--log-format", type=click.Choice(("text", "json")), default="text", show_default=True,
              help="Logs on stderr as text or as one JSON object a line.")
@click.option("--log-level", type=click.Choice(("debug", "info", "warning", "error")), default="info",
              show_default=True)
@click.option("--once", is_flag=True, help="Scan every source once, deliver notifications, and exit.")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="With --once: exit 1 when open, unaccepted findings reach this severity.")
@click.option("--stop-timeout", default="10s", show_default=True, metavar="DURATION",
              help="On SIGTERM/SIGINT, how long running scans get before they are abandoned.")
@click.option("--retry-max", default="5m", show_default=True, metavar="DURATION",
              help="Longest wait between two delivery attempts to a failing notification target.")
@click.option("--broker", default=None, metavar="URL",
              help="Celery broker for sources with a `zone:` (redis://, rediss://, redis+socket:///path or amqp://); default $CTXSCAN_BROKER.")
@click.option("--lease", default="15s", show_default=True, metavar="DURATION",
              help="Leader lease: a standby daemon on the same store takes over within twice this.")
def daemon(metrics_port: int | None, metrics_host: str, log_format: str, log_level: str, once: bool,
           fail_on: str | None, stop_timeout: str, retry_max: str, broker: str | None, lease: str) -> None:
    """Scan each source on its schedule, notify on findings, serve /healthz and /metrics."""
    from scanner.daemon import Daemon, DaemonOptions, configure_logging

    options = DaemonOptions(metrics_host=metrics_host, metrics_port=metrics_port,
                            stop_timeout=_duration_option(stop_timeout, "--stop-timeout"),
                            retry_max=_duration_option(retry_max, "--retry-max"),
                            lease=_duration_option(lease, "--lease"))
    configure_logging(log_format, log_level)
    app = _app()
    inventory = app.inventory()
    store = app.store()
    dispatcher = _zone_dispatcher(inventory, broker, ())
    executor = None
    if dispatcher is not None:
        from scanner.zones.dispatch import ZoneExecutor

        zoned = sum(1 for s in inventory.sources.values() if s.zone)
        executor = ZoneExecutor(store, dispatcher, min(256, inventory.defaults.concurrency + zoned))
    runner = Daemon(inventory, store, app.config_paths(), options, executor=executor)
    runner.install_signal_handlers()
    if fail_on is not None and not once:
        from scanner.errors import UsageError

        raise UsageError("--fail-on needs --once (a daemon that runs on has no exit code to give)")
    code = runner.run_once() if once else runner.serve_forever()
    if once and code == EXIT_OK:
        code = scan_exit_code(_not_accepted(app, runner.unprobed), open_findings(app), fail_on)
    store.close()
    _exit_promptly(code)


def _exit_promptly(code: int) -> None:
    """Exit now: a worker thread that outlived the stop deadline must not hold the process."""
    import logging
    import threading
    import time

    deadline = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [t for t in threading.enumerate()
                 if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if lingering:
        os._exit(code)
    sys.exit(code)


# ---------------------------------------------------------------------------------------
# readiness

@main.command()
@common_options
@click.argument("workflow_id", metavar="[WORKFLOW]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when a workflow shown is not ready.")
@click.option("--format", "fmt", type=click.Choice(READINESS_FORMATS), default="table", show_default=True,
              help="table for people; json; markdown; junit (a test case per check, for CI dashboards).")
@click.option("--as-of", "as_of", default=None, metavar="TIMESTAMP", help=AS_OF_HELP)
def readiness(workflow_id: str | None, as_json: bool, strict: bool, fmt: str, as_of: str | None) -> None:
    """The production-readiness card of each workflow (or one): seven checks, each with its reason."""
    import difflib

    from scanner.errors import UsageError
    from scanner.model import utcnow
    from scanner.readiness import assess, render_cards
    from scanner.redact import scrub

    app = _app()
    inventory = app.inventory()
    if workflow_id is not None and workflow_id not in inventory.workflows:
        close = difflib.get_close_matches(workflow_id, list(inventory.workflows), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown workflow {workflow_id!r}{hint}")
    now = parse_as_of(as_of) if as_of else utcnow()
    cards = assess(inventory, app.store(), now, [workflow_id] if workflow_id else None)
    if as_json or fmt == "json":
        echo_json({"as_of": now.isoformat(), "ready": all(c.ready for c in cards),
                   "workflows": [c.to_json() for c in cards]})
    elif fmt == "markdown":
        from scanner.formats.markdown import readiness_markdown

        click.echo(scrub(readiness_markdown([c.to_json() for c in cards])), nl=False)
    elif fmt == "junit":
        from scanner.formats.junit import readiness_junit

        click.echo(scrub(readiness_junit([c.to_json() for c in cards], now.isoformat(timespec="seconds"))), nl=False)
    else:
        click.echo(scrub(render_cards(cards)))
    if strict and not all(card.ready for card in cards):
        sys.exit(EXIT_FINDINGS)


# ---------------------------------------------------------------------------------------
# graph: feeds, depends, why, graph export (all read the store, never probe)

GRAPH_FORMATS = ("graphml", "gexf", "json", "dot", "mermaid", "html")


def query_graph(app: App) -> Any:
    """The dependency graph: from the store's cache when the inventory and store are unchanged,
    else built from the inventory and the latest stored scan, and cached. Never probes.

    On a cache hit the inventory is not parsed (that alone takes most of a second on a large
    estate): the cache key is a fingerprint of the inventory files and the environment
    variables they use, plus the store's state.
    """
    from scanner.graph import config_fingerprint, declared_state, quick_cached_graph
    from scanner.locations import as_state_url, default_state_url

    paths = app.config_paths()
    fingerprint = config_fingerprint(paths)
    guessed = None
    if fingerprint is not None and app.state is None and not os.environ.get("CTXSCAN_STATE"):
        known, declared = declared_state(paths)
        if known:
            guessed = app.state = default_state_url(paths, declared)
    url = app.state or os.environ.get("CTXSCAN_STATE")
    if url:
        url = as_state_url(url)
    if fingerprint is not None and url:
        quick = quick_cached_graph(url, fingerprint)
        if quick is not None:
            if app.verbose:  # answered from the cache: no store or inventory was opened to say so
                from scanner.redact import redact_url

                click.echo(f"inventory: {', '.join(paths)}\nstore: {redact_url(url)} (cached graph)", err=True)
            return quick

    from scanner.graph import cache_key, graph_from_store, load_cached

    store = app.store()
    key = cache_key(fingerprint, store.state_key()) if fingerprint else None
    if key is not None:
        cached = load_cached(store, key)
        if cached is not None:
            return cached
    inventory = app.inventory()
    if guessed is not None and default_state_url(paths, inventory.state) != guessed:
        app.state, app._store = default_state_url(paths, inventory.state), None
        store = app.store()
        key = cache_key(fingerprint, store.state_key()) if fingerprint else None
    if key is None:
        return graph_from_store(inventory, store, open_findings(app))
    return cache_graph(store, key, inventory, open_findings(app))


def cache_graph(store: Any, key: str, inventory: Any, findings: list[Any],
                held: dict[str, Any] | None = None, unfreed: bool = False) -> Any:
    """Build the graph from the store (and `held`, latest snapshots already in memory), cache it
    under `key`, and return it as the cache reads it. `unfreed`: the program exits next
    (`leave`), so what was built is left for the operating system to free."""
    from scanner.errors import StoreError
    from scanner.graph import decode_graph, encode_parts, parts_from_store

    parts = parts_from_store(inventory, store, findings, held=held)
    blob = encode_parts(parts)
    if unfreed and _PROGRAM:
        _UNFREED.append(parts)  # the operating system frees them at exit (~0.13 s at 50,000 assets)
    try:
        store.cache_put(key, blob)
    except StoreError:
        pass  # a read-only store, or another process caching the same graph: answer anyway
    return decode_graph(blob)


WARM_MIN_ASSETS = 20_000


def warm_graph_cache(app: App, findings: list[Any] | None = None, report: Any = None) -> None:
    """After a scan: build and cache the graph the queries will ask for, so that the first
    `feeds`/`depends` after a scan answers from the cache instead of building it. The scan's
    `report` lends its snapshots where they are still the store's latest."""
    from scanner.errors import StoreError
    from scanner.graph import cache_key, config_fingerprint

    if not app.inventory().workflows:
        return  # the queries ask about workflows; an inventory of sources alone pays nothing here
    fingerprint = config_fingerprint(app.config_paths())
    if fingerprint is None:
        return
    try:
        store = app.store()
        # Below this many assets the first query builds the graph well within a second itself,
        # and the scan need not pay for it (a 5,000-table scan would take ~60% longer).
        key = cache_key(fingerprint, store.state_key())
        latest = store.latest_results(list(app.inventory().sources))
        least = int(os.environ.get("CTXSCAN_GRAPH_WARM_ASSETS") or WARM_MIN_ASSETS)
        if sum(result.asset_count or 0 for result in latest.values()) < least:
            return
        # This scan's snapshots, where the store's newest result of the source is this scan's
        # (another scan may have stored a newer one since): decoding them again from the store
        # would cost as much as the rest of this step.
        held = {o.source_id: o.snapshot for o in (report.outcomes if report is not None else ())
                if o.status == "ok" and o.snapshot is not None and o.source_id in latest
                and latest[o.source_id].scan_id == report.scan_id and latest[o.source_id].status == "ok"}
        cache_graph(store, key, app.inventory(), open_findings(app) if findings is None else findings, held,
                    unfreed=True)
    except (StoreError, ValueError):
        pass  # the scan is stored; the first query builds the graph itself


def _path_text(path: list[str]) -> str:
    from scanner.graph import public_id

    return " -> ".join(public_id(node) for node in path)


@main.command()
@common_options
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {target, workflows: [{id, direct, path}]}.")
def feeds(target: str, as_json: bool) -> None:
    """Workflows fed by a source, an asset or a glob (crm:public.*), directly or downstream."""
    from scanner.graph import workflow_node
    from scanner.output import table
    from scanner.queries import feeds as feeds_query

    graph = query_graph(_app())
    answer = feeds_query(graph, target)
    if as_json:
        echo_json(answer)
        return
    workflows = answer["workflows"]
    if not workflows:
        echo_line(f"{target} feeds no workflow")
        return
    direct = sum(1 for w in workflows if w["direct"])
    echo_line(f"{target} feeds {len(workflows)} workflow{'s' if len(workflows) != 1 else ''} "
               f"({direct} directly)\n")
    rows = []
    for workflow in workflows:
        attrs = graph.nodes[workflow_node(workflow["id"])]
        rows.append([workflow["id"], attrs.get("stage"), attrs.get("owner"), attrs.get("status"),
                     "yes" if workflow["direct"] else "no", _path_text(workflow["path"])])
    click.echo(table(["workflow", "stage", "owner", "status", "direct", "path"], rows, max_width=100))


def _sla_setter(asset: dict[str, Any]) -> str:
    """Who set an asset's effective SLA, in a word or two (`depends --json` has it as sla_set_by)."""
    if asset.get("sla_seconds") is None:
        return "-"
    return str(asset.get("sla_set_by") or "source")  # else the workflow whose max_age is strictest


def _finding_counts(entry: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for finding in entry["findings"]:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    order = ("critical", "high", "medium", "low", "info")
    text = ", ".join(f"{counts[s]} {s}" for s in order if s in counts) or "-"
    if "findings_total" in entry:  # the graph lists the most severe only
        text += f" (of {entry['findings_total']})"
    return text


@main.command()
@common_options
@click.argument("workflow_id", metavar="WORKFLOW")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def depends(workflow_id: str, as_json: bool) -> None:
    """Assets and sources behind a workflow (also through upstream workflows), with freshness,
    SLA, owner and open findings."""
    from scanner.durations import format_duration
    from scanner.model import utcnow
    from scanner.output import table
    from scanner.queries import counted
    from scanner.queries import depends as depends_query

    answer = depends_query(query_graph(_app()), workflow_id, utcnow())
    if as_json:
        echo_json(answer)
        return
    sources = answer["sources"]
    echo_line(f"{workflow_id} ({answer['stage']}, owner {answer['owner'] or 'none'}, {answer['status']}): "
               f"{counted(len(answer['assets']), 'asset')} in {counted(len(sources), 'source')}"
               + (f", through {counted(len(answer['upstream']), 'upstream workflow')}"
                  if answer["upstream"] else ""))
    for finding in answer["findings"]:
        echo_line(f"  {finding['severity']} {finding['kind']}: {finding['message']}")
    if "findings_total" in answer:
        echo_line(f"  ... {answer['findings_total'] - len(answer['findings'])} more: "
                  f"ctxscan findings --workflow {workflow_id}")
    if answer["assets"]:
        click.echo()
        click.echo(table(
            ["asset", "read by", "method", "age", "sla", "sla set by", "freshness", "owner", "findings"],
            [[a["id"], ", ".join(a["read_by"]) or "upstream of " + (a.get("derived_path") or ["?"])[-1],
              a["freshness"]["method"],
              format_duration(a["freshness"]["age_seconds"]), format_duration(a["sla_seconds"]),
              _sla_setter(a), a["freshness_state"], a["owner"], _finding_counts(a)]
             for a in answer["assets"]],
            max_width=60))
    if sources:
        click.echo()
        click.echo(table(["source", "connector", "owner", "last scan", "status", "findings"],
                         [[s["id"], s["connector"], s["owner"], s["scan_status"], s["status"],
                           _finding_counts(s)] for s in sources]))
    if answer["upstream"]:
        click.echo()
        click.echo(table(["upstream workflow", "stage", "status", "path"],
                         [[u["id"], u["stage"], u["status"], _path_text(u["path"])] for u in answer["upstream"]],
                         max_width=100))
    if answer["runs_as"]:
        echo_line("\nruns as: " + ", ".join(f"{r['principal']} in {r['source']}"
                                             + (" (privileged)" if r["privileged"] else "")
                                             for r in answer["runs_as"]))


@main.command()
@common_options
@click.argument("workflow_id", metavar="WORKFLOW")
@click.argument("asset_id", metavar="[ASSET]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the access paths as JSON.")
def why(workflow_id: str, asset_id: str | None, as_json: bool) -> None:
    """Every access path from the principal a workflow runs as to an asset: as itself, after
    SET ROLE, and by escalation. Without ASSET, every asset of the workflow's sources."""
    from scanner.queries import why as why_query
    from scanner.queries import why_all, why_target

    app = _app()
    graph = query_graph(app)
    if asset_id is None:
        from scanner.queries import why_assets

        sources = sorted({a.partition(":")[0] for a in why_assets(graph, workflow_id)})
        everything = why_all(graph, app.store().latest_snapshots(sources), workflow_id)
        if as_json:
            echo_json(everything["assets"])
            return
        _why_table(everything)
        return
    source_id, _ = why_target(graph, workflow_id, asset_id)
    snapshot = app.store().latest_snapshots([source_id]).get(source_id)
    answer = why_query(graph, snapshot, workflow_id, asset_id)
    if as_json:
        echo_json(answer)
        return
    principal = answer["principal"]
    if principal is not None:
        declared = answer["declared_access"]
        echo_line(f"{workflow_id} runs as {principal} in {source_id}; "
                   + (f"it declares {declared} access to {answer['asset']}" if declared
                      else f"it does not declare a read of {answer['asset']}")
                   + (f" (it reads {answer['derived_path'][-1]}, derived from it via "
                      f"{' -> '.join(answer['derived_path'])})" if answer.get("derived_path") else ""))
    for sentence in answer["sentences"]:
        echo_line(sentence)
    for title, key in (("as itself", "paths"), ("after SET ROLE", "paths_via_set_role"),
                       ("by escalation", "escalation")):
        if answer[key]:
            click.echo(f"{title}:")
            for path in answer[key]:
                flags = [flag for flag, on in (("public", path["public"]), ("privileged", path["privileged"])) if on]
                echo_line(f"  {path['description']}" + (f"  [{', '.join(flags)}]" if flags else ""))
    if answer["note"]:
        click.echo(answer["note"])


def _why_table(everything: dict[str, Any]) -> None:
    from scanner.output import table

    def yes(value: Any) -> str:
        return "?" if value is None else "yes" if value else "-"

    rows = []
    for a in everything["assets"]:
        set_role = [v for v, on in (("read", a["can_read_via_set_role"] and not a["can_read"]),
                                    ("write", a["can_write_via_set_role"] and not a["can_write"])) if on]
        escalation = [v for v, on in (("read", a["can_read_escalation"] and not a["can_read_via_set_role"]),
                                      ("write", a["can_write_escalation"] and not a["can_write_via_set_role"])) if on]
        unknown = "?" if a["can_read"] is None else "-"
        rows.append([a["asset"], a["principal"], a["declared_access"] or "-", yes(a["can_read"]),
                     yes(a["can_write"]), ", ".join(set_role) or unknown, ", ".join(escalation) or unknown,
                     len(a["paths"]) + len(a["paths_via_set_role"]) + len(a["escalation"])])
    click.echo(table(["asset", "principal", "declared", "read", "write", "after set role", "escalation", "paths"],
                     rows, max_width=60))
    for sentence in everything["sentences"]:
        click.echo(sentence)
    # Notes that hold for a whole source (no runs_as, no scan, unknown principal), once each.
    notes = dict.fromkeys(a["note"] for a in everything["assets"]
                          if a["note"] and not a["note"].startswith(("no access:", a["asset"])))
    for note in notes:
        click.echo(note)


@main.group("graph")
def graph_group() -> None:
    """The dependency graph for architecture reviews."""


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "graph"


@graph_group.command("export")
@common_options
@click.option("--format", "fmt", type=click.Choice(GRAPH_FORMATS), default="html", show_default=True,
              help="graphml, gexf and json (networkx node-link) for tools; dot, mermaid and html to look at.")
@click.option("-o", "--output", "output", default=None, metavar="PATH",
              help="Where to write ('-' for stdout); default graphs/ctxscan[-SLICE].EXT in the current folder.")
@click.option("--workflow", "workflow_ids", multiple=True, metavar="ID",
              help="Keep only what touches this workflow (repeatable).")
@click.option("--source", "source_ids", multiple=True, metavar="ID",
              help="Keep only what touches this source (repeatable).")
@click.option("--depth", type=click.IntRange(0, None), default=None, metavar="N",
              help="With a slice: follow at most N workflow-to-workflow feeds hops.")
def graph_export(fmt: str, output: str | None, workflow_ids: tuple[str, ...], source_ids: tuple[str, ...],
                 depth: int | None) -> None:
    """Export the whole graph, or a slice, as GraphML, GEXF, JSON, DOT, Mermaid or HTML."""
    from pathlib import Path

    from scanner.errors import UsageError
    from scanner.export import EXTENSIONS, canonical, export_graph, mermaid_markdown
    from scanner.graph import slice_graph
    from scanner.queries import closest

    if depth is not None and not (workflow_ids or source_ids):
        raise UsageError("--depth needs a slice: add --workflow ID or --source ID")
    graph = query_graph(_app())
    for workflow_id in workflow_ids:
        if workflow_id not in graph.graph.get("workflows", ()):
            near = closest(graph, workflow_id)
            raise UsageError(f"unknown workflow {workflow_id!r}" + (f"; closest: {', '.join(near)}" if near else ""))
    for source_id in source_ids:
        if source_id not in graph.graph.get("sources", ()):
            near = closest(graph, source_id)
            raise UsageError(f"unknown source {source_id!r}" + (f"; closest: {', '.join(near)}" if near else ""))
    chosen = canonical(slice_graph(graph, workflow_ids, source_ids, depth) if workflow_ids or source_ids
                       else graph)
    from scanner.export import HTML_MAX_NODES

    if fmt == "html" and chosen.number_of_nodes() > HTML_MAX_NODES:
        raise UsageError(f"the graph has {chosen.number_of_nodes():,} nodes; the HTML page stays usable up to "
                         f"{HTML_MAX_NODES:,}: export a slice with --workflow ID or --source ID, or use "
                         "--format graphml for a graph tool")
    explicit = output
    if output is None:
        parts = [f"workflow-{w}" for w in workflow_ids] + [f"source-{s}" for s in source_ids]
        stem = "ctxscan" + ("-" + _slug("-".join(parts)) if parts else "")
        output = str(Path("graphs") / f"{stem}.{EXTENSIONS[fmt]}")
    if fmt == "mermaid" and output != "-" and output.endswith(".md"):
        from scanner.redact import scrub

        data = scrub(mermaid_markdown(chosen)).encode("utf-8")
    else:
        data = export_graph(chosen, fmt)
    summary = f"{chosen.number_of_nodes()} nodes, {chosen.number_of_edges()} edges"
    if fmt == "mermaid" and chosen.number_of_edges() > 500:
        click.echo(f"warning: {summary}; GitHub renders Mermaid diagrams of up to 500 edges "
                   "(export a slice with --workflow or --source)", err=True)
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from scanner.atomic import write_atomically
    from scanner.errors import UsageError

    target = Path(output)
    if target.is_dir() and not target.is_symlink():
        raise UsageError(f"-o {output} is a folder; give a file name, e.g. "
                         f"{target / ('ctxscan.' + EXTENSIONS[fmt])}")
    # Only the default graphs/ folder is created; an explicit -o in a missing folder is a typo.
    write_atomically(target, data, create_folder=explicit is None)
    click.echo(f"wrote {target} ({fmt}, {summary})", err=True)


# ---------------------------------------------------------------------------------------
# zones and history

def _zone_dispatcher(inventory: Inventory, broker: str | None, source_ids: tuple[str, ...]) -> Any:
    """The dispatcher for zoned sources, or None when every chosen source runs in-process."""
    from scanner.errors import UsageError
    from scanner.zones import BROKER_ENV, broker_url

    url = broker_url(broker)
    chosen = [inventory.sources[i] for i in source_ids if i in inventory.sources] if source_ids \
        else list(inventory.sources.values())
    zoned = [s for s in chosen if s.zone]
    if url is None:
        if zoned:
            raise UsageError(f"source {zoned[0].id} has zone {zoned[0].zone!r}: pass --broker URL "
                             f"or set {BROKER_ENV} (and run `ctxscan worker --zone {zoned[0].zone}` there)")
        return None
    from scanner.zones.dispatch import ZoneDispatcher

    return ZoneDispatcher(url)


@main.command()
@click.option("--zone", required=True, metavar="NAME", help="The zone whose sources this worker probes.")
@click.option("--broker", default=None, metavar="URL", help="Celery broker; default $CTXSCAN_BROKER.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Probes at once.")
@click.option("--log-level", type=click.Choice(("debug", "info", "warning", "error")), default="info",
              show_default=True)
def worker(zone: str, broker: str | None, concurrency: int, log_level: str) -> None:
    """A Celery worker that probes the sources of one zone (credentials from its own environment)."""
    import re

    from scanner.errors import UsageError
    from scanner.zones import BROKER_ENV, broker_url

    url = broker_url(broker)
    if url is None:
        raise UsageError(f"pass --broker URL or set {BROKER_ENV}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", zone):
        raise UsageError(f"{zone!r} is not a valid zone (letters, digits, '_', '-', '.')")
    from scanner.daemon import configure_logging
    from scanner.zones.worker import run_worker

    configure_logging("text", log_level)
    sys.exit(run_worker(zone, url, concurrency, log_level))


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
def prune(as_json: bool) -> None:
    """Apply `retention:` to the scan history (the newest result of each source is kept)."""
    from scanner.model import utcnow

    app = _app()
    inventory = app.inventory()
    summary: dict[str, Any]
    if inventory.retention_scans is None:
        summary = {"retention": None, "scans_deleted": 0, "results_deleted": 0}
    else:
        from datetime import timedelta

        cutoff = utcnow() - timedelta(seconds=inventory.retention_scans)
        scans, results = app.store().prune_history(cutoff)
        summary = {"retention": inventory.retention_scans, "cutoff": cutoff.isoformat(),
                   "scans_deleted": scans, "results_deleted": results}
    if as_json:
        echo_json(summary)
    elif summary["retention"] is None:
        click.echo("no `retention:` in the inventory; nothing pruned")
    else:
        click.echo(f"pruned {summary['scans_deleted']} scans and {summary['results_deleted']} results "
                   f"older than {summary['cutoff']}")


# ---------------------------------------------------------------------------------------
# import (scanner.lineage)

@main.group("import")
def import_group() -> None:
    """Learn assets, lineage, owners and workflows from the tools a team already runs."""


def _write_atomically(output: str, text: str) -> None:
    from pathlib import Path

    from scanner.errors import UsageError

    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"-o {output} is a folder; give a file name")
    partial = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


@import_group.command("dbt")
@common_options
@click.argument("manifest", metavar="MANIFEST")
@click.option("--source", "source_id", required=True, metavar="ID",
              help="The ctxscan source that holds the dbt project's warehouse.")
@click.option("-o", "--output", "output", default="ctxscan.dbt.yaml", show_default=True, metavar="FILE",
              help="The inventory file to write ('-' for stdout); merge it with -c.")
def import_dbt(manifest: str, source_id: str, output: str) -> None:
    """Write an inventory file from a dbt manifest.json: asset overrides with owners, freshness
    and derived_from on one source, and a workflow per exposure."""
    import re
    from pathlib import Path

    from scanner.errors import UsageError
    from scanner.lineage.dbt import import_manifest, read_manifest, render

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", source_id):
        raise UsageError(f"--source {source_id!r} is not a valid source id")
    data = read_manifest(manifest)
    imported = import_manifest(data, source_id, Path(manifest).name)
    _write_atomically(output, render(imported))
    assets = len(imported["sources"][0]["assets"])
    workflows = len(imported.get("workflows", ()))
    if output != "-":
        click.echo(f"wrote {output}: {assets} assets on source {source_id}, {workflows} workflows "
                   f"(merge it: -c {(_app().config_paths() or ['ctxscan.yaml'])[0]} -c {output})", err=True)


@import_group.command("openlineage")
@common_options
@click.argument("events_file", metavar="FILE.jsonl")
@click.option("--json", "as_json", is_flag=True, help="Print what was stored as JSON.")
def import_openlineage(events_file: str, as_json: bool) -> None:
    """Store the reads and writes OpenLineage run events observed (one JSON event a line;
    '-' for stdin), then evaluate the findings again. The daemon takes the same events at
    POST /api/v1/lineage."""
    from datetime import UTC, datetime

    from scanner.errors import UsageError
    from scanner.lineage.observed import load_observed
    from scanner.lineage.openlineage import LineageEventError, ingest, parse_lines

    app = _app()
    inventory = app.inventory()
    received = datetime.now(UTC)
    try:
        if events_file == "-":
            events = parse_lines(sys.stdin.buffer, received, "<stdin>")
        else:
            with open(events_file, "rb") as handle:
                events = parse_lines(handle, received, events_file)
    except FileNotFoundError:
        raise UsageError(f"{events_file}: no such file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {events_file}: {exc.strerror or exc}") from None
    except LineageEventError as exc:
        raise UsageError(f"{exc} (nothing was stored)") from None
    store = app.store()
    edges, jobs = ingest(store, events)
    observed = load_observed(inventory, store)
    mapped = sum(1 for e in observed.edges if e.asset is not None and e.workflows)
    if store.scans(1):   # findings compare what was observed with the newest scan
        from scanner.model import utcnow
        from scanner.rules import build_context, evaluate

        now = utcnow()
        store.sync_findings(lambda: evaluate(build_context(inventory, store, now)), now)
    summary = {"events": len(events), "edges": edges, "jobs": jobs, "observed_edges": len(observed.edges),
               "mapped_edges": mapped, "workflows_seen": sorted(observed.jobs)}
    if as_json:
        echo_json(summary)
        return
    click.echo(f"stored {len(events)} events ({edges} job-dataset edges, {jobs} jobs); "
               f"{mapped} of {len(observed.edges)} observed edges map to a workflow and an asset")


# ---------------------------------------------------------------------------------------
# init (scanner.lineage.starter)

@main.command()
@common_options
@click.argument("targets", nargs=-1, metavar="[URL-or-path ...]")
@click.option("-o", "--output", "output", default="ctxscan.yaml", show_default=True, metavar="FILE",
              help="Where to write the starter inventory ('-' for stdout); never overwritten.")
@click.option("--timeout", "timeout", default="30s", show_default=True, metavar="DURATION",
              help="How long each probe may take.")
def init(targets: tuple[str, ...], output: str, timeout: str) -> None:
    """Probe databases (postgresql://, mysql://), buckets (s3://), BigQuery (bigquery://),
    SQLite files and folders, and write a starter inventory that passes validate."""
    from pathlib import Path

    from scanner.errors import UsageError
    from scanner.lineage.starter import starter_inventory

    if output != "-" and Path(output).exists():
        raise UsageError(f"{output} exists; ctxscan init never overwrites a file (choose another with -o)")
    text, sources = starter_inventory(list(targets), Path.cwd(), _duration_option(timeout, "--timeout"))
    if output != "-" and Path(output).exists():   # appeared while probing
        raise UsageError(f"{output} exists; ctxscan init never overwrites a file (choose another with -o)")
    if output == "-":
        click.echo(text, nl=False)
    else:
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise UsageError(f"{output} exists; ctxscan init never overwrites a file") from None
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    for source in sources:
        found = (f"could not probe it: {source.error}" if source.error
                 else f"{source.asset_count} asset{'' if source.asset_count == 1 else 's'}, owner {source.owner or 'not found'}")
        click.echo(f"{source.id} ({source.connector}): {found}", err=True)
    for source in sources:
        for name in sorted(source.variables):
            click.echo(f"export {name} before validate and scan ({source.variables[name]})", err=True)
    if output != "-":
        click.echo(f"wrote {output}: {len(sources)} source{'s' if len(sources) != 1 else ''}; "
                   f"next: ctxscan validate -c {output}", err=True)
    if any(source.error for source in sources):
        raise SystemExit(EXIT_FINDINGS)


# ---------------------------------------------------------------------------------------
# Every command's --help ends with examples and the exit codes.

EXAMPLES: dict[str, tuple[str, ...]] = {
    "validate": ("ctxscan validate -c ctxscan.yaml", "ctxscan validate --strict --connect",
                 "ctxscan validate --json | jq .warnings"),
    "scan": ("ctxscan scan", "ctxscan scan --source crm --fail-on high", "ctxscan scan --json > scan.json"),
    "findings": ("ctxscan findings --severity high", "ctxscan findings --format sarif > ctxscan.sarif",
                 "ctxscan findings --status all --format csv > findings.csv"),
    "findings show": ("ctxscan findings show 13842103ee7c", "ctxscan findings show 1384 --json"),
    "accept": ('ctxscan accept 13842103ee7c --until 2027-01-31 --reason "loader fix in sprint 12"',
               "ctxscan findings --status accepted"),
    "readiness": ("ctxscan readiness support-bot", "ctxscan readiness --strict",
                  "ctxscan readiness --format junit > readiness.xml"),
    "feeds": ("ctxscan feeds crm", "ctxscan feeds 'crm:public.*' --json"),
    "depends": ("ctxscan depends support-bot", "ctxscan depends support-bot --json"),
    "why": ("ctxscan why support-bot crm:public.customers", "ctxscan why support-bot crm:public.customers --json"),
    "graph": ("ctxscan graph export --format html", "ctxscan graph export --format mermaid --workflow support-bot"),
    "graph export": ("ctxscan graph export --format html", "ctxscan graph export --format dot -o - | dot -Tsvg",
                     "ctxscan graph export --format mermaid --workflow support-bot"),
    "demo": ("ctxscan demo", "ctxscan demo --dir /tmp/demo --json"),
    "daemon": ("ctxscan daemon --metrics-port 9464", "ctxscan daemon --once --fail-on high",
               "ctxscan daemon --log-format json --log-level debug"),
    "worker": ("ctxscan worker --zone eu-db --broker redis://broker.internal:6379/0",
               "CTXSCAN_BROKER=amqp://user:pw@rabbit// ctxscan worker --zone on-prem --concurrency 8"),
    "prune": ("ctxscan prune", "ctxscan prune --json"),
    "import": ("ctxscan import dbt target/manifest.json --source wh", "ctxscan import openlineage events.jsonl"),
    "import dbt": ("ctxscan import dbt target/manifest.json --source wh",
                   "ctxscan -c ctxscan.yaml -c ctxscan.dbt.yaml feeds wh:raw.orders"),
    "import openlineage": ("ctxscan import openlineage events.jsonl", "ctxscan findings --kind undeclared_dependency"),
    "init": ("ctxscan init postgresql://reader@db:5432/crm ./kb", "ctxscan init mysql://root@127.0.0.1/shop -o shop.yaml"),
}
EXIT_CODES = {
    "scan": "0 ok; 1 a source could not be probed, or findings at --fail-on; 2 usage or invalid inventory",
    "daemon": "0 stopped cleanly; with --once, 1 a source could not be probed or findings at --fail-on; "
              "2 usage or invalid inventory",
    "readiness": "0 ok; 1 a workflow not ready (--strict only); 2 usage or invalid inventory",
    "worker": "0 stopped (SIGTERM: running probes finish first); 2 usage (no broker, a bad zone name)",
    "validate": "0 valid (warnings allowed); 1 a source could not be opened (--connect); "
                "2 invalid inventory, or warnings under --strict",
    "init": "0 written; 1 written, but a target could not be probed; 2 usage, or the output file exists",
    "import openlineage": "0 stored; 2 usage, invalid inventory, or a malformed event (nothing stored)",
    "import dbt": "0 written; 2 usage, or the file is not a dbt manifest (v12 or newer)",
}
DEFAULT_EXIT_CODES = "0 ok; 2 usage or invalid inventory"


def _add_epilogs(group: click.Group, prefix: str = "") -> None:
    """Examples (when known) and the exit codes at the end of each command's --help."""
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        examples = EXAMPLES.get(full, ())
        lines = ["\b", "Examples:"] + [f"  {e}" for e in examples] if examples else []
        codes = EXIT_CODES.get(full, DEFAULT_EXIT_CODES)
        command.epilog = "\n".join(lines + ([""] if lines else []) + ["\b", f"Exit codes: {codes}."])
        if isinstance(command, click.Group):
            _add_epilogs(command, f"{full} ")


_add_epilogs(main)
main.epilog = ("\b\nExamples:\n  ctxscan demo\n  ctxscan -c ctxscan.yaml scan --fail-on high\n"
               "  ctxscan findings --format sarif > ctxscan.sarif\n\n\b\n"
               "Exit codes: 0 ok; 1 findings at --fail-on, a source that could not be probed, or not "
               "ready under --strict; 2 usage or invalid inventory.\n\n\b\n"
               "Shell completion (bash; zsh and fish alike):\n"
               '  eval "$(_CTXSCAN_COMPLETE=bash_source ctxscan)"')
