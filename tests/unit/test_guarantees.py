"""The guarantee catalogue and threshold overrides."""

from __future__ import annotations

import pytest

from harness.guarantees import (
    CATALOGUE,
    Comparison,
    GuaranteeError,
    UnknownGuarantee,
    get,
    load_thresholds,
    with_thresholds,
)

REQUIRED = {
    "POOL-BACKEND-CAP", "POOL-MULTIPLEXING", "ROUTE-WRITER-ENDPOINT", "ROUTE-READER-ONLY", "ROUTE-READER-BALANCE",
    "PIN-TRIGGERS", "PIN-NON-TRIGGERS", "ISOLATION-NO-SESSION-LEAK", "BORROW-TIMEOUT", "FAILOVER-WRITE-GAP",
    "FAILOVER-READ-ERRORS", "FAILOVER-IDLE-SURVIVAL", "DURABILITY-NO-LOST-ACK", "DURABILITY-NO-FAILED-VISIBLE",
    "DURABILITY-NO-DUPLICATE",
    "STORM-SERVED", "LATENCY-ADDED-P50", "LATENCY-ADDED-P99", "NETFAULT-SILENT-DETECTED",
}


def test_catalogue_has_every_required_guarantee_with_a_cited_basis():
    assert REQUIRED <= set(CATALOGUE)
    for gid, g in CATALOGUE.items():
        assert g.id == gid
        assert "§" in g.basis, gid
        assert "{threshold}" in g.sentence, gid
        assert g.engines and g.targets


def test_render_and_holds():
    gap = CATALOGUE["FAILOVER-WRITE-GAP"]
    assert gap.render() == "Writes through the writer endpoint succeed again within 3 s of the new writer's promotion."
    assert gap.comparison is Comparison.AT_MOST and gap.holds(3.0) and not gap.holds(3.01)
    served = CATALOGUE["STORM-SERVED"]
    assert served.holds(0.995) and not served.holds(0.5)


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        CATALOGUE["X"] = CATALOGUE["PIN-TRIGGERS"]  # type: ignore[index]


def test_get_names_known_ids_on_a_typo():
    with pytest.raises(UnknownGuarantee, match="unknown guarantee 'FAILOVER-WRITE-GAPS'; known: .*FAILOVER-WRITE-GAP"):
        get("FAILOVER-WRITE-GAPS")


def test_toml_overrides_top_level_and_under_a_table(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('[thresholds]\n"FAILOVER-WRITE-GAP" = 5.5\nPIN-TRIGGERS = 1\n')
    cat = load_thresholds(p)
    assert cat["FAILOVER-WRITE-GAP"].threshold == 5.5
    assert cat["PIN-TRIGGERS"].threshold == 1.0
    assert CATALOGUE["FAILOVER-WRITE-GAP"].threshold == 3.0  # the default catalogue is untouched
    p.write_text('STORM-SERVED = 0.9\n')
    assert load_thresholds(p)["STORM-SERVED"].threshold == 0.9


def test_json_overrides(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"LATENCY-ADDED-P99": 50000}')
    assert load_thresholds(p)["LATENCY-ADDED-P99"].threshold == 50000


@pytest.mark.parametrize("name, text, error, message", [
    ("t.json", '{"NOPE": 1, "ALSO-NOPE": 2}', UnknownGuarantee, "ALSO-NOPE, NOPE"),
    ("t.json", '{"PIN-TRIGGERS": "one"}', GuaranteeError, "must be a finite number"),
    ("t.json", '{"PIN-TRIGGERS": true}', GuaranteeError, "must be a finite number"),
    ("t.json", '[1, 2]', GuaranteeError, "table of id = number"),
    ("t.json", '{not json', GuaranteeError, "is not valid"),
    ("t.toml", 'x = = 1', GuaranteeError, "is not valid"),
    ("t.yaml", 'a: 1', GuaranteeError, "must end in .toml or .json"),
])
def test_bad_threshold_files_are_rejected_by_name(tmp_path, name, text, error, message):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(error, match=message):
        load_thresholds(p)


def test_missing_threshold_file(tmp_path):
    with pytest.raises(GuaranteeError, match="cannot read thresholds file"):
        load_thresholds(tmp_path / "none.toml")


def test_with_thresholds_in_code():
    cat = with_thresholds({"BORROW-TIMEOUT": 0.5})
    assert cat["BORROW-TIMEOUT"].threshold == 0.5 and cat["PIN-TRIGGERS"] is CATALOGUE["PIN-TRIGGERS"]


def test_not_promised_names_a_target_and_engine_with_a_sentence():
    from harness.guarantees import Family, Guarantee

    def make(not_promised):
        return Guarantee("X", "Holds within {threshold} {unit}.", 1.0, "s", Family.CANCEL, Comparison.AT_MOST,
                         "§1.", not_promised=not_promised)

    g = make({("rds", "postgres"): "Documented as unsupported."})
    assert g.not_promised[("rds", "postgres")] == "Documented as unsupported."
    with pytest.raises(TypeError):
        g.not_promised[("rds", "mysql")] = "changed."  # type: ignore[index]
    for bad in ({("aws", "postgres"): "A sentence."}, {("rds", "oracle"): "A sentence."},
                {("rds", "postgres"): "no full stop"}, {"rds": "A sentence."}):
        with pytest.raises(GuaranteeError, match="not_promised"):
            make(bad)
    assert CATALOGUE["CANCEL-OWN-QUERY"].not_promised.keys() == {("rds", "postgres")}

