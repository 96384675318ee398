"""The topology monitor's login when only secrets hold logins: asked for afresh at each reconnect."""

from __future__ import annotations

import asyncio

import pytest

from reference_proxy.contracts import InstanceAddress
from reference_proxy.topology import LoginFollowingProbe, ProbeFailed, ProbeResult

ADDRESS = InstanceAddress("i1", "127.0.0.1", 5432)


class FakeProbe:
    """Polls fine with the password "good", fails otherwise."""

    def __init__(self, user: str, password: str) -> None:
        self.login = (user, password)
        self.closed = False

    async def poll(self) -> ProbeResult:
        if self.login[1] != "good":
            raise ProbeFailed("password authentication failed")
        return ProbeResult(reported_id="i1", in_recovery=False, wal_position=1, replay_age=None)

    async def close(self) -> None:
        self.closed = True


def test_the_probe_reopens_with_the_login_current_after_a_failure():
    logins = [None, ("mon", "stale"), ("mon", "good")]
    opened: list[FakeProbe] = []

    def open_with(address, user, password):
        opened.append(FakeProbe(user, password))
        return opened[-1]

    probe = LoginFollowingProbe(ADDRESS, lambda: logins[0], open_with)

    async def scenario() -> None:
        with pytest.raises(ProbeFailed, match="no login yet"):
            await probe.poll()
        logins.pop(0)
        with pytest.raises(ProbeFailed, match="password authentication failed"):
            await probe.poll()
        logins.pop(0)
        assert (await probe.poll()).reported_id == "i1"
        assert (await probe.poll()).reported_id == "i1"  # kept while it works
        await probe.close()

    asyncio.run(scenario())
    assert [p.login for p in opened] == [("mon", "stale"), ("mon", "good")]
    assert all(p.closed for p in opened)
