"""Keep secrets out of everything ctxscan writes: the store, logs, exports and errors."""

from __future__ import annotations

import re
import threading
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
# Bidirectional overrides and isolates reorder what follows them on screen (U+202E shows
# `txt.exe` as `exe.txt`); line and paragraph separators break a line as a newline does.
_CONTROL.update({i: f"\\u{i:04x}" for i in [0x061c, 0x200e, 0x200f, *range(0x202a, 0x202f),
                                            *range(0x2066, 0x206a), 0x2028, 0x2029, 0xfeff]})


def printable(text: str) -> str:
    """Text safe for one line of a terminal: control and bidi characters (newlines, escapes,
    U+202E) shown as `\\n`, `\\x1b`, `\\u202e`, so a hostile name cannot break, colour or
    reorder the output, or forge a log line."""
    return text.translate(_CONTROL)


def human(text: object) -> str:
    """One line for a person (terminal or text log): known secrets removed, control and bidi
    characters escaped. Every human-facing line goes through here or through `printable`."""
    return printable(redact_text(str(text)))


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + m.group("tail"), url)


# Every secret this process has seen in a setting, a --state URL or a notify target. Each
# redaction also removes these, so a path that forgot to pass its secrets still cannot leak
# another's (a store error quoting a source's URL, a log line quoting a finding).
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()


def remember(secrets: Iterable[str]) -> None:
    """Add secret values that every later redaction in this process removes."""
    with _KNOWN_LOCK:
        _KNOWN.update(s for s in secrets if s and len(s) >= 3)


def scrub(text: str, json_escaped: bool = False) -> str:
    """`text` with every remembered secret replaced by ***; cheap when none is known, so it
    runs over whole outputs (a table, a JSON document) just before they leave the process.
    With `json_escaped`, also the form the secret takes inside a JSON string."""
    with _KNOWN_LOCK:
        if not _KNOWN:
            return text
        known = sorted(_KNOWN, key=len, reverse=True)
    import json

    for secret in known:
        forms = {secret, printable(secret)}
        if json_escaped:
            forms.update({json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]})
        for form in forms:
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def forget() -> None:
    """Drop every remembered secret (tests run many inventories in one process)."""
    with _KNOWN_LOCK:
        _KNOWN.clear()


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with URL passwords, `password=...` pairs and every known secret value removed."""
    if not isinstance(text, str):
        text = str(text)
    with _KNOWN_LOCK:
        known = set(_KNOWN)
    for secret in sorted(known | {s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
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


# A scheme followed by any number of slashes (`postgresql:/u:pw@h` is malformed but a driver
# still reads it), then everything up to an `@`: the text that can be userinfo.
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:/*")
# Settings and parameters whose value is a secret: password, sslpassword, pwd, passphrase,
# client_secret, token, api_key, access_key, sig...
_SECRET_NAME = re.compile(r"(?i)(pass|pwd|secret|token|key|sig|credential|auth)")
_DSN_PAIR = re.compile(
    r"(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*"
    r"(?:'(?P<single>(?:[^'\\]|\\.)*)'?|\"(?P<double>(?:[^\"\\]|\\.)*)\"?|(?P<bare>[^\s&;,]+))")
_PIECES = re.compile(r"[\s@:/?#&;,'\"=]+")
MIN_SECRET = 3
MIN_PIECE = 6  # a shorter piece of a password would scrub ordinary words ("word", "pass")


def _userinfo_passwords(value: str) -> list[str]:
    """Every text that a URL parser, strict or lenient, could take for the password."""
    found: list[str] = []
    for scheme in _SCHEME.finditer(value):
        rest = re.split(r"[?#]", value[scheme.end():], maxsplit=1)[0]
        # A raw `@` in the password: a lenient parser splits at the first `@`, a strict one
        # at the last; what lies between may be echoed as part of the host, so take each.
        ats = [i for i, ch in enumerate(rest) if ch == "@"]
        for at in ats:
            userinfo = rest[:at]
            if ":" in userinfo:
                found.append(userinfo.split(":", 1)[1])
        if ats:
            break
    return found


def _named_values(value: str) -> list[str]:
    """Values of `key=value` pairs (DSN keywords, query parameters) whose key names a secret."""
    found: list[str] = []
    for match in _DSN_PAIR.finditer(value):
        if not _SECRET_NAME.search(match.group("key")):
            continue
        for group in ("single", "double"):
            quoted = match.group(group)
            if quoted is not None:
                found.append(quoted)
                found.append(re.sub(r"\\(.)", r"\1", quoted))
        if match.group("bare") is not None:
            found.append(match.group("bare"))
    return found


def secrets_in_text(value: str) -> list[str]:
    """Secret values embedded in one string, derived from the raw text so that no parse has to
    succeed: whatever can be a URL's userinfo password (one slash, a raw `@` or space in it),
    libpq keyword values (`password`, `sslpassword`, quoted or not), query parameters named
    like pass/secret/token/key; each percent-encoded and decoded, and its longer pieces (a
    driver's error may echo part of a password it split at an `@` or a space)."""
    from urllib.parse import quote, quote_plus, unquote, unquote_plus

    raw = [m.group("value") for m in _KEY_VALUE.finditer(value)]
    raw.extend(_userinfo_passwords(value))
    raw.extend(_named_values(value))
    found: list[str] = []

    def add(text: str, shortest: int = MIN_SECRET) -> None:
        if len(text) >= shortest and text not in found:
            found.append(text)

    for secret in raw:
        decoded = {secret, unquote(secret), unquote_plus(secret)}
        for form in list(decoded):
            decoded.update({quote(form, safe=""), quote_plus(form, safe=""), quote(form)})
        for form in sorted(decoded, key=len, reverse=True):
            add(form)
            for piece in _PIECES.split(form):
                add(piece, MIN_PIECE)
    remember(found)
    return found


def remember_secrets_in(value: Any, skip: Iterable[str] = ()) -> None:
    """Derive and remember the secrets of every string inside a parsed document, except under
    the mapping keys in `skip` (ids and asset paths: `secret:public.users` is a name)."""
    skipped = set(skip)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "@" in item or "=" in item or ":" in item:
                secrets_in_text(item)
        elif isinstance(item, Mapping):
            stack.extend(v for k, v in item.items() if k not in skipped)
        elif isinstance(item, list | tuple):
            stack.extend(item)


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
    remember(found)
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
