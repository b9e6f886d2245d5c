"""What the broker knows: queue depths and the workers online. No task code, no torch.

Flower shows workers and tasks but not how many messages wait in each queue; the status
command and the metrics exporter read that here. Every call is bounded by a short timeout,
so a dead broker makes them fail fast (``kombu.exceptions.OperationalError`` or a transport
connection error) instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from celery import Celery
from kombu import Connection


@dataclass(frozen=True)
class QueueDepth:
    """Messages waiting in one queue, not yet handed to a worker."""

    name: str
    messages: int


@dataclass(frozen=True)
class BrokerSnapshot:
    """Queue depths at one instant.

    ``unacked`` counts messages handed to a worker but not yet acknowledged (tasks running
    with ``acks_late``, and retries a worker holds until their countdown ends). Only the
    Redis transport keeps that count; it is ``None`` on others.
    """

    queues: list[QueueDepth]
    unacked: int | None = None

    def depth(self, name: str) -> int:
        return next((q.messages for q in self.queues if q.name == name), 0)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker node that answered, and the queues it consumes."""

    name: str
    queues: list[str] = field(default_factory=list)


def app_queue_names(app: Celery) -> list[str]:
    """The queues declared in the app's configuration, in order."""
    return [queue.name for queue in app.conf.task_queues or []]


def _connection(app: Celery, timeout_s: float) -> Connection:
    # socket_* are the Redis transport's options; other transports ignore unknown ones.
    options = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    return app.connection_for_read(connect_timeout=timeout_s, transport_options=options)


def _redis_depth(channel, name: str) -> int:  # type: ignore[no-untyped-def]
    """LLEN of the queue's list and its priority lists (kombu names them ``name<sep><priority>``)."""
    keys = [f"{name}{channel.sep}{pri}" if pri else name for pri in channel.priority_steps]
    with channel.client.pipeline() as pipe:
        for key in keys:
            pipe.llen(key)
        return int(sum(pipe.execute()))


def _declared_depth(connection: Connection, name: str) -> int:
    """Depth through a passive declare (AMQP and other transports); a missing queue is empty."""
    channel = connection.channel()
    try:
        _, count, _ = channel.queue_declare(queue=name, passive=True)
        return int(count)
    except connection.channel_errors:
        return 0
    finally:
        channel.close()


def read_depths(app: Celery, queues: Iterable[str] | None = None, timeout_s: float = 2.0) -> BrokerSnapshot:
    """Messages waiting in each queue (the app's queues unless ``queues`` is given).

    Raises ``kombu.exceptions.OperationalError`` or the transport's connection error when the
    broker does not answer within ``timeout_s``.
    """
    names = list(queues) if queues is not None else app_queue_names(app)
    with _connection(app, timeout_s) as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout_s)
        if connection.transport.driver_type != "redis":
            return BrokerSnapshot([QueueDepth(name, _declared_depth(connection, name)) for name in names])
        channel = connection.default_channel
        depths = [QueueDepth(name, _redis_depth(channel, name)) for name in names]
        unacked = int(channel.client.hlen(channel.unacked_key))
        return BrokerSnapshot(depths, unacked)


def online_workers(app: Celery, timeout_s: float = 1.0) -> list[WorkerInfo]:
    """The workers that answer a broadcast within ``timeout_s``, with the queues they consume.

    The call always waits the full ``timeout_s`` (nobody knows how many workers will answer).
    """
    with _connection(app, timeout_s) as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout_s)
        replies = app.control.inspect(timeout=timeout_s, connection=connection).active_queues() or {}
    return sorted(
        (WorkerInfo(name, sorted(q["name"] for q in queues or [])) for name, queues in replies.items()),
        key=lambda worker: worker.name,
    )


def consumers_by_queue(workers: Sequence[WorkerInfo]) -> dict[str, int]:
    """How many online workers consume each queue."""
    counts: dict[str, int] = {}
    for worker in workers:
        for queue in worker.queues:
            counts[queue] = counts.get(queue, 0) + 1
    return counts
