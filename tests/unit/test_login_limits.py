"""The login bounds shared by both engines: the gate on clients in login and the login clock."""

from __future__ import annotations

import asyncio

import pytest

from reference_proxy.login_limits import LoginClock, LoginGate
from reference_proxy.metrics import ProxyMetrics
from reference_proxy.session_services import SessionServices


def test_gate_admits_up_to_its_limit_and_a_slot_is_given_back_once():
    gate = LoginGate(2)
    first, second = gate.enter(), gate.enter()
    assert first is not None and second is not None
    assert gate.enter() is None and gate.enter() is None
    assert (gate.in_login, gate.refused, gate.refusing_since) == (2, 2, 0)
    first.release()
    first.release()  # idempotent: a session releases at login and again when it ends
    assert gate.in_login == 1 and gate.refusing_since is None
    assert gate.enter() is not None
    gate.limit = 5  # a reload
    assert gate.enter() is not None and gate.in_login == 3


def test_refusals_are_counted_per_endpoint_and_logged_once_per_run(caplog):
    metrics = ProxyMetrics()
    services = SessionServices(pool=None, choose_instance=None, session_ended=None, credential_source=None,
                               classify=None, digest=None, metrics=metrics, clock=None, login_gate=LoginGate(1))
    assert services.admit("default") is not None
    with caplog.at_level("WARNING", logger="reference_proxy.login"):
        assert services.admit("default") is None
        assert services.admit("default") is None
    assert metrics.value("ClientConnectionsRefused", endpoint="default", reason="unauthenticated_limit") == 2
    assert sum("max_unauthenticated_clients" in r.getMessage() for r in caplog.records) == 1


def test_clock_keeps_the_total_limit_whatever_the_client_sends():
    async def scenario() -> tuple[float, float, str, str]:
        loop = asyncio.get_running_loop()
        clock = LoginClock(silence=10.0, total=3.0)
        async with asyncio.timeout(None) as timer:
            clock.attach(timer)
            first = timer.when() - clock.started
            clock.heard()  # bytes arrived: the silence limit starts again, the total one does not
            later = timer.when() - clock.started
            await asyncio.sleep(0)
        silence_clock = LoginClock(silence=1.0, total=30.0)
        said_silence = silence_clock.limit_reached()
        total_clock = LoginClock(silence=10.0, total=1.0)
        total_clock.started = loop.time() - 2.0
        return first, later, said_silence, total_clock.limit_reached()

    first, later, silence, total = asyncio.run(scenario())
    assert first == pytest.approx(3.0) and later == pytest.approx(3.0)
    assert silence == "sent nothing for 1s during its login"
    assert total == "did not finish its login within 1s in all"
