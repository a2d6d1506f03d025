"""The import graph of the repository points one way.

    models  <-  training  ->  service        bench -> anything but tests
      (models import neither service nor training; the service imports neither training,
       bench nor torch; training never imports the benchmarks)

and no two modules import each other. Read statically (every `import` in a file, at module
level or inside a function, counts), so a lazy import cannot hide an edge. `from pkg import
name` counts as importing the module `pkg.name` where that is a module, else `pkg`; a
module's parent packages are not counted as imported by it.

Tests follow the same rule towards the benchmarks: only the tests of `bench/` import it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "training", "models", "bench")
FORBIDDEN = {
    "service": {"training", "bench", "torch"},
    "training": {"bench"},
    "models": {"service", "training", "bench"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repository_modules(packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {module_name(p): p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield (candidate if candidate in known else source), node.lineno


def graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, list[tuple[str, int]]]:
    modules = repository_modules(packages)
    known = set(modules)
    return {name: list(imports_of(name, path, known)) for name, path in modules.items()}


def top(module: str) -> str:
    return module.partition(".")[0]


def test_layers_point_one_way() -> None:
    wrong = sorted(
        {
            f"{name}:{line} imports {target}"
            for name, edges in graph().items()
            for target, line in edges
            if top(target) in FORBIDDEN.get(top(name), set())
        }
    )
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_import_each_other() -> None:
    edges = {name: {t for t, _ in targets if t != name} for name, targets in graph().items()}
    mutual = sorted(
        f"{a} <-> {b}"
        for a, targets in edges.items()
        for b in targets
        if a < b and a in edges.get(b, ())
    )
    assert not mutual, "\n".join(mutual)


def test_only_the_benchmarks_own_tests_import_them() -> None:
    known = set(repository_modules())
    wrong = [
        f"{path.name}:{line} imports {target}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        if not path.name.startswith("test_bench_")
        for target, line in imports_of(f"tests.{path.stem}", path, known)
        if top(target) == "bench"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("service/x_probe.py", "from training.jobs import JOBS\n"),
        ("training/x_probe.py", "def f():\n    from bench.common import write_speed\n"),
        ("models/x_probe.py", "import service.errors\n"),
    ],
)
def test_the_check_sees_a_wrong_import(tmp_path: Path, source: str, target: str) -> None:
    """Negative control: the same reading finds a forbidden edge, even a lazy one."""
    path = ROOT / source
    name = module_name(path)
    edges = list(imports_of(name, _write(tmp_path, path, target), set(repository_modules())))
    assert any(top(t) in FORBIDDEN[top(name)] for t, _ in edges), edges


def _write(tmp_path: Path, path: Path, text: str) -> Path:
    out = tmp_path / path.name
    out.write_text(text)
    return out
