"""Readiness cards as JUnit XML: a test suite per workflow, a test case per readiness check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from scanner.redact import printable


def _xml_text(value: Any) -> str:
    # XML 1.0 cannot carry most control characters at all; show them escaped instead.
    return printable("" if value is None else str(value))


def readiness_junit(cards: Sequence[dict[str, Any]], timestamp: str | None = None) -> str:
    """`<testsuites>`, one `<testsuite name=WORKFLOW>`, one `<testcase>` per check; a check that
    does not hold is a `<failure>` whose message is its reason."""
    failures = sum(1 for card in cards for check in card["checks"] if not check["ok"])
    tests = sum(len(card["checks"]) for card in cards)
    root = ElementTree.Element("testsuites", name="ctxscan readiness", tests=str(tests),
                               failures=str(failures), errors="0")
    for card in cards:
        suite = ElementTree.SubElement(
            root, "testsuite", name=_xml_text(card["workflow"]), tests=str(len(card["checks"])),
            failures=str(sum(1 for c in card["checks"] if not c["ok"])), errors="0", skipped="0")
        if timestamp:
            suite.set("timestamp", timestamp)
        properties = ElementTree.SubElement(suite, "properties")
        for name in ("stage", "owner"):
            ElementTree.SubElement(properties, "property", name=name, value=_xml_text(card.get(name) or "-"))
        for check in card["checks"]:
            case = ElementTree.SubElement(suite, "testcase", name=f"{check['check']}: {check['title']}",
                                          classname=f"readiness.{_xml_text(card['workflow'])}")
            if not check["ok"]:
                failure = ElementTree.SubElement(case, "failure", message=_xml_text(check["reason"]),
                                                 type="not_ready")
                blocking = check.get("findings") or []
                failure.text = _xml_text(check["reason"]) + (
                    "\nblocking findings: " + ", ".join(blocking) if blocking else "")
            else:
                ElementTree.SubElement(case, "system-out").text = _xml_text(check["reason"])
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
