"""One settings object, read from the environment once per process.

Every variable has the prefix ``AIDETECT_`` except the two everybody knows:
``DATABASE_URL`` and ``REDIS_URL``. Defaults are those of the embedded mode
(SQLite file in the working directory, no servers needed).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

_DEVICE = r"^(auto|cpu|mps|cuda(:\d+)?)$"
# setting -> (pattern its URL must match, what the error message says is accepted)
_URL_SCHEMES = {
    "database_url": (r"^(sqlite|postgresql)(\+\w+)?://", "sqlite:// or postgresql://"),
    "redis_url": (r"^(redis|rediss|unix)://", "redis://, rediss:// or unix://"),
}


class Settings(BaseSettings):
    """Process-wide configuration. Build it with :func:`get_settings`."""

    # An empty variable (``AIDETECT_X=`` from a shell or a compose file) counts as unset.
    model_config = SettingsConfigDict(env_prefix="AIDETECT_", extra="ignore", env_ignore_empty=True)

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
    device: str = Field("auto", pattern=_DEVICE)  # auto | cpu | cuda | cuda:N
    # auto: torch on a GPU, ONNX Runtime on the CPU (detector.backends.auto_backend)
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    threshold_ai: float | None = Field(None, ge=0.0, le=1.0)  # override the checkpoint's thresholds
    threshold_real: float | None = Field(None, ge=0.0, le=1.0)
    views: int | None = Field(None, ge=1, le=9)  # crops averaged per image; None: the checkpoint's crop.views
    torch_threads: int | None = Field(None, ge=1, le=1024)  # None: cores available / worker concurrency

    # worker
    batch_size: int = Field(64, ge=1, le=4096)
    worker_concurrency: int = Field(1, ge=1, le=1024)
    fetch_threads: int = Field(16, ge=1, le=1024)
    max_attempts: int = Field(3, ge=1, le=100)
    task_time_limit_s: int = Field(600, ge=1)
    stuck_after_s: int = Field(1800, ge=1)  # the sweep re-enqueues rows queued/running longer than this

    # downloads
    allow_private_networks: bool = False  # True: any address may be fetched (trusted networks only)
    # CIDRs let through despite the guard, e.g. ["127.0.0.0/8"] for a local mirror (a JSON list or comma-separated)
    allowed_networks: Annotated[list[str], NoDecode] = []
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(64_000_000, ge=1)
    # what the decodes of one worker process may hold at once (detector.decode_budget)
    decode_memory_mb: int = Field(1024, ge=16)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0)
    total_timeout_s: float = Field(30.0, gt=0)
    max_redirects: int = Field(5, ge=0, le=100)
    max_url_length: int = Field(2048, ge=16)
    user_agent: str = Field("aidetect/0.1 (+https://github.com/aidetect/aidetect; AI-image detection crawler)",
                            min_length=1)

    # producer
    max_queued_messages: int = Field(1000, ge=0)

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        """A JSON list (``["10.0.0.0/8"]``) or a comma-separated list; every item must be a CIDR."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list ({exc.msg})") from exc
            else:
                value = [item.strip() for item in text.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{item!r} is not a network") from exc
        return value

    @field_validator("database_url", "redis_url")
    @classmethod
    def _scheme(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        pattern, accepted = _URL_SCHEMES[info.field_name]
        if not re.match(pattern, value.get_secret_value()):
            raise ValueError(f"the scheme must be {accepted}")
        return value

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


class ConfigError(ValueError):
    """A setting in the environment that cannot be used; the message names the variable, value and what works."""


# What each kind of field accepts, for the messages of ConfigError.
_ACCEPTS = {
    "batch_size": "an integer from 1 to 4096",
    "device": "auto, cpu, mps, cuda or cuda:N",
    "backend": "auto, torch, onnx or onnx-int8",
    "allowed_networks": 'CIDRs, comma-separated or as a JSON list, e.g. 10.0.0.0/8,127.0.0.0/8 or ["10.0.0.0/8"]',
    "database_url": "a SQLAlchemy URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    "redis_url": "a Redis URL: redis://HOST:PORT/N",
}


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"AIDETECT_{field.upper()}"


def _field_of(loc: str) -> str:
    """The field a validation error's location names (an alias such as DATABASE_URL, or the field itself)."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if loc == name or (isinstance(alias, AliasChoices) and loc in alias.choices):
            return name
    return loc


def mask_url(text: str) -> str:
    """A URL with its password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)


def _accepts(field: str) -> str:
    if field in _ACCEPTS:
        return _ACCEPTS[field]
    info = Settings.model_fields[field]
    kind = info.annotation
    words = {int: "an integer", float: "a number", bool: "true or false (also 1/0, yes/no, on/off)", str: "text",
             Path: "a path"}
    base = next((w for t, w in words.items() if kind is t or kind == t | None), str(kind))
    bounds = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                bounds.append(f"{sign} {getattr(item, attr)}")
    return base + (" " + " and ".join(bounds) if bounds else "")


def describe_error(exc: ValidationError) -> str:
    """One line per bad variable: ``AIDETECT_BATCH_SIZE='abc' is not valid (...); accepted: ...``."""
    lines = []
    for error in exc.errors():
        field = _field_of(str(error["loc"][0])) if error["loc"] else ""
        if field not in Settings.model_fields:
            lines.append(f"invalid setting: {error['msg']}")
            continue
        name = _env_name(field)
        raw = os.environ.get(name, os.environ.get(f"AIDETECT_{field.upper()}", error.get("input")))
        value = mask_url(str(raw)) if field in ("database_url", "redis_url") else raw
        reason = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"invalid setting {name}={str(value)!r}: {reason}; accepted: {_accepts(field)}")
    return "\n".join(dict.fromkeys(lines))


def load_settings() -> Settings:
    """Read the settings from the environment; raises ConfigError with a readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None
    except _SourceError as exc:  # a value the environment source itself could not parse
        match = re.search(r'field "(\w+)"', str(exc))
        field = match.group(1) if match else ""
        name = _env_name(field) if field in Settings.model_fields else "a setting"
        accepted = f"; accepted: {_accepts(field)}" if field in Settings.model_fields else ""
        raise ConfigError(f"invalid setting {name}={os.environ.get(name, '')!r}: cannot be parsed{accepted}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once; tests call ``get_settings.cache_clear()``).

    Raises ConfigError naming the variable when the environment holds a value that cannot be used.
    """
    return load_settings()
