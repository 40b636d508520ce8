"""Durations (`90s`, `15m`, `1h`, `24h`, `7d`) and schedules (a duration or a cron line)."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
# Longer than any retention or SLA anyone means; past it a typo (99999999999999999999d)
# overflows datetime arithmetic in the scheduler and the rules.
MAX_SECONDS = 10 * 365 * 86400


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as `90s`, `15m`, `1h30m`, `7d`; bare numbers are seconds."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 1h, 24h, 7d)")
        if text < 0:
            raise ValueError(f"{text!r} is negative")
        return _bounded(float(text), text)
    value = str(text).strip().lower().replace(" ", "")
    if not _WHOLE.match(value):
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 1h, 24h, 7d)")
    total = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return _bounded(total, text)


def _bounded(seconds: float, text: object) -> float:
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than 10 years (3650d), the longest duration ctxscan takes")
    return seconds


def format_duration(seconds: float | None) -> str:
    """A short human form: `45s`, `12m`, `3h`, `2d4h`."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        hours, rest = divmod(seconds, 3600)
        return f"{hours}h{rest // 60}m" if rest >= 60 and hours < 10 else f"{hours}h"
    days, rest = divmod(seconds, 86400)
    return f"{days}d{rest // 3600}h" if rest >= 3600 else f"{days}d"


def is_cron(text: str) -> bool:
    """Whether a schedule looks like a five-field cron line rather than a duration."""
    return len(str(text).split()) == 5


def validate_schedule(text: str) -> None:
    """Raise ValueError unless `text` is a duration or a valid five-field cron expression."""
    if is_cron(text):
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(text, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid cron expression ({exc})") from None
        return
    try:
        parse_duration(text)
    except ValueError as exc:
        if "longer than" in str(exc):
            raise
        raise ValueError(
            f"{text!r} is neither a duration (15m, 1h) nor a cron expression ('*/15 * * * *')"
        ) from None
