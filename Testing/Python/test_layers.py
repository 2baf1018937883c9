"""The layers (README "Architecture"): the core never imports the evaluation package, and the
controller and the web app never import Qt.  Ruff's TID251 says the same per folder; this test
reads every module's imports itself (relative ones resolved), so a ruff.toml that replaces the
banned list cannot lose the rule silently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "SAMSegSlicerLib"
CORE = [*sorted(LIB.glob("*.py")), *(path for folder in ("models", "controller", "web")
                                     for path in sorted((LIB / folder).rglob("*.py")))]


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the module named ``module``) imports, relative imports made absolute;
    ``from X import name`` counts both X and X.name (name may be a submodule)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return (".".join(parts[:-1]), True) if parts[-1] == "__init__" else (".".join(parts), False)


def banned(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_checker_finds_relative_and_absolute_imports():
    source = ("from .evaluation import EvalOptions\nfrom .. import evaluation\n"
              "import SAMSegSlicerLib.evaluation.masks\nfrom .evaluation.masks import dice\n"
              "from qt import QTimer\nimport ctk\n")
    found = imported_modules(source, "SAMSegSlicerLib.controller.x")
    assert "SAMSegSlicerLib.controller.evaluation" in found  # from .evaluation in the controller: its own module
    assert banned(found, ("SAMSegSlicerLib.evaluation",)) == ["SAMSegSlicerLib.evaluation",
                                                              "SAMSegSlicerLib.evaluation.masks"]
    assert banned(imported_modules(source, "SAMSegSlicerLib.engine"), ("SAMSegSlicerLib.evaluation",)) == [
        "SAMSegSlicerLib.evaluation", "SAMSegSlicerLib.evaluation.EvalOptions", "SAMSegSlicerLib.evaluation.masks",
        "SAMSegSlicerLib.evaluation.masks.dice"]
    assert banned(found, ("qt", "ctk")) == ["ctk", "qt", "qt.QTimer"]
    assert imported_modules("from . import session\n", "SAMSegSlicerLib.models", is_package=True) == {
        "SAMSegSlicerLib.models", "SAMSegSlicerLib.models.session"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(LIB)))
def test_the_core_never_imports_evaluation(path):
    modules = imported_modules(path.read_text(encoding="utf-8"), *module_name(path))
    assert not banned(modules, ("SAMSegSlicerLib.evaluation",)), f"{path.relative_to(LIB)} imports evaluation"


@pytest.mark.parametrize("path", [p for p in CORE if p.parent.name in ("controller", "web")],
                         ids=lambda p: str(p.relative_to(LIB)))
def test_the_controller_and_the_web_app_never_import_qt(path):
    modules = imported_modules(path.read_text(encoding="utf-8"), *module_name(path))
    assert not banned(modules, ("qt", "ctk", "PythonQt")), f"{path.relative_to(LIB)} imports Qt"


def test_the_core_is_all_there():
    names = {p.relative_to(LIB).as_posix() for p in CORE}
    assert {"engine.py", "propagation.py", "assist.py", "controller/__init__.py", "web/__init__.py"} <= names
    assert not any(name.startswith(("evaluation/", "cli/")) for name in names)
