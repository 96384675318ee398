"""TLS: with RequireTLS on, the proxy refuses plain connections and serves TLS ones.

No catalogue guarantee names this yet, so it is a plain check: it passes or fails the run on its own.
Both engines' refusals mention TLS (PostgreSQL's startup error; MySQL error 3159, "This RDS Proxy
requires TLS connections.").
"""

from __future__ import annotations

from harness.clients.client import tls_options
from harness.plugin.targets import extra_proxy
from harness.targets.base import Capability


def test_require_tls_refuses_plaintext_and_serves_tls(target, clients, harness_run):
    target.require(Capability.SIBLING_PROXY)  # a proxy whose TLS setting the harness controls
    tls_proxy = extra_proxy(target, require_tls=True)
    with tls_proxy:
        try:
            plain = clients("writer", target=tls_proxy, connect=False, **tls_options(target.engine, required=False))
            refused = plain.connect()
            assert not refused.ok, "the proxy served a plaintext connection although it requires TLS"
            assert "TLS" in refused.error.text, f"plaintext refused, but not for TLS: {refused.error}"
            secure = clients("writer", target=tls_proxy, connect=False, **tls_options(target.engine, required=True))
            served = secure.connect()
            assert served.ok, f"a TLS connection was refused: {served.error}"
            assert secure.tls_in_use
            read = secure.request("read", f"SELECT 1, {clients.who}", result=lambda row: row[0])
            assert read.ok and read.value == 1, f"a read over TLS failed: {read.error}"
        finally:
            harness_run.store.copy_log(tls_proxy.log_path, "proxy-tls.log")
