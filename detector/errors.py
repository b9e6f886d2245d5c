"""The detector's error hierarchy: what callers catch and map to a row's error code."""

from __future__ import annotations

from typing import Literal

DecodeCode = Literal["not_an_image", "unsupported_format", "decode_error", "too_large"]
DECODE_CODES: tuple[DecodeCode, ...] = ("not_an_image", "unsupported_format", "decode_error", "too_large")

PICKLE_REFUSED = "pickle checkpoints are not loaded (unsafe); convert to safetensors"
NO_CHECKPOINT = (
    "no detector checkpoint is configured: set AIDETECT_CHECKPOINT=DIR or train one with `aidetect train distill`"
)


class DetectorError(Exception):
    """Base class of every error the detector package raises on purpose."""


class DecodeError(DetectorError):
    """Bytes that cannot become an RGB image; ``code`` is permanent (never worth a retry)."""

    def __init__(self, code: DecodeCode, detail: str = "") -> None:
        if code not in DECODE_CODES:
            raise ValueError(f"unknown decode error code {code!r}")
        self.code: DecodeCode = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


class CheckpointError(DetectorError):
    """A checkpoint that is missing, malformed, inconsistent or unsafe (pickle)."""


class NoCheckpointError(CheckpointError):
    """No checkpoint was given, configured or packaged."""

    def __init__(self, message: str = NO_CHECKPOINT) -> None:
        super().__init__(message)
