"""Overriding the canon and matrix with a JSON or YAML file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.cone.canon import load_canon
from valhalla_gov.settings import Settings
from valhalla_gov.textfiles import ConfigFileError

from .expected import ALL_ENGINES

LOOPBACK = ("127.0.0.1", 50000)

CUSTOM: dict[str, Any] = {
    "engine_classes": {
        "steady": ["laundromat", "vending"],
        "bold": ["crypto_mining"],
    },
    "matrix": {
        "A": {"steady": ["run", "scale", "optimize"], "bold": ["run", "scale"]},
        "B": {"steady": ["run", "scale"], "bold": ["run"]},
        "C": {"steady": ["run"]},
    },
    "hard_caps_usd": {"crypto_mining": 5000},
}


def _check_custom(path: Path) -> None:
    canon = load_canon(path)
    assert canon.engines() == ["crypto_mining", "laundromat", "vending"]
    assert canon.class_of("vending") == "steady"
    assert canon.class_of("storage_units") is None  # defaults replaced whole
    assert canon.allowed("B", "steady") == ["run", "scale"]
    assert canon.allowed("C", "bold") == []
    assert canon.allowed("D", "steady") == []  # band missing from the file: nothing
    assert canon.hard_caps_usd == {"crypto_mining": 5000}


def test_load_canon_from_json(tmp_path: Path) -> None:
    path = tmp_path / "canon.json"
    path.write_text(json.dumps(CUSTOM), encoding="utf-8")
    _check_custom(path)


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_load_canon_from_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"canon{suffix}"
    path.write_text(yaml.safe_dump(CUSTOM), encoding="utf-8")
    _check_custom(path)


def test_load_canon_default_when_no_file() -> None:
    assert sorted(load_canon(None).engines()) == sorted(ALL_ENGINES)


def _with(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(json.dumps(CUSTOM))
    raw.update(changes)
    return raw


INVALID: list[tuple[str, dict[str, Any]]] = [
    (
        "engine-in-two-classes",
        _with(
            engine_classes={
                "steady": ["laundromat", "vending"],
                "bold": ["crypto_mining", "laundromat"],
            }
        ),
    ),
    ("matrix-unknown-class", _with(matrix={"A": {"steady": ["run"], "ghost": ["run"]}})),
    ("matrix-unknown-band", _with(matrix={"E": {"steady": ["run"]}})),
    ("matrix-unknown-action", _with(matrix={"A": {"steady": ["fly"]}})),
    ("cap-unknown-engine", _with(hard_caps_usd={"nobody": 1})),
    ("missing-engine-classes", {"matrix": {}}),
]


@pytest.mark.parametrize("raw", [raw for _, raw in INVALID], ids=[name for name, _ in INVALID])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_invalid_canon_raises_config_error_naming_the_path(
    tmp_path: Path, raw: dict[str, Any], suffix: str
) -> None:
    path = tmp_path / f"my_canon{suffix}"
    text = json.dumps(raw) if suffix == ".json" else yaml.safe_dump(raw)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_canon(path)
    assert str(path) in str(info.value)


def test_engine_in_two_classes_message_names_engine(tmp_path: Path) -> None:
    path = tmp_path / "canon.json"
    raw = _with(
        engine_classes={"steady": ["laundromat", "vending"], "bold": ["crypto_mining", "vending"]}
    )
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ConfigFileError, match="'vending' is in both"):
        load_canon(path)


def test_matrix_unknown_class_message_names_class(tmp_path: Path) -> None:
    path = tmp_path / "canon.json"
    path.write_text(json.dumps(_with(matrix={"A": {"ghost": ["run"]}})), encoding="utf-8")
    with pytest.raises(ConfigFileError, match="ghost"):
        load_canon(path)


@pytest.mark.parametrize("text", ["{not json", ""], ids=["bad-json", "empty"])
def test_unparseable_canon_file_names_the_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "canon.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError) as info:
        load_canon(path)
    assert str(path) in str(info.value)


def test_missing_canon_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigFileError) as info:
        load_canon(path)
    assert str(path) in str(info.value)


def test_create_app_uses_the_canon_file(tmp_path: Path, data_dir: Path, clock: FakeClock) -> None:
    path = tmp_path / "canon.yaml"
    path.write_text(yaml.safe_dump(CUSTOM), encoding="utf-8")
    owner = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir, canon_file=path), clock=clock)
    with TestClient(app, raise_server_exceptions=False, client=LOOPBACK, headers=owner) as client:
        # Band B (boot default): steady may scale under this canon.
        ok = client.get("/core/cone/decide", params={"engine": "vending", "action": "scale"})
        assert ok.status_code == 200
        assert ok.json()["allowed"] is True
        assert ok.json()["engine_class"] == "steady"
        capped = client.get(
            "/core/cone/decide", params={"engine": "crypto_mining", "action": "run"}
        )
        assert capped.json()["hard_cap_usd"] == 5000
        gone = client.get("/core/cone/decide", params={"engine": "storage_units", "action": "run"})
        assert gone.status_code == 404
        assert gone.json()["known_engines"] == ["crypto_mining", "laundromat", "vending"]


def test_create_app_with_invalid_canon_file_refuses_to_start(
    tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "canon.json"
    path.write_text(json.dumps(_with(engine_classes={"a": ["x"], "b": ["x"]})), encoding="utf-8")
    with pytest.raises(ConfigFileError, match=re.escape(str(path))):
        create_app(Settings(data_dir=data_dir, canon_file=path))
