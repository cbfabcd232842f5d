"""Every error hubtools can raise on purpose, grouped by domain, each with a message.

``hubtools.cli`` prints ``error: <message>`` and exits with the family's ``exit_code``
(no traceback). The local Hub server turns a :class:`HubRequestError` into an HTTP reply
with the Hub's ``X-Error-Code`` header and a JSON body ``{"error": message}``, which is
what ``huggingface_hub.utils.hf_raise_for_status`` maps onto its own typed errors.
"""

from __future__ import annotations


class HubToolsError(Exception):
    """Base of hubtools' user-facing errors. A message is required."""

    exit_code = 1

    def __init__(self, message: str):
        if not message:
            raise ValueError(f"{type(self).__name__} needs a message")
        super().__init__(message)
        self.message = message


# --- local Hub: setup and seeding (CLI side) -------------------------------------------


class SeedSourceMissingError(HubToolsError):
    """A folder or package the seed publishes from is not there."""

    exit_code = 2


class LocalHubStartError(HubToolsError):
    """The server could not bind its address (port in use, bad host)."""

    exit_code = 2


# --- local Hub: request errors (server side, one per X-Error-Code) ---------------------


class HubRequestError(HubToolsError):
    """A request the local Hub refuses; ``status``, ``code`` and ``headers`` become the reply."""

    status = 400
    code = "BadRequest"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = dict(headers or {})


class InvalidRepoIdError(HubRequestError):
    """A repo id that is not ``name`` or ``namespace/name`` with safe characters."""

    code = "InvalidRepoId"


class InvalidPathError(HubRequestError):
    """A file path with ``..``, a leading ``/``, a backslash or an empty segment."""

    code = "InvalidPath"


class UnauthorizedError(HubRequestError):
    """A write (or a private read) without the accepted token."""

    status = 401
    code = "Unauthorized"


class RepoNotFoundError(HubRequestError):
    """No such repo, or a private one the caller may not see."""

    status = 404
    code = "RepoNotFound"


class RevisionNotFoundError(HubRequestError):
    """A branch or commit that the repo does not have."""

    status = 404
    code = "RevisionNotFound"


class EntryNotFoundError(HubRequestError):
    """A file or folder that the revision does not have."""

    status = 404
    code = "EntryNotFound"


class RepoExistsError(HubRequestError):
    """``create_repo`` for a repo that already exists."""

    status = 409
    code = "RepoExists"


class ParentCommitMismatchError(HubRequestError):
    """A commit whose ``parentCommit`` is no longer the branch head."""

    status = 412
    code = "PreconditionFailed"


class NotFoundError(HubRequestError):
    """A URL that matches no endpoint."""

    status = 404
    code = "NotFound"


class MethodNotAllowedError(HubRequestError):
    """A known URL with a method it does not take."""

    status = 405
    code = "MethodNotAllowed"


class BlobMismatchError(HubRequestError):
    """Uploaded bytes whose size or sha256 differ from the ones announced."""

    code = "BadRequest"


class RangeNotSatisfiableError(HubRequestError):
    """A ``Range`` header outside the file."""

    status = 416
    code = "RangeNotSatisfiable"


class RequestTimeoutError(HubRequestError):
    """A request whose headers or body stopped arriving for longer than the read timeout."""

    status = 408
    code = "RequestTimeout"


class PayloadTooLargeError(HubRequestError):
    """A body larger than the endpoint reads into memory."""

    status = 413
    code = "PayloadTooLarge"


class URITooLongError(HubRequestError):
    """A request line over http.server's 64 KiB limit."""

    status = 414
    code = "URITooLong"


class HeadersTooLargeError(HubRequestError):
    """A header line over 64 KiB, or more than 100 header lines."""

    status = 431
    code = "RequestHeaderFieldsTooLarge"


class ServerBusyError(HubRequestError):
    """A connection over the server's ``max_connections``; the client should retry later."""

    status = 503
    code = "ServiceUnavailable"


# --- command line ------------------------------------------------------------------------


class UsageError(HubToolsError):
    """A command line that cannot be run as given."""

    exit_code = 2


# --- publishing: push, verify, catalog (hubtools.push / verify / catalog) -----------------


class PublishedMetricsDifferError(HubToolsError):
    """The repo's card already states other metrics; pushing would overwrite them (``--overwrite``)."""

    exit_code = 3


class HubUnreachableError(HubToolsError):
    """verify could not reach the Hub (``HF_ENDPOINT``) or got no answer in time, even after the
    retries, so it judged nothing: never a verdict from a cached copy of the repo."""

    exit_code = 6


class PushFailedError(HubToolsError):
    """The Hub refused the push or stayed unreachable after the retries."""

    exit_code = 4


class VerificationFailedError(HubToolsError):
    """A published repo whose numbers do not match what its files measure."""

    exit_code = 5
