"""The relay keeper: TCP relays that outlive the command that started them.

``aurora-harness up --relays`` leaves a reference target running in the background, and its relays
(threads, in any process that holds them) must run somewhere too.  This small process holds one
:class:`~harness.net.relay.RelayServer` per instance and the :class:`~harness.net.relay_desk.RelayDesk`
that serves them, until it is told to stop (SIGTERM or SIGINT); the target records its pid, the
desk's address and the relays' ports, and ``aurora-harness fault`` drives the relays through the desk.

Usage (the target starts it; nobody needs to by hand)::

    python -m harness.net.relay_keeper --spec SPEC.json --ready READY.json

``SPEC.json`` lists the instances (``{"instances": [{"id", "host", "port"}]}``); once every relay
listens, the keeper writes ``READY.json`` (0600: it holds the desk's token) with ``{"desk": {...},
"ports": {id: port}}`` and logs :data:`READY_LINE`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from harness.net.relay import RelayServer
from harness.net.relay_desk import RelayDesk
from harness.net.toxics import RelayError

READY_LINE = "relays ready"
log = logging.getLogger("aurora-harness.relay-keeper")


def read_spec(path: str) -> list[dict[str, Any]]:
    """The instances to relay to, checked: each has a string id, a host and a port."""
    with open(path, encoding="utf-8") as fh:
        spec = json.load(fh)
    instances = spec.get("instances") if isinstance(spec, dict) else None
    if not isinstance(instances, list) or not instances:
        raise RelayError(f"{path}: no instances to relay to")
    for inst in instances:
        if not (isinstance(inst, dict) and isinstance(inst.get("id"), str) and isinstance(inst.get("host"), str)
                and isinstance(inst.get("port"), int)):
            raise RelayError(f"{path}: an instance needs an id, a host and a port: {inst!r}")
    return instances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.net.relay_keeper")
    parser.add_argument("--spec", required=True, help="JSON file naming the instances to relay to")
    parser.add_argument("--ready", required=True, help="where to write the desk's address and the relays' ports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    relays: dict[str, RelayServer] = {}
    desk = RelayDesk(lambda: relays)
    try:
        for inst in read_spec(args.spec):
            relay = RelayServer(inst["host"], inst["port"])
            relay.start()
            relays[inst["id"]] = relay
        address = desk.start()
        from harness.process import write_private

        write_private(args.ready, json.dumps({"desk": address.to_state(),
                                              "ports": {iid: r.port for iid, r in relays.items()}}))
        log.info("%s: %s", READY_LINE, ", ".join(f"{iid} on {r.port}" for iid, r in relays.items()))
        stop.wait()
        return 0
    except (OSError, ValueError, RelayError) as e:
        print(f"relay keeper: {e}", file=sys.stderr)
        return 2
    finally:
        desk.stop()
        for relay in relays.values():
            relay.stop()
        log.info("relays stopped")


if __name__ == "__main__":
    sys.exit(main())
