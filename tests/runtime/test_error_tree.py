"""Each service package has one exception root, a ``GpurouteError``, and the
docstring of the module that defines the root draws the package's whole tree:
every public exception of the package, subpackages included. No two
exceptions share a name (the advisor's ConfigError once shadowed the
runtime's: catching one missed the other).

The packages are found by walking ``services/``, so a new package, or a new
exception in an old one, is checked without touching this file."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import services
from services.runtime.errors import GpurouteError


def _packages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(services.__path__, "services.") if m.ispkg)


def _modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return [pkg, *(importlib.import_module(n) for n in names)]


def _errors(package: str) -> dict[str, type[BaseException]]:
    """The public exception classes defined in ``package`` and its subpackages."""
    found: dict[str, type[BaseException]] = {}
    for module in _modules(package):
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{module.__name__}.{name}"] = obj
    return found


def _roots(errors: dict[str, type[BaseException]]) -> list[type[BaseException]]:
    """The classes whose ancestors are all outside the package."""
    own = set(errors.values())
    return [cls for cls in own if not any(base in own for base in cls.__mro__[1:])]


@pytest.mark.parametrize("package", _packages())
def test_one_root_whose_module_draws_the_whole_tree(package: str) -> None:
    errors = _errors(package)
    if not errors:
        return
    roots = _roots(errors)
    assert len(roots) == 1, f"{package} has {len(roots)} exception roots: {roots}"
    (root,) = roots
    assert issubclass(root, GpurouteError), f"{package}'s root {root} is no GpurouteError"
    tree = " ".join((importlib.import_module(root.__module__).__doc__ or "").split())
    missing = [q for q, cls in errors.items() if f" {cls.__name__} " not in tree]
    assert not missing, f"{root.__module__} docstring does not draw {missing}"


def test_the_walk_finds_the_known_trees() -> None:
    roots = {p: _roots(_errors(p)) for p in _packages()}
    assert [r.__name__ for r in roots["services.runtime"]] == ["GpurouteError"]
    assert [r.__name__ for r in roots["services.gateway"]] == ["GatewayError"]
    assert [r.__name__ for r in roots["services.adapters"]] == ["AdapterError"]
    assert [r.__name__ for r in roots["services.budget"]] == ["BudgetError"]
    assert [r.__name__ for r in roots["services.scheduler"]] == ["SchedulerError"]


def test_no_two_gpuroute_errors_share_a_name() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for package in _packages():
        for qualified, cls in _errors(package).items():
            if not issubclass(cls, GpurouteError):
                continue
            other = seen.setdefault(cls.__name__, qualified)
            if other != qualified:
                clashes.append((other, qualified))
    assert not clashes


def test_the_runtime_tree_names_every_package_root() -> None:
    tree = " ".join((importlib.import_module("services.runtime.errors").__doc__ or "").split())
    roots = [r for p in _packages() for r in _roots(_errors(p))]
    assert [r.__name__ for r in roots if f" {r.__name__} " not in tree] == []
