"""Domain errors. Services raise these; the app maps them to HTTP statuses."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.body = body or {}


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class InvalidInputError(DomainError):
    status_code = 422
