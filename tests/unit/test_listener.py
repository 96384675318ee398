"""The accept loop's episodes of failing accepts, on a stand-in listening socket whose accept() fails
on demand: logged once when they start and once when they end, each refused client counted and
answered with the engine's error through the spare descriptor."""

from __future__ import annotations

import asyncio
import errno
import socket

from reference_proxy.listener import AcceptFailures, Listener
from reference_proxy.metrics import ProxyMetrics

REFUSAL = b"E-too-many"


class FlakyListeningSocket:
    """accept() answers from a script: 'ok' (a real connected pair), an errno, or nothing waiting."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.kept: list[socket.socket] = []  # the client ends, to read what the proxy sent them

    def setblocking(self, flag: bool) -> None:
        pass

    def accept(self):
        if not self.script:
            raise BlockingIOError
        step = self.script.pop(0)
        if step == "ok":
            server_end, client_end = socket.socketpair()
            self.kept.append(client_end)
            return server_end, ("127.0.0.1", 1)
        raise OSError(step, "scripted")


def _drive(script: list) -> tuple[list[socket.socket], FlakyListeningSocket, AcceptFailures, ProxyMetrics]:
    metrics = ProxyMetrics()
    sock = FlakyListeningSocket(script)
    accepted: list[socket.socket] = []

    async def run() -> AcceptFailures:
        failures = AcceptFailures(metrics)
        listener = Listener(sock, "default", accepted.append, REFUSAL, failures)
        listener._on_readable()  # what the loop calls when the socket is readable (never started here)
        failures.close()
        return failures

    return accepted, sock, asyncio.run(run()), metrics


def test_an_episode_is_logged_once_and_refused_clients_get_the_refusal(caplog):
    script = ["ok", errno.EMFILE, "ok", errno.EMFILE, "ok", errno.EMFILE, "ok", "ok"]
    with caplog.at_level("INFO", logger="reference_proxy.listener"):
        accepted, sock, failures, metrics = _drive(script)
    # accept 1 served; then three times: EMFILE, and the spare lets one waiting client be refused;
    # then the last accept succeeds and ends the episode.
    assert len(accepted) == 2
    refused_ends = sock.kept[1:4]
    assert [end.recv(100) for end in refused_ends] == [REFUSAL] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot accept new clients" in m for m in messages) == 1
    assert any("Too many open files (open file limit" in m for m in messages)
    assert sum("accepting new clients again; 3 refused" in m for m in messages) == 1
    assert metrics.value("ClientConnectionsRefused", endpoint="default", reason="descriptors") == 3
    assert failures.episodes == 1 and failures.active is None
    for s in accepted + sock.kept:
        s.close()


def test_other_accept_errors_are_an_episode_too_and_clients_that_left_are_not(caplog):
    with caplog.at_level("INFO", logger="reference_proxy.listener"):
        accepted, sock, failures, _ = _drive([errno.ECONNABORTED, "ok", errno.EINVAL])
    assert len(accepted) == 1  # a client that left before accept() is nothing to report
    assert failures.active == "accept_error" and failures.episodes == 1
    assert sum("cannot accept new clients" in r.getMessage() for r in caplog.records) == 1
    for s in accepted + sock.kept:
        s.close()
