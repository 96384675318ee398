"""The bridge from recorded requests to Locust's statistics: one measurement, two records.

A load user's request goes through a harness recording client, which writes ``invoke`` and its
completion (``ok`` / ``fail`` / ``info``) into this process's history; the same call is timed here and
reported to Locust with ``events.request.fire``, so Locust's table, CSV and HTML show the very
requests the checkers judge.  Nothing here imports Locust: the ``fire`` callable is handed in (Locust's
``environment.events.request.fire`` in a run, a list's ``append`` in the unit tests), and so is the
clock.

Two Locust pitfalls are handled once, here:

* the runner's statistics listener takes ``response_length`` as a required argument, and a fire
  without it is dropped with a logged ``TypeError``: every report carries one (the rows returned);
* Locust counts a request as failed when ``exception`` is set, and groups failures by the
  exception's text: a request that did not end ``ok`` is reported as :class:`RequestNotOk`, whose
  text is the completion type and the error code only (never row values or ids, which would make
  one failure row per request).

Locust keeps response times in rounded buckets (whole milliseconds below 100 ms), so its
percentiles cannot show sub-millisecond differences; the history keeps nanoseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness.clients.outcomes import Result

Fire = Callable[..., Any]
"""``fire(request_type=..., name=..., response_time=..., response_length=..., exception=..., context=...)``."""


class RequestNotOk(Exception):
    """A request whose completion was not ``ok``: ``fail`` (certainly no effect) or ``info`` (unknown)."""

    def __init__(self, result: Result) -> None:
        code = result.error.code if result.error is not None else None
        super().__init__(f"{result.type.value}: {code or 'no code'}")
        self.result = result


def response_length(result: Result) -> int:
    """Rows the request's statements returned, all together (0 for none): Locust's 'content size'."""
    return sum(len(rows) for rows in (result.rows or []) if rows)


class RequestReporter:
    """Times calls that return a recording client's :class:`Result` and reports each one to Locust.

    ``request_type`` is the Type column (the engine: ``postgres`` or ``mysql``); the name is
    ``<endpoint> <operation>``, so the table separates writer from reader traffic.
    """

    def __init__(self, fire: Fire, request_type: str, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.fire = fire
        self.request_type = request_type
        self.clock = clock

    def measure(self, endpoint: str, operation: str, call: Callable[[], Result]) -> Result:
        """Run ``call`` (one recorded request) and report it; an exception from ``call`` itself (a bug,
        an interrupt) is reported as a failure and raised on."""
        name = f"{endpoint} {operation}"
        started = self.clock()
        try:
            result = call()
        except BaseException as e:
            self.fire(request_type=self.request_type, name=name, response_time=(self.clock() - started) * 1000.0,
                      response_length=0, exception=e, context={"endpoint": endpoint})
            raise
        elapsed_ms = (self.clock() - started) * 1000.0
        self.fire(request_type=self.request_type, name=name, response_time=elapsed_ms,
                  response_length=response_length(result),
                  exception=None if result.ok else RequestNotOk(result),
                  context={"endpoint": endpoint, "node": result.node})
        return result
