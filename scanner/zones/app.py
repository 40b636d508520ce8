"""The Celery app shared by the dispatcher (daemon, scan) and the zone workers.

Imported only when a zone or a broker is used: Celery is an optional dependency
(`ctxscan[zones]`) and `ctxscan --help` never pays for it.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend

from scanner.zones import ZoneSettings


class PolledRedisBackend(RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend without its pub/sub: the dispatcher reads every pending
    task's state with one MGET (scanner.zones.dispatch), and a subscription that nobody reads
    would grow the server's output buffer for that client until the server cuts it off."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass

    def forget(self, task_id: str) -> None:
        self._cache.pop(task_id, None)
        self.delete(self.get_key_for_task(task_id))


def result_backend_for(broker: str) -> str:
    """Redis (over TCP or a Unix socket) keeps results beside the tasks; with AMQP they come back
    on a reply queue."""
    explicit = os.environ.get("CTXSCAN_RESULT_BACKEND")
    if explicit:
        return explicit
    backend = f"{PolledRedisBackend.__module__}.{PolledRedisBackend.__name__}"
    if broker.startswith(("redis://", "rediss://")):
        return f"{backend}+{broker}"
    if broker.startswith("redis+socket://"):  # kombu's name for a Unix socket; Celery's is socket://
        return f"{backend}+{broker[len('redis+'):]}"
    return "rpc://"


def make_app(broker: str, settings: ZoneSettings | None = None) -> Any:
    """A configured Celery app."""
    settings = settings or ZoneSettings.from_environment()
    app = Celery("ctxscan", broker=broker, backend=result_backend_for(broker), set_as_current=False)
    app.conf.update(
        # A task is acknowledged when it finished, so one whose worker died goes to another.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=int(settings.result_expires),
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        },
        result_backend_transport_options={"socket_timeout": 10, "socket_connect_timeout": 5},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,   # outlive a broker restart
        broker_heartbeat=10,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                                   "interval_max": 2},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app
