"""The ``[logging]`` section applied: where the proxy logs, at what level, and whether SQL text is logged.

:class:`LogSettings` owns the root logger's one handler.  It is applied at start and again on every
reload (SIGHUP), so an operator can move the log to another file (after rotating it away, say),
change the level or turn debug logging on and off without a restart.  A ``--log-level`` given on the
command line wins over the file's level, at start and on reloads.

Debug logging is RDS Proxy's ``DebugLogging``: with it on, sessions also log the SQL text clients
send (see :meth:`reference_proxy.session_services.SessionServices.classifier`), which may contain
data (literals, even passwords in ``ALTER USER``), so it is off by default and the log file is
created readable by its owner only.
"""

from __future__ import annotations

import logging
import os
import sys

from reference_proxy.config import LoggingConfig
from reference_proxy.contracts import ConfigError

__all__ = ["LOG_FORMAT", "LogSettings"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LogSettings:
    """Applies :class:`LoggingConfig` to the root logger; see the module docstring."""

    def __init__(self, *, level_override: str | None = None) -> None:
        self.level_override = level_override
        self._handler: logging.Handler | None = None
        self._file: str | None = None

    def apply(self, config: LoggingConfig) -> None:
        """Point the log at ``config.file`` (standard error when absent) at the level in force.
        ConfigError when the file cannot be opened; the previous settings then stay."""
        root = logging.getLogger()
        if self._handler is None or config.file != self._file:
            handler = _handler_for(config.file)
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            for old in list(root.handlers):
                root.removeHandler(old)
                if old is self._handler:
                    old.close()
            root.addHandler(handler)
            self._handler, self._file = handler, config.file
        root.setLevel((self.level_override or config.level).upper())


def _handler_for(path: str | None) -> logging.Handler:
    if path is None:
        return logging.StreamHandler(sys.stderr)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # only the owner reads SQL text
        return logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        raise ConfigError("logging.file", f"cannot open log file {path!r}: {e.strerror or e}") from None
