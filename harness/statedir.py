"""Where the CLI remembers what it started, so a later invocation can manage it.

Each kind of thing the CLI runs in the background (a stand-in cluster, a proxied target) has one
JSON file in the state directory.  Files are written atomically (temporary file + rename), so a
crash of the CLI never leaves a half-written state that ``down`` could not read.  Records hold the
passwords and keys of what runs, so each file is 0600 (``mkstemp``'s mode) in a 0700 directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

ENV_VAR = "AURORA_HARNESS_STATE_DIR"
DEFAULT_DIR = ".aurora-harness"
STANDIN_RECORD = "standin"
"""The record of a stand-in cluster running in the background (``aurora-harness standin up``)."""


class StateError(Exception):
    """The state directory or one of its files cannot be used; the message says which and why."""


def resolve(state_dir: str | None) -> Path:
    """The state directory: the explicit option, else $AURORA_HARNESS_STATE_DIR, else ./.aurora-harness."""
    return Path(state_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR).absolute()


class StateDir:
    """A directory of named JSON records (``standin``, ``target``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def read(self, name: str) -> dict[str, Any] | None:
        """The record, or None if there is none."""
        f = self.file(name)
        try:
            text = f.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read {f}: {e.strerror}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise StateError(f"{f} is not valid JSON ({e}); remove it if nothing is running") from None

    def write(self, name: str, record: dict[str, Any]) -> None:
        """Replace the record atomically."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.path.chmod(0o700)  # records hold passwords and keys: the harness's directory is its own
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.file(name))
        except OSError as e:
            raise StateError(f"cannot write state to {self.path}: {e.strerror}") from None

    def remove(self, name: str) -> None:
        try:
            self.file(name).unlink()
        except FileNotFoundError:
            pass
