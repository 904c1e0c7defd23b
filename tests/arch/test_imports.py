"""Layering rules from DESIGN.md §2, checked on the source (no import side effects)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sluicegate"


def imports_of(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_providers_never_import_translate_or_api() -> None:
    for module, names in imports_of("providers").items():
        bad = {n for n in names if n.startswith(("sluicegate.translate", "sluicegate.api"))}
        assert not bad, f"{module} imports {bad}"


def test_translate_imports_nothing_of_the_gateway() -> None:
    for module, names in imports_of("translate").items():
        bad = {
            n
            for n in names
            if n.startswith("sluicegate") and not n.startswith("sluicegate.translate")
        }
        assert not bad, f"{module} imports {bad}"


def test_sdks_are_never_on_the_data_path() -> None:
    for module, names in imports_of(".").items():
        bad = {n for n in names if n.split(".")[0] in {"anthropic", "openai", "httpx", "litellm"}}
        assert not bad, f"{module} imports {bad}"


def test_modules_stay_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{path.relative_to(PACKAGE)} has {lines} lines"
