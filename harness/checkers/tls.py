"""TLS-REQUIRED: with RequireTLS on, every endpoint refuses plaintext clients with RDS's words and
serves TLS ones.

A proxy that enforces TLS on one endpoint and forgets another leaks credentials and data in the
clear on the one it forgot, so every endpoint the workload tried is judged, each with both cases.

Workload convention (``suites/conformance/test_tls.py`` follows it): each attempt is a ``connect``
request to an endpoint of a proxy that requires TLS, whose invocation's extra names its
:data:`CASE_KEY` (:data:`PLAINTEXT` or :data:`TLS`); a TLS attempt that logs in is followed on the
same connection by one request that must succeed.  Refusal texts are the engine dialect's
(:attr:`~harness.clients.dialects.base.Dialect.require_tls_refusals`).
"""

from __future__ import annotations

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, unknown
from harness.checkers.logins import evidence, judge_attempt
from harness.clients.dialects import dialect_for
from harness.history import History, Op

CASE_KEY = "tls_case"
PLAINTEXT = "plaintext"
TLS = "tls"
CASES = (PLAINTEXT, TLS)
EXPECTED = {PLAINTEXT: "refused for lack of TLS", TLS: "accepted"}


class RequireTlsChecker:
    """TLS-REQUIRED: attempts (per endpoint, plaintext and TLS) whose outcome was not the expected one."""

    guarantee_id = "TLS-REQUIRED"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        attempts = [p for p in completed_pairs(history, f="connect") if p[0].extra.get(CASE_KEY) in EXPECTED]
        if not attempts:
            return unknown(g, "no login attempt against a proxy that requires TLS in the history")
        if context.engine is None:
            return unknown(g, "the run's engine is not known, so neither is the refusal text to expect")
        refusals = dialect_for(context.engine).require_tls_refusals
        wrong: list[Op] = []
        undecided: list[str] = []
        tried: dict[str, set[str]] = {}
        for pair in attempts:
            case, endpoint = pair[0].extra[CASE_KEY], str(pair[0].endpoint)
            tried.setdefault(endpoint, set()).add(case)
            problem = judge_attempt(history, pair, case == TLS, () if case == TLS else refusals)
            if problem is None:
                continue
            decided, said = problem
            if decided:
                wrong.append(evidence(pair, EXPECTED[case], f"on the {endpoint} endpoint {said}"))
            else:
                undecided.append(f"{case} on {endpoint}: {said}")
        missing = [f"{c} on {e}" for e in sorted(tried) for c in CASES if c not in tried[e]]
        reason = (f"{len(attempts)} login attempts on {len(tried)} endpoints ({', '.join(sorted(tried))}); "
                  f"{len(wrong)} judged wrong")
        if wrong:
            reason += ": " + "; ".join(f"{o.extra[CASE_KEY]} {o.extra['judged']}" for o in wrong[:5])
        if wrong and not g.holds(len(wrong)):
            return judge(g, len(wrong), reason, wrong)
        if missing or undecided:
            said = "; ".join(([f"not tried: {', '.join(missing)}"] if missing else []) + undecided)
            return unknown(g, f"{reason}; {said}", figure=len(wrong), evidence=wrong)
        return judge(g, len(wrong), reason, wrong)
