"""The ROTATION-* guarantees: what clients see while a secret's password (or user) is rotated.

Workload convention (``suites/chaos/test_rotation.py`` follows it):

* the rotation is a ``rotate_secret`` fault window whose start parameters carry its ``strategy``;
  each step's instant is a ``rotation_step`` event whose value is the step's name (``setSecret``,
  ``finishSecret``...), recorded inside the window;
* sessions established before the rotation keep making requests on their connection (any ``f``
  other than ``connect``) during and after it;
* new logins are ``connect`` requests whose invocation's extra says which of the rotation's logins
  they use: ``{"login": "new"}`` (whatever ``AWSCURRENT`` holds when they start: the old login before
  finishSecret, the new one after) or ``{"login": "old"}`` (always the old login); never a password;
* the proxy's ``DatabaseConnectionsSetupFailed`` counter is sampled (per ``Target``) during the test.

The figures are measured from finishSecret, the instant the secret's ``AWSCURRENT`` moves: a proxy
cannot know a new password before that, and must stop accepting the old one after it.  When a
user's rotate command did the steps, only its end is seen: the finishSecret event is recorded then,
with ``extra["finish_within_s"]`` (the command's duration) saying how much earlier the step may have
been, and a figure that holds only if the step was not earlier is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, seconds, unknown
from harness.guarantees import Guarantee
from harness.history import FaultWindow, History, Op, OpType
from harness.metrics import MetricSample

ROTATION_FAULT = "rotate_secret"
STEP_EVENT = "rotation_step"
SET_STEP, FINISH_STEP = "setSecret", "finishSecret"
FINISH_WITHIN_KEY = "finish_within_s"
LOGIN_KEY = "login"
NEW_LOGIN, OLD_LOGIN = "new", "old"
"""The values of a connect invocation's ``extra["login"]``; see the module docstring."""
SINGLE_USER_STRATEGIES = ("single_user", "database_first")
ALTERNATING_STRATEGIES = ("alternating_users",)
BACKEND_FAILURES_METRIC = "DatabaseConnectionsSetupFailed"
BACKEND_REQUESTS_METRIC = "DatabaseConnectionRequests"

Pair = tuple[Op, Op | None]


def rotation_windows(history: History, strategies: Iterable[str] | None = None) -> list[FaultWindow]:
    """The rotations in the history, of ``strategies`` when given."""
    wanted = None if strategies is None else set(strategies)
    return [w for w in history.fault_windows(ROTATION_FAULT)
            if wanted is None or w.params.get("strategy") in wanted]


def step_time(history: History, window: FaultWindow, step: str) -> int | None:
    """When ``step`` happened in ``window`` (None if it did not)."""
    for event in history.events(STEP_EVENT):
        if event.value == step and window.contains(event.time):
            return event.time
    return None


def finish_uncertainty(history: History, window: FaultWindow) -> float:
    """Seconds before its recorded instant that ``window``'s finishSecret may really have happened: 0
    when the harness did the step itself; the rotate command's duration when a user's command did
    it and only its end was seen (the event's ``extra["finish_within_s"]``)."""
    for event in history.events(STEP_EVENT):
        if event.value == FINISH_STEP and window.contains(event.time):
            return float((event.extra or {}).get(FINISH_WITHIN_KEY, 0.0))
    return 0.0


def _ok(pair: Pair) -> bool:
    return pair[1] is not None and pair[1].type is OpType.OK


def _end(pair: Pair) -> int:
    return pair[1].time if pair[1] is not None else pair[0].time


def _logins(history: History, label: str | None) -> list[Pair]:
    return [p for p in completed_pairs(history, f="connect")
            if (LOGIN_KEY in p[0].extra if label is None else p[0].extra.get(LOGIN_KEY) == label)]


def _finished_rotations(history: History, strategies: Iterable[str] | None) -> list[tuple[FaultWindow, int]]:
    return [(w, t) for w in rotation_windows(history, strategies)
            if (t := step_time(history, w, FINISH_STEP)) is not None]


def _until_next(windows: Sequence[tuple[FaultWindow, int]], i: int) -> int | None:
    """Attempts after a rotation belong to it until the next rotation starts."""
    return windows[i + 1][0].start if i + 1 < len(windows) else None


def failed_login_window(history: History, window: FaultWindow, until: int | None) -> tuple[int, float]:
    """The rotation's window as clients following the secret see it: their failed logins (label
    ``new``) from the rotation's start to ``until``, and the seconds from the first failure's start to
    the last failure's end (0 when none failed).  Refusals of the old login after finishSecret are
    what should happen, so they are not part of it."""
    failed = [p for p in _logins(history, NEW_LOGIN)
              if p[0].time >= window.start and (until is None or p[0].time < until) and not _ok(p)]
    if not failed:
        return 0, 0.0
    return len(failed), seconds(max(_end(p) for p in failed) - min(p[0].time for p in failed))


class _SessionsKept:
    """Sessions connected before a rotation that it dropped: sessions whose requests stopped working
    (the last one failed; a closed connection fails every later request).  A request refused while
    the session goes on working (a backend login that failed in the rotation's window, passed on to
    the client as an error) is counted in the reason, not as a drop: its error code alone cannot
    tell, since a proxy may report a failed backend login with a connection-class code."""

    guarantee_id = ""
    strategies: tuple[str, ...] = ()

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = rotation_windows(history, self.strategies)
        if not windows:
            return unknown(g, f"no rotation ({', '.join(self.strategies)}) in the history")
        start = min(w.start for w in windows)
        after = max(w.end if w.end is not None else w.start for w in windows)
        connected = {i.process for i, c in completed_pairs(history, f="connect")
                     if c is not None and c.type is OpType.OK and c.time < start}
        requests: dict[object, list[Pair]] = {}
        for pair in history.pairs():
            if pair[0].process in connected and pair[0].f != "connect" and pair[0].time >= start:
                requests.setdefault(pair[0].process, []).append(pair)
        observed = [p for p, pairs in requests.items() if any(i.time >= after for i, _ in pairs)]
        if not observed:
            return unknown(g, "no session connected before the rotation made a request after it")
        dropped, refused = [], 0
        for process in observed:
            pairs = requests[process]
            last = max(pairs, key=lambda p: p[0].time)
            if _ok(last):
                refused += sum(1 for p in pairs if not _ok(p))
            else:
                first_failure = min((p for p in pairs if not _ok(p)), key=lambda p: p[0].time)
                dropped.append(first_failure[1] or first_failure[0])
        return judge(g, len(dropped), f"{len(observed)} sessions connected before the rotation made requests "
                                      f"after it; {len(dropped)} of them were dropped; {refused} of their requests "
                                      f"were refused while the session stayed usable", dropped)


class RotationSessionsKeptChecker(_SessionsKept):
    """ROTATION-SESSIONS-KEPT: a single-user rotation drops no established session."""

    guarantee_id = "ROTATION-SESSIONS-KEPT"
    strategies = SINGLE_USER_STRATEGIES


class RotationAlternatingSessionsChecker(_SessionsKept):
    """ROTATION-ALTERNATING-SESSIONS: an alternating-users rotation drops no established session."""

    guarantee_id = "ROTATION-ALTERNATING-SESSIONS"
    strategies = ALTERNATING_STRATEGIES


def _last_attempt_verdict(g: Guarantee, attempts: list[Pair], finish: int, bad: list[Pair],
                          what: str, uncertainty: float = 0.0) -> tuple[float, str] | Verdict:
    """The seconds after finishSecret during which ``bad`` attempts happened; when the last attempt
    was itself bad, the figure is the whole observation, or unknown if that is shorter than the bound.

    ``uncertainty`` is how much earlier finishSecret may have happened than recorded
    (:func:`finish_uncertainty`): the real figure may be that much larger, so a figure within the
    bound only by less than that is unknown."""
    outcome = _measured(g, attempts, finish, bad, what)
    if isinstance(outcome, Verdict) or not uncertainty or not g.holds(outcome[0]) \
            or g.holds(outcome[0] + uncertainty):
        return outcome
    return unknown(g, f"{outcome[1]}, but finishSecret happened at an instant the harness did not observe, up to "
                      f"{uncertainty:.2f} s earlier (inside the rotate command), so the figure may be up to "
                      f"{outcome[0] + uncertainty:.2f} s", figure=outcome[0])


def _measured(g: Guarantee, attempts: list[Pair], finish: int, bad: list[Pair],
              what: str) -> tuple[float, str] | Verdict:
    if not bad:
        return 0.0, f"no {what} after finishSecret"
    last = max(attempts, key=lambda p: p[0].time)
    span = seconds(_end(last) - finish)
    if any(p is last for p in bad):
        if not g.holds(span):
            return span, f"{what} until the end of the observation, {span:.2f} s after finishSecret"
        return unknown(g, f"{what} until the observation ended {span:.2f} s after finishSecret, before the "
                          f"bound of {g.threshold:g} {g.unit}", figure=span, evidence=[p[0] for p in bad])
    figure = seconds(max(_end(p) for p in bad) - finish)
    return figure, f"{what} until {figure:.2f} s after finishSecret"


class RotationNewLoginsChecker:
    """ROTATION-NEW-LOGINS: seconds after finishSecret until logins with the current secret succeed."""

    guarantee_id = "ROTATION-NEW-LOGINS"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        rotations = _finished_rotations(history, None)
        if not rotations:
            return unknown(g, "no rotation reached finishSecret")
        logins = _logins(history, NEW_LOGIN)
        worst: tuple[float, str, list[Pair]] | None = None
        notes = []
        for i, (window, finish) in enumerate(rotations):
            until = _until_next(rotations, i)
            attempts = [p for p in logins if p[0].time >= finish and (until is None or p[0].time < until)]
            if not attempts:
                return unknown(g, "no login with the current secret after finishSecret")
            failed = [p for p in attempts if not _ok(p)]
            outcome = _last_attempt_verdict(g, attempts, finish, failed, "failed new-password logins",
                                            finish_uncertainty(history, window))
            if isinstance(outcome, Verdict):
                return outcome
            count, span = failed_login_window(history, window, until)
            notes.append(f"{window.params.get('strategy')}: {len(failed)} of {len(attempts)} new-password logins "
                         f"failed after finishSecret; rotation window {count} failed logins over {span:.2f} s")
            if worst is None or outcome[0] > worst[0]:
                worst = (outcome[0], outcome[1], failed)
        assert worst is not None
        figure, said, failed = worst
        return judge(g, figure, f"{said}; " + "; ".join(notes), [c or i for i, c in failed])


class RotationOldPasswordChecker:
    """ROTATION-OLD-PASSWORD: seconds after finishSecret during which the old login was still accepted."""

    guarantee_id = "ROTATION-OLD-PASSWORD"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        rotations = _finished_rotations(history, None)
        if not rotations:
            return unknown(g, "no rotation reached finishSecret")
        logins = _logins(history, OLD_LOGIN)
        worst: tuple[float, str, list[Pair]] | None = None
        for i, (window, finish) in enumerate(rotations):
            until = _until_next(rotations, i)
            attempts = [p for p in logins if p[0].time >= finish and (until is None or p[0].time < until)]
            if not attempts:
                return unknown(g, "no login with the old password after finishSecret")
            accepted = [p for p in attempts if _ok(p)]
            outcome = _last_attempt_verdict(g, attempts, finish, accepted, "accepted old-password logins",
                                            finish_uncertainty(history, window))
            if isinstance(outcome, Verdict):
                return outcome
            said = f"{outcome[1]}; {len(accepted)} of {len(attempts)} old-password logins after finishSecret accepted"
            if worst is None or outcome[0] > worst[0]:
                worst = (outcome[0], said, accepted)
        assert worst is not None
        figure, said, accepted = worst
        return judge(g, figure, said, [c or i for i, c in accepted])


def _counter_total(samples: Sequence[MetricSample], at: int | None) -> float | None:
    """The counter summed over its dimensions, each at its last sample no later than ``at`` (None: the
    last sample of all); None when no sample is that early."""
    latest: dict[tuple, MetricSample] = {}
    for s in samples:
        if at is not None and s.time > at:
            continue
        key = tuple(sorted(s.dimensions.items()))
        if key not in latest or s.time >= latest[key].time:
            latest[key] = s
    return sum(s.value for s in latest.values()) if latest else None


def _counter_since(metrics: Sequence[MetricSample], name: str, start: int) -> float:
    """How much counter ``name`` grew from ``start`` to its last sample (a counter never reported is 0)."""
    samples = [s for s in metrics if s.name == name]
    return (_counter_total(samples, None) or 0.0) - (_counter_total(samples, start) or 0.0)


class RotationBackendAuthChecker:
    """ROTATION-BACKEND-AUTH: backend connection setups that failed from the rotation's start on."""

    guarantee_id = "ROTATION-BACKEND-AUTH"

    def __init__(self, metric: str = BACKEND_FAILURES_METRIC) -> None:
        self.metric = metric

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        windows = rotation_windows(history)
        if not windows:
            return unknown(g, "no rotation in the history")
        if not context.metrics:
            return unknown(g, "no metric samples (the target's metrics were not read)")
        start = min(w.start for w in windows)
        end = max(w.end if w.end is not None else w.start for w in windows)
        read_times = [s.time for s in context.metrics]
        if min(read_times) > start or max(read_times) < end:
            return unknown(g, "the metrics were not read both before and after the rotation")
        # A counter that never moved may not be reported at all (Prometheus shows a labelled counter
        # from its first increment on): read while other metrics were, it is zero.
        failed = _counter_since(context.metrics, self.metric, start)
        span = seconds(max(read_times) - start)
        tried = ""
        if any(s.name == BACKEND_REQUESTS_METRIC for s in context.metrics):  # how much the bound was put to the test
            tried = f" of {_counter_since(context.metrics, BACKEND_REQUESTS_METRIC, start):g} requested"
        return judge(g, failed, f"{failed:g}{tried} backend connection setups failed in the {span:.1f} s from the "
                                f"rotation's start to the last sample")
