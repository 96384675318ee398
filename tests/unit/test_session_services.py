"""SessionServices' per-endpoint answers that do not need a session."""

from __future__ import annotations

from reference_proxy.session_services import SessionServices


def services(**kw) -> SessionServices:
    return SessionServices(pool=None, choose_instance=None, session_ended=None, credential_source=None,
                           classify=None, digest=None, metrics=None, clock=None, **kw)


def test_require_tls_holds_on_every_endpoint_unless_a_failpoint_exempts_one():
    assert services(require_tls=True).tls_required("reader")
    assert not services().tls_required("writer")
    exempt = services(require_tls=True, plaintext_endpoints=frozenset({"reader"}))
    assert exempt.tls_required("writer") and not exempt.tls_required("reader")
