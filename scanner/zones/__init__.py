"""Zones: the Celery app, the worker command's body, dispatch from the scheduler, the leader lock."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Bumped whenever the task's payload or answer changes shape; a worker refuses any other.
TASK_PROTOCOL = 1
TASK_NAME = "ctxscan.probe"
BROKER_ENV = "CTXSCAN_BROKER"


def queue_name(zone: str) -> str:
    """The broker queue a zone's workers consume."""
    return f"ctxscan.zone.{zone}"


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    from scanner.durations import parse_duration

    try:
        return parse_duration(raw)
    except ValueError:
        return default


@dataclass(frozen=True)
class ZoneSettings:
    """Delivery timings; each has a `CTXSCAN_ZONE_*` environment variable (a duration).

    The defaults redeliver the task of a worker killed mid-probe within two minutes on Redis
    (visibility timeout plus one restore sweep); a probe longer than the visibility timeout
    may run twice there, which is harmless (probes are read-only, the result is stored once).
    """

    answer_timeout: float = 60.0        # no live worker of the zone started the task by then
    visibility_timeout: float = 90.0    # Redis: an unacknowledged task goes back to the queue
    restore_interval: float = 10.0      # Redis: how often workers look for such tasks
    result_expires: float = 3600.0

    @classmethod
    def from_environment(cls) -> ZoneSettings:
        """The defaults, overridden by CTXSCAN_ZONE_ANSWER_TIMEOUT, _VISIBILITY_TIMEOUT, ..."""
        return cls(answer_timeout=_seconds("CTXSCAN_ZONE_ANSWER_TIMEOUT", cls.answer_timeout),
                   visibility_timeout=_seconds("CTXSCAN_ZONE_VISIBILITY_TIMEOUT", cls.visibility_timeout),
                   restore_interval=_seconds("CTXSCAN_ZONE_RESTORE_INTERVAL", cls.restore_interval),
                   result_expires=_seconds("CTXSCAN_ZONE_RESULT_EXPIRES", cls.result_expires))

    @property
    def redelivery(self) -> float:
        """The longest a task of a dead worker waits before another worker gets it."""
        return self.visibility_timeout + self.restore_interval


BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp", "sentinel")


def broker_url(explicit: str | None) -> str | None:
    """--broker, else $CTXSCAN_BROKER, else None; a UsageError for a scheme Celery cannot use."""
    url = explicit or os.environ.get(BROKER_ENV) or None
    if url is not None:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in BROKER_SCHEMES:
            from scanner.errors import UsageError

            # Only the scheme is echoed: the URL may carry a password.
            raise UsageError(f"the broker URL must start with redis://, rediss://, redis+socket:// or amqp:// "
                             f"(got {scheme + '://' if scheme else 'no scheme'})")
        from urllib.parse import urlsplit

        try:  # kombu parses it later with the same function: refuse it here, in one line
            parts = urlsplit(url)
            _ = parts.port
        except ValueError:
            from scanner.errors import UsageError

            raise UsageError(f"the {scheme}:// broker URL cannot be parsed (a bad host or port; "
                             "percent-encode special characters in its password)") from None
        if scheme == "redis+socket" and (parts.hostname or not parts.path.startswith("/") or parts.path == "/"):
            from scanner.errors import UsageError

            raise UsageError("a redis+socket:// broker URL names the socket's absolute path: "
                             "redis+socket:///run/redis/redis.sock")
    return url
