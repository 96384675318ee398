"""TLS: with RequireTLS on, every endpoint refuses plaintext clients and serves TLS ones (TLS-REQUIRED).

The reference target's own proxy does not require TLS (IAM's plaintext case must reach the IAM
check), so the test starts a sibling proxy that does, on the same cluster, and tries both endpoints
with both kinds of client: a proxy that enforces the setting on one listener and forgets the other is
caught.  A target the harness cannot start a sibling of is judged on its own endpoints when the user
says it requires TLS (``--requires-tls``: ``requires_tls``); otherwise the guarantee is unknown.
"""

from __future__ import annotations

import pytest

from harness.checkers.tls import CASE_KEY, PLAINTEXT, TLS
from harness.clients.client import tls_options
from harness.plugin.targets import extra_proxy
from harness.targets.base import Capability

ENDPOINTS = ("writer", "reader")


@pytest.mark.guarantee("TLS-REQUIRED")
def test_require_tls_refuses_plaintext_and_serves_tls(target, clients, harness_run):
    if not target.supports(Capability.SIBLING_PROXY):
        target.require(Capability.REQUIRES_TLS)  # the user says the proxy requires TLS: judge its endpoints
        try_both_kinds_of_client(target, target, clients)
        return
    tls_proxy = extra_proxy(target, require_tls=True)  # a proxy whose TLS setting the harness controls
    with tls_proxy:
        try:
            try_both_kinds_of_client(target, tls_proxy, clients)
        finally:
            harness_run.store.copy_log(tls_proxy.log_path, "proxy-tls.log")


def try_both_kinds_of_client(target, tls_proxy, clients) -> None:
    """A plaintext and a TLS client at each endpoint of ``tls_proxy``; the checker judges the logins."""
    endpoints = [e for e in ENDPOINTS if e == "writer" or tls_proxy.reader_endpoints]
    for endpoint in endpoints:
        for case in (PLAINTEXT, TLS):
            client = clients(endpoint, target=tls_proxy, connect=False, connect_extra={CASE_KEY: case},
                             **tls_options(target.engine, required=case == TLS))
            try:
                if client.connect().ok:
                    client.request("read", f"SELECT 1, {clients.who}", result=lambda row: row[0])
            finally:
                client.close()
