"""Google API errors, mapped once for every Google sink: permanent (missing, forbidden, refused,
no credentials) or transient (throttled, a server error, a timeout, no connection)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from .errors import DestinationError, DestinationUnavailable

TRANSIENT: tuple[type[BaseException], ...] = (
    gexc.TooManyRequests,
    gexc.ServerError,  # 5xx
    gexc.DeadlineExceeded,
    gexc.RetryError,  # a client's retries ran out, on transient errors only
    auth_exc.TransportError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def preflight_error(exc: Exception, what: str) -> DestinationError | DestinationUnavailable:
    """Why `what` (a bucket, table or topic, named) cannot be used, as the error to raise."""
    kind = type(exc).__name__
    if isinstance(exc, gexc.NotFound):
        return DestinationError(f"{what} does not exist")
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied | gexc.Unauthorized):
        return DestinationError(f"no permission on {what}")
    if is_transient(exc):
        return DestinationUnavailable(f"{what} is not reachable now ({kind}); retry later")
    return DestinationError(f"{what} is not usable ({kind})")


@contextmanager
def credentials() -> Iterator[None]:
    """Making a client: no Application Default Credentials is a configuration error."""
    try:
        yield
    except auth_exc.DefaultCredentialsError:
        raise DestinationError(
            "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a key file, run "
            "`gcloud auth application-default login`, or use the emulators "
            "(docs/destinations.md)"
        ) from None
