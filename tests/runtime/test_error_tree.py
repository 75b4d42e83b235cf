"""Each package draws its exception tree in one module docstring; the tree must
name every exception the package defines, and no two exceptions share a name
(the advisor's ConfigError once shadowed the runtime's: catching one missed the
other)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import services
from services.runtime.errors import GpurouteError

TREES = {
    "services.runtime": "services.runtime.errors",
    "services.advisor": "services.advisor.errors",
    "services.adapters": "services.adapters.errors",
}


def _modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__, package + ".")]
    return [importlib.import_module(n) for n in names]


def _errors(modules: list[ModuleType]) -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in modules:
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = obj
    return found


@pytest.mark.parametrize(("package", "tree_module"), sorted(TREES.items()))
def test_the_tree_names_every_exception_of_its_package(package: str, tree_module: str) -> None:
    tree = importlib.import_module(tree_module).__doc__ or ""
    missing = [
        qualified
        for qualified, cls in _errors(_modules(package)).items()
        if f" {cls.__name__} " not in tree.replace("\n", " ")
    ]
    assert not missing, f"{tree_module} docstring does not draw {missing}"


def test_no_two_gpuroute_errors_share_a_name() -> None:
    packages = [m.name for m in pkgutil.iter_modules(services.__path__, "services.") if m.ispkg]
    seen: dict[str, str] = {}
    clashes = []
    for package in packages:
        for qualified, cls in _errors(_modules(package)).items():
            if not issubclass(cls, GpurouteError):
                continue
            other = seen.setdefault(cls.__name__, qualified)
            if other != qualified:
                clashes.append((other, qualified))
    assert not clashes
