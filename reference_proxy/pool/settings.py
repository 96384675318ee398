"""The connection-pool settings of RDS Proxy's target group, with RDS's names, defaults and ranges.

``MaxConnectionsPercent``, ``MaxIdleConnectionsPercent``, ``ConnectionBorrowTimeout``,
``SessionPinningFilters`` and ``InitQuery`` belong to the target group's ``ConnectionPoolConfig``; ``IdleClientTimeout`` belongs to
the proxy itself but is kept here because it is the other half of the same lifetime story.
Defaults and ranges are those of the RDS API for the PostgreSQL and MySQL engine families.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_proxy.contracts import ConfigError
from reference_proxy.settings_fields import check_ranges, setting

SESSION_PINNING_FILTERS = ("EXCLUDE_VARIABLE_SETS",)
"""The values RDS Proxy accepts in SessionPinningFilters."""


@dataclass(frozen=True)
class PoolSettings:
    """How big the pool may grow per instance and how long a borrower may wait.

    Construction validates every range and raises :class:`ConfigError` naming the field.
    """

    max_connections_percent: int = setting(
        100, minimum=1, maximum=100,
        doc="MaxConnectionsPercent: cap on backend connections per instance, as a percentage of "
            "that instance's max_connections.")
    max_idle_connections_percent: int = setting(
        None, minimum=0, maximum=100,
        doc="MaxIdleConnectionsPercent: cap on idle pooled backend connections per instance, as a "
            "percentage of max_connections; at most max_connections_percent. Not given: half of "
            "max_connections_percent, as RDS defaults it.")
    connection_borrow_timeout: float = setting(
        120.0, minimum=0, maximum=300,
        doc="ConnectionBorrowTimeout, seconds: how long a client may wait for a backend connection. "
            "0 fails at once whenever no idle connection is pooled.")
    init_query: str | None = setting(
        None, doc="InitQuery: SQL run once on every new backend connection (visible to anyone who "
                  "can read the configuration: no secrets).")
    session_pinning_filters: tuple[str, ...] = setting(
        (), doc="SessionPinningFilters: kinds of statement that do not pin a session. The only filter, "
                "EXCLUDE_VARIABLE_SETS, keeps SET statements from pinning (MySQL engine only, as on RDS).")
    idle_client_timeout: float = setting(
        1800.0, minimum=1, maximum=28800,
        doc="IdleClientTimeout, seconds: a client connection with no request for this long is closed.")

    def __post_init__(self) -> None:
        if self.max_idle_connections_percent is None:
            half = self.max_connections_percent // 2 if isinstance(self.max_connections_percent, int) else 50
            object.__setattr__(self, "max_idle_connections_percent", half)
        for name, kind in (("max_connections_percent", int), ("max_idle_connections_percent", int),
                           ("connection_borrow_timeout", (int, float)), ("idle_client_timeout", (int, float))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(name, f"must be a number{' (whole)' if kind is int else ''}, got {value!r}")
        if self.init_query is not None and not isinstance(self.init_query, str):
            raise ConfigError("init_query", f"must be a string, got {self.init_query!r}")
        filters = self.session_pinning_filters
        if isinstance(filters, str) or not isinstance(filters, (list, tuple)) \
                or any(f not in SESSION_PINNING_FILTERS for f in filters):
            raise ConfigError("session_pinning_filters",
                              f"must be a list of {', '.join(SESSION_PINNING_FILTERS)}, got {filters!r}")
        object.__setattr__(self, "session_pinning_filters", tuple(filters))
        check_ranges(self)
        if self.max_idle_connections_percent > self.max_connections_percent:
            raise ConfigError("max_idle_connections_percent",
                              f"must not exceed max_connections_percent ({self.max_connections_percent}), "
                              f"got {self.max_idle_connections_percent}")

    def connection_cap(self, max_connections: int) -> int:
        """Backend connections allowed on an instance: floor(max_connections × MaxConnectionsPercent / 100)."""
        return max_connections * self.max_connections_percent // 100

    def idle_cap(self, max_connections: int) -> int:
        """Idle backend connections kept on an instance: floor(max_connections × MaxIdleConnectionsPercent / 100)."""
        return max_connections * self.max_idle_connections_percent // 100

    @property
    def exclude_variable_sets(self) -> bool:
        """Whether SET statements are kept from pinning (``EXCLUDE_VARIABLE_SETS``)."""
        return "EXCLUDE_VARIABLE_SETS" in self.session_pinning_filters
