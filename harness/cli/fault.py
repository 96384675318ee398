"""``aurora-harness fault``: network faults on a running target's relays, by hand, in Toxiproxy's terms.

For poking at a live proxy: ``aurora-harness up --relays`` puts a TCP relay between the proxy and each
instance (kept by a background process), and these commands add, list and remove toxics on them
through that process's relay desk::

    aurora-harness fault add latency --endpoint writer --latency-ms 100 --jitter-ms 10
    aurora-harness fault add blackhole --instance instance-2 --stream downstream
    aurora-harness fault list
    aurora-harness fault remove latency_both --endpoint writer
    aurora-harness fault clear

A toxic's parameters are its fields (:mod:`harness.net.toxics`), written as options (``latency_ms`` is
``--latency-ms``); a wrong one is refused with the list of those allowed.  ``--endpoint writer`` is
the instance that is writer now, ``--endpoint reader`` every reader; ``--instance`` names one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from harness.cli.common import CliFailure, emit, fail_on_errors, state_dir
from harness.cli.target import RECORD, load_running
from harness.net.toxics import TOXIC_TYPES, RelayError, toxic_from_dict
from harness.targets.base import Capability
from harness.targets.reference import ReferenceTarget

_WHERE = [click.option("--endpoint", type=click.Choice(["writer", "reader"]), default=None,
                       help="The writer now, or every reader (default: every instance for list/clear, the "
                            "writer for add/remove)."),
          click.option("--instance", default=None, metavar="ID", help="One instance, by id (instance-1...).")]


def _where(fn: Any) -> Any:
    for option in reversed(_WHERE):
        fn = option(fn)
    return fn


def relayed_target(ctx: click.Context) -> ReferenceTarget:
    target = load_running(ctx)
    if not target.supports(Capability.NETWORK_FAULTS):
        raise CliFailure("the running target has no relays between its proxy and its instances; start it with "
                         "'aurora-harness up --relays'")
    if target.follow_live_roles():  # a failover since 'up': "the writer" is another instance now
        state_dir(ctx).write(RECORD, target.to_state())
    return target


def instances(target: ReferenceTarget, endpoint: str | None, instance: str | None, default: str | None) -> list[str]:
    """The instance ids the options name (``default`` when neither is given; None: every instance)."""
    assert target.cluster is not None
    if endpoint and instance:
        raise CliFailure("give --endpoint or --instance, not both")
    every = [i.id for i in target.cluster.instances]
    if instance:
        if instance not in every:
            raise CliFailure(f"no instance {instance!r}; the target has {', '.join(every)}")
        return [instance]
    chosen = endpoint or default
    if chosen is None:
        return every
    if chosen == "writer":
        return [target.cluster.writer.id]
    readers = [i.id for i in target.cluster.readers]
    if not readers:
        raise CliFailure("the target has no readers")
    return readers


def on_each(target: ReferenceTarget, ids: list[str], action: Callable[[Any], Any]) -> dict[str, Any]:
    """``action(relay)`` on each instance's relay, in turn; a relay's refusal stops there, naming the
    instance and those already done."""
    done: dict[str, Any] = {}
    for iid in ids:
        try:
            done[iid] = action(target.relay(iid))
        except RelayError as e:
            raise CliFailure(f"{iid}: {e}" + (f" (already done on {', '.join(done)})" if done else "")) from None
    return done


def parse_parameters(args: list[str]) -> dict[str, Any]:
    """``--latency-ms 100 --jitter-ms 10`` as ``{"latency_ms": 100, "jitter_ms": 10}`` (numbers where they read
    as numbers)."""
    params: dict[str, Any] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise CliFailure(f"unexpected argument {flag!r}: toxic parameters are written --name VALUE")
        name, _, inline = flag[2:].partition("=")
        if inline:
            raw, i = inline, i + 1
        elif i + 1 < len(args):
            raw, i = args[i + 1], i + 2
        else:
            raise CliFailure(f"{flag} needs a value")
        for convert in (int, float):
            try:
                params[name.replace("-", "_")] = convert(raw)
                break
            except ValueError:
                continue
        else:
            params[name.replace("-", "_")] = raw
    return params


@click.group()
def fault() -> None:
    """Network faults on the relays of a target started with 'aurora-harness up --relays'."""


@fault.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("kind", type=click.Choice(sorted(TOXIC_TYPES)))
@_where
@click.option("--stream", type=click.Choice(["both", "upstream", "downstream"]), default="both", show_default=True,
              help="upstream: proxy to instance; downstream: instance to proxy.")
@click.option("--name", default=None, help="The toxic's name (default <kind>_<stream>).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def add(ctx: click.Context, kind: str, endpoint: str | None, instance: str | None, stream: str, name: str | None,
        as_json: bool) -> None:
    """Add a toxic of KIND on the path from the proxy to the chosen instances.  Its parameters follow as
    options: latency --latency-ms N [--jitter-ms N]; bandwidth --rate-kbps N; slicer --average-size N
    [--size-variation N] [--delay-us N]; limit_data --bytes N; blackhole [--timeout-ms N];
    reset_peer [--timeout-ms N]; down."""
    try:
        toxic = toxic_from_dict({"type": kind, "stream": stream, **({"name": name} if name else {}),
                                 **parse_parameters(ctx.args)})
    except (RelayError, TypeError) as e:
        raise CliFailure(str(e)) from None
    target = relayed_target(ctx)
    added = list(on_each(target, instances(target, endpoint, instance, default="writer"),
                         lambda relay: relay.add_toxic(toxic)))
    emit({"added": toxic.to_dict(), "instances": added}, as_json,
         f"added {toxic.name} ({_parameters(toxic.to_dict())}) on {', '.join(added)}")


@fault.command(name="list")
@_where
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def list_(ctx: click.Context, endpoint: str | None, instance: str | None, as_json: bool) -> None:
    """The toxics on each instance's relay."""
    target = relayed_target(ctx)
    roles = {i.id: i.role.value for i in target.cluster.instances} if target.cluster else {}
    found: dict[str, list[dict[str, Any]]] = on_each(target, instances(target, endpoint, instance, default=None),
                                                     lambda relay: [t.to_dict() for t in relay.toxics()])
    lines = []
    for iid, toxics in found.items():
        lines.append(f"{iid} ({roles.get(iid, '?')}): " + ("no toxics" if not toxics else ""))
        lines += [f"  {t['name']:<24} {t['type']:<11} {_parameters(t)}" for t in toxics]
    emit(found, as_json, "\n".join(lines))


@fault.command()
@click.argument("name")
@_where
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def remove(ctx: click.Context, name: str, endpoint: str | None, instance: str | None, as_json: bool) -> None:
    """Remove the toxic NAME (from the writer's relay unless --endpoint or --instance says otherwise)."""
    target = relayed_target(ctx)
    removed = list(on_each(target, instances(target, endpoint, instance, default="writer"),
                           lambda relay: relay.remove_toxic(name)))
    emit({"removed": name, "instances": removed}, as_json, f"removed {name} from {', '.join(removed)}")


@fault.command()
@_where
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@fail_on_errors
def clear(ctx: click.Context, endpoint: str | None, instance: str | None, as_json: bool) -> None:
    """Remove every toxic (from every instance unless --endpoint or --instance says otherwise)."""
    target = relayed_target(ctx)
    cleared = list(on_each(target, instances(target, endpoint, instance, default=None),
                           lambda relay: relay.clear_toxics()))
    emit({"cleared": cleared}, as_json, f"cleared every toxic on {', '.join(cleared)}")


def _parameters(toxic: dict[str, Any]) -> str:
    shown = {k: v for k, v in toxic.items() if k not in ("name", "type")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


__all__ = ["fault"]
