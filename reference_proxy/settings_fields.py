"""Declaring typed settings once: default, meaning and allowed range in one place.

Settings classes (pool settings, the configuration file's sections) are frozen dataclasses whose
fields are made with :func:`setting`.  The range lives in the field's metadata so that the same
declaration validates direct construction (:func:`check_ranges` from ``__post_init__``), lets the
configuration loader name the full dotted key on error, and feeds the exported JSON schema.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from reference_proxy.contracts import ConfigError


def setting(default: Any = dataclasses.MISSING, *, doc: str, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] | None = None,
            default_factory: Any = dataclasses.MISSING, secret: bool = False) -> Any:
    """A dataclass field with its documentation and its allowed values.

    ``secret`` marks a password or key: it is left out of the dataclass's ``repr``, so printing or
    logging a settings object never shows it."""
    metadata = {"doc": doc, "minimum": minimum, "maximum": maximum, "choices": choices, "secret": secret}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def check_ranges(obj: Any) -> None:
    """Raise :class:`ConfigError` naming the first field of ``obj`` outside its declared range."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value is None or isinstance(value, bool):
            continue
        choices = field.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(field.name, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(field.name, f"must be a finite number, got {value!r}")
        low, high = field.metadata.get("minimum"), field.metadata.get("maximum")
        if low is not None and value < low:
            raise ConfigError(field.name, f"must be at least {low}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(field.name, f"must be at most {high}, got {value!r}")
