"""Loading operator-supplied JSON or YAML configuration files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class ConfigFileError(Exception):
    """A configuration file is missing, unreadable or invalid."""


def load_structured_file(path: Path) -> Any:
    """Parse ``path`` as YAML when it ends in .yaml/.yml, else as JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigFileError(f"{path}: does not parse ({exc})") from exc
