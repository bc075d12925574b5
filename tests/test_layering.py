"""Layering: the library never imports the simulator.

The simulator (``fracrisk.simulate``) uses the library to make cohorts that read like real
ones; the library (images, data, encoders, models, metrics, baselines and the survival core)
must work without it. Only the application layer (``fracrisk.cli``, ``fracrisk.demo``) and
the simulator itself may import it. Every import is found by walking each module's syntax
tree, so imports inside functions, ``from fracrisk import simulate``, relative imports and
``importlib.import_module("fracrisk.simulate...")`` all count.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

# Found without importing fracrisk: the check reads source files only.
PACKAGE_ROOT = Path(importlib.util.find_spec("fracrisk").submodule_search_locations[0]).resolve()
FORBIDDEN = "fracrisk.simulate"

#: Parts of the library that must not depend on the simulator: each a module or a package.
LIBRARY = (
    "imaging",
    "data",
    "encoders",
    "models",
    "metrics",
    "baselines",
    "heads",
    "losses",
    "training",
    "baseline_hazard",
    "nonparametric",
    "preprocessing",
    "evaluation",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([module] if module else [])])


def _is_forbidden(name: str) -> bool:
    return name == FORBIDDEN or name.startswith(FORBIDDEN + ".")


def simulator_imports(source: str, importer: str, *, is_package: bool = False) -> list[str]:
    """Every import of ``fracrisk.simulate`` in ``source``, as ``"line N: <what>"``.

    Parameters
    ----------
    source : str
        Python source code.
    importer : str
        Dotted name of the module the source belongs to (for relative imports).
    is_package : bool, default False
        Whether the source is a package's ``__init__``.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if _is_forbidden(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_relative(node.module, node.level, importer, is_package)
            names = [alias.name for alias in node.names]
            if _is_forbidden(module) or any(_is_forbidden(f"{module}.{n}") for n in names):
                found.append(f"line {node.lineno}: from {module} import {', '.join(names)}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _is_forbidden(first.value)
            ):
                found.append(f"line {node.lineno}: {called}({first.value!r})")
    return found


def _library_files() -> list[Path]:
    """The source files of :data:`LIBRARY` (a part may be a module or a package)."""
    files = []
    for name in LIBRARY:
        module, package = PACKAGE_ROOT / f"{name}.py", PACKAGE_ROOT / name
        if module.is_file():
            files.append(module)
        if package.is_dir():
            files.extend(sorted(package.rglob("*.py")))
        assert module.is_file() or package.is_dir(), (
            f"fracrisk.{name} (a library part the check must cover) is neither {module} nor "
            f"a package {package}: update LIBRARY"
        )
    return files


def test_the_library_never_imports_the_simulator():
    files = _library_files()
    assert len(files) > 20  # the walk found the library
    offenders = []
    for path in files:
        found = simulator_imports(
            path.read_text(encoding="utf-8"), _module_name(path), is_package=path.stem == "__init__"
        )
        rel = path.relative_to(PACKAGE_ROOT.parent)
        offenders += [f"{rel} {where}" for where in found]
    assert not offenders, (
        "the library must not depend on the simulator (move the code to fracrisk.simulate, "
        "or take the data as an argument):\n  " + "\n  ".join(offenders)
    )


@pytest.mark.parametrize(
    "source, importer",
    [
        pytest.param("import fracrisk.simulate\n", "fracrisk.imaging.io", id="import"),
        pytest.param("import fracrisk.simulate.spine as s\n", "fracrisk.data.x", id="submodule"),
        pytest.param("from fracrisk.simulate import cohort\n", "fracrisk.losses", id="from"),
        pytest.param("from fracrisk import simulate\n", "fracrisk.losses", id="from-package"),
        pytest.param(
            "def f():\n    from fracrisk.simulate.spine import spine_volume\n",
            "fracrisk.imaging.keypoints",
            id="in-function",
        ),
        pytest.param(
            "class A:\n    def m(self):\n        if True:\n            import fracrisk.simulate\n",
            "fracrisk.models.image",
            id="in-method",
        ),
        pytest.param("from ..simulate import spine\n", "fracrisk.imaging.keypoints", id="relative"),
        pytest.param("from .. import simulate\n", "fracrisk.data.cohort", id="relative-package"),
        pytest.param(
            "import importlib\nimportlib.import_module('fracrisk.simulate.spine')\n",
            "fracrisk.data.cohort",
            id="import_module",
        ),
    ],
)
def test_the_check_finds_every_form_of_import(source, importer):
    assert len(simulator_imports(source, importer)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "import fracrisk.simulated_data\n",  # a different name that shares the prefix
        "from fracrisk.imaging import simulate_noise\n",
        "from fracrisk import imaging\n",
        "'''>>> from fracrisk.simulate import cohort'''\n",  # a doctest example is not an import
        "simulate = 1\n",
    ],
)
def test_the_check_ignores_what_is_not_a_simulator_import(source):
    assert simulator_imports(source, "fracrisk.data.cohort") == []
