"""Loading operator-supplied JSON or YAML configuration files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(Exception):
    """A configuration file is missing, unreadable or invalid."""


def load_structured_file(path: Path) -> Any:
    """Parse ``path`` as YAML when it ends in .yaml/.yml, else as JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.suffix.lower() not in {".yaml", ".yml"}:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{path}: does not parse ({exc})") from exc
    # Imported for a YAML file only: every CLI command judging health loads
    # the default canon and playbook, and none of them needs a YAML parser.
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: does not parse ({exc})") from exc


def load_config(model: type[M], path: Path | None, default: Any, *, what: str) -> M:
    """``model`` from the operator's file at ``path``, or from ``default``
    when there is none; ConfigFileError saying what is wrong otherwise."""
    raw = default if path is None else load_structured_file(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigFileError(f"{path or f'default {what}'}: invalid {what}: {exc}") from exc
