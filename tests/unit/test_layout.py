"""The layout shows the pipeline: imports run one way, and the README names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "pushtrio"

LAYERS = {
    "contract": 0,
    "config": 1,
    "budgets": 1,
    "source": 2,
    "stores": 2,
    "providers": 3,
    "pipeline": 4,
    "sinks": 5,
    "web": 6,
    "service": 7,
    "cli": 8,
    "__main__": 9,
}
"""Each top-level part and its floor: a module imports only from its floor or below."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of pushtrio that ``path`` imports (relative or absolute)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders between the package and it
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                inside = list(path.relative_to(PACKAGE).parts[:-1])[: depth - up]
                target = [*inside, *(node.module or "").split(".")]
                target = [t for t in target if t]
                names = [target[0]] if target else [alias.name for alias in node.names]
            elif (node.module or "").startswith("pushtrio."):
                names = [(node.module or "").split(".")[1]]
            else:
                continue
            parts.update(names)
    return parts


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up(path: Path) -> None:
    here = part_of(path)
    if here == "__init__":
        return
    for part in imported_parts(path) - {here, "__version__"}:
        assert part in LAYERS, (path, part)
        assert LAYERS[part] <= LAYERS[here], f"{path.relative_to(PACKAGE)} imports {part}"


def test_at_most_eight_top_level_modules() -> None:
    top = [p.name for p in PACKAGE.glob("*.py") if p.name not in {"__init__.py", "__main__.py"}]
    assert len(top) <= 8, top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} <= {
        *LAYERS,
        "py.typed",
    }


def test_the_readme_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    for path in modules():
        if path.name == "__init__.py":
            continue
        assert re.search(rf"\b{re.escape(path.name)}\b", block), path.relative_to(PACKAGE)
    for folder in {p.parent for p in modules()} - {PACKAGE}:
        assert f"{folder.name}/" in block, folder
