"""Keep secrets out of everything ctxscan writes: the store, logs, exports and errors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.plugins import Setting

REDACTED = "***"
# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")
_KEY_VALUE = re.compile(
    # `(using password: YES)` is MySQL saying whether a password was sent, not the password.
    r"(?i)\b(?!password: (?:YES|NO)\))(?P<key>password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key"
    r"|aws_secret_access_key|aws_session_token|sig|signature|x-amz-signature)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s&;,'\"()\[\]{}]+)"
)


_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7f, *range(0x80, 0xa0)]}
_CONTROL.update({0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t"})


def printable(text: str) -> str:
    """Text safe for one line of a terminal: control characters (newlines, escapes) shown
    as `\\n`, `\\x1b`, so a hostile object name cannot break or colour the output."""
    return text.translate(_CONTROL)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + m.group("tail"), url)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with URL passwords, `password=...` pairs and every known secret value removed."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + m.group("tail"), text)
    return _KEY_VALUE.sub(lambda m: m.group("key") + m.group("sep") + REDACTED, text)


def url_password(url: str) -> str | None:
    """The password embedded in a URL, if any."""
    match = _URL_PASSWORD.search(url)
    if match and match.group("pw"):
        from urllib.parse import unquote

        return unquote(match.group("pw"))
    return None


def secrets_in_text(value: str) -> list[str]:
    """Secret values embedded in one string: a URL's password, `password=...` pairs (in a
    query string or a libpq DSN), each also percent-encoded."""
    from urllib.parse import quote, unquote

    raw = [m.group("value") for m in _KEY_VALUE.finditer(value)]
    password = url_password(value)
    if password:
        raw.append(password)
    found: list[str] = []
    for secret in raw:
        for form in (secret, unquote(secret), quote(unquote(secret), safe="")):
            if form not in found:
                found.append(form)
    return found


def secrets_in_settings(settings: Mapping[str, Any], declared: Iterable[Setting]) -> list[str]:
    """Every secret value in a source's settings: secret settings and embedded passwords."""
    secret_names = {s.name for s in declared if s.secret}
    found: list[str] = []
    for name, value in settings.items():
        if not isinstance(value, str):
            continue
        if name in secret_names:
            found.append(value)
        found.extend(secrets_in_text(value))
    return found


def redact_settings(settings: Mapping[str, Any], declared: Iterable[Setting]) -> dict[str, Any]:
    """Settings safe to store or print: secret values masked, URL passwords masked."""
    secret_names = {s.name for s in declared if s.secret}
    safe: dict[str, Any] = {}
    for name, value in settings.items():
        if name in secret_names and value is not None:
            safe[name] = REDACTED
        elif isinstance(value, str):
            safe[name] = redact_text(value, secrets_in_text(value))
        else:
            safe[name] = value
    return safe
