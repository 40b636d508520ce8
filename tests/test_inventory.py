"""The inventory file: interpolation, durations, merging, and every rejection, via the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.durations import parse_duration, validate_schedule
from scanner.errors import ConfigError
from scanner.inventory import load_inventory

GOOD = """
version: 1
owners: [{id: data-eng}, {id: support-platform, contact: "#support-platform"}]
sources:
  - id: crm
    connector: fake
    tables: [public.customers, public.tickets]
    owner: data-eng
    schedule: 15m
    freshness: {max_age: 24h}
  - id: kb
    connector: files
    path: ${KB_PATH}
    schedule: "*/15 * * * *"
workflows:
  - id: support-reply-assistant
    owner: support-platform
    stage: production
    runs_as: {crm: support_bot}
    reads:
      - {asset: "crm:public.customers", max_age: 1h}
      - "kb:articles/*"
    feeds: [escalation-router]
  - id: escalation-router
    stage: pilot
    reads: [{asset: "crm:public.tickets"}]
notify:
  - {type: file, path: findings.jsonl}
"""


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), (45, 45),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15", "15 minutes", "-5m", "0s", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_schedules() -> None:
    validate_schedule("15m")
    validate_schedule("*/5 * * * *")
    with pytest.raises(ValueError):
        validate_schedule("61 * * * *")
    with pytest.raises(ValueError):
        validate_schedule("every tuesday")


def test_good_inventory_interpolates_and_links(write_inventory, tmp_path: Path) -> None:
    path = write_inventory(GOOD)
    inventory = load_inventory([path], env={"KB_PATH": str(tmp_path / "kb")})
    assert set(inventory.sources) == {"crm", "kb"}
    assert inventory.sources["kb"].settings["path"] == str(tmp_path / "kb")
    assert inventory.sources["crm"].freshness.max_age == 86400
    assert inventory.sources["kb"].schedule == "*/15 * * * *"
    workflow = inventory.workflows["support-reply-assistant"]
    assert workflow.stage == "production" and workflow.runs_as == {"crm": "support_bot"}
    assert [r.asset for r in workflow.reads] == ["crm:public.customers", "kb:articles/*"]
    assert workflow.reads[0].max_age == 3600 and workflow.reads[1].is_glob
    assert inventory.owners["support-platform"].contact == "#support-platform"
    assert inventory.notify[0].type == "file"


def test_env_default_syntax(write_inventory) -> None:
    path = write_inventory(GOOD.replace("${KB_PATH}", "${KB_PATH:-/srv/kb}"))
    assert load_inventory([path], env={}).sources["kb"].settings["path"] == "/srv/kb"


def test_merge_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "inv"
    folder.mkdir()
    (folder / "a.yaml").write_text("version: 1\nsources:\n  - {id: a, connector: fake}\n")
    (folder / "b.yml").write_text(
        "version: 1\nworkflows:\n  - {id: w, reads: ['a:x']}\n")
    (folder / "notes.txt").write_text("ignored")
    inventory = load_inventory([folder], env={})
    assert list(inventory.sources) == ["a"] and list(inventory.workflows) == ["w"]
    extra = tmp_path / "extra.yaml"
    extra.write_text("version: 1\nsources:\n  - {id: b, connector: fake}\n")
    merged = load_inventory([folder, extra], env={})
    assert sorted(merged.sources) == ["a", "b"]


# Each case: a broken inventory, the line the error must name, the field, and words it must say.
REJECTIONS = {
    "yaml_syntax": ("version: 1\nsources:\n  - id: a\n    connector: [fake\n", 5, None, "YAML syntax error"),
    "unknown_top_key": ("version: 1\nsorces: []\n", 2, "sorces", "did you mean 'sources'"),
    "unknown_source_key": ("version: 1\nsources:\n  - id: a\n    connector: fake\n    schedul: 1h\n",
                           5, "sources[0].schedul", "did you mean 'schedule'"),
    "unknown_workflow_key": ("version: 1\nworkflows:\n  - id: w\n    raeds: []\n",
                             4, "workflows[0].raeds", "did you mean 'reads'"),
    "unknown_connector": ("version: 1\nsources:\n  - id: a\n    connector: postgress\n",
                          4, "sources[0].connector", "known: "),
    "unset_env": ("version: 1\nsources:\n  - id: a\n    connector: files\n    path: ${NOPE_NOT_SET}\n",
                  5, "sources[0].path", "NOPE_NOT_SET is not set"),
    "duplicate_source": ("version: 1\nsources:\n  - {id: a, connector: fake}\n  - {id: a, connector: fake}\n",
                         4, "sources[1].id", "duplicate source id 'a'"),
    "duplicate_workflow": ("version: 1\nworkflows:\n  - {id: w}\n  - {id: w}\n", 4, "workflows[1].id",
                           "duplicate workflow id 'w'"),
    "undeclared_source": ("version: 1\nsources:\n  - {id: crm, connector: fake}\nworkflows:\n"
                          "  - id: w\n    reads: ['crn:public.x']\n", 6, "workflows[0].reads[0].asset",
                          "undeclared source 'crn' (did you mean 'crm'?)"),
    "feeds_unknown": ("version: 1\nworkflows:\n  - {id: w, feeds: [x]}\n", 3, "workflows[0].feeds[0]",
                      "feeds unknown workflow 'x'"),
    "feeds_cycle": ("version: 1\nworkflows:\n  - {id: a, feeds: [b]}\n  - {id: b, feeds: [c]}\n"
                    "  - {id: c, feeds: [a]}\n", 3, "workflows[0].feeds", "cycle in feeds: a -> b -> c -> a"),
    "bad_duration": ("version: 1\nsources:\n  - id: a\n    connector: fake\n    freshness: {max_age: 2 days}\n",
                     5, "sources[0].freshness.max_age", "is not a duration"),
    "bad_schedule": ("version: 1\nsources:\n  - id: a\n    connector: fake\n    schedule: whenever\n",
                     5, "sources[0].schedule", "neither a duration"),
    "bad_cron": ("version: 1\nsources:\n  - id: a\n    connector: fake\n    schedule: '99 * * * *'\n",
                 5, "sources[0].schedule", "not a valid cron"),
    "missing_required_setting": ("version: 1\nsources:\n  - id: a\n    connector: files\n", 3,
                                 "sources[0].path", "required by the files connector"),
    "bad_stage": ("version: 1\nworkflows:\n  - {id: w, stage: prod}\n", 3, "workflows[0].stage",
                  "not one of poc, pilot, production"),
    "asset_without_source": ("version: 1\nworkflows:\n  - {id: w, reads: [customers]}\n", 3,
                             "workflows[0].reads[0].asset", "write SOURCE:PATH"),
    "not_a_mapping": ("- just\n- a list\n", 1, None, "must be a mapping"),
    "empty_webhook_url": ("version: 1\nnotify:\n  - type: webhook\n    url: ${HOOK:-}\n", 4,
                          "notify[0].url", "with a host (is its environment variable empty?)"),
    "warn_after_not_shorter": ("version: 1\nsources: [{id: crm, connector: fake}]\nworkflows:\n  - id: w\n"
                               "    reads: [{asset: 'crm:x', max_age: 1h, warn_after: 4h}]\n", 5,
                               "workflows[0].reads[0].warn_after", "is not shorter than max_age 1h"),
    "owner_tag_on_files": ("version: 1\nsources:\n  - {id: kb, connector: files, path: /tmp, owner_tag: owner}\n",
                           3, "sources[0].owner_tag", "the files connector has no tags"),
    "accept_kind_alone": ("version: 1\naccept:\n  - {kind: stale, reason: all of them, expires: 2099-01-01}\n", 3,
                          "accept[0].kind", "alone would accept every stale finding"),
    "accept_without_expiry": ("version: 1\naccept:\n  - {kind: stale, reason: known}\n", 3,
                              "accept[0].expires", "an acceptance expires"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejections_name_file_line_and_field(case: str, write_inventory, ctxscan) -> None:
    text, line, field, words = REJECTIONS[case]
    path = write_inventory(text)
    with pytest.raises(ConfigError) as caught:
        load_inventory([path], env={})
    error = caught.value
    assert error.file == str(path)
    assert error.line == line, error.one_line()
    if field is not None:
        assert error.field == field, error.one_line()
    assert words in error.one_line()
    # Through the CLI: exit 2, one red line per problem naming file:line, no traceback.
    result = ctxscan("validate", "-c", str(path), env={"NO_COLOR": "1"})
    assert result.code == 2, result
    assert f"{path}:{line}:" in result.err
    assert words in result.err
    assert "Traceback" not in result.err and result.out == ""


def test_every_feeds_cycle_is_reported(write_inventory) -> None:
    path = write_inventory("version: 1\nworkflows:\n  - {id: a, feeds: [b]}\n  - {id: b, feeds: [a]}\n"
                           "  - {id: c, feeds: [d]}\n  - {id: d, feeds: [c]}\n  - {id: e, feeds: [e]}\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory([path], env={})
    cycles = [e.one_line() for e in caught.value.errors if "cycle" in e.one_line()]  # type: ignore[attr-defined]
    assert len(cycles) == 3, cycles
    assert any("a -> b -> a" in c for c in cycles) and any("c -> d -> c" in c for c in cycles)
    assert any("e -> e" in c for c in cycles)


def test_missing_file_is_one_line(tmp_path: Path, ctxscan) -> None:
    result = ctxscan("validate", "-c", str(tmp_path / "nope.yaml"))
    assert result.code == 2 and "inventory file not found" in result.err
    assert "Traceback" not in result.err


def test_all_problems_are_reported_at_once(write_inventory) -> None:
    path = write_inventory("version: 1\nsorces: []\nworkflows:\n  - {id: w, stage: prod, feeds: [zz]}\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory([path], env={})
    assert len(caught.value.errors) == 3  # type: ignore[attr-defined]


def test_validate_prints_summary(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory(GOOD)
    result = ctxscan("validate", "-c", str(path), env={"KB_PATH": str(tmp_path)})
    assert result.code == 0, result
    assert "2 sources, 2 workflows, 2 owners" in result.out
    assert "support-reply-assistant" in result.out and "escalation-router" in result.out
    result = ctxscan("validate", "--json", "-c", str(path), env={"KB_PATH": str(tmp_path)})
    import json

    summary = json.loads(result.out)
    assert summary["valid"] is True and {s["id"] for s in summary["sources"]} == {"crm", "kb"}


def test_config_from_environment_variable(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory(GOOD)
    result = ctxscan("validate", cwd=tmp_path.parent,
                     env={"CTXSCAN_CONFIG": str(path), "KB_PATH": str(tmp_path)})
    assert result.code == 0, result


def test_errors_come_in_line_order(write_inventory) -> None:
    path = write_inventory("version: 1\nworkflows:\n  - {id: w, feeds: [zz]}\nsorces: []\n"
                           "sources:\n  - {id: a, connector: nope}\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory([path], env={})
    lines = [e.line for e in caught.value.errors]  # type: ignore[attr-defined]
    assert lines == sorted(lines) and len(lines) == 3


def test_literal_dollar_brace(write_inventory) -> None:
    path = write_inventory("version: 1\nsources:\n  - {id: a, connector: fake, description: 'costs $${PRICE}'}\n")
    assert load_inventory([path], env={}).sources["a"].description == "costs ${PRICE}"


def test_empty_folder_is_one_line(tmp_path: Path, ctxscan) -> None:
    (tmp_path / "empty").mkdir()
    result = ctxscan("validate", "-c", str(tmp_path / "empty"))
    assert result.code == 2 and "holds no *.yaml" in result.err and "Traceback" not in result.err


def test_queries_need_no_secrets_but_scans_do(write_inventory, tmp_path: Path, ctxscan) -> None:
    path = write_inventory("version: 1\nsources:\n  - {id: crm, connector: postgres, url: '${CRM_URL_UNSET}'}\n"
                           "workflows:\n  - {id: w, owner: x, reads: ['crm:public.t']}\n")
    state = str(tmp_path / "state.db")
    scan = ctxscan("scan", "-c", str(path), "--state", state)
    assert scan.code == 2 and "CRM_URL_UNSET is not set" in scan.err
    assert "no scan has run yet" in ctxscan("findings", "-c", str(path), "--state", state).out
    for args in (("findings",), ("readiness", "w"), ("depends", "w"), ("feeds", "crm")):
        result = ctxscan(*args, "-c", str(path), "--state", state)
        assert result.code in (0, 1), result  # answers from the (empty) store
        assert "CRM_URL_UNSET" not in result.err
    assert load_inventory([path], env={}, strict_env=False).unresolved_env == ("CRM_URL_UNSET",)


def test_validate_summary_fits_one_screen(write_inventory, ctxscan) -> None:
    sources = "".join(f"  - {{id: s{i}, connector: fake}}\n" for i in range(100))
    workflows = "".join(f"  - {{id: w{i}, stage: pilot, reads: ['s{i}:t']}}\n" for i in range(60))
    path = write_inventory(f"version: 1\nsources:\n{sources}workflows:\n{workflows}")
    result = ctxscan("validate", "-c", str(path))
    assert result.code == 0, result
    assert len(result.out.splitlines()) <= 30
    assert "and 90 more sources" in result.out and "and 50 more workflows" in result.out
    assert "fake 100" in result.out and "pilot 60" in result.out


ROUTING = """
version: 1
owners:
  - id: crm-team
    contacts: [{type: webhook, url: "http://127.0.0.1:9/crm"}, {type: file, path: crm.jsonl, digest: 1h}]
sources:
  - {id: crm, connector: fake, environment: prod}
  - {id: crm-staging, connector: fake, environment: staging, same_as: crm}
notify:
  - {type: owners, min_severity: medium, fallback: [{type: log}], escalate_after: 4h,
     escalate_to: [{type: webhook, url: "http://127.0.0.1:9/oncall"}], digest: 30m}
"""


def test_owner_contacts_routing_and_same_as(write_inventory) -> None:
    inventory = load_inventory([write_inventory(ROUTING)], env={})
    contacts = inventory.owners["crm-team"].contacts
    assert [(c.type, c.digest) for c in contacts] == [("webhook", None), ("file", 3600)]
    owners = inventory.notify[0]
    assert (owners.type, owners.escalate_after, owners.digest) == ("owners", 14400, 1800)
    assert [t.type for t in owners.fallback] == ["log"] and owners.escalate_to[0].url.endswith("/oncall")
    assert inventory.sources["crm-staging"].same_as == "crm"


@pytest.mark.parametrize(("change", "words"), [
    ("same_as: crm}", "same_as names itself"),
    ("same_as: crn}", "same_as names undeclared source 'crn'"),
    ("escalate_to: []", "escalate_after: needs escalate_to"),
    ("contacts: [{type: owners}]", "contacts[0].type"),
    ("fallback-on-webhook", "only a target of type owners routes findings"),
])
def test_routing_rejections(change: str, words: str, write_inventory) -> None:
    text = ROUTING
    if change.startswith("same_as"):
        text = text.replace("{id: crm, connector: fake, environment: prod}",
                            "{id: crm, connector: fake, environment: prod, " + change)
    elif change.startswith("escalate_to"):
        text = text.replace('escalate_to: [{type: webhook, url: "http://127.0.0.1:9/oncall"}]', change)
    elif change.startswith("contacts"):
        text = text.replace('contacts: [{type: webhook, url: "http://127.0.0.1:9/crm"}, '
                            '{type: file, path: crm.jsonl, digest: 1h}]', change)
    else:
        text += '  - {type: webhook, url: "http://127.0.0.1:9/x", fallback: [{type: log}]}\n'
    with pytest.raises(ConfigError) as caught:
        load_inventory([write_inventory(text)], env={})
    assert any(words in e.one_line() for e in caught.value.errors), [e.one_line() for e in caught.value.errors]
