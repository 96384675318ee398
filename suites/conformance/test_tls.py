"""TLS: with RequireTLS on, every endpoint refuses plaintext clients and serves TLS ones (TLS-REQUIRED).

The target's own proxy does not require TLS (IAM's plaintext case must reach the IAM check), so the
test starts a sibling proxy that does, on the same cluster, and tries both endpoints with both kinds
of client: a proxy that enforces the setting on one listener and forgets the other is caught.
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
    target.require(Capability.SIBLING_PROXY)  # a proxy whose TLS setting the harness controls
    tls_proxy = extra_proxy(target, require_tls=True)
    with tls_proxy:
        try:
            for endpoint in ENDPOINTS:
                for case in (PLAINTEXT, TLS):
                    client = clients(endpoint, target=tls_proxy, connect=False, connect_extra={CASE_KEY: case},
                                     **tls_options(target.engine, required=case == TLS))
                    try:
                        if client.connect().ok:
                            client.request("read", f"SELECT 1, {clients.who}", result=lambda row: row[0])
                    finally:
                        client.close()
        finally:
            harness_run.store.copy_log(tls_proxy.log_path, "proxy-tls.log")
