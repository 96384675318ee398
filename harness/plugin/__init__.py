"""The pieces of the harness's pytest plugin (``harness.pytest_plugin`` holds the hooks and fixtures).

* ``run``       - one certification run inside pytest: run store, per-test records, verdicts;
* ``metrics``   - sampling the target's proxy metrics (as samples) during a test, for the checkers;
* ``targets``   - what the suites ask of the target: sibling proxies, pool caps, reader weights;
* ``faults``    - failover / crash / restart and registered faults, recorded as fault windows;
* ``coverage``  - which suite tests check which guarantee on which engine, read from their marks.
"""


class PluginError(Exception):
    """Root of the plugin's errors: a suite used wrongly, a figure that cannot be read."""
