"""Exceptions raised by the Airlock SDK.

Every error the daemon returns is an RFC 9457 *problem details* document
(``application/problem+json``)::

    {"type": "https://airlock.dev/problems/forbidden", "title": "Forbidden",
     "status": 403, "detail": "the token ... has the role viewer; ...",
     "errors": [{"field": "labels.workflow", "message": "..."}]}

It is raised as a subclass of :class:`AirlockError` chosen from the problem's
``type`` (or, for an unknown type, from the HTTP status), with the document's
members as attributes. ``str(error)`` leads with the ``detail``, which says what
to do about it.

Hierarchy::

    AirlockError
    ├── BadRequest (400)
    │   └── ValidationError (422, or type "validation")
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── RateLimited (429)
    ├── ServerError (5xx)
    ├── AirlockConnectionError   (also a builtin ConnectionError: daemon unreachable)
    ├── AirlockTimeout           (also a builtin TimeoutError: no answer in time)
    ├── ProtocolError            (an answer that does not follow the contract)
    └── ExecError                (ExecResult.check() on a failed command)
"""

from __future__ import annotations

import json
from email.message import Message
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Type, Union

if TYPE_CHECKING:  # pragma: no cover
    from .models import ExecExit

__all__ = [
    "AirlockError",
    "BadRequest",
    "ValidationError",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "ServerError",
    "AirlockConnectionError",
    "AirlockTimeout",
    "ProtocolError",
    "ExecError",
]

PROBLEM_BASE = "https://airlock.dev/problems/"


class AirlockError(Exception):
    """Base class of every error raised by the SDK.

    Attributes (from the problem details document when the daemon sent one):

    - ``status``: the HTTP status (``None`` when no answer was received).
    - ``type``: the problem type URI, e.g. ``https://airlock.dev/problems/forbidden``.
    - ``title``: the short, generic summary, e.g. ``"Forbidden"``.
    - ``detail``: the explanation of *this* occurrence, written for a person.
    - ``errors``: per-field errors, a list of ``{"field": ..., "message": ...}``.
    - ``problem``: the whole decoded document (includes extension members).
    """

    status: Optional[int]
    type: Optional[str]
    title: Optional[str]
    detail: Optional[str]
    errors: List[Dict[str, Any]]
    problem: Dict[str, Any]

    def __init__(
        self,
        detail: Optional[str] = None,
        *,
        status: Optional[int] = None,
        type: Optional[str] = None,
        title: Optional[str] = None,
        errors: Optional[List[Dict[str, Any]]] = None,
        problem: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = list(errors or [])
        self.problem = dict(problem or {})
        super().__init__(self._message())

    @property
    def slug(self) -> Optional[str]:
        """The last segment of ``type`` (``"forbidden"``, ``"validation"``, ...)."""
        if not self.type:
            return None
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    def _message(self) -> str:
        head = ""
        if self.status is not None:
            head = f"{self.title or 'HTTP error'} ({self.status})"
        elif self.title:
            head = self.title
        text = self.detail or ""
        if head and text:
            text = f"{head}: {text}"
        elif head:
            text = head
        for item in self.errors:
            field = item.get("field")
            message = item.get("message", "")
            text += f"\n  - {field}: {message}" if field else f"\n  - {message}"
        return text or self.__class__.__name__

    def __str__(self) -> str:
        return self._message()

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(status={self.status!r}, "
            f"type={self.type!r}, detail={self.detail!r})"
        )


class BadRequest(AirlockError):
    """400: the request is malformed (e.g. a file path with ``..``)."""


class ValidationError(BadRequest):
    """422 / type ``validation``: a field is invalid or unknown; see ``errors``."""


class Unauthorized(AirlockError):
    """401: no token, or a token that is unknown, expired or revoked."""


class Forbidden(AirlockError):
    """403: the role is too weak, or an override would loosen the profile."""


class NotFound(AirlockError):
    """404: no such sandbox, profile, token, snapshot, workspace or file."""


class Conflict(AirlockError):
    """409: the sandbox is not in a state that allows this (stopped, frozen, ...)."""


class PayloadTooLarge(AirlockError):
    """413: a file (64 MiB) or an archive (256 MiB by default) is too large."""


class UnsupportedMediaType(AirlockError):
    """415: the body's ``Content-Type`` is not the one the endpoint takes."""


class RateLimited(AirlockError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds."""

    retry_after: Optional[float] = None


class ServerError(AirlockError):
    """5xx: the daemon failed (type ``internal`` is always a bug worth reporting)."""


class AirlockConnectionError(AirlockError, ConnectionError):
    """The daemon could not be reached (or dropped the connection).

    ``endpoint`` names the Unix socket or URL that failed.
    """

    endpoint: str

    def __init__(self, detail: str, *, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(detail)


class AirlockTimeout(AirlockError, TimeoutError):
    """The daemon did not answer within the client's timeout."""

    endpoint: str

    def __init__(self, detail: str, *, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(detail)


class ProtocolError(AirlockError):
    """The daemon's answer does not follow the API contract."""


class ExecError(AirlockError):
    """A command failed; raised by :meth:`ExecResult.check` / :meth:`ExecExit.check`.

    ``result`` is the :class:`~airlock.ExecResult` (or, for a stream, the
    :class:`~airlock.ExecExit`) with the exit code, signal and output.
    """

    result: "ExecExit"

    def __init__(self, result: "ExecExit") -> None:
        self.result = result
        super().__init__(result.describe_failure())


_BY_SLUG: Dict[str, Type[AirlockError]] = {
    "bad-request": BadRequest,
    "validation": ValidationError,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not-found": NotFound,
    "conflict": Conflict,
    "payload-too-large": PayloadTooLarge,
    "unsupported-media-type": UnsupportedMediaType,
    "too-many-requests": RateLimited,
    "internal": ServerError,
}

_BY_STATUS: Dict[int, Type[AirlockError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
}


def error_class(status: Optional[int], type_uri: Optional[str]) -> Type[AirlockError]:
    """The exception class for a problem's ``type`` URI, else its HTTP status."""
    if type_uri:
        slug = type_uri.rstrip("/").rsplit("/", 1)[-1]
        if slug in _BY_SLUG:
            return _BY_SLUG[slug]
    if status is not None:
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return ServerError
    return AirlockError


def error_from_problem(
    problem: Mapping[str, Any],
    *,
    status: Optional[int] = None,
    headers: Optional[Union[Mapping[str, str], Message]] = None,
) -> AirlockError:
    """Build the matching :class:`AirlockError` from a decoded problem document."""
    doc = dict(problem)
    st = status if status is not None else _as_int(doc.get("status"))
    type_uri = doc.get("type") if isinstance(doc.get("type"), str) else None
    raw_errors = doc.get("errors")
    errors: List[Dict[str, Any]] = []
    if isinstance(raw_errors, list):
        for item in raw_errors:
            errors.append(dict(item) if isinstance(item, Mapping) else {"message": str(item)})
    cls = error_class(st, type_uri)
    err = cls(
        _as_str(doc.get("detail")),
        status=st,
        type=type_uri,
        title=_as_str(doc.get("title")),
        errors=errors,
        problem=doc,
    )
    if isinstance(err, RateLimited) and headers is not None:
        retry = headers.get("Retry-After")
        if retry is not None:
            try:
                err.retry_after = float(retry)
            except ValueError:
                pass
    return err


def error_from_response(
    status: int,
    body: bytes,
    headers: Optional[Union[Mapping[str, str], Message]] = None,
    reason: str = "",
) -> AirlockError:
    """Map an HTTP error answer (problem+json or anything else) to an exception."""
    doc: Union[Dict[str, Any], None] = None
    if body:
        try:
            parsed = json.loads(body.decode("utf-8"))
            if isinstance(parsed, dict):
                doc = parsed
        except (ValueError, UnicodeDecodeError):
            doc = None
    if doc is None:
        text = body.decode("utf-8", errors="replace").strip()
        if len(text) > 500:
            text = text[:500] + "…"
        doc = {"title": reason or None, "detail": text or None}
    doc.setdefault("status", status)
    if not doc.get("title") and reason:
        doc["title"] = reason
    return error_from_problem(doc, status=status, headers=headers)


def _as_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
