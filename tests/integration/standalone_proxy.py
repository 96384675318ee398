"""The reference proxy as its own process (``python -m reference_proxy``), for what only the command
line does: applying ``[logging]``, raising the descriptor limit, SIGHUP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.targets.reference import render_toml
from reference_proxy.config import ProxyConfig


@dataclass
class StandaloneProxy:
    proc: subprocess.Popen
    config_path: str
    ports: dict[str, int]
    admin_port: int

    def port(self, endpoint: str = "default") -> int:
        return self.ports[endpoint]

    def rewrite(self, config: ProxyConfig) -> None:
        """Write ``config`` over the file and make the proxy read it again (SIGHUP)."""
        write_config(self.config_path, config)
        self.proc.send_signal(signal.SIGHUP)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/status", timeout=10) as response:
            return json.load(response)


def write_config(path: str, config: ProxyConfig) -> None:
    with open(path, "w") as f:
        f.write(render_toml(config.to_dict()))


@contextlib.contextmanager
def standalone_proxy(config: ProxyConfig, directory: str, *, stderr_path: str | None = None,
                     preexec_fn: Callable[[], None] | None = None) -> Iterator[StandaloneProxy]:
    """Run the proxy with ``config`` (written to ``directory``/proxy.toml) until the block ends;
    its standard error goes to ``stderr_path`` (default: ``directory``/stderr.log)."""
    path = os.path.join(directory, "proxy.toml")
    write_config(path, config)
    with open(stderr_path or os.path.join(directory, "stderr.log"), "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "reference_proxy", "--config", path, "--grace", "5"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                preexec_fn=preexec_fn)  # noqa: PLW1509 - only sets a resource limit
    try:
        line = proc.stdout.readline()
        if not line.startswith("reference-proxy ready:"):
            raise AssertionError(f"the proxy did not start: {line!r}")
        ports = {name: int(port) for name, port in re.findall(r"(\w+)=(\d+)", line.split(":", 1)[1])}
        admin = ports.pop("admin")
        yield StandaloneProxy(proc, path, ports, admin)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
