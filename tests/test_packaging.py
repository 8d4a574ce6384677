"""The installed package is complete and its declared interface matches what it contains.

CI runs this file against the installed wheel from outside the source tree, so a file
missing from the wheel, a stale stub or a forgotten export fails here. It needs the native
extension on purpose: a wheel without `_core` must not pass as "native tests skipped".
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.resources
import inspect
import pkgutil
import re
import subprocess
import sys

import arenagrad
import pytest
from arenagrad import _core

# Modules other packages provide only when installed (extras, optional peers).
OPTIONAL_DEPENDENCIES = {"torch", "matplotlib", "graphviz", "sklearn", "tqdm", "atheris"}


def _stub_tree() -> ast.Module:
    stub = importlib.resources.files("arenagrad") / "_core.pyi"
    return ast.parse(stub.read_text(encoding="utf-8"))


def _public(names: object) -> set[str]:
    return {name for name in names if not name.startswith("_")}  # type: ignore[attr-defined]


def test_version_has_one_source():
    # pyproject.toml reads the version from __init__.py, so the installed metadata and the
    # module attribute cannot disagree unless the build is stale.
    assert arenagrad.__version__ == importlib.metadata.version("arenagrad")
    assert re.fullmatch(r"\d+\.\d+\.\d+([abc]|rc|\.dev|\.post)?\d*", arenagrad.__version__)


@pytest.mark.parametrize("name", ["py.typed", "_core.pyi"])
def test_typing_files_are_installed(name):
    assert (importlib.resources.files("arenagrad") / name).is_file()


def test_native_extension_is_compiled():
    # A pure-Python fallback masquerading as _core would make every "native" test vacuous.
    assert _core.__file__ is not None
    assert _core.__file__.endswith((".so", ".pyd")), _core.__file__
    assert isinstance(_core.openmp, bool)
    assert _core.get_num_threads() >= 1


def test_all_names_resolve():
    assert len(arenagrad.__all__) == len(set(arenagrad.__all__)), "duplicates in __all__"
    missing = [name for name in arenagrad.__all__ if not hasattr(arenagrad, name)]
    assert not missing, f"__all__ lists names the package lacks: {missing}"


def test_all_is_complete():
    exported = set(arenagrad.__all__)
    public = {
        name
        for name, value in vars(arenagrad).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= exported, f"public names missing from __all__: {sorted(public - exported)}"


def test_stub_declares_exactly_the_runtime_module_names():
    declared: set[str] = set()
    for node in _stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
    declared = _public(declared)
    runtime = _public(name for name in dir(_core) if not inspect.ismodule(getattr(_core, name)))
    assert declared == runtime, (
        f"stub lacks {sorted(runtime - declared)}, declares absent {sorted(declared - runtime)}"
    )


def test_stub_declares_exactly_the_runtime_value_members():
    value_stub = next(
        node
        for node in _stub_tree().body
        if isinstance(node, ast.ClassDef) and node.name == "Value"
    )
    declared = {
        node.name if isinstance(node, ast.FunctionDef) else node.target.id  # type: ignore[union-attr]
        for node in value_stub.body
        if isinstance(node, ast.FunctionDef)
        or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name))
    }
    # Everything Value defines or overrides itself, dunders included.
    own = vars(_core.Value)
    runtime = {name for name in own if own[name] is not getattr(object, name, None)}
    runtime -= {"__module__", "__doc__"}
    assert runtime <= declared, f"_core.pyi's Value lacks {sorted(runtime - declared)}"
    assert declared <= set(dir(_core.Value)), (
        f"_core.pyi's Value declares absent {sorted(declared - set(dir(_core.Value)))}"
    )


def test_every_submodule_imports():
    failures = {}
    for module in pkgutil.walk_packages(arenagrad.__path__, prefix="arenagrad."):
        try:
            importlib.import_module(module.name)
        except ImportError as error:
            if error.name and error.name.split(".")[0] in OPTIONAL_DEPENDENCIES:
                continue  # needs an optional peer this environment does not have
            failures[module.name] = repr(error)
    assert not failures


def test_applications_ship_as_their_own_subpackage():
    modules = {m.name for m in pkgutil.walk_packages(arenagrad.__path__, prefix="arenagrad.")}
    apps = {f"arenagrad.apps.{name}" for name in ("cli", "demo", "digits", "progress")}
    assert apps <= modules, f"missing from the wheel: {sorted(apps - modules)}"
    assert "arenagrad.benchmark" not in modules  # the harness lives in bench/, not the wheel


def test_the_library_does_not_import_the_applications():
    code = "import sys, arenagrad; print(sorted(m for m in sys.modules if '.apps' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_console_script_points_at_main():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="arenagrad")
    assert script.load() is importlib.import_module("arenagrad.__main__").main


def test_command_line_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "arenagrad", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout
