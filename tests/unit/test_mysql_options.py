"""Option files and seed SQL of the MariaDB stand-in, and its argument checks (no server)."""

from __future__ import annotations

import pytest

from harness.standins.base import StandinError
from harness.standins.mysql import options as opts
from harness.standins.mysql.cluster import MySQLCluster


def options(writer: bool, semi_sync_master: bool = True) -> opts.InstanceOptions:
    return opts.InstanceOptions(
        instance_id="instance-2", server_id=2, port=40002, instance_dir="/d/instance-2",
        data_dir="/d/instance-2/data", writer=writer, semi_sync_master=semi_sync_master,
        semi_sync_timeout_ms=10000, max_connections=200)


def settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_reader_option_file():
    s = settings(opts.render_instance(options(writer=False)))
    assert s["report-host"] == "instance-2" and s["server-id"] == "2" and s["port"] == "40002"
    assert s["bind-address"] == "127.0.0.1"
    assert s["read-only"] == "ON" and s["init-rpl-role"] == "SLAVE"
    assert s["rpl-semi-sync-slave-enabled"] == "ON" and s["rpl-semi-sync-master-enabled"] == "OFF"
    assert s["gtid-strict-mode"] == "ON" and "log-slave-updates" in s and "skip-slave-start" in s
    assert s["max-connections"] == "200"
    assert s["datadir"] == "/d/instance-2/data"


def test_writer_option_file():
    s = settings(opts.render_instance(options(writer=True)))
    assert s["read-only"] == "OFF" and s["init-rpl-role"] == "MASTER"
    assert s["rpl-semi-sync-master-enabled"] == "ON"
    assert s["rpl-semi-sync-master-wait-point"] == "AFTER_SYNC"
    assert s["rpl-semi-sync-master-timeout"] == "10000"
    assert s["rpl-semi-sync-slave-enabled"] == "OFF"


def test_instances_know_mysql8_default_collation():
    import xml.etree.ElementTree as ET

    s = settings(opts.render_instance(options(writer=True)))
    assert s["character-sets-dir"] == opts.charsets_dir_path("/d/instance-2")
    index = ET.fromstring(opts.MYSQL8_COLLATIONS_INDEX.encode())
    collation = index.find("charset[@name='utf8mb4']/collation")
    assert collation.get("name") == "utf8mb4_0900_ai_ci" and collation.get("id") == "255"
    assert len(collation.find("rules")) > 0  # MariaDB crashes on an empty rule list


def test_a_writer_without_readers_does_not_wait_for_acknowledgements():
    s = settings(opts.render_instance(options(writer=True, semi_sync_master=False)))
    assert s["rpl-semi-sync-master-enabled"] == "OFF"


def test_seed_and_instances_share_the_redo_log_size():
    seed = settings(opts.render_seed("/d/seed"))
    inst = settings(opts.render_instance(options(writer=True)))
    assert seed["innodb-log-file-size"] == inst["innodb-log-file-size"]


def test_seed_sql_quotes_passwords_and_withholds_read_only_admin():
    sql = opts.seed_sql(user="harness", password="it's\\x", database="harness",
                        admin_user="adm", admin_password="a", replication_user="rep",
                        replication_password="r")
    assert "IDENTIFIED BY 'it\\'s\\\\x'" in sql
    assert "REVOKE READ_ONLY ADMIN ON *.* FROM 'harness'@'%'" in sql
    assert sql.startswith("FLUSH PRIVILEGES;")
    assert "GRANT REPLICATION SLAVE ON *.* TO 'rep'@'127.0.0.1'" in sql


@pytest.mark.parametrize("kwargs, message", [
    ({"readers": -1}, "readers"),
    ({"user": "bad user"}, "user"),
    ({"user": "standin_admin"}, "reserved"),
    ({"database": "x;drop"}, "database"),
    ({"max_connections": 1}, "max_connections"),
    ({"semi_sync_timeout": 0}, "semi_sync_timeout"),
    ({"readers": 1, "ports": [1]}, "ports"),
])
def test_bad_arguments_are_refused_before_anything_starts(kwargs, message):
    with pytest.raises(StandinError, match=message):
        MySQLCluster(**kwargs)


def test_state_round_trip_keeps_credentials():
    c = MySQLCluster(readers=1, password="secret", max_connections=300)
    clone = MySQLCluster.from_state(c.to_state())
    assert (clone.password, clone.admin_password, clone.replication_password) == (
        "secret", c.admin_password, c.replication_password)
    assert clone.max_connections == 300 and clone.rebuilt == []
    with pytest.raises(StandinError, match="not started"):
        clone.topology()
    clone.stop()  # nothing started: still fine
