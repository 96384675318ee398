"""The pieces of the harness's pytest plugin (``harness.pytest_plugin`` holds the hooks and fixtures).

* ``run``       - one certification run inside pytest: run store, per-test records, verdicts;
* ``metrics``   - sampling the proxy's Prometheus metrics into checker samples;
* ``targets``   - building the target from the command-line options;
* ``faults``    - failover / crash / restart and registered faults, recorded as fault windows.
"""


class PluginError(Exception):
    """Root of the plugin's errors: bad options, a target that cannot be built."""
