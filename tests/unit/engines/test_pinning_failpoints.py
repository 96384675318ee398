"""The pinning classifiers' failpoints: each changes exactly the decision it names, on both engines.

``settings_do_not_pin`` lets a session-level SET of a server setting through unpinned (the state
that makes PIN-TRIGGERS false); ``every_set_pins`` pins on SETs documented not to pin (PIN-NON-TRIGGERS).
Every other decision stays what it is without a failpoint.
"""

from __future__ import annotations

import pytest

from reference_proxy.engines.mysql.pinning import classify as classify_mysql
from reference_proxy.engines.postgres.pinning import classify as classify_postgres
from reference_proxy.engines.postgres.screen import screened


@pytest.mark.parametrize("classify, setting, tracked_or_local, other_trigger", [
    (classify_postgres, "SET statement_timeout = 60000", "SET LOCAL statement_timeout = 60000",
     "SELECT set_config('a.b', 'x', false)"),
    (classify_mysql, "SET SESSION group_concat_max_len = 4096", "SET NAMES utf8mb4", "SET @harness_pin = 1"),
])
def test_each_pinning_failpoint_changes_only_its_own_decision(classify, setting, tracked_or_local, other_trigger):
    assert classify(setting) is not None and classify(tracked_or_local) is None
    assert classify(setting, failpoint="settings_do_not_pin") is None
    assert classify(tracked_or_local, failpoint="settings_do_not_pin") is None
    assert classify(tracked_or_local, failpoint="every_set_pins") is not None
    assert classify(setting, failpoint="every_set_pins") is not None
    for failpoint in (None, "settings_do_not_pin", "every_set_pins", "leak_session_state"):
        assert classify(other_trigger, failpoint=failpoint) is not None
        assert classify("SELECT 1", failpoint=failpoint) is None


def test_the_screen_passes_a_failpoint_on_to_the_classifier():
    classify = screened(classify_postgres)
    assert classify("SET statement_timeout = 1") is not None
    assert classify("SET statement_timeout = 1", failpoint="settings_do_not_pin") is None
    assert classify("SELECT 1", failpoint="every_set_pins") is None
