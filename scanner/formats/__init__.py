"""Output formats other tools read: findings as CSV, Markdown, SARIF 2.1.0, OCSF; readiness as Markdown, JUnit.

Each format is a small pure function from findings (or readiness cards) to text. A finding
here is the JSON shape of `ctxscan findings --json` (a dict); nothing in this package opens
the store or prints.
"""

from __future__ import annotations

FINDING_FORMATS = ("table", "json", "csv", "markdown", "sarif", "ocsf")
READINESS_FORMATS = ("table", "json", "markdown", "junit")
