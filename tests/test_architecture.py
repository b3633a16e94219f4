"""The house rules of docs/architecture.md that import-linter cannot see: no module imports another
package's private names, no Python module over 600 lines, no source-name comparison outside sources/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rangebar_pipeline"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _package_of(module: str) -> str:
    """``rangebar_pipeline.storage.bars.store`` -> ``rangebar_pipeline.storage.bars``."""
    return module.rsplit(".", 1)[0]


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


def _private_imports(path: Path) -> list[str]:
    """Imports of private names or private modules that belong to another package."""
    importer = _name(path)
    home = importer if path.name == "__init__.py" else _package_of(importer)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("rangebar_pipeline"):
            continue
        target = node.module or ""
        if target == "rangebar_pipeline._core":  # the kernel binding is the package's own extension
            continue
        owner = target if not _is_private(target) else target.rsplit(".", 1)[0]
        for alias in node.names:
            private_name = alias.name.startswith("_") and not alias.name.startswith("__")
            if (private_name or _is_private(target)) and not home.startswith(owner):
                found.append(f"{importer}: from {target} import {alias.name}")
    return found


def test_no_module_imports_another_packages_private_names() -> None:
    found = [line for path in _modules() for line in _private_imports(path)]
    assert found == []


def test_no_python_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_source_name_comparison_outside_sources() -> None:
    comparison = re.compile(
        r"""(==|!=|\bin\b)\s*\(?\s*["'](binance|exness)["']|["'](binance|exness)["']\s*(==|!=)"""
    )
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _modules()
        if "sources" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if comparison.search(line)
    ]
    assert found == []
