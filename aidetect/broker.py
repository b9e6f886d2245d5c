"""kombu's Redis transport with one work-around: a worker survives Redis dying under its unacknowledged messages.

kombu 5.7.0 (installed here; celery/kombu#582 reports the same crash reached from another path) closes a channel by
disconnecting its connection pools first, then giving its unacknowledged messages back, which needs a pool
again; rebuilding it reads the connection the channel no longer has and the worker dies with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")``. It happens when the
connection to Redis is lost while the worker holds delayed retries (tests/faults/test_broker_loss.py).

Here that restore gives up with a warning instead: the broker those messages would go back to is gone
anyway, their rows are ``queued`` in the database, and the sweep re-sends what the broker lost
(worker/sweep.py). :func:`use_for_redis_urls` makes kombu resolve ``redis://`` to this transport, so broker
URLs, the worker banner and Flower (which picks its broker client by the URL's scheme) still say ``redis``.
"""

from __future__ import annotations

import logging

from kombu.transport import redis

log = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client=None):  # type: ignore[no-untyped-def]
        try:
            return super().restore_unacked(client)
        except AttributeError as exc:  # the channel's pools and connection were torn down before the restore
            log.warning("could not give %d unacknowledged message(s) back to a lost broker (%s); the sweep re-sends "
                        "their rows", len(self._delivered), exc)
            self._delivered.clear()
            return None


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"


def use_for_redis_urls() -> None:
    """Resolve the ``redis`` scheme to :class:`Transport` (kombu looks schemes up in ``TRANSPORT_ALIASES``)."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["redis"] = TRANSPORT
