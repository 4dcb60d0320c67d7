"""docs/configuration.md lists every setting, as the settings model says it
(tests/docs/test_examples.py runs its example)."""

from __future__ import annotations

from pathlib import Path

import pytest

from valhalla_gov.settings import TABLE_END, TABLE_START, Settings, settings_table, write_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _table(text: str) -> str:
    return text.split(TABLE_START + "\n", 1)[1].split(TABLE_END, 1)[0]


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"settings without a description: {missing}"


def test_every_setting_is_in_the_doc() -> None:
    table = _table(DOC.read_text(encoding="utf-8"))
    absent = [name for name in Settings.model_fields if f"`VALHALLA_{name.upper()}`" not in table]
    assert not absent, f"docs/configuration.md lacks {absent}"


def test_the_doc_table_is_the_generated_one() -> None:
    assert _table(DOC.read_text(encoding="utf-8")) == settings_table(), (
        "docs/configuration.md is out of date: run "
        "`python -m valhalla_gov.settings --write docs/configuration.md`"
    )


def test_the_table_has_one_row_per_setting() -> None:
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    assert all(row.count(" | ") == 2 for row in rows), rows  # a "|" in a meaning is escaped


def test_write_table_replaces_only_the_table(tmp_path: Path) -> None:
    doc = tmp_path / "configuration.md"
    doc.write_text(f"# Title\n\n{TABLE_START}\n| old |\n{TABLE_END}\n\nAfter.\n")
    write_table(doc)
    text = doc.read_text()
    assert text.startswith(f"# Title\n\n{TABLE_START}\n| variable | default | meaning |")
    assert text.endswith(f"{TABLE_END}\n\nAfter.\n")
    assert "| old |" not in text
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit):
        write_table(doc)
