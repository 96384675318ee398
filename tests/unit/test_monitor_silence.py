"""The topology monitor and an instance gone silent: its poll timeout is the round's bound.

A driver cancels a timed-out query by asking the server first, and a silent server never answers,
so a poll cancelled on time may take seconds more to end.  The round must not wait for that: the
poll is abandoned with its probe (closed in the background) and the next round opens a new one.
"""

from __future__ import annotations

import asyncio

from reference_proxy.contracts import InstanceAddress, Role
from reference_proxy.topology import ProbeResult, TopologyMonitor
from reference_proxy.topology.monitor import UNREACHABLE_POLL_TIMEOUT

WRITER = InstanceAddress("w", "127.0.0.1", 5432)
READER = InstanceAddress("r", "127.0.0.1", 5433)


class SilentAfterStart:
    """Answers until ``silent`` is set; then a poll hangs, and cancelling it hangs until ``release``."""

    def __init__(self, address: InstanceAddress, state: dict) -> None:
        self.address, self.state = address, state
        self.closed = False

    async def poll(self) -> ProbeResult:
        if self.address.id == "w" and self.state["silent"]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await self.state["release"].wait()  # the driver's own cancel, waiting on a silent server
                self.state["cancel_ended"] = True
                raise
        return ProbeResult(reported_id=self.address.id, in_recovery=self.address.id != "w",
                           wal_position=1, replay_age=None)

    async def close(self) -> None:
        self.closed = True


def test_a_silent_writer_is_given_up_when_its_poll_times_out_not_when_its_cancel_ends():
    state: dict = {"silent": False, "cancel_ended": False}
    opened: list[SilentAfterStart] = []

    def factory(address: InstanceAddress) -> SilentAfterStart:
        opened.append(SilentAfterStart(address, state))
        return opened[-1]

    async def scenario() -> None:
        state["release"] = asyncio.Event()
        monitor = TopologyMonitor([WRITER, READER], factory, interval=60.0, fast_interval=60.0, poll_timeout=0.05)
        await monitor.start()
        assert monitor.writer == "w"
        state["silent"] = True
        # (a bound only so that a monitor that waits for the cancel fails here instead of hanging)
        outcome = await asyncio.wait_for(monitor.poll_now(), 30)
        assert outcome.roles["w"] is Role.UNKNOWN and "no answer within 0.05s" in monitor.core.views["w"].error
        assert not state["cancel_ended"]  # the round ended while the abandoned poll was still being cancelled
        assert sum(p.address.id == "w" for p in opened) == 2  # a fresh probe for the next round
        await monitor.poll_now()  # an unreachable instance gets the smaller of the two budgets
        assert f"within {min(0.05, UNREACHABLE_POLL_TIMEOUT):g}s" in monitor.core.views["w"].error
        state["release"].set()
        await monitor.stop()
        assert state["cancel_ended"] and all(p.closed for p in opened if p.address.id == "w")

    asyncio.run(scenario())
