"""Input size limits shared by every request schema."""

MAX_TEXT = 10_000  # characters in a reason or a note
