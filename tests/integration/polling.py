"""The one way integration tests wait for state: poll with a deadline, fail naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def eventually(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", *,
               tolerate: tuple[type[BaseException], ...] = (), interval: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions of the ``tolerate`` types count as "not yet" (a server still starting refuses
    connections); the last one is quoted if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except tolerate as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
