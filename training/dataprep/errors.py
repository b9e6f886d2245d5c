"""What data preparation raises on purpose. Every error here is permanent: retrying will not help."""

from __future__ import annotations


class DataPrepError(Exception):
    """Base class: bad input, a missing optional dependency, a model that cannot be loaded."""


class MissingExtraError(DataPrepError):
    """An optional dependency (transformers, diffusers, scikit-learn) is not installed."""


class ModelUnavailableError(DataPrepError):
    """A model id that is neither a local directory nor loadable from the hub (or its cache)."""


class InputError(DataPrepError):
    """An input file (captions manifest, Midjourney index) that cannot be used; the message names it."""
