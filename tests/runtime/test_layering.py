"""Services never import each other (DESIGN.md): a module under ``services/<a>/``
imports nothing from ``services/<b>/`` for another service ``b``. The services are
the packages ``services/cli.py`` starts (its ``SERVICES`` table); cli.py may import
them all. The other packages are shared (``runtime``; ``ops``, the operator's checks
that the gateway serves and the runner's metrics use): any service may import them,
and they import no service.

Every module is read as an AST (nothing is imported, so a module that fails to
import is still checked); ``import services.x``, ``from services.x import y``,
``from services import x`` and relative imports that climb out of a package all
count, at any depth (inside a function or an ``if TYPE_CHECKING:`` block too)."""

from __future__ import annotations

import ast
from pathlib import Path

from services.cli import SERVICES as STARTED

SERVICES = Path(__file__).resolve().parents[2] / "services"
SHARED = frozenset({"runtime", "ops"})
"""Packages every service may import; they import no service."""
STARTERS = frozenset({"services.cli"})
"""Modules that may import every service, because they start them."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``tree``, relative ones resolved
    against ``module``; ``from a import b`` yields ``a.b``, since ``b`` may be a
    module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                package = package if is_package else package[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _service_of(dotted: str) -> str | None:
    """The service package ``dotted`` belongs to (``services.cloud.pods`` -> ``cloud``);
    None for anything outside ``services`` or for a top-level module of it."""
    parts = dotted.split(".")
    if len(parts) < 2 or parts[0] != "services":
        return None
    return parts[1] if (SERVICES / parts[1]).is_dir() else None


def _violations() -> list[str]:
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        module = _module_name(path)
        if module in STARTERS:
            continue
        own = _service_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in _imported(tree, module, path.name == "__init__.py"):
            other = _service_of(name)
            if other is None or other == own or other in SHARED:
                continue
            where = f"{path.relative_to(SERVICES.parent)}:{line}"
            found.append(f"{where} ({own or 'services'}) imports {name} ({other})")
    return found


def test_no_service_imports_another() -> None:
    assert _violations() == []


def test_every_package_is_a_service_or_shared() -> None:
    """A new package must be started by cli.py or named shared here, so that the
    rule above knows which side it is on."""
    services = {target.split(".")[1] for target in STARTED.values()}
    packages = {p.name for p in SERVICES.iterdir() if (p / "__init__.py").is_file()}
    assert packages - services == SHARED


def test_the_walk_sees_every_kind_of_import() -> None:
    source = (
        "import services.cloud.pods\n"
        "from services.adapters.http import X\n"
        "from services import budget\n"
        "from ..scheduler import jobs\n"
        "from . import ledger\n"
        "from .pods import Y\n"
        "def f():\n"
        "    from services.gateway import app\n"
    )
    names = [n for _, n in _imported(ast.parse(source), "services.cloud.service", False)]
    assert [_service_of(n) for n in names] == [
        "cloud", "adapters", "budget", "scheduler", "cloud", "cloud", "gateway",
    ]  # fmt: skip
    assert _service_of("services.runtime.http") == "runtime"
    assert _service_of("services.cli") is None and _service_of("schemas.jobs") is None
