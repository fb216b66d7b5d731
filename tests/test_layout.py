"""The structure the code must keep: layers that only point down, no import circles, light
bottom rooms, small modules and functions, benchmarks independent of the tests, and no citation
of a document the repository does not have.

Each check is a function from a folder to a list of problems, run on the repository and, in the
second half of this file, on small fixture trees with one fault planted, so every check is seen
to fail when it should. Layers and their reasons: docs/design.md §1.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("streamer", "encoders")

# Top to bottom. A module may import from its own layer and from the layers below it, never
# from one above. Every module of `streamer` and `encoders` must fall in a room listed here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("commands", ("streamer", "streamer.__main__", "streamer.cli", "streamer.bench")),
    # a cluster run runs the pipeline on each node: above the wiring, below the commands
    ("cluster", ("streamer.cluster",)),
    ("wiring", ("streamer.pipeline", "streamer.run_setup", "streamer.control", "streamer.reload",
                "streamer.report", "streamer.config")),
    # RunConfig (wiring) holds ClusterConfig; connecting needs only errors, core and the options
    ("streams and outputs", ("streamer.stream", "streamer.watch", "streamer.outputs",
                             "streamer.archive", "streamer.cluster.options",
                             "streamer.cluster.session")),
    ("analysis, LLM and sources", ("streamer.analysis", "streamer.llm", "streamer.sources")),
    ("core", ("streamer.core",)),
    ("errors", ("streamer.errors",)),
    ("encoders", ("encoders",)),
]  # fmt: skip
# `streamer` itself (its __init__) is the public front door: it re-exports the layers below, so
# importing it from inside the package counts as importing the top layer. It names that one
# module only; its subpackages are the rooms below.
EXACT_ROOMS = {"streamer"}

# Rooms that must load without these (a decoder or an LLM tool starts without torch).
LIGHT_ROOMS = ("streamer.sources", "streamer.core", "streamer.llm")
HEAVY = ("torch", "open_clip")

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

# Documents that lived outside the repository; citing one is citing nothing a reader has.
OUTSIDE_DOCS = re.compile(r"[\w./-]*(?:LMSTUDIO|DESIGN|STYLE|TESTING)\.md|[\w./-]*shared/docs\b")
SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules", "out", "artifacts"}


# -- the import graph ---------------------------------------------------------------------------


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: dict[str, int] = field(default_factory=dict)  # imported module → first line


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every import statement, at module level and inside functions and classes, except the
    ones under `if TYPE_CHECKING:` (they never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path, packages=PACKAGES) -> dict[str, Module]:
    """The modules of `packages` under `root`, each with the modules of those packages it
    imports (`from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`)."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name, is_package = _module_name(root, path)
            modules[name] = Module(name, path, is_package)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(module, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]  # fmt: skip
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module
                    target = target.rpartition(".")[0]
                if target and target != module.name:
                    module.imports.setdefault(target, node.lineno)
    return modules


def import_cycles(modules: dict[str, Module]) -> list[set[str]]:
    """The sets of modules that import each other in a circle: the strongly connected
    components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in modules[name].imports:
            if target not in index:
                connect(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                components.append(set(component))

    for name in sorted(modules):
        if name not in index:
            connect(name)
    return components


def _a_circle(modules: dict[str, Module], members: set[str]) -> list[str]:
    """One concrete circle through the smallest member of a strongly connected component."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        name = queue.pop(0)
        for target in sorted(modules[name].imports):
            if target == start:
                return [*paths[name], start]
            if target in members and target not in paths:
                paths[target] = [*paths[name], target]
                queue.append(target)
    return sorted(members)


def cycle_problems(root: Path) -> list[str]:
    modules = import_graph(root)
    problems = []
    for members in import_cycles(modules):
        circle = _a_circle(modules, members)
        steps = [f"{a} (line {modules[a].imports[b]})" for a, b in itertools.pairwise(circle)]
        others = sorted(members - set(circle))
        also = f" (also in the circle: {', '.join(others)})" if others else ""
        problems.append("import circle: " + " → ".join([*steps, circle[-1]]) + also)
    return problems


# -- layers --------------------------------------------------------------------------------------


def _layer_of(name: str) -> tuple[int, str] | None:
    """(depth, room) of a module: depth 0 is the top layer."""
    best = None
    for depth, (_, rooms) in enumerate(LAYERS):
        for room in rooms:
            inside = name.startswith(room + ".") and room not in EXACT_ROOMS
            if (name == room or inside) and (best is None or len(room) > len(best[1])):
                best = (depth, room)
    return best


def layer_problems(root: Path) -> list[str]:
    problems = []
    for module in import_graph(root).values():
        mine = _layer_of(module.name)
        if mine is None:
            problems.append(f"{module.name}: in no room of LAYERS (tests/test_layout.py)")
            continue
        for target, line in module.imports.items():
            theirs = _layer_of(target)
            if theirs is not None and theirs[0] < mine[0]:
                problems.append(
                    f"{module.path.relative_to(root)}:{line}: {module.name} ({LAYERS[mine[0]][0]}) "
                    f"imports {target} ({LAYERS[theirs[0]][0]}), a layer above it"
                )
    return problems


# -- sizes ---------------------------------------------------------------------------------------


def size_problems(root: Path, packages=PACKAGES) -> list[str]:
    problems = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            where = path.relative_to(root)
            lines = len(text.splitlines())
            if lines > MAX_MODULE_LINES:
                problems.append(f"{where}: {lines} lines (at most {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        problems.append(f"{where}:{node.lineno}: {node.name} is {length} lines "
                                        f"(at most {MAX_FUNCTION_LINES})")  # fmt: skip
    return problems


# -- benchmarks and product code never lean on the tests -------------------------------------------


def _test_module_names(root: Path) -> set[str]:
    """Names a file could import from `tests/` once it is on sys.path (not the real packages)."""
    tests = root / "tests"
    names = {p.stem if p.suffix == ".py" else p.name for p in tests.iterdir()
             if p.suffix == ".py" or (p.is_dir() and p.name not in SKIP_DIRS)}  # fmt: skip
    return (names - set(PACKAGES) - {"conftest", "__init__"}) | {"tests"}


def _is_tests_path(node: ast.AST) -> bool:
    """A string that names the tests folder or a path inside it."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    return node.value == "tests" or node.value.startswith("tests/")


def dependency_on_tests_problems(root: Path, folders=("bench", "streamer")) -> list[str]:
    """Files under `folders` that import from `tests/` or put it on the path."""
    banned = _test_module_names(root)
    problems = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            where = path.relative_to(root)
            if path.suffix == ".py":
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                                 else [node.module or ""] if not node.level else [])  # fmt: skip
                        for name in names:
                            if name.split(".")[0] in banned:
                                problems.append(f"{where}:{node.lineno}: imports {name} (tests)")
                    elif _is_tests_path(node):
                        problems.append(f"{where}:{node.lineno}: a path into tests/ "
                                            f"({node.value!r})")  # fmt: skip
            elif path.suffix == ".sh":
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    code = line.split("#", 1)[0]
                    if re.search(r"(^|[\s\"'=:])tests(/|\s|$)", code):
                        problems.append(f"{where}:{number}: uses tests/: {line.strip()}")
    return problems


# -- citations -----------------------------------------------------------------------------------


def _text_files(root: Path):
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part in SKIP_DIRS or part.endswith(".egg-info")
               for part in relative.parts) or not path.is_file():  # fmt: skip
            continue
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # images, clips, models


def citation_problems(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Files citing LMSTUDIO.md, DESIGN.md, STYLE.md, TESTING.md or shared/docs where no such
    file is in the repository (next to the citing file or from its root)."""
    problems = []
    for path, text in _text_files(root):
        if path in skip:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for cited in OUTSIDE_DOCS.findall(line):
                target = cited.lstrip("./")
                if not ((path.parent / cited).exists() or (root / target).exists()):
                    problems.append(f"{path.relative_to(root)}:{number}: cites {cited}, "
                                    "which is not in the repository")  # fmt: skip
    return problems


# -- the checks on the repository ------------------------------------------------------------------


@pytest.mark.parametrize("room", LIGHT_ROOMS)
def test_a_light_room_loads_neither_torch_nor_open_clip(room):
    assert heavy_modules_after_import(room, REPO) == []


def heavy_modules_after_import(module: str, path: Path) -> list[str]:
    """The HEAVY packages in `sys.modules` after a fresh interpreter imports `module` from
    `path`."""
    heavy = f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})"
    code = f"import sys, json; import {module}; print(json.dumps({heavy}))"
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_import_circles():
    problems = cycle_problems(REPO)
    assert not problems, "\n".join(problems)


def test_layers_only_point_down():
    problems = layer_problems(REPO)
    assert not problems, "\n".join(problems)


def test_modules_and_functions_stay_small():
    problems = size_problems(REPO)
    assert not problems, "\n".join(problems)


def test_benchmarks_and_the_package_never_import_from_tests():
    problems = dependency_on_tests_problems(REPO)
    assert not problems, "\n".join(problems)


def test_no_file_cites_a_document_outside_the_repository():
    problems = citation_problems(REPO, skip=(Path(__file__).resolve(),))
    assert not problems, "\n".join(problems)


# -- each check fails on a tree with the fault it looks for -------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_a_circle_is_reported_with_its_members_and_lines(tmp_path):
    root = _tree(tmp_path, {
        "streamer/core/__init__.py": "",
        "streamer/core/a.py": "from streamer.core import b\n",
        "streamer/core/b.py": "def f():\n    from streamer.core.c import x\n",  # in a function
        "streamer/core/c.py": "import streamer.core.a\nx = 1\n",
        "streamer/core/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from streamer.core import a\n",  # never runs: no circle
    })  # fmt: skip
    (problem,) = cycle_problems(root)
    assert problem == (
        "import circle: streamer.core.a (line 1) → streamer.core.b (line 2) → "
        "streamer.core.c (line 1) → streamer.core.a"
    )


def test_a_relative_import_circle_is_reported(tmp_path):
    root = _tree(tmp_path, {
        "streamer/llm/__init__.py": "from .client import Client\n",
        "streamer/llm/client.py": "from . import Client as _\n",
    })  # fmt: skip
    assert cycle_problems(root) == [
        "import circle: streamer.llm (line 1) → streamer.llm.client (line 1) → streamer.llm"
    ]


ROOMS_TREE = {
    name: ""
    for name in (
        "streamer/stream.py", "streamer/pipeline.py", "streamer/config.py", "streamer/errors.py",
        "streamer/analysis/__init__.py", "streamer/analysis/worker.py",
        "streamer/outputs/__init__.py", "streamer/outputs/jsonl.py",
        "streamer/cli/__init__.py", "streamer/cli/main.py",
        "streamer/core/__init__.py", "streamer/core/frame.py",
        "streamer/watch/__init__.py", "streamer/watch/web.py",
        "streamer/sources/__init__.py", "streamer/sources/file.py",
        "streamer/llm/__init__.py", "streamer/llm/client.py", "encoders/base.py",
    )
}  # fmt: skip


@pytest.mark.parametrize(
    ("importer", "statement", "culprit"),
    [
        ("streamer/core/frame.py", "from streamer.stream import Stream", "streamer.stream"),
        ("streamer/core/frame.py", "import streamer.analysis.worker", "streamer.analysis.worker"),
        ("streamer/sources/file.py", "from streamer.pipeline import run", "streamer.pipeline"),
        ("streamer/llm/client.py", "from streamer.outputs import jsonl", "streamer.outputs.jsonl"),
        ("streamer/outputs/jsonl.py", "from streamer.cli.main import main", "streamer.cli.main"),
        ("streamer/stream.py", "from streamer.config import RunConfig", "streamer.config"),
        ("streamer/errors.py", "from streamer import run_pipeline", "streamer"),
        ("streamer/errors.py", "from streamer.core.frame import Frame", "streamer.core.frame"),
        ("encoders/base.py", "from streamer.core.frame import Frame", "streamer.core.frame"),
        ("streamer/core/frame.py", "def f():\n    from ..watch import web", "streamer.watch.web"),
    ],
)
def test_an_import_from_a_higher_layer_is_reported(tmp_path, importer, statement, culprit):
    problems = layer_problems(_tree(tmp_path, {**ROOMS_TREE, importer: statement + "\n"}))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{importer}:") and f"imports {culprit} (" in problems[0]


def test_imports_down_and_within_a_layer_are_allowed(tmp_path):
    files = {
        **ROOMS_TREE,
        "streamer/stream.py": "from streamer.outputs import jsonl\nfrom .watch import web\n",
        "streamer/pipeline.py": "import streamer.config\nimport streamer.stream\n",
        "streamer/analysis/worker.py": "from streamer.llm.client import x\nimport encoders.base\n",
        "streamer/core/frame.py": "from streamer.errors import StreamerError\n",
    }
    assert layer_problems(_tree(tmp_path, files)) == []


def test_a_module_in_no_room_is_reported(tmp_path):
    root = _tree(tmp_path, {"streamer/attic/__init__.py": "", "streamer/attic/old.py": ""})
    assert layer_problems(root) == [
        "streamer.attic: in no room of LAYERS (tests/test_layout.py)",
        "streamer.attic.old: in no room of LAYERS (tests/test_layout.py)",
    ]


def test_a_long_module_and_a_long_function_are_reported(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))  # def + 60 = 61
    short = "\n".join(f"    y{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))  # exactly 60
    filler = "\n" * (MAX_MODULE_LINES - 1)
    root = _tree(tmp_path, {
        "encoders/long.py": f"async def long():\n{body}\n",
        "encoders/fine.py": f"def fine():\n{short}\n",
        "streamer/big.py": filler + "x = 1\ny = 2\n",  # 451 lines
        "streamer/edge.py": filler + "x = 1\n",  # 450 lines
    })  # fmt: skip
    assert sorted(size_problems(root)) == [
        f"encoders/long.py:1: long is 61 lines (at most {MAX_FUNCTION_LINES})",
        f"streamer/big.py: 451 lines (at most {MAX_MODULE_LINES})",
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bench/run.py", "from live_helpers import RtspServer\n"),
        ("bench/run.py", "import doubles.lmstudio\n"),
        ("bench/run.py", "from tests.media import ffprobe\n"),
        ("bench/run.py", 'import sys\nsys.path.insert(0, str(REPO / "tests"))\n'),
        ("bench/run.py", 'SERVE = REPO / "tests/doubles/serve.py"\n'),
        ("streamer/bench/x.py", "def f():\n    from media import ffprobe\n"),
        ("bench/go.sh", "PYTHONPATH=tests python bench/run.py\n"),
    ],
)
def test_a_benchmark_leaning_on_the_tests_is_reported(tmp_path, name, text):
    root = _tree(tmp_path, {
        "tests/live_helpers.py": "", "tests/media.py": "", "tests/doubles/lmstudio.py": "",
        "tests/streamer/test_x.py": "", "bench/fine.py": "from streamer.core import frame\n",
        "bench/fine.sh": "# the tests/ folder is not used here\npython bench/fine.py\n",
        name: text,
    })  # fmt: skip
    (problem,) = dependency_on_tests_problems(root)
    assert problem.startswith(f"{name}:")


def test_a_citation_of_a_missing_document_is_reported(tmp_path):
    root = _tree(tmp_path, {
        "streamer/llm/a.py": '"""See LMSTUDIO.md §5."""\n',
        "scripts/s.sh": "# ../shared/docs/TESTING.md says why\n",
        "docs/notes.md": "As STYLE.md says.\n",
        "streamer/b.py": '"""Design: docs/design.md §2 (present), DESIGN.md (present)."""\n',
        "DESIGN.md": "a design kept in the repository may be cited\n",
        "docs/design.md": "",
    })  # fmt: skip
    assert citation_problems(root) == [
        "docs/notes.md:1: cites STYLE.md, which is not in the repository",
        "scripts/s.sh:1: cites ../shared/docs/TESTING.md, which is not in the repository",
        "streamer/llm/a.py:1: cites LMSTUDIO.md, which is not in the repository",
    ]


@pytest.mark.slow
def test_a_room_that_pulls_torch_is_reported(tmp_path):
    _tree(tmp_path, {"heavyroom/__init__.py": "import json\nimport torch  # noqa\n"})
    assert heavy_modules_after_import("heavyroom", tmp_path) == ["torch"]
