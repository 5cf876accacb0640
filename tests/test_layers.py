"""The package's layer rule, read from the source (no import), plus what ``import mrfbook`` loads.

The rule (README.md, "Layout"), bottom to top:

- ``mrfbook`` (the package itself), ``mrfbook.utils``, ``mrfbook.paper``, ``mrfbook.metrics``: the
  bottom; they import nothing above them.
- ``mrfbook.physics``: the bottom only.
- ``mrfbook.recon`` and ``mrfbook.nn``: physics and the bottom, never each other.
- ``mrfbook.analysis``: physics, recon, nn and the bottom.
- ``mrfbook.report``: anything in the library (not the command line); nothing else imports it.
- ``mrfbook.cli``: physics, recon, nn, analysis (``train`` scores the network on the test grid with
  ``analysis.experiments.evaluate_on_dictionary``) and the bottom; never report.
- ``mrfbook.__main__``: the command line.

Every ``mrfbook.*`` import counts, at module level and inside functions (a lazy import is still a
dependency). Keras and TensorFlow are imported only in ``mrfbook.nn``; matplotlib and IPython at
module level only in ``mrfbook.report``; imports are absolute; the module-level import graph has no
cycle. The checker functions are tested on synthetic sources too, so they are known to fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mrfbook"

BOTTOM = {"mrfbook", "utils", "paper", "metrics"}
#: layer -> the layers it may import (its own layer is always allowed).
ALLOWED: dict[str, set[str]] = {
    "bottom": {"bottom"},
    "physics": {"bottom"},
    "recon": {"physics", "bottom"},
    "nn": {"physics", "bottom"},
    "analysis": {"physics", "recon", "nn", "bottom"},
    "report": {"physics", "recon", "nn", "analysis", "bottom"},
    # cli/train.py scores a trained network on the shifted test grid with
    # mrfbook.analysis.experiments.evaluate_on_dictionary: cli -> analysis is allowed (not report).
    "cli": {"physics", "recon", "nn", "analysis", "bottom"},
    "main": {"cli", "bottom"},
}
KERAS = {"keras", "tensorflow", "tf_keras"}
PLOTTING = {"matplotlib", "IPython"}
#: Modules whose import must load neither Keras, TensorFlow nor matplotlib.
LIGHT = ["mrfbook", "mrfbook.utils.checks", "mrfbook.utils.provenance", "mrfbook.paper", "mrfbook.metrics"]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """Dotted name of a source file under the package folder ``root``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    """The layer of a dotted ``mrfbook`` module name."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BOTTOM:
        return "bottom"
    if parts[1] == "__main__":
        return "main"
    return parts[1]


def _module_exists(module: str, root: Path = PACKAGE) -> bool:
    rel = Path(*module.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


class _Imports(ast.NodeVisitor):
    """Collect (imported top name or mrfbook module, line, at module level, under TYPE_CHECKING)."""

    def __init__(self, known=_module_exists):
        self.found: list[tuple[str, int, bool, bool]] = []
        self.relative: list[int] = []
        self._depth = 0
        self._type_checking = 0
        self._known = known

    def _scope(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def visit_If(self, node):
        test = ast.unparse(node.test)
        checking = test in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        self._type_checking += checking
        for child in node.body:
            self.visit(child)
        self._type_checking -= checking
        for child in node.orelse:
            self.visit(child)

    def _add(self, name: str, line: int):
        self.found.append((name, line, self._depth == 0, self._type_checking > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node):
        if node.level:
            self.relative.append(node.lineno)
            return
        module = node.module or ""
        if module == "mrfbook" or module.startswith("mrfbook."):
            for alias in node.names:  # "from mrfbook.x import y": y may be a module itself
                sub = f"{module}.{alias.name}"
                self._add(sub if self._known(sub) else module, node.lineno)
        else:
            self._add(module, node.lineno)


def imports(source: str, known=_module_exists) -> _Imports:
    """Parse ``source`` and collect its imports (see :class:`_Imports`)."""
    visitor = _Imports(known)
    visitor.visit(ast.parse(source))
    return visitor


def violations(module: str, source: str, known=_module_exists) -> list[str]:
    """Every breach of the layer rule in one module's source, as readable lines."""
    found = imports(source, known)
    own = layer(module)
    out = [f"{module}:{line}: relative import (use an absolute 'from mrfbook.... import')" for line in found.relative]
    for name, line, top_level, _ in found.found:
        top = name.split(".")[0]
        if top == "mrfbook":
            if name == module:
                continue
            target = layer(name)
            if target != own and target not in ALLOWED[own]:
                out.append(
                    f"{module}:{line}: imports {name} ({own} may import "
                    f"{', '.join(sorted(ALLOWED[own] | {own}))}; {target} is not among them)"
                )
        elif top in KERAS and own != "nn":
            out.append(f"{module}:{line}: imports {name}: Keras/TensorFlow belong in mrfbook.nn only")
        elif top in PLOTTING and top_level and own != "report":
            out.append(f"{module}:{line}: imports {name} at module level: plotting belongs in mrfbook.report "
                       "(import it inside the function that draws)")
    return out


def module_graph(sources: dict[str, str], known=_module_exists) -> dict[str, set[str]]:
    """Module-level (runtime) import graph among the given ``mrfbook`` modules."""
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        edges = set()
        for name, _, top_level, type_checking in imports(source, known).found:
            if top_level and not type_checking and name.split(".")[0] == "mrfbook" and name != module:
                # importing a.b.c runs a/__init__ and a/b/__init__ too
                parts = name.split(".")
                edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        # a package's own __init__ is already running when its submodules import siblings: no edge
        graph[module] = {e for e in edges if e in sources and e != module and not module.startswith(e + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


# ---------------------------------------------------------------------------------------------
# The checkers fail where they should (synthetic sources).


def _everything_exists(module: str) -> bool:
    return module.count(".") >= 2 or module in {"mrfbook.paper", "mrfbook.metrics"}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("mrfbook.recon.matching", "from mrfbook.nn.model import TrainedModel\n", "recon may import"),
        ("mrfbook.nn.training", "def f():\n    from mrfbook.recon.matching import match_maps\n", "nn may import"),
        ("mrfbook.physics.epg", "import mrfbook.analysis.experiments\n", "physics may import"),
        ("mrfbook.utils.checks", "from mrfbook.physics.sequence import FispSequence\n", "bottom may import"),
        ("mrfbook.metrics", "from mrfbook.nn import model\n", "bottom may import"),
        ("mrfbook.analysis.studies", "from mrfbook.report.tables import markdown_table\n", "analysis may import"),
        ("mrfbook.cli.map", "from mrfbook.report.figures import map_comparison\n", "cli may import"),
        ("mrfbook.analysis.studies", "def f():\n    import keras\n", "Keras/TensorFlow"),
        ("mrfbook.physics.dictionary", "from tensorflow import data\n", "Keras/TensorFlow"),
        ("mrfbook.cli.map", "import matplotlib.pyplot as plt\n", "plotting belongs"),
        ("mrfbook.analysis.errors", "from IPython.display import HTML\n", "plotting belongs"),
        ("mrfbook.recon.flor", "from .matching import match_maps\n", "relative import"),
    ],
)
def test_checker_catches(module, source, expected):
    found = violations(module, source, known=_everything_exists)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("mrfbook.recon.flor", "from mrfbook.recon.matching import match_maps\nfrom mrfbook.utils.checks import check_int\n"),
        ("mrfbook.nn.data", "from mrfbook.physics.epg import simulate_fisp\nimport keras\n"),
        ("mrfbook.analysis.experiments", "from mrfbook import metrics\nfrom mrfbook.nn.runs import read_log\n"),
        ("mrfbook.report.figures", "import matplotlib.pyplot as plt\nfrom mrfbook.analysis.errors import error_grid\n"),
        ("mrfbook.cli.map", "def f():\n    import matplotlib.pyplot as plt\n"),
        ("mrfbook.__main__", "from mrfbook.cli import main\n"),
    ],
)
def test_checker_allows(module, source):
    assert violations(module, source, known=_everything_exists) == []


def test_cycle_finder():
    sources = {
        "mrfbook.nn.a": "from mrfbook.nn.b import x\n",
        "mrfbook.nn.b": "def f():\n    from mrfbook.nn.a import y\n",  # lazy: no cycle at import time
    }
    assert find_cycle(module_graph(sources, known=_everything_exists)) is None
    sources["mrfbook.nn"] = "from mrfbook.nn.a import x\n"  # a package importing its submodules: fine
    assert find_cycle(module_graph(sources, known=_everything_exists)) is None
    sources["mrfbook.nn.b"] = "from mrfbook.nn.c import z\n"
    sources["mrfbook.nn.c"] = "import mrfbook.nn.a\n"
    assert find_cycle(module_graph(sources, known=_everything_exists)) == [
        "mrfbook.nn.a", "mrfbook.nn.b", "mrfbook.nn.c", "mrfbook.nn.a"
    ]


def test_module_names_and_layers():
    assert module_name(PACKAGE / "nn" / "model.py") == "mrfbook.nn.model"
    assert module_name(PACKAGE / "__init__.py") == "mrfbook"
    assert [layer(m) for m in ("mrfbook", "mrfbook.paper", "mrfbook.utils.checks", "mrfbook.recon.flor")] == [
        "bottom", "bottom", "bottom", "recon"
    ]


# ---------------------------------------------------------------------------------------------
# The package itself.


def test_every_subpackage_has_a_layer():
    layers = {layer(m) for m in SOURCES}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
    assert {"physics", "recon", "nn", "analysis", "report", "cli"} <= layers


def test_package_follows_the_layer_rule():
    found = [v for module, source in SOURCES.items() for v in violations(module, source)]
    assert not found, "imports against the layer rule (see tests/test_layers.py):\n" + "\n".join(found)


def test_nothing_in_the_library_imports_report():
    found = [
        f"{module}:{line}: imports {name}"
        for module, source in SOURCES.items()
        if layer(module) != "report"
        for name, line, _, _ in imports(source).found
        if name.split(".")[:2] == ["mrfbook", "report"]
    ]
    assert not found, "\n".join(found)


def test_no_import_cycle():
    cycle = find_cycle(module_graph(SOURCES))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_light_imports_load_no_keras_tensorflow_or_matplotlib():
    """``import mrfbook`` and every physics and recon module (and nn.inputs) load nothing heavy."""
    modules = LIGHT + sorted(m for m in SOURCES if layer(m) in ("physics", "recon")) + ["mrfbook.nn.inputs"]
    code = (
        "import importlib, sys\n"
        "heavy = ('keras', 'tensorflow', 'matplotlib')\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = [h for h in heavy if h in sys.modules]\n"
        "    if loaded:\n"
        "        sys.exit(f'importing {name} loaded {loaded}')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
