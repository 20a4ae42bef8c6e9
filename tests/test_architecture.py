"""The package keeps the shape docs/architecture.md draws: no import circle between its modules,
each layer importing only the layers above it, the pure layers free of I/O, and small modules.

Imports are read from the source (every import, nested ones too, except under
``if TYPE_CHECKING:``), so a lazy import inside a function counts like any other."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "rgbdcast"

LEAVES = {"_version", "_osthreads", "errors"}
"""Importable from every layer; they import nothing of ours (errors, version, thread names)."""
ASSEMBLY = {
    "rgbdcast",  # the package's __init__: the public names
    "server",
    "_registry",
    "_whome",
    "client",
    "_clientbase",
    "_clientgeo",
    "_clientclock",
    "_clientvideo",
    "rig",
    "aiorig",
    "framesets",
    "boardpose",
    "calibrate",
    "icp",
    "rigview",
    "_requests",
    "aio",
    "bridge",
    "remoteview",
    "zclient",
    "compress",
    "save",
    "viz",
}
"""The public assembly: servers, clients, bridges, and the small helpers they share."""
BELOW_ASSEMBLY = {"frames", "codecs", "geometry", "protocol", "devices", "net", "outlets"}
ALLOWED: dict[str, set[str]] = {
    "frames": set(),
    "codecs": {"frames"},
    "geometry": {"frames"},
    "protocol": {"frames", "codecs"},
    "devices": {"frames", "geometry"},
    "net": {"frames", "codecs", "geometry", "protocol", "devices"},
    "outlets": {"frames", "codecs", "geometry", "protocol", "devices", "net"},
    # a recording replays as a device, so record/ may use the device base
    "record": {"frames", "codecs", "geometry", "protocol", "devices"},
    **{name: BELOW_ASSEMBLY | ASSEMBLY for name in ASSEMBLY},
    "testing": BELOW_ASSEMBLY | ASSEMBLY | {"record"},
    "bench": BELOW_ASSEMBLY | ASSEMBLY | {"record", "testing"},
    "cli": BELOW_ASSEMBLY | ASSEMBLY | {"record", "testing", "bench"},
    "__main__": {"cli"},
}
"""Which layers each layer may import (besides itself and the leaves): docs/architecture.md."""
PURE = {"protocol", "codecs", "geometry"}
NO_IO = {"zmq", "asyncio", "socket", "cv2"}
MAX_LINES = 450


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _extension(module: str) -> bool:
    stub = SRC.joinpath(*module.split("."))
    return stub.with_suffix(".c").exists() or stub.with_suffix(".pyi").exists()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rgbdcast"


@cache
def _imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """The package's modules *module* imports, and the top-level names of everything else."""
    mods, path = _modules(), _modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    foreign: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                if alias.name.split(".")[0] == "rgbdcast":
                    ours.add(resolve(alias.name) or "rgbdcast")
                else:
                    foreign.add(alias.name.split(".")[0])

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
                if target.split(".")[0] != "rgbdcast":
                    foreign.add(target.split(".")[0])
                    return
            for alias in node.names:  # `from pkg import mod` imports the module
                name = f"{target}.{alias.name}"
                if _extension(name):
                    continue  # a C extension module of ours: it imports nothing back
                resolved = resolve(name)
                if resolved is not None:
                    ours.add(resolved)

    Visitor().visit(ast.parse(path.read_text()))
    return frozenset(ours - {module}), frozenset(foreign)


def _circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = {m: _imports(m)[0] for m in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_imports_and_package_imports() -> None:
    ours, foreign = _imports("rgbdcast.cli.bench")
    assert "rgbdcast.errors" in ours  # a relative import
    assert "importlib" in foreign
    ours, _ = _imports("rgbdcast.cli")
    assert {"rgbdcast.cli.serve", "rgbdcast.cli.watch"} <= ours  # `from . import serve, watch`
    ours, _ = _imports("rgbdcast.cli.assemble")
    assert "rgbdcast.outlets.gateway" in ours  # imported inside a function


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert len(_modules()) > 80
    assert _circles() == []


def test_each_layer_imports_only_the_layers_above_it() -> None:
    wrong = []
    for module in _modules():
        layer = _layer(module)
        if layer in LEAVES:
            allowed: set[str] = set()
        else:
            assert layer in ALLOWED, f"{module}: a new layer; give it a row in ALLOWED"
            allowed = ALLOWED[layer] | LEAVES | {layer}
        wrong += [
            f"{module} -> {dep}"
            for dep in sorted(_imports(module)[0])
            if _layer(dep) not in allowed
        ]
    assert wrong == []


def test_protocol_codecs_and_geometry_do_no_io() -> None:
    impure = {
        module: sorted(_imports(module)[1] & NO_IO)
        for module in _modules()
        if _layer(module) in PURE and _imports(module)[1] & NO_IO
    }
    assert impure == {}


def test_modules_stay_small() -> None:
    big = {
        module: n
        for module, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f"split these along their seams (over {MAX_LINES} lines): {big}"
