"""TLS: with RequireTLS on, the proxy refuses plain connections and serves TLS ones.

No catalogue guarantee names this yet, so it is a plain check: it passes or fails the run on its own.
"""

from __future__ import annotations

import psycopg
import pytest

from harness.plugin.targets import extra_proxy
from harness.targets.base import Capability


def test_require_tls_refuses_plaintext_and_serves_tls(target, harness_run):
    target.require(Capability.SIBLING_PROXY)  # a proxy whose TLS setting the harness controls
    tls_proxy = extra_proxy(target, require_tls=True)
    with tls_proxy:
        try:
            info = tls_proxy.conninfo(tls_proxy.writer_endpoint)
            with pytest.raises(psycopg.OperationalError) as refused:
                psycopg.connect(**info, sslmode="disable", connect_timeout=10).close()
            assert "TLS" in str(refused.value), f"plaintext refused, but not for TLS: {refused.value}"
            with psycopg.connect(**info, sslmode="require", connect_timeout=10, autocommit=True) as conn:
                assert conn.pgconn.ssl_in_use
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            harness_run.store.copy_log(tls_proxy.log_path, "proxy-tls.log")
