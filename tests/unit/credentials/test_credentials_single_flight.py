"""Concurrent requests for one key share one run of the work."""

from __future__ import annotations

import asyncio

import pytest

from reference_proxy.credentials.single_flight import SingleFlight


def test_callers_that_arrive_while_work_runs_share_its_result() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    runs = []

    async def work(value: int) -> int:
        runs.append(value)
        await asyncio.sleep(0)
        return value

    async def scenario():
        first = await asyncio.gather(*(flights.run("a", lambda n=n: work(n)) for n in range(10)),
                                     flights.run("b", lambda: work(99)))
        again = await flights.run("a", lambda: work(7))
        return first, again

    first, again = asyncio.run(scenario())
    assert first == [0] * 10 + [99] and again == 7
    assert runs == [0, 99, 7] and flights.started == 3
    assert not flights.in_flight("a")


def test_a_failure_reaches_every_caller_and_the_next_call_starts_afresh() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def failing() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("AWS is down")

    async def ok() -> int:
        return 1

    async def scenario():
        outcomes = await asyncio.gather(*(flights.run("k", failing) for _ in range(3)), return_exceptions=True)
        return outcomes, await flights.run("k", ok)

    outcomes, after = asyncio.run(scenario())
    assert [str(o) for o in outcomes] == ["AWS is down"] * 3 and after == 1


def test_a_cancelled_caller_does_not_cancel_the_work_others_wait_for() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release = None

    async def slow() -> str:
        await release.wait()
        return "done"

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        impatient = asyncio.ensure_future(flights.run("k", slow))
        patient = asyncio.ensure_future(flights.run("k", slow))
        await asyncio.sleep(0)
        impatient.cancel()
        await asyncio.sleep(0)
        release.set()
        return await patient, impatient

    result, impatient = asyncio.run(scenario())
    assert result == "done" and impatient.cancelled()
    with pytest.raises(asyncio.CancelledError):
        impatient.result()
