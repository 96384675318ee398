"""GTID positions: parsing MariaDB's lists and comparing progress, without a server."""

from __future__ import annotations

import pytest

from harness.standins.base import StandinError
from harness.standins.mysql.gtid import Gtid, GtidFormatError, GtidPosition, most_advanced


def pos(text: str) -> GtidPosition:
    return GtidPosition.parse(text)


def test_parse_reads_each_domain():
    p = pos("0-1-42,1-3-7")
    assert p.last == {0: Gtid(0, 1, 42), 1: Gtid(1, 3, 7)}
    assert str(p) == "0-1-42,1-3-7"
    assert p.seq_no(0) == 42 and p.seq_no(5) == 0


@pytest.mark.parametrize("text", [None, "", " ", ",", "\n"])
def test_nothing_parses_to_the_empty_position(text):
    assert not GtidPosition.parse(text)
    assert str(GtidPosition.parse(text)) == ""


@pytest.mark.parametrize("text", ["0-1", "a-b-c", "0-1-2-3", "0-1-x", "0-1-5,0-2-6", "-1-2"])
def test_malformed_lists_are_rejected_with_the_offending_text(text):
    with pytest.raises(GtidFormatError, match="GTID|twice"):
        GtidPosition.parse(text)
    assert issubclass(GtidFormatError, StandinError)


def test_covers_compares_sequence_numbers_per_domain():
    assert pos("0-1-10").covers(pos("0-2-9"))  # another server wrote 9: still covered
    assert pos("0-1-10").covers(pos("0-1-10"))
    assert not pos("0-1-9").covers(pos("0-1-10"))
    assert pos("0-1-1").covers(pos(""))
    assert not pos("").covers(pos("0-1-1"))
    assert not pos("0-1-10").covers(pos("0-1-5,1-1-1"))
    assert pos("0-1-10,1-1-1").covers(pos("0-1-5"))


def test_behind_counts_missing_transactions():
    assert pos("0-1-7").behind(pos("0-1-10,1-2-3")) == 6
    assert pos("0-1-12").behind(pos("0-1-10")) == 0


def test_most_advanced_picks_the_covering_position():
    positions = {"instance-2": pos("0-1-5"), "instance-3": pos("0-1-9"), "instance-4": pos("0-1-7")}
    assert most_advanced(positions) == "instance-3"


def test_most_advanced_prefers_the_named_one_on_a_tie_then_the_first():
    positions = {"instance-2": pos("0-1-9"), "instance-3": pos("0-1-9")}
    assert most_advanced(positions) == "instance-2"
    assert most_advanced(positions, prefer=["instance-3"]) == "instance-3"
    assert most_advanced(positions, prefer=iter(["instance-3"])) == "instance-3"
    # A preference does not beat a more advanced position.
    assert most_advanced({"a": pos("0-1-3"), "b": pos("0-1-4")}, prefer=["a"]) == "b"


def test_most_advanced_without_a_covering_position_takes_the_longest_history():
    positions = {"a": pos("0-1-5,1-1-9"), "b": pos("0-1-8,1-1-2")}
    assert most_advanced(positions) == "a"


def test_most_advanced_of_nothing_is_an_error():
    with pytest.raises(StandinError):
        most_advanced({})
