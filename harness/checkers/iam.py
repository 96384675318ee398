"""IAM-TOKEN-CHECKS: a proxy lets in a fresh IAM token over TLS and refuses every bad one with RDS's words.

An IAM token is a bearer credential for 15 minutes, so a proxy that lets in an expired token, a token
made for another user, endpoint or region, a forged signature, or a plain password for a user that
must use IAM, has an authentication hole; one that refuses a good token is unusable; one that refuses
with other words breaks the applications that match RDS Proxy's texts.  The checker judges every
attempt against what it tried.

Workload convention (``harness.clients.iam`` follows it): each attempt is a ``connect`` request whose
invocation's extra names its :data:`CASE_KEY` (one of :data:`CASES`) and the :data:`USER_KEY` it logs
in as (never the token); the accepted case is followed on the same connection by one request that
must succeed (the session works).  The expected refusal texts are the engine dialect's
(:attr:`~harness.clients.dialects.base.Dialect.iam_tls_refusals` and ``iam_token_refusals``), so the
checker needs the run's engine.
"""

from __future__ import annotations

from harness.checkers.base import CheckContext, Verdict, completed_pairs, judge, unknown
from harness.checkers.logins import Pair, evidence, judge_attempt
from harness.clients.dialects import dialect_for
from harness.clients.dialects.base import Dialect
from harness.history import History, Op

CASE_KEY = "iam_case"
USER_KEY = "user"

FRESH = "fresh_token"
PLAINTEXT = "plaintext"
EXPIRED = "expired_token"
TAMPERED = "tampered_signature"
WRONG_USER = "wrong_user"
WRONG_HOST = "wrong_host"
WRONG_PORT = "wrong_port"
WRONG_REGION = "wrong_region"
UNTRUSTED_KEY = "untrusted_key"
PASSWORD = "plain_password"

ACCEPT, REFUSE_TLS, REFUSE_TOKEN = "accepted", "refused for lack of TLS", "refused as a bad token"
EXPECTED: dict[str, str] = {
    FRESH: ACCEPT,               # a fresh token, over TLS
    PLAINTEXT: REFUSE_TLS,       # the same token without TLS
    EXPIRED: REFUSE_TOKEN,       # signed 20 minutes ago: its 15 minutes are over
    TAMPERED: REFUSE_TOKEN,      # one character of the signature changed
    WRONG_USER: REFUSE_TOKEN,    # made for another database user
    WRONG_HOST: REFUSE_TOKEN,    # made for another endpoint name
    WRONG_PORT: REFUSE_TOKEN,    # made for another port
    WRONG_REGION: REFUSE_TOKEN,  # signed for another region
    UNTRUSTED_KEY: REFUSE_TOKEN,  # signed with an access key the proxy's account does not know
    PASSWORD: REFUSE_TOKEN,      # the user's database password instead of a token
}
"""What must happen to each case's attempt (all over TLS but ``plaintext``)."""
CASES = tuple(EXPECTED)

def _texts(dialect: Dialect, expected: str, user: str) -> tuple[str, ...]:
    """The refusal texts that are right for a case.  A plaintext IAM login may also meet RequireTLS
    first: a proxy that requires TLS refuses it before looking at the token, in RDS Proxy's words."""
    templates = (dialect.iam_tls_refusals + dialect.require_tls_refusals if expected == REFUSE_TLS
                 else dialect.iam_token_refusals)
    return tuple(t.format(user=user) for t in templates)


class IamTokenChecksChecker:
    """IAM-TOKEN-CHECKS: attempts whose outcome (or refusal text) was not the one expected for their case."""

    guarantee_id = "IAM-TOKEN-CHECKS"

    def check(self, history: History, context: CheckContext) -> Verdict:
        g = context.guarantee(self.guarantee_id)
        attempts = [p for p in completed_pairs(history, f="connect") if p[0].extra.get(CASE_KEY) in EXPECTED]
        if not attempts:
            return unknown(g, "no IAM login attempt in the history")
        if context.engine is None:
            return unknown(g, "the run's engine is not known, so neither are the refusal texts to expect")
        dialect = dialect_for(context.engine)
        wrong: list[Op] = []
        undecided: list[str] = []
        for pair in attempts:
            case = pair[0].extra[CASE_KEY]
            problem = self._judge(history, dialect, pair, EXPECTED[case], str(pair[0].extra.get(USER_KEY, "")))
            if problem is None:
                continue
            decided, said = problem
            if decided:
                wrong.append(evidence(pair, EXPECTED[case], said))
            else:
                undecided.append(f"{case}: {said}")
        missing = [c for c in CASES if c not in {p[0].extra[CASE_KEY] for p in attempts}]
        reason = (f"{len(attempts)} IAM login attempts over {len(CASES) - len(missing)} of {len(CASES)} cases; "
                  f"{len(wrong)} judged wrong")
        if wrong:
            reason += ": " + "; ".join(f"{o.extra[CASE_KEY]} {o.extra['judged']}" for o in wrong[:5])
        if wrong and not g.holds(len(wrong)):
            return judge(g, len(wrong), reason, wrong)
        if missing or undecided:
            said = "; ".join(([f"cases not tried: {', '.join(missing)}"] if missing else []) + undecided)
            return unknown(g, f"{reason}; {said}", figure=len(wrong), evidence=wrong)
        return judge(g, len(wrong), reason, wrong)

    @staticmethod
    def _judge(history: History, dialect: Dialect, pair: Pair, expected: str,
               user: str) -> tuple[bool, str] | None:
        """None when the attempt went as expected; else (whether that is certain, what happened)."""
        accept = expected == ACCEPT
        return judge_attempt(history, pair, accept, () if accept else _texts(dialect, expected, user))
