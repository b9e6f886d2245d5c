"""One settings object, read from the environment once per process.

Every variable has the prefix ``AIDETECT_`` except the two everybody knows:
``DATABASE_URL`` and ``REDIS_URL``. Defaults are those of the embedded mode
(SQLite file in the working directory, no servers needed).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide configuration. Build it with :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="AIDETECT_", extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///aidetect.db"),
        validation_alias=AliasChoices("DATABASE_URL", "AIDETECT_DATABASE_URL"),
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "AIDETECT_REDIS_URL"),
    )

    # model
    checkpoint: Path | None = None  # None: the packaged default checkpoint
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    backend: str = "torch"  # torch | onnx
    threshold_ai: float | None = None  # override the checkpoint's thresholds
    threshold_real: float | None = None
    torch_threads: int | None = None  # None: cores available / worker concurrency

    # worker
    batch_size: int = 64
    worker_concurrency: int = 1
    fetch_threads: int = 16
    max_attempts: int = 3
    task_time_limit_s: int = 600
    stuck_after_s: int = 1800  # the sweep re-enqueues rows queued/running longer than this

    # downloads
    allow_private_networks: bool = False  # True: any address may be fetched (trusted networks only)
    allowed_networks: list[
        str
    ] = []  # CIDRs let through despite the guard, e.g. ["127.0.0.0/8"] for a local mirror
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    decode_memory_mb: int = 1024  # what the decodes of one worker process may hold at once (detector.decode_budget)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 30.0
    max_redirects: int = 5
    max_url_length: int = 2048
    user_agent: str = "aidetect/0.1 (+https://github.com/aidetect/aidetect; AI-image detection crawler)"

    # producer
    max_queued_messages: int = 1000

    @property
    def database_url_plain(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def redis_url_plain(self) -> str:
        return self.redis_url.get_secret_value()

    def intra_op_threads(self) -> int:
        """Torch intra-op threads: the cores this process may use, shared by the worker's processes."""
        if self.torch_threads:
            return self.torch_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // max(1, self.worker_concurrency))


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once; tests call ``get_settings.cache_clear()``)."""
    return Settings()
