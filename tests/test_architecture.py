"""The shape of the package, checked: storage knows no feature, no module
imports another in a circle (lazy and type-only imports included), and only
the top (app, CLI, composition root) imports the composition root."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import valhalla_gov
from valhalla_gov.compose import FEATURES, SCHEMA

PACKAGE = Path(valhalla_gov.__file__).parent
ROOT = "valhalla_gov"
# The top: what composes the features, and the entry points. Everything else
# is "below" and must not import these.
TOP = {"app", "compose", "core_router", "metrics_endpoint", "transfer", "prune", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "migrations/versions" not in path.as_posix()
}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str) -> Iterator[str]:
    """Every valhalla_gov module ``module`` imports, wherever the import sits
    (module level, inside a function, or under TYPE_CHECKING)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith(ROOT):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if sub in MODULES else target


GRAPH = {module: {m for m in imports_of(module) if m in MODULES} for module in MODULES}


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_import_graph_resolves() -> None:
    # Guards the checks below: they only see what this resolver finds.
    assert "valhalla_gov.storage.protocol" in GRAPH["valhalla_gov.go.session_store"]
    assert "valhalla_gov.context" in GRAPH["valhalla_gov.feature"]  # a TYPE_CHECKING import
    assert "valhalla_gov.go.tables" in GRAPH["valhalla_gov.go.session_store"]  # a lazy one


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_in_a_circle() -> None:
    assert _cycles() == []


def test_nothing_below_the_top_imports_the_top() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _part(module) not in TOP
        for target in targets
        if _part(target) in TOP
    ]
    assert offenders == []


# The bottom layer: mechanisms every feature may use, knowing none of them.
BOTTOM = {"storage", "observability", "context", "feature", "settings", "errors", "timeutil"}
BOTTOM |= {"textfiles", "constants", "event_names", "plain_errors", "database_url"}


def test_the_bottom_layer_imports_no_feature() -> None:
    features = {feature.name for feature in FEATURES}
    offenders = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _part(module) in BOTTOM
        for target in targets
        if _part(target) in features
    ]
    assert offenders == []


def test_every_module_is_placed_in_a_layer() -> None:
    # A new top-level module must say where it belongs (so the rule above
    # cannot be dodged by a module nobody listed).
    features = {feature.name for feature in FEATURES}
    known = TOP | BOTTOM | features | {"", "security", "ui", "api_docs", "migrations"}
    assert sorted({_part(m) for m in MODULES} - known) == []


def test_storage_imports_no_feature() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _part(module) == "storage"
        for target in targets
        if _part(target) != "storage"
    ]
    assert offenders == []


def _feature_words() -> list[str]:
    words = {feature.name for feature in FEATURES}
    for name, file in [(d.name, d.file) for d in SCHEMA.documents] + [
        (log.name, log.file) for log in SCHEMA.logs
    ]:
        words |= {name, file, Path(file).stem}
    return sorted(words)


@pytest.mark.parametrize("word", _feature_words())
def test_storage_names_no_feature(word: str) -> None:
    pattern = re.compile(rf"(?<![\w.]){re.escape(word)}(?![\w])", re.IGNORECASE)
    named = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for module, path in MODULES.items()
        if _part(module) == "storage"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert named == []


def test_every_feature_is_a_folder_with_the_same_rooms() -> None:
    for feature in FEATURES:
        folder = PACKAGE / feature.name
        assert (folder / "feature.py").is_file(), feature.name
        for module in feature.router_modules:
            assert (folder / f"{module}.py").is_file(), f"{feature.name}.{module}"
        if feature.schema.documents or feature.schema.logs:
            # What a feature stores is declared in its store room, nowhere else.
            assert any(folder.glob("*store.py")), feature.name
            assert (folder / "models.py").is_file(), feature.name
            assert any(folder.glob("*service.py")), feature.name
