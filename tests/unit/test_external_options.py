"""The external target's direct DSNs and pool settings, without a server: what each option gives,
what is refused (one line, no password), and how the options travel to a child run."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.clients.address import DIRECT_PROGRAM
from harness.clients.dialects import MYSQL, POSTGRES
from harness.clients.preflight import PreflightFailed
from harness.plugin.targets import pool_caps
from harness.targets import registry
from harness.targets.base import Capability, TargetError, TargetOptions, Unsupported
from harness.targets.external import ExternalTarget
from suites import workloads
from suites.workloads import NOT_PROXY_BACKENDS, SERVE_WAIT_S, held_at_once, proxy_users, serve_wait_s

PASSWORD = "Sekr3t-direct-pw"
WRITER = "host=127.0.0.1 port=6432 user=app password=pw dbname=app"
DIRECT_W = f"host=127.0.0.1 port=5432 user=admin password={PASSWORD} dbname=app"
DIRECT_R = f"host=127.0.0.1 port=5433 user=admin password={PASSWORD} dbname=app"


def external(**options) -> ExternalTarget:
    return registry.build_target("external", TargetOptions("postgres", writer_dsn=WRITER, **options))


def test_direct_dsns_give_the_direct_capability_and_named_instance_endpoints():
    t = external(direct_writer_dsn=DIRECT_W, direct_reader_dsns=(DIRECT_R, DIRECT_R.replace("5433", "5434")))
    assert t.capabilities == {Capability.DIRECT}
    assert [(e.name, e.role, e.port) for e in t.direct_endpoints] == [
        ("direct-writer", "writer", 5432), ("direct-reader", "reader", 5433), ("direct-reader-2", "reader", 5434)]
    assert t.credentials_for(t.direct_endpoints[0]).user == "admin"  # each DSN keeps its own login
    address = t.direct_address(t.direct_endpoints[1])
    assert address.program == DIRECT_PROGRAM and address.endpoint == "direct:direct-reader"
    assert PASSWORD in t.secret_texts()  # scrubbed from reports like the proxy DSNs' passwords
    described = t.describe()
    assert [d["name"] for d in described["direct"]] == ["direct-writer", "direct-reader", "direct-reader-2"]
    assert PASSWORD not in repr(described)
    assert not external().supports(Capability.DIRECT) and external().direct_endpoints == []
    with pytest.raises(Unsupported):
        external().roles()


def test_stated_pool_settings_give_the_pool_settings_capability():
    t = external(max_connections_percent=2, borrow_timeout=2.5)
    assert t.pool_settings == {"max_connections_percent": 2, "connection_borrow_timeout": 2.5}
    assert t.capabilities == {Capability.POOL_SETTINGS}
    assert pool_caps(t) is None  # the cap needs each instance's max_connections, read directly
    assert external(max_connections_percent=100).pool_settings == {"max_connections_percent": 100}
    assert external().pool_settings is None and not external().supports(Capability.POOL_SETTINGS)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_connections_percent": 0}, r"--max-connections-percent must be a whole number from 1 to 100, got 0"),
    ({"max_connections_percent": 101}, r"from 1 to 100, got 101"),
    ({"max_connections_percent": 5, "borrow_timeout": 0.0}, r"--borrow-timeout must be seconds in \(0, 3600\]"),
    ({"max_connections_percent": 5, "borrow_timeout": 4000.0}, r"got 4000.0"),
    ({"borrow_timeout": 2.0}, r"--borrow-timeout needs --max-connections-percent too"),
    ({"direct_reader_dsns": (DIRECT_R,)}, r"--direct-reader-dsn needs --direct-writer-dsn too"),
    ({"direct_writer_dsn": "host=h port=x user=u"}, r"cannot parse --direct-writer-dsn .*port 'x' is not a number"),
    ({"direct_writer_dsn": DIRECT_W, "direct_reader_dsns": (f"port=1 password={PASSWORD}",)},
     r"--direct-reader-dsn 'port=1 password=\*\*\*' names no user"),
])
def test_bad_direct_or_pool_options_are_refused_in_one_line(options, message):
    with pytest.raises(TargetError, match=message) as caught:
        external(**options)
    assert PASSWORD not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"direct_writer_dsn": DIRECT_W}, "--direct-writer-dsn/--direct-reader-dsn are for --target external"),
    ({"direct_reader_dsns": (DIRECT_R,)}, "--direct-writer-dsn/--direct-reader-dsn are for --target external"),
    ({"max_connections_percent": 5}, "--proxy-setting pool.max_connections_percent=N"),
    ({"borrow_timeout": 2.0}, "--max-connections-percent/--borrow-timeout are for --target external"),
])
def test_the_reference_target_refuses_what_only_an_external_proxy_needs(options, message):
    with pytest.raises(TargetError, match=message):
        registry.build_target("reference", TargetOptions("postgres", **options))


def test_direct_dsns_travel_to_the_child_in_the_environment_and_pool_settings_on_its_command_line():
    argv, env = TargetOptions("postgres", writer_dsn=WRITER, direct_writer_dsn=DIRECT_W,
                              direct_reader_dsns=(DIRECT_R,), max_connections_percent=2,
                              borrow_timeout=2.0).child_arguments()
    assert env["AURORA_HARNESS_DIRECT_WRITER_DSN"] == DIRECT_W
    assert env["AURORA_HARNESS_DIRECT_READER_DSNS"] == DIRECT_R
    assert argv == ["--max-connections-percent", "2", "--borrow-timeout", "2.0"]
    assert PASSWORD not in " ".join(argv)


def test_the_cli_refuses_bad_pool_options_in_one_line_with_exit_2(tmp_path):
    for args, message in ((["--max-connections-percent", "0"], "from 1 to 100"),
                          (["--borrow-timeout", "2"], "needs --max-connections-percent"),
                          (["--max-connections-percent", "ten"], "'ten' is not a valid integer")):
        result = CliRunner().invoke(cli, ["certify", "--target", "external", "--writer-dsn", WRITER,
                                          "--direct-writer-dsn", DIRECT_W, *args, "--run-dir", str(tmp_path / "r")])
        assert result.exit_code == 2, result.output
        assert message in result.output and PASSWORD not in result.output and "Traceback" not in result.output
        assert not (tmp_path / "r").exists()


def test_backends_are_counted_for_the_proxys_users_leaving_the_harnesss_direct_sessions_out():
    t = ExternalTarget("postgres", WRITER, ["host=127.0.0.1 port=6433 user=reporting password=x dbname=app"])
    assert proxy_users(t) == ["app", "reporting"]
    assert DIRECT_PROGRAM in NOT_PROXY_BACKENDS
    pg = POSTGRES.backend_count_sql("w()", NOT_PROXY_BACKENDS, proxy_users(t))
    assert "usename IN ('app', 'reporting')" in pg and f"'{DIRECT_PROGRAM}'" in pg
    my = MYSQL.backend_count_sql("w()", NOT_PROXY_BACKENDS, ["app", "o'neil"])
    assert "p.USER IN ('app', 'o''neil')" in my
    # Without users, the current user's sessions are counted, as before.
    assert "usename = current_user" in POSTGRES.backend_count_sql("w()", ())


def test_waits_and_sessions_held_at_once_come_from_the_stated_limits(monkeypatch):
    assert serve_wait_s(external(max_connections_percent=5, borrow_timeout=2.0)) == 12.0
    assert serve_wait_s(external()) == SERVE_WAIT_S
    t = external(direct_writer_dsn=DIRECT_W, direct_reader_dsns=(DIRECT_R,), max_connections_percent=3)
    monkeypatch.setattr(workloads, "pool_caps", lambda target: {"w": 3, "r1": 3, "r2": 4})
    assert held_at_once(t, ["r1", "r2"], 40) == 7
    assert held_at_once(t, ["r1", "r2"], 5) == 5
    assert held_at_once(t, ["elsewhere"], 40) == 40  # no known cap: all at once
    monkeypatch.setattr(workloads, "pool_caps", lambda target: None)
    assert held_at_once(t, ["r1"], 40) == 40


# -- preflight of the direct DSNs, on scripted answers (the servers' side is in the integration tests) --
def scripted_preflight(monkeypatch, answers: dict[int, list[tuple[str, str]]]):
    """``ask`` answering by port, in turn (the proxy's writer endpoint is 6432)."""
    from harness.clients import preflight

    turns = {port: iter(list(a) * 3) for port, a in answers.items()}
    monkeypatch.setattr(preflight, "ask", lambda target, endpoint, timeout: next(turns[endpoint.port]))
    return preflight.check_endpoints


def direct(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=admin password={PASSWORD} dbname=app"


def test_direct_dsns_that_balance_miss_the_writer_or_leave_an_instance_out(monkeypatch):
    W, R = ("i1", "writer"), ("i2", "reader")
    check = scripted_preflight(monkeypatch, {6432: [W], 5432: [W], 5433: [R, ("i3", "reader")]})
    with pytest.raises(PreflightFailed, match=r"--direct-reader-dsn 127.0.0.1:5433 answered as 2 instances \(i2, i3\) "
                                        r"in 3 connections: it balances"):
        check(external(direct_writer_dsn=direct(5432), direct_reader_dsns=(direct(5433),)))

    check = scripted_preflight(monkeypatch, {6432: [W], 5432: [("other-1", "writer")]})
    with pytest.raises(PreflightFailed, match=r"writer endpoint 127.0.0.1:6432 is served by i1, which no direct DSN "
                                        r"reaches: the direct DSNs must be the instances behind the proxy"):
        check(external(direct_writer_dsn=direct(5432)))

    t = ExternalTarget("postgres", WRITER, ["host=127.0.0.1 port=6433 user=app password=pw dbname=app"],
                       direct_writer_dsn=direct(5432), direct_reader_dsns=[direct(5433)])
    check = scripted_preflight(monkeypatch, {6432: [W], 6433: [R, ("i3", "reader")], 5432: [W], 5433: [R]})
    warnings = check(t)
    assert warnings == [("reader endpoint 127.0.0.1:6433 reached i3, which no direct DSN reaches: backend counts "
                        "and roles do not cover it (give it with --direct-reader-dsn)")]

    check = scripted_preflight(monkeypatch, {6432: [W], 5432: [R], 5433: [W]})
    warnings = check(external(direct_writer_dsn=direct(5432), direct_reader_dsns=(direct(5433),)))
    assert len(warnings) == 1 and "--direct-writer-dsn 127.0.0.1:5432 reaches i2, which is read-only now" in warnings[0]

    check = scripted_preflight(monkeypatch, {6432: [W], 5432: [W]})
    with pytest.raises(PreflightFailed, match=r"--direct-reader-dsn 127.0.0.1:5432 is given twice"):
        check(external(direct_writer_dsn=direct(5432), direct_reader_dsns=(direct(5432),)))


def test_a_reader_dsn_at_the_writer_endpoints_address_is_a_warning_left_to_routing(monkeypatch):
    # One port for the whole cluster (pgpool-II), or a mistake: ROUTE-READER-ONLY judges what it does.
    check = scripted_preflight(monkeypatch, {6432: [("i1", "writer"), ("i2", "reader")]})
    warnings = check(ExternalTarget("postgres", WRITER, [WRITER]))
    assert warnings[0] == ("reader endpoint 127.0.0.1:6432 is the writer endpoint's address too: ROUTE-READER-ONLY "
                           "will judge whether its reads stay off the writer")
