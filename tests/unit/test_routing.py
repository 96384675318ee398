"""The router: writer choice, weighted least-sessions reader balancing, never the writer."""

from __future__ import annotations

from collections import Counter

import pytest

from reference_proxy.contracts import InstanceAddress, NoReader, NoWriter, Role
from reference_proxy.routing import Router, RoutingError

W = InstanceAddress("w", "127.0.0.1", 5432)
R1 = InstanceAddress("r1", "127.0.0.1", 5433)
R2 = InstanceAddress("r2", "127.0.0.1", 5434)
R3 = InstanceAddress("r3", "127.0.0.1", 5435)


def cluster(**kwargs) -> Router:
    return Router([(W, Role.WRITER), (R1, Role.READER), (R2, Role.READER), (R3, Role.READER)], **kwargs)


def test_writer_endpoint_goes_to_the_writer_and_follows_failover():
    router = cluster()
    assert router.choose_writer() == W
    router.update({"w": Role.READER, "r1": Role.WRITER})
    assert router.choose_writer() == R1


def test_no_writer_raises():
    router = cluster()
    router.update({"w": Role.UNKNOWN})
    with pytest.raises(NoWriter):
        router.choose_writer()


def test_readers_share_sessions_evenly_and_never_get_the_writer():
    router = cluster()
    chosen = Counter(router.choose_reader("reader").id for _ in range(300))
    assert chosen == {"r1": 100, "r2": 100, "r3": 100}


def test_weights_follow_max_connections():
    router = cluster()
    for instance_id, weight in (("r1", 500), ("r2", 500), ("r3", 1000)):
        router.set_weight(instance_id, weight)
    chosen = Counter(router.choose_reader("reader").id for _ in range(400))
    assert chosen == {"r1": 100, "r2": 100, "r3": 200}


def test_failpoint_readers_round_robin_ignores_the_weights():
    router = cluster(ignore_weights=True)
    for instance_id, weight in (("r1", 500), ("r2", 500), ("r3", 1000)):
        router.set_weight(instance_id, weight)
    chosen = Counter(router.choose_reader("reader").id for _ in range(300))
    assert chosen == {"r1": 100, "r2": 100, "r3": 100}


def test_ended_sessions_make_room_on_their_reader():
    router = cluster()
    first = [router.choose_reader("reader").id for _ in range(3)]
    assert sorted(first) == ["r1", "r2", "r3"]
    router.session_ended("r2")
    assert router.choose_reader("reader").id == "r2"


def test_reader_endpoint_fails_rather_than_using_the_writer():
    router = cluster()
    router.update({"r1": Role.UNKNOWN, "r2": Role.UNKNOWN, "r3": Role.UNKNOWN})
    with pytest.raises(NoReader):
        router.choose_reader("reader")
    router.update({"r2": Role.READER})
    assert {router.choose_reader("reader").id for _ in range(5)} == {"r2"}


def test_endpoint_covering_some_readers_only():
    router = cluster(reader_endpoints={"reporting": ["r3"], "reader": None})
    assert {router.choose_reader("reporting").id for _ in range(4)} == {"r3"}
    assert {router.choose_reader("reader").id for _ in range(11)} == {"r1", "r2", "r3"}  # r3 already has 4
    router.update({"r3": Role.WRITER, "w": Role.READER})  # r3 promoted: reporting has no reader
    with pytest.raises(NoReader):
        router.choose_reader("reporting")


def test_roles_may_be_given_by_id():
    router = Router([W, R1], roles={"w": Role.WRITER, "r1": Role.READER})
    assert router.choose_writer() == W and router.choose_reader("x") == R1
    assert router.snapshot()["instances"]["r1"]["sessions"] == 1


def test_misuse_is_reported_clearly():
    router = cluster()
    with pytest.raises(RoutingError, match="unknown instance 'nope'"):
        router.update({"nope": Role.READER})
    with pytest.raises(RoutingError):
        router.session_ended("r1")  # nothing open there
    with pytest.raises(RoutingError):
        router.set_weight("r1", 0)
    with pytest.raises(RoutingError):
        router.update({"r1": Role.WRITER})  # two writers
    with pytest.raises(RoutingError):
        Router([W, W])
    with pytest.raises(RoutingError):
        cluster(reader_endpoints={"reporting": ["ghost"]})
