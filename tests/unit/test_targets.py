"""Targets without servers: the kind registry, capabilities, and metrics read as samples."""

from __future__ import annotations

import textwrap
import threading
import tomllib
from types import SimpleNamespace

import pytest

from harness.metrics import MetricSample
from harness.plugin.metrics import SAMPLED, MetricsSampler
from harness.plugin.targets import extra_proxy, pool_caps
from harness.standins.registry import cluster_class
from harness.statedir import STANDIN_RECORD, StateDir
from harness.targets import registry
from harness.targets.aws_standin import AwsStandin
from harness.targets.base import Capability, Target, TargetError, TargetOptions, Unsupported
from harness.targets.external import ExternalTarget
from harness.targets.prometheus import samples_from_text
from harness.targets.reference import IAM_SECRET, IAM_USER, ReferenceTarget, render_toml

WRITER_DSN = "host=127.0.0.1 port=1 user=nobody"


# -- the registry ----------------------------------------------------------------------------------
def test_every_kind_is_registered_and_builds_its_own_class():
    kinds = registry.registered()
    assert list(kinds) == list(registry.kind_names())
    assert {"reference", "external"} <= set(kinds)
    for kind in kinds.values():
        assert issubclass(kind.target_class(), Target)
        assert kind.target_class().kind == kind.name  # describe() reports the registered name
    assert isinstance(registry.build_target("reference", TargetOptions("postgres")), ReferenceTarget)
    external = registry.build_target("external", TargetOptions("postgres", writer_dsn=WRITER_DSN))
    assert isinstance(external, ExternalTarget) and external.writer_endpoint.port == 1


def test_an_unknown_kind_names_the_registered_ones():
    with pytest.raises(TargetError, match=r"unknown target 'rds-typo'; registered: external, reference"):
        registry.build_target("rds-typo", TargetOptions("postgres"))


def test_a_name_is_registered_once():
    taken = registry.get_kind("external")
    registry.register(taken)  # the same entry again is harmless
    with pytest.raises(TargetError, match="already registered"):
        registry.register(registry.TargetKind("external", "another", "harness.targets.reference", "ReferenceTarget"))


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("external", TargetOptions("postgres"), "--target external needs --writer-dsn"),
    ("external", TargetOptions("postgres", writer_dsn="host=h"), "names no user"),
    ("reference", TargetOptions("postgres", writer_dsn=WRITER_DSN), "are for --target external"),
    ("reference", TargetOptions("postgres", metrics_url="http://127.0.0.1:1/metrics"), "are for --target external"),
    ("reference", TargetOptions("oracle"), "unknown engine 'oracle'"),
    ("reference", TargetOptions("postgres", proxy_settings=("leak_session_state=true",)), "SECTION.KEY=VALUE"),
    ("reference", TargetOptions("postgres", proxy_settings=("testing.failpoint",)), "SECTION.KEY=VALUE"),
    ("reference", TargetOptions("postgres", proxy_settings=("admin.port=1",)), "only the pool and testing"),
    ("external", TargetOptions("postgres", writer_dsn=WRITER_DSN, proxy_settings=("pool.x=1",)),
     "--proxy-setting is for --target reference"),
    ("external", TargetOptions("postgres", writer_dsn=WRITER_DSN, standin="somewhere"),
     "--standin is for --target reference"),
])
def test_each_kind_refuses_options_that_do_not_apply(kind, options, message):
    with pytest.raises(TargetError, match=message):
        registry.build_target(kind, options)


def test_the_certification_reference_target_has_the_small_pool_and_every_capability():
    t = ReferenceTarget.from_options(TargetOptions("postgres"))
    assert t.pool_settings == {"max_connections_percent": 20} and t.readers == 3
    # Readers of different sizes (1:1:2, RDS's own example), so balancing by weight is observable.
    assert t.reader_max_connections == (100, 100, 200)
    # Its own proxy does not require TLS (IAM's plaintext case must reach the IAM check); TLS is judged
    # on a sibling that does.
    assert set(t.capabilities) >= set(Capability) - {Capability.NETWORK_FAULTS, Capability.REQUIRES_TLS}
    assert Capability.REQUIRES_TLS not in t.capabilities
    assert Capability.ROTATE_SECRET not in ReferenceTarget("postgres", credentials="static").capabilities
    # A target given another's cluster reads secrets too, but leaves the rotatable logins to their owner.
    borrowed = ReferenceTarget("postgres", cluster=object())  # type: ignore[arg-type]
    assert Capability.ROTATE_SECRET not in borrowed.capabilities and borrowed.credential_mode == "secrets"


def test_a_certification_may_borrow_a_recorded_standin_and_makes_its_logins_on_it(tmp_path):
    """``--standin DIR``: the cluster recorded there, not a new one; the target is the cluster's only
    user while it runs, so it makes the rotatable and IAM logins as on a cluster of its own."""
    with pytest.raises(TargetError, match=r"--standin: no stand-in is recorded in .*standin up --engine postgres"):
        ReferenceTarget.from_options(TargetOptions("postgres", standin=str(tmp_path)))
    StateDir(tmp_path).write(STANDIN_RECORD, cluster_class("mysql")(readers=1).to_state())
    with pytest.raises(TargetError, match=r"--standin: the stand-in in .* is mysql, not postgres"):
        ReferenceTarget.from_options(TargetOptions("postgres", standin=str(tmp_path)))
    t = ReferenceTarget.from_options(TargetOptions("mysql", standin=str(tmp_path)))
    assert t.cluster is not None and t.cluster.engine == "mysql" and t.standin is not None
    assert t.supports(Capability.ROTATE_SECRET) and t.supports(Capability.IAM_AUTH) and t.iam_key is not None
    (tmp_path / f"{STANDIN_RECORD}.json").write_text("{}")
    with pytest.raises(TargetError, match="--standin: the record in .* cannot be read"):
        ReferenceTarget.from_options(TargetOptions("mysql", standin=str(tmp_path)))


def test_proxy_settings_reach_the_proxy_configuration_and_siblings_inherit_the_testing_switches():
    t = ReferenceTarget.from_options(TargetOptions("mysql", proxy_settings=(
        "testing.failpoint=leak_session_state", "pool.connection_borrow_timeout = 5", "pool.init_query=SET @a = 1",
        "secrets_manager.cache_ttl=30")))
    assert t.pool_settings == {"max_connections_percent": 20, "connection_borrow_timeout": 5,
                               "init_query": "SET @a = 1"}
    assert t.testing == {"failpoint": "leak_session_state"}
    t.cluster = SimpleNamespace(instances=[], user="u", password="p")  # type: ignore[assignment]
    t.ports = {"writer": 1, "reader": 2, "admin": 3}
    t.aws = AwsStandin.from_state({"port": 4})
    t.logins = {"aurora-harness/u": ("u", "p")}
    toml = render_toml(t.proxy_config())
    assert "\n[testing]\nfailpoint = \"leak_session_state\"\n" in toml
    config = tomllib.loads(toml)
    assert config["auth"]["secrets"] == [{"secret_id": "aurora-harness/u", "method": "mysql_native_password"}]
    assert config["auth"]["secrets_manager"] == {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:4",
                                                 "cache_ttl": 30}
    assert "users" not in config["auth"] and '"p"' not in toml  # passwords stay in the secrets
    assert t.sibling_proxy(pool={"max_connections_percent": 2}).testing == {"failpoint": "leak_session_state"}
    assert ReferenceTarget.from_options(TargetOptions("mysql")).testing == {}


def test_the_reference_target_makes_an_iam_user_whose_tokens_its_proxy_checks():
    t = ReferenceTarget.from_options(TargetOptions("postgres"))
    assert t.supports(Capability.IAM_AUTH) and t.iam_key is not None
    assert not ReferenceTarget("postgres", credentials="static").supports(Capability.IAM_AUTH)
    borrowed = ReferenceTarget("postgres", cluster=object())  # type: ignore[arg-type]
    assert not borrowed.supports(Capability.IAM_AUTH)  # the IAM user is made with the owner's logins
    t.cluster = SimpleNamespace(instances=[], user="u", password="p")  # type: ignore[assignment]
    t.ports = {"writer": 1, "reader": 2, "admin": 3}
    t.aws = AwsStandin.from_state({"port": 4})
    t.logins = {"aurora-harness/u": ("u", "p"), IAM_SECRET: (IAM_USER, "iam-db-password")}
    config = tomllib.loads(render_toml(t.proxy_config()))
    assert config["auth"]["secrets"][1] == {"secret_id": IAM_SECRET, "method": "scram-sha-256",
                                            "iam_auth": "required"}
    assert "iam_auth" not in config["auth"]["secrets"][0]
    key_id, secret_key = t.iam_key
    assert config["auth"]["iam"] == {"region": "us-east-1", "access_keys": [
        {"access_key_id": key_id, "secret_access_key": secret_key}]}
    assert config["tls"] == {"require_tls": False}  # a plaintext IAM login reaches the IAM check
    writer = config["endpoints"][0]
    access = t.iam_access()
    assert (access.user, access.host, access.port, access.region) == (IAM_USER, writer["advertised_host"], 1,
                                                                      "us-east-1")
    assert access.user_password == "iam-db-password" and "iam-db-password" not in repr(access)
    assert secret_key not in repr(access)
    sibling = t.sibling_proxy()
    assert sibling.iam_key == t.iam_key and sibling.supports(Capability.IAM_AUTH)
    # [auth.iam] settings come from --proxy-setting; the access key stays the target's own.
    misconfigured = ReferenceTarget.from_options(TargetOptions("postgres", proxy_settings=(
        "iam.region=eu-west-1", "iam.max_clock_skew=60")))
    misconfigured.cluster, misconfigured.ports, misconfigured.aws, misconfigured.logins = (
        t.cluster, t.ports, t.aws, t.logins)
    iam = tomllib.loads(render_toml(misconfigured.proxy_config()))["auth"]["iam"]
    assert iam["region"] == "eu-west-1" and iam["max_clock_skew"] == 60
    assert iam["access_keys"][0]["access_key_id"] == misconfigured.iam_key[0]
    assert misconfigured.iam_access().region == "us-east-1"
    with pytest.raises(Unsupported):
        ExternalTarget("postgres", WRITER_DSN).iam_access()


# -- capabilities instead of kinds -----------------------------------------------------------------
def test_an_external_target_lacks_control_and_says_so():
    t = ExternalTarget("postgres", WRITER_DSN)
    assert t.capabilities == frozenset()
    for call in (t.metrics, lambda: t.sibling_proxy(), lambda: extra_proxy(t, relays=True)):
        with pytest.raises(Unsupported):
            call()
    assert pool_caps(t) is None
    assert t.proxy_log is None
    with_metrics = ExternalTarget("postgres", WRITER_DSN, metrics_url="http://127.0.0.1:1/metrics")
    assert with_metrics.capabilities == {Capability.METRICS}


def test_a_sibling_proxy_shares_the_cluster_and_has_its_own_settings():
    cluster = object()  # never touched: building a sibling starts nothing
    t = ReferenceTarget("postgres", readers=1, cluster=cluster)  # type: ignore[arg-type]
    sibling = extra_proxy(t, pool={"max_connections_percent": 2}, relays=True)
    assert isinstance(sibling, ReferenceTarget) and sibling.cluster is t.cluster
    assert sibling.pool_settings == {"max_connections_percent": 2}
    assert sibling.supports(Capability.NETWORK_FAULTS) and not t.supports(Capability.NETWORK_FAULTS)
    with pytest.raises(TargetError, match="needs the cluster"):
        ReferenceTarget("postgres").sibling_proxy()
    t.aws, t.logins = AwsStandin.from_state({"port": 4}), {"aurora-harness/u": ("u", "p")}
    sharing = t.sibling_proxy()  # the same secrets, read from the same AWS stand-in, which it does not own
    assert sharing.aws is t.aws and sharing.logins == t.logins and sharing.supports(Capability.ROTATE_SECRET)


def test_no_kind_checks_remain_in_the_harness_or_the_suites():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    pattern = re.compile(r"""\.kind\s*(==|!=)\s*["']|\.kind\s+(not\s+)?in\s""")
    offenders = [f"{path.relative_to(root)}:{n}"
                 for folder in ("harness", "suites") for path in sorted((root / folder).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if "target" in line and pattern.search(line)]
    assert offenders == []


# -- metrics as samples ----------------------------------------------------------------------------
def test_prometheus_text_becomes_per_instance_samples():
    text = textwrap.dedent('''
        # TYPE DatabaseConnections gauge
        DatabaseConnections{instance="instance-1"} 17.0
        DatabaseConnections{instance="instance-2"} 3.0
        ClientConnections{endpoint="default"} 40.0
        DatabaseConnections{instance="instance-3"} not-a-number
    ''')
    samples = samples_from_text(text, 5, SAMPLED)
    assert [(s.name, s.value, dict(s.dimensions), s.time) for s in samples] == [
        ("DatabaseConnections", 17.0, {"Target": "instance-1"}, 5),
        ("DatabaseConnections", 3.0, {"Target": "instance-2"}, 5)]


def test_every_labelled_sample_is_read_when_no_names_are_given():
    text = ('ClientConnections{endpoint="default"} 40\n'
            'QueryRequests_total{endpoint="a \\"quoted\\" name"} 7\n'
            'process_start_time_seconds 1.7e9\n')
    samples = samples_from_text(text, 9)
    assert [(s.name, dict(s.dimensions), s.value) for s in samples] == [
        ("ClientConnections", {"endpoint": "default"}, 40.0),
        ("QueryRequests", {"endpoint": 'a "quoted" name'}, 7.0)]  # the counter under its CloudWatch name


def test_the_sampler_keeps_what_the_target_reads_and_counts_failures():
    calls: list[frozenset[str]] = []
    failing = threading.Event()

    def read(names):
        calls.append(frozenset(names))
        if failing.is_set():
            raise TargetError("admin port closed")
        return [MetricSample(len(calls), "DatabaseConnections", 1.0, {"Target": "i1"})]

    sampler = MetricsSampler(read, interval=3600)
    sampler.sample_once()
    failing.set()
    sampler.sample_once()
    assert [s.time for s in sampler.samples] == [1] and sampler.errors == 1
    assert calls[0] == SAMPLED
