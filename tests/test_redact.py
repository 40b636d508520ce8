"""Secrets never reach output: URL passwords, key=value secrets, known secret values."""

from __future__ import annotations

import pytest

from scanner.plugins import Setting
from scanner.redact import redact_settings, redact_text, redact_url, secrets_in_settings


@pytest.mark.parametrize("text,expected", [
    ("postgresql://bot:s3cret@db:5432/crm", "postgresql://bot:***@db:5432/crm"),
    ("mysql+pymysql://root:p%40ss@127.0.0.1/x", "mysql+pymysql://root:***@127.0.0.1/x"),
    ("postgresql://bot@db/crm", "postgresql://bot@db/crm"),
    ("failed (boom password=hunter2)", "failed (boom password=***)"),
    ("token: abc123, next", "token: ***, next"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG; rest", "AWS_SECRET_ACCESS_KEY=***; rest"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_known_secret_values_are_removed_anywhere() -> None:
    settings = {"url": "postgresql://u:pa%20ss@h/db", "token": "tok-123456", "bucket": "kb"}
    declared = [Setting("url"), Setting("token", secret=True), Setting("bucket")]
    secrets = secrets_in_settings(settings, declared)
    assert "tok-123456" in secrets and "pa ss" in secrets and "pa%20ss" in secrets
    message = "auth failed for tok-123456 (password 'pa ss', encoded pa%20ss) on bucket kb"
    cleaned = redact_text(message, secrets)
    assert "tok-123456" not in cleaned and "pa ss" not in cleaned and "pa%20ss" not in cleaned
    assert "bucket kb" in cleaned
    assert redact_settings(settings, declared) == {"url": "postgresql://u:***@h/db", "token": "***",
                                                   "bucket": "kb"}
    assert redact_url("s3://bucket/key") == "s3://bucket/key"
