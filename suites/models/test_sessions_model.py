"""Random multi-client session sequences through the proxy, checked against a private-session model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from suites.models.profiles import PROFILE_FOR
from suites.models.session_machine import machine_for, shortest_failure


@pytest.mark.guarantee("ISOLATION-NO-SESSION-LEAK")
@pytest.mark.timeout(1200)
def test_sessions_behave_like_private_sessions(target, clients, profile, harness_run, request):
    machine = machine_for(clients)
    hypothesis_profile = PROFILE_FOR[profile]
    seed = request.config.getoption("hypothesis_seed", default=None)
    try:
        run_state_machine_as_test(machine, settings=settings(settings.get_profile(hypothesis_profile)))
    except Flaky as e:
        # Replaying the same steps gave another answer: the proxy's behaviour depended on what earlier
        # examples left behind (a leak of session state) or on where it happened to send each statement
        # (a session that does not always see its own state: a balancer such as pgpool-II's).
        raise AssertionError(f"the proxy did not answer the same steps the same way twice: either session "
                             f"state carried over between clients (ISOLATION-NO-SESSION-LEAK) or a session "
                             f"did not always see its own state (SESSION-OWN-STATE judges that): {e}\n\nHypothesis profile {hypothesis_profile!r}, "
                             f"seed {seed!r} (replay: aurora-harness certify ... --seed {seed}); run directory: "
                             f"{harness_run.store.path}\n\n{shortest_failure(machine)}") from e
    except AssertionError as e:
        raise AssertionError(f"{e}\n\nHypothesis profile {hypothesis_profile!r}, seed {seed!r} "
                             f"(replay: aurora-harness certify ... --seed {seed}); the SQL steps are above; "
                             f"run directory: {harness_run.store.path}\n\n{shortest_failure(machine)}") from e
