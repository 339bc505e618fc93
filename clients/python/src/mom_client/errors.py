"""Typed errors of the MOM client, mapped from the gateway's HTTP status and JSON error body."""

from __future__ import annotations

import json
import math
import time
from email.utils import parsedate_to_datetime
from http import HTTPStatus


class MomError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status the gateway answered (``None`` when no answer came, see
    :class:`TransportError`); ``message`` is the ``error`` field of its ``{"error": ...}`` body.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"gateway answered {self.status}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class TransportError(MomError):
    """The request could not be sent or its answer not read (connection refused, timeout...).

    Whether the gateway acted on it is unknown: a publish that failed this way may be stored.
    """


class BadRequest(MomError):
    """400: invalid name, routing key, JSON body or parameter."""


class Unauthorized(MomError):
    """401: missing, expired or forged token, or wrong credentials at login."""


class Forbidden(MomError):
    """403: the token is valid but its user may not do this.

    Someone else's exchange, queue or topic without a grant (see
    :meth:`Connection.grant <mom_client.Connection.grant>`), an admin-only call made by a
    plain user, or a registration while the auth service has registration closed.
    """


class NotFound(MomError):
    """404: no such exchange, queue, topic, subscription or route."""


class Conflict(MomError):
    """409: a taken user name, or an exchange redeclared with another kind."""


class PayloadTooLarge(MomError):
    """413: the request body is over the gateway's ``max_body_bytes``."""


class Unprocessable(MomError):
    """422: understood but refused, e.g. a ``mandatory`` publish that no queue would get."""


class TooManyRequests(MomError):
    """429: too many logins or registrations; the auth service throttles them.

    ``retry_after`` is how many seconds to wait before trying again, from the answer's
    ``Retry-After`` header (``None`` if it had none or an unreadable one).
    """

    def __init__(self, message: str, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
            f"retry_after={self.retry_after!r})"
        )


class ServerError(MomError):
    """5xx: the cluster failed to handle a valid request."""


class BadGateway(ServerError):
    """502: a broker node or the auth service failed behind the gateway."""


class Unavailable(ServerError):
    """503: no live node or a leader fail-over outlasted the gateway's retries; may be retried.

    A publish answered 503 may or may not have been stored (docs/rest-api.md).
    """


_BY_STATUS: dict[int, type[MomError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: TooManyRequests,
    502: BadGateway,
    503: Unavailable,
}


def error_message(status: int, body: str) -> str:
    """The message of an error answer, as the Rust client reads it.

    The ``error`` field of a ``{"error": "..."}`` body; otherwise the trimmed body text (a proxy
    in between may answer plain text); for an empty body, the status's reason phrase.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    message = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(message, str):
        return message
    if body.strip():
        return body.strip()
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no body"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header: delay-seconds or an HTTP date.

    ``None`` when the header is missing or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_for(status: int, body: str, retry_after: str | None = None) -> MomError:
    """The typed error for a non-2xx answer with this status and body text.

    ``retry_after`` is the answer's ``Retry-After`` header, kept by :class:`TooManyRequests`.
    """
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else MomError
    if cls is TooManyRequests:
        return TooManyRequests(error_message(status, body), status, retry_after_seconds(retry_after))
    return cls(error_message(status, body), status)
