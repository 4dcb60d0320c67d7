"""JSON log lines: one object per line, for people and log shippers alike."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Fields a record may carry through ``extra=`` that belong in the line.
_EXTRA = ("request_id", "method", "route", "path", "status", "latency_ms", "actor", "client")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts_utc": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            # Which worker wrote it: with --workers N the lines interleave.
            "pid": record.process,
        }
        for key in _EXTRA:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


def configure(level: str = "info") -> None:
    """Send every log record to stderr as JSON (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our middleware writes the access line; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
