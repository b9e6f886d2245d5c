"""``celery -A tests.faults.poison_app worker``: the real detect worker, whose decoder chokes on marked bytes.

Bytes that contain ``POISON-CRASH`` kill the pool process in the middle of decoding (as a segfault in a
codec would); bytes that contain ``POISON-HANG`` never come back from decoding (as a codec stuck in a loop
would). Everything else is decoded by the real ``decode_image``. Only the fault tests load this module.
"""

from __future__ import annotations

import os
import signal
import time

from worker import pipeline
from worker.celery import app

__all__ = ["app"]

_real_decode = pipeline.decode_within_budget


def _poisoned_decode(data: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
    if b"POISON-CRASH" in data:
        os.kill(os.getpid(), signal.SIGKILL)
    if b"POISON-HANG" in data:
        time.sleep(3600)  # in C this would not even see a signal; only the process's death ends it
    return _real_decode(data, *args, **kwargs)


pipeline.decode_within_budget = _poisoned_decode
