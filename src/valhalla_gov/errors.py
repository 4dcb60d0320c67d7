"""Domain errors. Services raise these; the app maps them to HTTP statuses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .storage.errors import StorageError


class DomainError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.body = body or {}
        self.headers = headers or {}


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class InvalidInputError(DomainError):
    status_code = 422


class UnauthorizedError(DomainError):
    status_code = 401

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        challenge = 'Bearer realm="valhalla"'
        if error:
            challenge += f', error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class ForbiddenError(DomainError):
    status_code = 403


class RateLimitedError(DomainError):
    status_code = 429


class ServiceUnavailableError(DomainError):
    status_code = 503


def storage_unavailable(exc: StorageError) -> dict[str, Any]:
    """The 503 body for a storage error: what the app answers, and what the
    CLI's direct reads answer in its place (so one mapping reads both). A
    database's error names the database, never its URL or SQL (see
    storage/sql_backend.py)."""
    return {"detail": f"storage unavailable: {exc}", "file": exc.path}
