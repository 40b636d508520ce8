"""The `ctxscan` command line. It only parses arguments and prints; the work is elsewhere.

Heavy modules (SQLAlchemy, networkx, connector SDKs) are imported inside commands so that
`ctxscan --help` stays fast. Data goes to stdout, progress and logs to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from scanner.inventory import Inventory
    from scanner.store import Store

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
SEVERITY_CHOICES = ("critical", "high", "medium", "low", "info")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command shares: where the inventory and the store are."""

    config: list[str] = field(default_factory=list)
    state: str | None = None
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

            self._inventory = load_inventory(self.config_paths())
        return self._inventory

    def state_url(self) -> str:
        if self.state:
            return self.state
        from scanner.store import default_state_url

        return default_state_url(self.config_paths(), self.inventory().state)

    def store(self) -> Store:
        if self._store is None:
            from scanner.store import Store

            self._store = Store.open(self.state_url())
        return self._store


def common_options(func: F) -> F:
    """-c/--config and --state on every command (they may also come before the command)."""
    def set_config(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            ctx.ensure_object(App).config = list(value)

    def set_state(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(App).state = value

    func = click.option("-c", "--config", "config", multiple=True, expose_value=False,
                        callback=set_config, is_eager=True,
                        help="Inventory file or folder (repeatable); default ctxscan.yaml or $CTXSCAN_CONFIG.")(func)
    func = click.option("--state", expose_value=False, callback=set_state, is_eager=True,
                        help="State store SQLAlchemy URL; default SQLite next to the inventory.")(func)
    return func


def _app() -> App:
    return click.get_current_context().ensure_object(App)


def echo_json(value: Any) -> None:
    from scanner.output import dump_json

    click.echo(dump_json(value))


def progress_enabled() -> bool:
    return sys.stderr.isatty()


class CtxscanGroup(click.Group):
    """Turns ctxscan's own errors into one red line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from scanner.errors import CtxscanError

        try:
            return super().invoke(ctx)
        except CtxscanError as exc:
            _print_error(exc)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="red", err=True)
            ctx.exit(130)


def _print_error(exc: Exception) -> None:
    errors = getattr(exc, "errors", None)
    if errors:
        for error in errors:
            click.secho(f"error: {error.one_line()}", fg="red", err=True)
        if len(errors) > 1:
            click.secho(f"{len(errors)} problems; the inventory was not used", fg="red", err=True)
        return
    text = exc.one_line() if hasattr(exc, "one_line") else str(exc)
    click.secho(f"error: {text}", fg="red", err=True)


@click.group(cls=CtxscanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ctxscan", prog_name="ctxscan")
@common_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """ctxscan: inventory, freshness and access scanner for the context of AI workflows."""
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="ctxscan: %(levelname)s: %(message)s")
    ctx.ensure_object(App)


# ---------------------------------------------------------------------------------------
# validate

@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def validate(as_json: bool) -> None:
    """Check the inventory file and print a one-screen summary."""
    inventory = _app().inventory()
    summary: dict[str, Any] = {
        "valid": True,
        "files": list(inventory.files),
        "sources": [{"id": s.id, "connector": s.connector, "owner": s.owner, "schedule": s.schedule}
                    for s in inventory.sources.values()],
        "workflows": [{"id": w.id, "stage": w.stage, "owner": w.owner, "reads": len(w.reads),
                       "feeds": list(w.feeds)} for w in inventory.workflows.values()],
        "owners": sorted(inventory.owners),
        "notify": [n.type for n in inventory.notify],
        "accept": len(inventory.accept),
    }
    if as_json:
        echo_json(summary)
        return
    from scanner.output import table

    click.secho(f"ok: {', '.join(inventory.files)} is valid", fg="green")
    click.echo(f"{len(inventory.sources)} sources, {len(inventory.workflows)} workflows, "
               f"{len(inventory.owners)} owners, {len(inventory.notify)} notification targets\n")
    click.echo(table(["source", "connector", "owner", "schedule"],
                     [[s["id"], s["connector"], s["owner"], s["schedule"]] for s in summary["sources"]]))
    click.echo()
    click.echo(table(["workflow", "stage", "owner", "reads", "feeds"],
                     [[w["id"], w["stage"], w["owner"], w["reads"], ", ".join(w["feeds"]) or "-"]
                      for w in summary["workflows"]]))


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


def open_findings(app: App) -> list[Any]:
    """Open findings that no unexpired `accept:` entry hides."""
    from datetime import date

    from scanner.acceptance import acceptance_for

    inventory = app.inventory()
    today = date.today()
    return [f for f in app.store().findings("open")
            if acceptance_for(f, inventory.accept, today) is None]


@main.command()
@common_options
@click.option("--source", "source_ids", multiple=True, metavar="ID", help="Scan only this source (repeatable).")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Exit 1 when open, unaccepted findings reach this severity.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def scan(source_ids: tuple[str, ...], fail_on: str | None, as_json: bool) -> None:
    """Probe sources, store what they hold, and evaluate findings."""
    from scanner.output import SEVERITY_COLOURS, table
    from scanner.scan import run_scan
    from scanner.store import SEVERITY_RANK

    app = _app()
    inventory = app.inventory()
    store = app.store()
    show = progress_enabled()

    def progress(message: str, _outcome: Any) -> None:
        if show:
            click.echo(f"  {message}", err=True)

    report = run_scan(inventory, store, list(source_ids) or None, progress=progress)
    current = open_findings(app)
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
                     f"{len(report.changes.resolved)} resolved. `ctxscan findings` lists them.")
    if fail_on is not None:
        threshold = SEVERITY_RANK[fail_on]
        if any(SEVERITY_RANK.get(f.severity, 0) >= threshold for f in current):
            sys.exit(EXIT_FINDINGS)


# ---------------------------------------------------------------------------------------
# findings

@main.command()
@common_options
@click.option("--kind", multiple=True, help="Only this kind (repeatable).")
@click.option("--severity", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Only findings at or above this severity.")
@click.option("--status", type=click.Choice(("open", "resolved", "accepted", "all")), default="open",
              show_default=True)
@click.option("--source", "source_id", default=None, help="Only findings about this source.")
@click.option("--workflow", "workflow_id", default=None, help="Only findings about this workflow.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def findings(kind: tuple[str, ...], severity: str | None, status: str, source_id: str | None,
             workflow_id: str | None, as_json: bool) -> None:
    """List findings from the latest scans."""
    from datetime import date

    from scanner.acceptance import acceptance_for
    from scanner.output import table
    from scanner.store import SEVERITY_RANK

    app = _app()
    inventory = app.inventory()
    today = date.today()
    stored = app.store().findings(None if status in ("all", "accepted") else status)
    rows = []
    for finding in stored:
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
        if workflow_id and finding.workflow != workflow_id:
            continue
        rows.append((finding, accepted))
    if as_json:
        out = []
        for finding, accepted in rows:
            item = finding.to_json()
            if accepted is not None:
                item["status"] = "accepted"
                item["accepted"] = {"reason": accepted.reason,
                                    "expires": accepted.expires.isoformat() if accepted.expires else None}
            out.append(item)
        echo_json(out)
        return
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} findings".replace("  ", " "))
        return
    click.echo(table(
        ["severity", "kind", "subject", "message", "first seen"],
        [[f.severity, f.kind + (f"/{f.subkind}" if f.subkind else ""),
          f.asset or f.workflow or f.source, f.message, f.first_seen.strftime("%Y-%m-%d %H:%M")]
         for f, _ in rows], max_width=80))


# ---------------------------------------------------------------------------------------
# demo

@main.command()
@click.option("--dir", "directory", default="ctxscan-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where to build the demo estate.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo(directory: str, as_json: bool) -> None:
    """Build a small demo estate (SQLite + files), scan it and show the results."""
    from scanner.demo import run_demo

    result = run_demo(directory, echo=None if as_json else click.echo)
    if as_json:
        echo_json(result)


# Later features register their commands below this line (graph, readiness, daemon).
