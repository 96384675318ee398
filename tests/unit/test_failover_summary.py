"""The failover benchmark's arithmetic and settings (the rounds themselves run in the CLI)."""

from __future__ import annotations

import pytest

from harness.bench.failover import (
    FIGURES,
    FailoverBenchConfig,
    FailoverBenchError,
    quantile,
    summarise,
    table,
)


def test_quantile_is_nearest_rank():
    values = [0.5, 0.1, 0.3, 0.2, 0.4]
    assert quantile(values, 0.5) == 0.3
    assert quantile(values, 0.95) == 0.5
    assert quantile(values, 0.0) == 0.1
    assert quantile([], 0.5) is None
    assert quantile([None, 2.0], 0.5) == 2.0


def test_summary_covers_every_figure_and_skips_missing_values():
    rounds = [{"accepting_to_first_write_s": 0.2, "failed_reads": 0, "lost_writes": 0},
              {"accepting_to_first_write_s": 0.4, "failed_reads": 1, "lost_writes": 0,
               "direct_failed_reads": None}]
    summary = summarise(rounds)
    assert set(summary) == set(FIGURES)
    assert summary["accepting_to_first_write_s"] == {"p50": 0.2, "p95": 0.4, "max": 0.4, "rounds": 2}
    assert summary["direct_failed_reads"]["rounds"] == 0 and summary["direct_failed_reads"]["max"] is None
    text = table({"summary": summary, "targets": {"lost_writes": "0"}})
    assert "accepting_to_first_write_s" in text and "0.400" in text


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"clients": True}, {"readers": 1}, {"warmup": -1},
                                 {"recovery_timeout": "soon"}])
def test_bad_settings_are_refused_clearly(bad):
    with pytest.raises(FailoverBenchError):
        FailoverBenchConfig(**bad)


def test_the_engine_must_have_a_driver_and_direct_clients_need_multi_host_support():
    from harness.bench.failover import direct_supported

    with pytest.raises(FailoverBenchError, match="engine must be one of postgres, mysql"):
        FailoverBenchConfig(engine="oracle")
    assert FailoverBenchConfig(engine="mysql").engine == "mysql"
    assert direct_supported("postgres") and not direct_supported("mysql")
