"""`ctxscan init`: probe what it is given and write a starter inventory.

Each target (a database URL, an S3 or BigQuery URL, a SQLite file or a folder) becomes one
source: its id from its name (the database, the bucket, the folder), secrets in the URL
(a password, a `password=`/`token=` parameter) replaced by `${VAR}` references that are
never written with their values, owners discovered the way scans discover them (`owner_tag:
owner`: table and schema comments `owner: team`, BigQuery labels, S3 tags), include globs
for what the probe found, and a commented workflow template to start from. The result
passes `ctxscan validate` (once the variables it names are exported) and scans.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from scanner.errors import UsageError

OWNER_TAG = "owner"
_SECRET_PARAMS = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)
_TIMESTAMP_COLUMNS = ("updated_at", "modified_at", "last_modified", "loaded_at", "_loaded_at", "changed_at",
                      "created_at")
_SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql", "mariadb": "mysql",
            "s3": "s3", "bigquery": "bigquery", "sqlite": "sqlite"}
MAX_NAMED = 30   # past this many first-level entries, a folder's include is `*`


@dataclass
class StarterSource:
    """One source of the starter inventory, and what probing it found."""

    id: str
    connector: str
    settings: dict[str, Any]
    variables: dict[str, str] = field(default_factory=dict)   # VAR -> what to export (never the value)
    owner: str | None = None
    include: list[str] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)
    column: str | None = None
    asset_count: int = 0
    example: str | None = None
    error: str | None = None
    owner_tags: bool = True       # whether the connector reads tags, labels or comments


def slug(text: str, fallback: str = "source") -> str:
    """A valid id from a name: letters, digits, `_`, `-`, `.`; starting with a letter or digit."""
    text = re.sub(r"[^A-Za-z0-9_.\-]+", "-", text).strip("-._")
    return text or fallback


def _variable(source_id: str, what: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", f"{source_id}_{what}".upper())


def split_secrets(url: str, source_id: str) -> tuple[str, dict[str, str]]:
    """The URL with its password and secret-looking parameters replaced by `${VAR}`, and the
    variables to export (name -> a hint, never the secret)."""
    parts = urlsplit(url)
    variables: dict[str, str] = {}
    netloc = parts.netloc
    if parts.password is not None:
        name = _variable(source_id, "password")
        variables[name] = f"the password of {unquote(parts.username or '')}, URL-encoded"
        user = quote(unquote(parts.username or ""), safe="")
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:${{{name}}}@{host}"
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAMS.search(key) and value:
            name = _variable(source_id, key)
            variables[name] = f"the {key} parameter"
            query.append((key, f"${{{name}}}"))
        else:
            query.append((key, value))
    text = urlencode(query, safe="${}") if query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, text, parts.fragment)), variables


def classify(target: str, base: Path) -> tuple[str, str, dict[str, Any]]:
    """(connector, name for the id, settings) of one `init` argument; UsageError if unknown."""
    path = Path(target)
    if "://" not in target:
        if path.is_dir():
            return "files", path.resolve().name, {"path": str(path.resolve())}
        if path.is_file() and path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
            return "sqlite", path.stem, {"path": str(path.resolve())}
        raise UsageError(f"{target!r} is not a folder, a SQLite file or a URL "
                         "(postgresql://, mysql://, s3://, bigquery://)")
    parts = urlsplit(target)
    scheme = parts.scheme.split("+", 1)[0].lower()
    connector = _SCHEMES.get(scheme)
    if connector in ("postgres", "mysql"):
        database = unquote(parts.path.lstrip("/"))
        return connector, database or parts.hostname or connector, {"url": target}
    if connector == "s3":
        prefix = parts.path.lstrip("/")
        settings: dict[str, Any] = {"bucket": parts.hostname or ""}
        if prefix:
            settings["prefixes"] = [prefix if prefix.endswith("/") else prefix + "/"]
        for key, value in parse_qsl(parts.query):
            if key in ("endpoint_url", "region"):
                settings[key] = value
        return "s3", parts.hostname or "bucket", settings
    if connector == "bigquery":
        settings = {"project": parts.hostname or ""}
        datasets = [d for d in parts.path.strip("/").split("/") if d]
        if datasets:
            settings["datasets"] = datasets
        for key, value in parse_qsl(parts.query):
            if key in ("endpoint", "location"):
                settings[key] = value
        return "bigquery", parts.hostname or "project", settings
    if connector == "sqlite":
        file = parts.path if not parts.netloc else "/" + parts.netloc + parts.path
        file = file[1:] if file.startswith("//") else file
        return "sqlite", Path(file).stem, {"path": file}
    raise UsageError(f"{target!r}: unknown URL scheme {parts.scheme!r} "
                     "(postgresql://, mysql://, mariadb://, s3://, bigquery://, sqlite:///)")


def probe_target(target: str, source_id: str, connector: str, settings: dict[str, Any],
                 timeout: float = 30.0) -> StarterSource:
    """Probe one target read-only (as a scan would) and describe its source."""
    from scanner.errors import ProbeError
    from scanner.model import utcnow
    from scanner.plugins import ProbeContext, SourceConfig
    from scanner.scan import probe_source

    written = dict(settings)
    variables: dict[str, str] = {}
    if "url" in settings:
        written["url"], variables = split_secrets(settings["url"], source_id)
    from scanner.plugins import connectors

    connector_cls = connectors().get(connector)
    owner_tags = bool(getattr(connector_cls, "owner_tags", True))
    starter = StarterSource(source_id, connector, written, variables, owner_tags=owner_tags)
    config = SourceConfig(id=source_id, connector=connector, settings=settings,
                          owner_tag=OWNER_TAG if owner_tags else None, timeout=timeout)
    try:
        snapshot = probe_source(config, ProbeContext(now=utcnow(), timeout=timeout))
    except ProbeError as exc:
        from scanner.redact import redact_text, secrets_in_text

        # The connector redacts its own secrets; the URL's are taken out again, to be sure.
        starter.error = redact_text(exc.message, secrets_in_text(settings.get("url") or ""))
        return starter
    starter.asset_count = len(snapshot.assets)
    if snapshot.owner is not None:
        starter.owner = snapshot.owner.owner
    containers = sorted({a.container for a in snapshot.assets if a.container})
    paths = sorted(a.path for a in snapshot.assets)
    if connector in ("postgres", "mysql") and containers:
        starter.include = [f"{c}.*" for c in containers]
    elif connector in ("files", "s3") and 0 < len(paths) <= MAX_NAMED:
        starter.include = paths
    elif containers:
        starter.include = [f"{c}.*" for c in containers]
    owners: Counter[str] = Counter()
    for asset in sorted(snapshot.assets, key=lambda a: a.path):
        if asset.owner is not None:
            owners[asset.owner.owner] += 1
            if asset.owner.owner != starter.owner:
                starter.assets.append({"path": asset.path, "owner": asset.owner.owner})
    if starter.owner is None and owners:
        # The owner most assets name stands for the source; the others stay per asset.
        starter.owner = sorted(owners.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        starter.assets = [a for a in starter.assets if a["owner"] != starter.owner]
    columns: Counter[str] = Counter()
    for asset in snapshot.assets:
        names = {c.name for c in asset.columns}
        for candidate in _TIMESTAMP_COLUMNS:
            if candidate in names:
                columns[candidate] += 1
                break
    if columns and connector in ("postgres", "mysql", "sqlite", "bigquery"):
        starter.column = sorted(columns.items(), key=lambda kv: (-kv[1], _TIMESTAMP_COLUMNS.index(kv[0])))[0][0]
    starter.example = paths[0] if paths else None
    return starter


def _flow(value: Any) -> str:
    import yaml

    text = str(yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 30,
                              allow_unicode=True))
    return text.removesuffix("\n...\n").strip()


def render(sources: list[StarterSource], targets: list[str]) -> str:
    """The starter inventory's text, with comments."""
    lines = ["# Starter inventory written by `ctxscan init`: check it, fill in the owners and",
             "# workflows, then run `ctxscan validate` and `ctxscan scan`.", "version: 1"]
    variables = {name: hint for s in sources for name, hint in s.variables.items()}
    if variables:
        lines.insert(2, "# Export before validating or scanning (secrets are never written here):")
        for offset, (name, hint) in enumerate(sorted(variables.items()), 3):
            lines.insert(offset, f"#   export {name}=...   # {hint}")
    owners = sorted({s.owner for s in sources if s.owner} | {a["owner"] for s in sources for a in s.assets})
    owners = [o for o in owners if re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", o)]
    if owners:
        lines.append("owners:  # discovered from comments, labels and tags (owner_tag: owner)")
        lines.extend(f"  - {{id: {_flow(o)}}}" for o in owners)
    else:
        lines.append("owners: []  # e.g. - {id: data-eng, contact: \"#data-eng\"}")
    lines.append("sources:" if sources else "sources: []")
    for source in sources:
        lines.append(f"  - id: {_flow(source.id)}")
        lines.append(f"    connector: {source.connector}")
        for key, value in source.settings.items():
            lines.append(f"    {key}: {_flow(value)}")
        if source.owner:
            lines.append(f"    owner: {_flow(source.owner)}")
        elif source.owner_tags:
            lines.append("    # owner: TEAM   (none discovered: comment a table or schema `owner: TEAM`)")
        else:
            lines.append(f"    # owner: TEAM   (the {source.connector} connector has no tags or labels to find one in)")
        if source.owner_tags:
            lines.append(f"    owner_tag: {OWNER_TAG}")
        lines.append("    schedule: 1h")
        if source.include:
            lines.append(f"    include: {_flow(source.include)}")
        if source.column:
            lines.append(f"    freshness: {{column: {_flow(source.column)}, max_age: 24h}}")
        else:
            lines.append("    freshness: {max_age: 24h}")
        if source.assets:
            lines.append("    assets:")
            lines.extend(f"      - {_flow(a)}" for a in source.assets)
        if source.error:
            lines.append(f"    # could not probe it: {source.error}")
        else:
            lines.append(f"    # found {source.asset_count} asset{'s' if source.asset_count != 1 else ''}")
    example = next((s for s in sources if s.example), None)
    asset = f"{example.id}:{example.example}" if example else "SOURCE:PATH"
    runs_as = f"{{{example.id}: ROLE}}" if example else "{SOURCE: ROLE}"
    lines += [
        "# A workflow reads assets and runs as a principal in each source; uncomment and edit:",
        "# workflows:",
        "#   - id: my-assistant",
        "#     owner: TEAM",
        "#     stage: poc                 # poc | pilot | production",
        f"#     runs_as: {runs_as}",
        "#     reads:",
        f"#       - {{asset: \"{asset}\", max_age: 24h}}",
        "#     evaluation: {suite: evals/my-assistant.yaml}",
        "#     rollout: {fallback: human-queue, rollback_owner: TEAM}",
    ]
    return "\n".join(lines) + "\n"


def starter_inventory(targets: list[str], base: Path, timeout: float = 30.0) -> tuple[str, list[StarterSource]]:
    """Classify and probe every target; the inventory text and what was found."""
    sources: list[StarterSource] = []
    used: set[str] = set()
    for target in targets:
        connector, name, settings = classify(target, base)
        source_id = slug(name)
        candidate, n = source_id, 2
        while candidate in used:
            candidate, n = f"{source_id}-{n}", n + 1
        used.add(candidate)
        sources.append(probe_target(target, candidate, connector, settings, timeout))
    return render(sources, targets), sources
