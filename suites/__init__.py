"""Certification suites: pytest tests run by ``aurora-harness certify`` with the harness plugin.

``conformance`` checks the proxy's promises on a healthy cluster, ``chaos`` under faults, and
``models`` compares random client sessions with a model (Hypothesis).  Tests name the guarantees
they judge with ``@pytest.mark.guarantee``; the plugin turns their histories into verdicts.
Tests marked ``@pytest.mark.profile("full")`` run only in the full profile.
"""
