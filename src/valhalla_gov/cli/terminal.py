"""Nothing stored reaches the terminal as a control sequence.

Notes, reasons, metrics and names come from users (and from other clients of
the same server). Printed raw, ``ESC[2J`` clears the screen, an OSC sequence
retitles the window, a carriage return or cursor movement overwrites a line
with a fake "audit chain OK", and bidi overrides reorder what is shown. Every
command's output passes through :class:`SafeTextStream`, which escapes such
characters as ``\\u001b`` (the JSON spelling, so ``--json`` output stays valid
JSON). Only our own colours survive on a terminal: SGR sequences that set
foreground colour or emphasis (never ones that hide text).
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

# C0 controls except newline and tab, DEL, C1 controls, line/paragraph
# separators, bidi embeddings, overrides and isolates; a carriage return only
# where it does not end a line (CSV output ends lines with CR LF, harmless).
_DANGEROUS = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\r(?!\n)"
_SGR_PARAM = r"(?:0|1|2|3|4|22|23|24|3[1-79]|9[0-7])"
_SGR = rf"\x1b\[(?:{_SGR_PARAM}(?:;{_SGR_PARAM})*)?m"
_ESCAPE = re.compile(_DANGEROUS)
_ESCAPE_KEEPING_SGR = re.compile(f"({_SGR})|{_DANGEROUS}")
# In JSON text, C0 controls are already escaped by the encoder.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(char: str) -> str:
    return f"\\u{ord(char):04x}"


def safe_text(text: str) -> str:
    """``text`` with every terminal-dangerous character escaped (newlines and
    tabs kept)."""
    return _ESCAPE.sub(lambda m: _escaped(m.group(0)), text)


def safe_json(text: str) -> str:
    """JSON text with DEL, C1 and bidi characters written as ``\\uXXXX``
    escapes: the same JSON value, harmless on a terminal."""
    return _JSON_UNSAFE.sub(lambda m: _escaped(m.group(0)), text)


class SafeTextStream:
    """A text stream that escapes dangerous characters on their way out."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        # Colours are ours only on a terminal; elsewhere click and rich
        # print none, so any SGR sequence came from data.
        self._keep_sgr = self.isatty()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self._stream, "errors", None) or "strict"

    @property
    def closed(self) -> bool:
        return bool(getattr(self._stream, "closed", False))

    def write(self, text: str) -> int:
        if self._keep_sgr:
            cleaned = _ESCAPE_KEEPING_SGR.sub(lambda m: m.group(1) or _escaped(m.group(0)), text)
        else:
            cleaned = safe_text(text)
        self._stream.write(cleaned)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


def guard_output() -> None:
    """Route stdout and stderr through :class:`SafeTextStream` (idempotent)."""
    if not isinstance(sys.stdout, SafeTextStream):
        sys.stdout = SafeTextStream(sys.stdout)
    if not isinstance(sys.stderr, SafeTextStream):
        sys.stderr = SafeTextStream(sys.stderr)
