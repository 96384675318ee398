"""Pure configuration helpers of the PostgreSQL stand-in: no server needed."""

from __future__ import annotations

import pytest

from harness.standins.base import StandinError, check_reader_max_connections
from harness.standins.postgres import conf as pgconf
from harness.standins.postgres.cluster import PostgresCluster


def test_synchronous_names_quote_instance_ids():
    assert pgconf.synchronous_standby_names(["instance-2", "instance-3"], True) == \
        'ANY 1 ("instance-2", "instance-3")'


@pytest.mark.parametrize("readers, synchronous", [([], True), (["instance-2"], False)])
def test_synchronous_names_empty_without_readers_or_when_async(readers, synchronous):
    assert pgconf.synchronous_standby_names(readers, synchronous) == ""


def test_slot_names_are_valid_slot_identifiers():
    assert pgconf.slot_name("instance-12") == "instance_12"


def test_conf_values_escape_quotes_and_backslashes():
    assert pgconf.quote_conf_value("a'b\\c") == "'a''b\\\\c'"


def test_standby_auto_conf_names_primary_and_slot():
    text = pgconf.standby_auto_conf("host=127.0.0.1 port=5 password='x''y'", "instance_2")
    assert "primary_conninfo = 'host=127.0.0.1 port=5 password=''x''''y'''\n" in text
    assert "primary_slot_name = 'instance_2'\n" in text
    assert "synchronous_standby_names" not in text


def test_server_conf_listens_on_loopback_only_and_enables_rewind():
    text = pgconf.server_conf("/tmp/aurora-harness-pg-x/sockets", 150)
    assert "listen_addresses = '127.0.0.1'" in text
    assert "max_connections = 150" in text
    assert "wal_log_hints = on" in text and "wal_level = replica" in text


def test_hba_allows_password_logins_from_loopback_only():
    rules = [line.split() for line in pgconf.hba_conf("harness").splitlines()
             if not line.startswith("#")]
    assert {r[3] for r in rules if r[0] == "host"} == {"127.0.0.1/32"}
    assert all(r[-1] in ("scram-sha-256", "md5") for r in rules)
    # The cluster user's rule comes before the md5 catch-all, so it always uses SCRAM.
    assert rules.index(["host", "all", "harness", "127.0.0.1/32", "scram-sha-256"]) < \
        rules.index(["host", "all", "all", "127.0.0.1/32", "md5"])


def test_server_argv_sets_port_and_cluster_name():
    assert pgconf.server_argv("/bin/postgres", "/d", 5433, "instance-2") == [
        "/bin/postgres", "-D", "/d", "-p", "5433", "-c", "cluster_name=instance-2"]
    # An instance of another size overrides the shared file's max_connections on its command line.
    assert pgconf.server_argv("/bin/postgres", "/d", 5433, "instance-2", 200)[-2:] == ["-c", "max_connections=200"]


@pytest.mark.parametrize("values, readers, message", [
    ((100,), 2, "one value per reader"), ((100, 5), 2, "from 10 to"), ((100, True), 2, "whole number")])
def test_reader_max_connections_are_checked(values, readers, message):
    with pytest.raises(StandinError, match=message):
        check_reader_max_connections(values, readers, 10, 10000)
    assert check_reader_max_connections(None, readers, 10, 10000) is None
    assert check_reader_max_connections([100, 200], 2, 10, 10000) == (100, 200)


@pytest.mark.parametrize("text, value", [("0/0", 0), ("16/B374D848", (0x16 << 32) | 0xB374D848),
                                         (None, None)])
def test_parse_lsn(text, value):
    assert pgconf.parse_lsn(text) == value


def test_parse_lsn_rejects_garbage():
    with pytest.raises(StandinError, match="not a WAL position"):
        pgconf.parse_lsn("nonsense")


def test_controldata_parsing():
    out = ("pg_control version number:            1300\n"
           "Database cluster state:               shut down\n"
           "Latest checkpoint location:           0/3000028\n")
    assert pgconf.checkpoint_lsn_from_controldata(out) == ("shut down", 0x3000028)


@pytest.mark.parametrize("kwargs, message", [
    ({"readers": -1}, "readers"),
    ({"readers": 2.5}, "readers"),
    ({"user": "bad name"}, "user"),
    ({"user": "replicator"}, "reserved"),
    ({"database": "x;drop"}, "database"),
    ({"password": ""}, "password"),
    ({"password": "a\nb"}, "password"),
    ({"max_connections": 1}, "max_connections"),
])
def test_bad_constructor_arguments_are_rejected_clearly(kwargs, message):
    with pytest.raises(StandinError, match=message):
        PostgresCluster(**kwargs)


def test_state_round_trip_keeps_engine_settings():
    c = PostgresCluster(readers=3, synchronous=False, max_connections=50, bin_dirs=["/x"])
    c2 = PostgresCluster.from_state(c.to_state())
    assert (c2.initial_readers, c2.synchronous, c2.max_connections, c2.bin_dirs) == (3, False, 50, ["/x"])
    assert (c2.password, c2.replication_password, c2.next_number) == \
        (c.password, c.replication_password, 1)


def test_state_without_engine_fields_is_rejected():
    state = PostgresCluster(readers=0).to_state()
    state["extra"] = {}
    with pytest.raises(StandinError, match="replication_password"):
        PostgresCluster.from_state(state)
