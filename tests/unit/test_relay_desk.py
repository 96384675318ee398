"""The relay desk: a relay driven from another process's side, over loopback HTTP with a token.

The desk serves a real :class:`RelayServer` in front of a real echo server; :class:`RemoteRelay` is
what a Locust master holds.  What the remote side does must happen to the relay itself (a blackhole
put through the desk holds the bytes, its removal releases them), and whatever is wrong - no token,
another token, an unknown relay or toxic, a bad toxic - must come back as an error naming it.
"""

from __future__ import annotations

import http.client
import json
import random
import socket

import pytest

from harness.net.relay import RelayServer
from harness.net.relay_desk import DeskAddress, RelayDesk, RemoteRelay
from harness.net.toxics import Blackhole, Latency, RelayError, ToxicError
from test_relay import EchoServer, connect, recv_exactly, round_trip


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relays(echo):
    with RelayServer("127.0.0.1", echo.port, rng=random.Random(7)) as relay:
        yield {"instance-1": relay}


@pytest.fixture
def desk(relays):
    with RelayDesk(lambda: relays) as d:
        yield d


def test_a_toxic_added_through_the_desk_acts_on_the_relay_and_its_removal_heals(relays, desk):
    remote = RemoteRelay(desk.address, "instance-1")
    assert remote.port == relays["instance-1"].port
    with connect(relays["instance-1"]) as s:
        round_trip(s)
        installed = remote.add_toxic(Blackhole(name="fault-blackhole"))
        assert installed == Blackhole(name="fault-blackhole")
        assert [t.name for t in relays["instance-1"].toxics()] == ["fault-blackhole"]
        s.sendall(b"held")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(10)  # the relay holds them
        assert [t.name for t in remote.toxics()] == ["fault-blackhole"]
        remote.remove_toxic("fault-blackhole")
        s.settimeout(5)
        assert recv_exactly(s, 4) == b"held"
    assert remote.toxics() == []
    assert remote.stats().connections_total == 1


def test_clear_and_stats_match_the_local_relay(relays, desk):
    remote = RemoteRelay(desk.address, "instance-1")
    remote.add_toxic(Latency(latency_ms=5))
    remote.add_toxic(Blackhole(stream="downstream"))
    assert len(relays["instance-1"].toxics()) == 2
    remote.clear_toxics()
    assert relays["instance-1"].toxics() == []
    assert remote.stats() == relays["instance-1"].stats()


def test_every_request_needs_the_desk_token(desk):
    forged = RemoteRelay(DeskAddress(desk.address.port, "not-the-token"), "instance-1")
    with pytest.raises(RelayError, match="needs its token"):
        forged.toxics()
    conn = http.client.HTTPConnection("127.0.0.1", desk.address.port, timeout=5)
    conn.request("GET", "/relays")
    response = conn.getresponse()
    assert response.status == 401 and json.loads(response.read())["kind"] == "auth"
    conn.close()


def test_errors_name_what_is_wrong(relays, desk):
    remote = RemoteRelay(desk.address, "instance-1")
    with pytest.raises(RelayError, match="no relay for instance 'instance-9'"):
        RemoteRelay(desk.address, "instance-9").toxics()
    with pytest.raises(RelayError, match="no toxic .nothing. is installed"):
        remote.remove_toxic("nothing")
    remote.add_toxic(Latency(latency_ms=5))
    with pytest.raises(RelayError):  # the relay refuses a second toxic of the same name
        remote.add_toxic(Latency(latency_ms=9))
    with pytest.raises(ToxicError, match="unknown toxic type"):
        remote._call("POST", "/relays/instance-1/toxics", {"type": "earthquake"})
    with pytest.raises(ToxicError, match="not JSON|JSON object"):
        remote._call("POST", "/relays/instance-1/toxics", ["latency"])
    assert [t.name for t in relays["instance-1"].toxics()] == ["latency_both"], "nothing else changed"


def test_a_stopped_desk_is_reported_not_hung_on(relays):
    desk = RelayDesk(lambda: relays)
    address = desk.start()
    desk.stop()
    desk.stop()  # twice is fine
    with pytest.raises(RelayError, match="did not answer"):
        RemoteRelay(address, "instance-1", timeout=2).toxics()


def test_a_desk_record_is_checked():
    assert DeskAddress.from_state({"port": 4000, "token": "t"}) == DeskAddress(4000, "t")
    for bad in ({"port": 0, "token": "t"}, {"port": 4000}, {"port": "4000", "token": "t"}):
        with pytest.raises(RelayError, match="needs a port and a token"):
            DeskAddress.from_state(bad)
