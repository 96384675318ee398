"""The import layers of the project, checked by parsing every module's imports.

Each axis of variation has one place only while the layers hold: a lower floor that imports a higher
one (the relay importing a fault, a stand-in base importing its engines) is how near-copies and import
circles creep back in.  The floors are listed below from the ground up; a module may import its own
floor or any floor below, never a higher one, and no set of modules may import each other in a circle.
The harness and the proxy never import each other: the harness runs the proxy as a process.

Imports inside ``if TYPE_CHECKING:`` blocks are annotations only and are not counted; imports inside
functions are, since they run.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "reference_proxy", "suites", "loadprofiles", "reports")

HARNESS_FLOORS: list[tuple[str, ...]] = [
    ("harness", "harness.errors"),
    ("harness.process", "harness.statedir", "harness.runstore", "harness.redaction"),
    ("harness.history", "harness.metrics", "harness.guarantees", "harness.net"),
    ("harness.standins",),
    ("harness.targets",),
    ("harness.clients", "harness.checkers", "harness.peers"),
    ("harness.targets.external",),
    ("harness.faults",),
    ("harness.bench", "reports"),
    ("harness.plugin", "loadprofiles"),
    ("harness.pytest_plugin",),
    ("suites",),
    ("harness.cli",),
]
"""The harness's floors, lowest first.  ``reports`` reads the run store and is read by the plugin;
``suites`` are run by the CLI's ``certify``.  The external target stands above the clients: known only
by its endpoints (and the instances' own DSNs), it learns who is writer as a client does, through the
engine's driver and dialect; the registry names it without importing it."""

PROXY_FLOORS: list[tuple[str, ...]] = [
    ("reference_proxy", "reference_proxy.contracts"),
    ("reference_proxy.failpoints",),
    ("reference_proxy.protocol", "reference_proxy.config", "reference_proxy.settings_fields",
     "reference_proxy.pool.settings", "reference_proxy.pinning", "reference_proxy.session_services",
     "reference_proxy.tls", "reference_proxy.credentials", "reference_proxy.login_limits"),
    ("reference_proxy.pool", "reference_proxy.leaking", "reference_proxy.routing", "reference_proxy.topology",
     "reference_proxy.metrics",
     "reference_proxy.admin"),
    ("reference_proxy.engines",),
    ("reference_proxy.failover", "reference_proxy.server", "reference_proxy.listener",
     "reference_proxy.log_settings"),
    ("reference_proxy.__main__",),
]
"""The proxy's floors, lowest first: the contracts every part shares; codecs, configuration, the
credential sources (the configuration declares their settings) and the engine-neutral session
seams; the pool, routing, topology, metrics and admin endpoint; the engines; the failover routing
and the server that wire them together; the command line."""


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """The project modules that ``module`` imports at run time (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from pkg import mod`` imports the submodule when there is one.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (ROOT / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                        ROOT / candidate.replace(".", "/") / "__init__.py").exists():
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return {name for name in found if name.split(".")[0] in PACKAGES and name != module}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            graph[module] = _imports(path, module)
    return graph


GRAPH = _graph()


def _floor(module: str, floors: list[tuple[str, ...]]) -> int | None:
    """The floor of the longest listed prefix of ``module``, or None if no prefix is listed.

    ``harness`` and ``reference_proxy`` stand for their ``__init__`` alone, so a new module of theirs
    never lands on the ground floor by default."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(floors):
        for name in names:
            matches = module == name or (
                name not in ("harness", "reference_proxy") and module.startswith(name + "."))
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def _floors_for(module: str) -> list[tuple[str, ...]]:
    return PROXY_FLOORS if module.split(".")[0] == "reference_proxy" else HARNESS_FLOORS


def test_every_module_has_a_floor() -> None:
    unplaced = sorted(m for m in GRAPH if _floor(m, _floors_for(m)) is None)
    assert not unplaced, f"modules on no floor (add them to a floor in this test): {unplaced}"


def test_no_module_imports_a_higher_floor() -> None:
    violations = []
    for module, imported in sorted(GRAPH.items()):
        floors = _floors_for(module)
        own = _floor(module, floors)
        for target in sorted(imported):
            if (target.split(".")[0] == "reference_proxy") != (module.split(".")[0] == "reference_proxy"):
                violations.append(f"{module} -> {target} (the harness and the proxy never import each other)")
                continue
            theirs = _floor(target, floors)
            if own is not None and theirs is not None and theirs > own:
                violations.append(f"{module} (floor {own}) -> {target} (floor {theirs})")
    assert not violations, "imports from a lower floor to a higher one:\n" + "\n".join(violations)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def strong(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges into a package's ``__init__`` from its own submodules are not circles of concepts:
    ``from harness import __version__`` loads the package that is already loading."""
    return {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}


def test_no_import_circles() -> None:
    cycles = _cycles(_without_package_inits(GRAPH))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("forbidden", ["locust", "gevent"])
def test_only_load_profiles_import_locust(forbidden: str) -> None:
    """Locust patches the process with gevent when imported: only a load profile may bring it in."""
    offenders = []
    for package in PACKAGES:
        if package == "loadprofiles":
            continue
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                if any(n.split(".")[0] == forbidden for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"{forbidden} imported outside loadprofiles/: {offenders}"


def test_the_checker_sees_a_circle_and_a_climb() -> None:
    """The checks above can fail: a made-up circle and a made-up upward import are caught."""
    graph = {"harness.a": {"harness.b"}, "harness.b": {"harness.a"}, "harness.c": set()}
    assert _cycles(graph) == [["harness.a", "harness.b"]]
    assert _floor("harness.net.relay", HARNESS_FLOORS) < _floor("harness.faults.netfault", HARNESS_FLOORS)
    assert _floor("harness.cli.certify", HARNESS_FLOORS) > _floor("suites.workloads", HARNESS_FLOORS)
