"""The one exception tree of llamakit. Catch the narrowest class you can act on::

    LlamakitError
    ├── ValidationError              bad input, caught before any request is sent
    ├── BudgetExceededError          a run's budget would be exceeded by the next call
    ├── ReplayMissError              replay mode met a cell the store has never seen
    ├── StoreError                   the SQLite store is damaged, full, read-only or newer than llamakit
    ├── ClientClosedError            the client was closed (close()): nothing more is sent through it
    └── APIError                     anything that went wrong talking to the API
        ├── APIConnectionError       the server could not be reached, or dropped the connection
        │   ├── APITimeoutError      no complete answer within the timeout
        │   └── APIUnreachableError  a run stopped: connections kept failing, nothing answered
        ├── APIResponseError         a reply that is not the documented shape (HTML, truncated JSON, ...)
        └── APIStatusError           the server answered with an error status
            ├── AuthenticationError        401
            ├── NotFoundError              404
            ├── MethodNotAllowedError      405
            ├── InsufficientCreditsError   406 (carries the last known balance)
            ├── UnprocessableRequestError  422 (and other 4xx the provider rejects)
            ├── RateLimitError             429 (carries ``retry_after``)
            └── ServerError                5xx

No message, attribute or repr of these classes ever contains the API key.
"""

from __future__ import annotations

from decimal import Decimal

from ._defaults import ENV_API_KEY


class LlamakitError(Exception):
    """Root of every error llamakit raises on purpose."""


class ValidationError(LlamakitError, ValueError):
    """Input that would be rejected or wasted; raised before any credit is spent.

    ``field`` names what is wrong (for example ``messages[2].role``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BudgetExceededError(LlamakitError):
    """Sending the next call could take spending past the budget the caller set."""


class ReplayMissError(LlamakitError):
    """Replay mode found a cell with no recorded response, so it cannot answer without the API."""


class RegressionError(LlamakitError, AssertionError):
    """The current run is worse than the baseline beyond the allowed margin, with the chosen
    confidence (``llamakit.check_no_regression``). ``comparison`` holds the paired statistics
    (a ``llamakit.scoring.paired.Comparison``, baseline as ``a``, current as ``b``). An
    AssertionError too, so pytest reports it as a failed check."""

    def __init__(self, message: str, comparison: object = None) -> None:
        super().__init__(message)
        self.comparison = comparison


class StoreError(LlamakitError):
    """The store at ``path`` cannot be used: ``problem`` says what is wrong, ``fix`` what to do.

    ``problem`` is one of "missing", "damaged", "full", "read-only", "locked" (another process
    held the write lock past the busy timeout), "newer-schema", "write-failed", "conflict" (a run
    file's run id is taken by another run).
    Raised when the store is opened (before any credit is spent) or when a write fails mid-run
    (the run stops; replies already paid for are kept in the spill file beside the store, or,
    when the disk refuses that too, printed to stderr: the message says which, and how many).
    """

    def __init__(self, path: object, problem: str, detail: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.detail = detail
        self.fix = fix
        super().__init__(f"store {self.path}: {detail}. {fix}")


class ClientClosedError(LlamakitError):
    """The client was closed (``close()``, or the end of its ``with`` block): no request is sent
    through it any more. Requests already on the wire when it was closed finished first, and
    their replies were returned. A run whose client is closed mid-run stops with this error once
    those replies are stored; rerun with an open client to resume (stored cells are not paid for
    again)."""


class APIError(LlamakitError):
    """A failure talking to the API (hosted or local)."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class APIConnectionError(APIError):
    """The request did not get a complete HTTP answer (refused, reset, dropped).

    ``may_be_billed`` is True when the request had been fully sent before the answer failed to
    arrive (a read timeout, a reply cut off after its status line): the server may have run and
    billed the call, so llamakit does not resend it on v1 by default (see ``RetryPolicy``).
    """

    def __init__(
        self, message: str, *, request_id: str | None = None, may_be_billed: bool = False
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.may_be_billed = may_be_billed


class APITimeoutError(APIConnectionError):
    """No complete answer arrived within the client's timeout."""


class APIUnreachableError(APIConnectionError):
    """A run stopped early because the API could not be reached at all: several connection
    attempts in a row failed and none answered. Finished cells are kept; rerun to resume."""


class APIResponseError(APIError):
    """The server answered 200 but the body is not the documented shape."""


class APIStatusError(APIError):
    """The server answered with an error status; ``status`` and the server's ``server_message``."""

    status: int = 0
    hint: str = ""

    def __init__(
        self,
        server_message: str | None = None,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        self.server_message = server_message
        self.hint = self.hint_for(self.status)
        text = f"HTTP {self.status}"
        if server_message:
            text += f": {server_message}"
        if self.hint:
            text += f". {self.hint}"
        super().__init__(text, request_id=request_id)

    def hint_for(self, status: int) -> str:
        """What to do about this status; a class whose statuses differ in meaning overrides it."""
        return self.hint

    def add_outcome(self, outcome: str) -> None:
        """Append what the retry loop did about this error ("sent once: ...", "gave up after 6
        attempts ..."), so the message says what actually happened."""
        self.outcome = outcome
        self.args = (f"{self.args[0]}; {outcome}", *self.args[1:])


class AuthenticationError(APIStatusError):
    status = 401
    hint = (
        f"Check the API key: llamakit reads the api_key argument, else the {ENV_API_KEY} "
        "environment variable (keys start with SG_)"
    )


class NotFoundError(APIStatusError):
    status = 404
    hint = "Check the model slug and base_url (it should end in /v1)"


class MethodNotAllowedError(APIStatusError):
    status = 405
    hint = "This endpoint does not accept that HTTP method; check base_url"


class InsufficientCreditsError(APIStatusError):
    status = 406

    def __init__(
        self,
        server_message: str | None = None,
        *,
        balance: Decimal | float | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.balance = balance
        known = "unknown" if balance is None else f"{balance:.6f}"
        self.hint = (
            f"Not enough credits (last known balance: {known}). "
            "Top up at https://cloud.segmind.com/console/billing, then rerun: finished work is kept"
        )
        super().__init__(server_message, status=status, request_id=request_id)


class UnprocessableRequestError(APIStatusError):
    """422, and any other 4xx without a class of its own (``status`` says which)."""

    status = 422
    hint = "The server rejected the request body; check messages and sampling parameters"

    def hint_for(self, status: int) -> str:
        if status in (400, 422):
            return self.hint
        if status == 413:
            return "The request is too large for the server; send shorter messages"
        if status == 424:
            return (
                "The server's own configuration failed (the service behind it), not your "
                "request: tell the server's operator"
            )
        return f"The server refused the request (HTTP {status}); its message above says why"


class RateLimitError(APIStatusError):
    status = 429

    def __init__(
        self,
        server_message: str | None = None,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        wait = "" if retry_after is None else f" (server asked to wait {retry_after:g}s)"
        self.hint = f"Rate limited{wait}; pass rpm= to Client to stay under your plan's limit"
        super().__init__(server_message, status=status, request_id=request_id)


class ServerError(APIStatusError):
    status = 500
    # What the retry loop did about it is appended to the message (``add_outcome``).
    hint = "The server failed"


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    406: InsufficientCreditsError,
    422: UnprocessableRequestError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status (5xx -> ServerError, other 4xx -> 422's class)."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return UnprocessableRequestError
    return APIStatusError
