"""The one list of audited events (``valhalla_gov.event_names``) is the truth:
every event the code audits is in it, every name in it is audited somewhere,
and the webhook docs list exactly it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from valhalla_gov.event_names import AUDITED_EVENTS, closest_event, known_event

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "valhalla_gov"
AUDITING = {"log_event", "record_event"}


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "TEXT"`` assignments."""
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _names(node: ast.expr, constants: dict[str, str]) -> list[str] | None:
    """The event names an ``event=`` argument can take; None when the code
    does not say them where it audits."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body, constants), _names(node.orelse, constants)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    return None


def _forwards_its_parameter(func: ast.AST | None, node: ast.expr) -> bool:
    """``record_event(event=...)`` passing on its own ``event`` parameter."""
    return (
        isinstance(func, ast.FunctionDef)
        and func.name in AUDITING
        and isinstance(node, ast.Name)
        and node.id in {a.arg for a in func.args.kwonlyargs + func.args.args}
    )


def audited_in_code() -> dict[str, list[str]]:
    """Every event name the package audits -> where."""
    found: dict[str, list[str]] = {}
    unreadable: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            if name not in AUDITING:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg != "event":
                    continue
                names = _names(keyword.value, constants)
                if names is not None:
                    for event in names:
                        found.setdefault(event, []).append(where)
                    continue
                func: ast.AST | None = node
                while func is not None and not isinstance(func, ast.FunctionDef):
                    func = parents.get(func)
                if not _forwards_its_parameter(func, keyword.value):
                    unreadable.append(where)
    assert unreadable == [], (
        "audit with the event name written out (a string, or a module constant) so it "
        f"can be checked against valhalla_gov.event_names: {unreadable}"
    )
    return found


def test_every_audited_event_is_in_the_list() -> None:
    audited = audited_in_code()
    unknown = {event: where for event, where in audited.items() if event not in AUDITED_EVENTS}
    assert unknown == {}, "add these to AUDITED_EVENTS in src/valhalla_gov/event_names.py"


def test_every_listed_event_is_audited_somewhere() -> None:
    stale = set(AUDITED_EVENTS) - set(audited_in_code())
    assert stale == set(), "no code audits these any more: remove them from the list"


def test_the_scan_sees_the_events_it_should() -> None:
    # A scan that found nothing would pass the two tests above.
    audited = audited_in_code()
    for event in ("GO_SESSION_START", "CONE_ALLOW", "CONE_DENY", "WEBHOOK_GAVE_UP"):
        assert event in audited


def test_names_are_upper_snake_case() -> None:
    for event in AUDITED_EVENTS:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", event), event


@pytest.mark.parametrize(
    ("given", "known", "closest"),
    [
        ("GO_SESSION_START", "GO_SESSION_START", "GO_SESSION_START"),
        (" go_session_start ", "GO_SESSION_START", "GO_SESSION_START"),
        ("GO_SESION_START", None, "GO_SESSION_START"),
        ("health_change", None, "HEALTH_CHANGED"),
        ("nothing like it", None, None),
    ],
)
def test_known_and_closest(given: str, known: str | None, closest: str | None) -> None:
    assert known_event(given) == known
    assert closest_event(given) == closest


def test_the_webhook_docs_list_every_event() -> None:
    text = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    section = text.split("| event | when |", 1)[1].split("\n\n", 1)[0]
    table = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|$", section, re.M)
    assert dict(table) == dict(AUDITED_EVENTS)
