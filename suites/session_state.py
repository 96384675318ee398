"""The session state suites make and look for: which kinds, and the names each client gives them.

Two guarantees read the same state from two sides: ISOLATION-NO-SESSION-LEAK (no client sees
another's, ``conformance/test_isolation.py``) and SESSION-OWN-STATE (every client sees its own,
``conformance/test_own_state.py``).  Both make it the same way, through the engine's
:class:`~harness.clients.dialects.base.Dialect` state kinds, so the names and kinds are here once.

Every client names its objects after itself, so an observation says *whose* object it saw and a
leak is unambiguous whatever the order of sets and reads.
"""

from __future__ import annotations

import re
from typing import Any

TAG = "harness.leak_tag"
"""The setting every client gives its own value (``client-<process>``); a MySQL user variable.
MySQL's ``session_variable`` kind (a system variable, ``time_zone``) is named by the dialect."""
TEMP_PREFIX = "harness_leak_t_"
PREPARED_PREFIX = "harness_leak_ps_"
PREFIXES = {"temp_table": TEMP_PREFIX, "prepared_statement": PREPARED_PREFIX, "advisory_lock": ""}
"""The object kinds a client makes besides its setting, with the prefix its names start with (an
advisory lock is named after the client itself)."""


def client_names(process: str) -> dict[str, str]:
    """The names one client gives its state (its advisory lock is named after the client itself)."""
    slug = re.sub(r"[^a-z0-9_]", "_", process.lower())
    return {"setting": f"client-{process}", "temp_table": TEMP_PREFIX + slug,
            "prepared_statement": PREPARED_PREFIX + slug, "advisory_lock": process}


def made_kinds(dialect: Any) -> list[str]:
    """The object kinds of :data:`PREFIXES` this engine has (MySQL has no LISTEN, for instance)."""
    return [k for k in PREFIXES if k in dialect.state_kinds]


def make_state(session: Any, *, session_variable: bool = False) -> list[str]:
    """Give ``session`` its setting and one object of every kind the engine has, named after it, and
    with ``session_variable`` its own value of the engine's session variable (if it has that kind);
    returns the kinds it made (a kind whose creation failed is left out)."""
    names = client_names(str(session.process))
    made = ["setting"] if session.set_state("setting", TAG, names["setting"]).ok else []
    made += make_session_variable(session) if session_variable else []
    return made + [kind for kind in made_kinds(session.dialect) if session.set_state(kind, names[kind]).ok]


def make_session_variable(session: Any) -> list[str]:
    """Set ``session``'s own value of the engine's session variable: ``["session_variable"]`` when
    it did, ``[]`` when the set failed or the engine has no such kind."""
    variable = session.dialect.own_session_variable(str(session.process))
    return ["session_variable"] if variable is not None and session.set_state("session_variable", *variable).ok \
        else []


def read_back(session: Any, kinds: list[str]) -> None:
    """Read back, by name, each kind of state ``session`` made (``read_state`` ops)."""
    names = client_names(str(session.process))
    for kind in kinds:
        if kind == "session_variable":
            session.read_state(kind, session.dialect.own_session_variable(str(session.process))[0])
        else:
            session.read_state(kind, TAG if kind == "setting" else names[kind])
