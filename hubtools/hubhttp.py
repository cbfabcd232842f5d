"""One policy for every Hub call of push and verify: timeouts, and retries of transient failures.

A call that fails with a connection error, a timeout, a 429 or a 5xx (or with an error raised
from one of those, as ``hf_hub_download`` and the LFS upload wrap them) is retried after 1, 2,
4, 8 s (doubling, capped at ``max_delay``; no jitter, so tests can assert the delays), or after
the ``Retry-After`` seconds the Hub asked for (capped at ``max_retry_after``). Any other error
is raised at once. Only idempotent calls go through :meth:`HubPolicy.call`; a commit is retried
by :func:`hubtools.push.commit_with_retries`, which names the parent so it can never land twice.

Timeouts: inside :meth:`HubPolicy.session`, every request huggingface_hub sends without a
timeout of its own (``create_commit``, ``repo_info`` inside ``snapshot_download``, ...) gets
``(connect_timeout, read_timeout)``; requests that set one keep it (file bodies:
``HF_HUB_DOWNLOAD_TIMEOUT``). The read timeout bounds each wait for bytes, not a whole transfer.

Settings, from the environment (:meth:`HubPolicy.from_env`) or in Python::

    HUBTOOLS_CONNECT_TIMEOUT=10  HUBTOOLS_READ_TIMEOUT=30  HUBTOOLS_RETRIES=4

    policy = HubPolicy(read_timeout=5, sleep=lambda s: None)   # tests: no real waiting
    with policy.session():
        info = policy.call("model_info of org/x", api.model_info, "org/x", timeout=policy.timeout)
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import requests
from huggingface_hub import configure_http_backend
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import _http
from requests.adapters import BaseAdapter

from hubtools.errors import UsageError

log = logging.getLogger("hubtools.hubhttp")
T = TypeVar("T")

#: The environment variables :meth:`HubPolicy.from_env` reads, and what they set.
ENV_SETTINGS = {
    "HUBTOOLS_CONNECT_TIMEOUT": "connect_timeout",
    "HUBTOOLS_READ_TIMEOUT": "read_timeout",
    "HUBTOOLS_RETRIES": "retries",
}
ENV_HELP = (
    "environment: HUBTOOLS_CONNECT_TIMEOUT (seconds, default 10) and HUBTOOLS_READ_TIMEOUT (default 30) bound "
    "each Hub request; HUBTOOLS_RETRIES (default 4) retries a connection error, timeout, 429 or 5xx, after "
    "1, 2, 4, 8 s or the Retry-After the Hub asks for"
)


def is_transient(err: BaseException | None) -> bool:
    """A failure worth retrying: no connection, no answer in time, a dropped reply, 429 or 5xx;
    or an error raised from one of those (``raise ... from err``)."""
    while err is not None:
        if isinstance(err, requests.exceptions.SSLError):  # a certificate problem does not go away
            return False
        if isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
            return True
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            return err.response.status_code == 429 or err.response.status_code >= 500
        err = err.__cause__
    return False


def http_error(err: BaseException | None) -> HfHubHTTPError | None:
    """The HTTP error with a reply in ``err``'s chain of causes, if any."""
    while err is not None and not (isinstance(err, HfHubHTTPError) and err.response is not None):
        err = err.__cause__
    return err


def retry_after(err: BaseException) -> float | None:
    """The seconds a reply's ``Retry-After`` asks to wait; None when it has none (or a date)."""
    http = http_error(err)
    value = http.response.headers.get("Retry-After", "") if http is not None else ""
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def describe(err: BaseException) -> str:
    """A short reason: ``HTTP 503``, ``no answer within 30 s``, ``Connection refused``."""
    http = http_error(err)
    if http is not None:
        return f"HTTP {http.response.status_code}"
    while err.__cause__ is not None and not isinstance(err, requests.RequestException):
        err = err.__cause__
    if isinstance(err, requests.Timeout):
        kind = "connection" if isinstance(err, requests.ConnectTimeout) else "answer"
        return f"no {kind} within the timeout ({err.__class__.__name__})"
    text = str(err)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text) or re.search(r"(Remote end closed [^'\")]+)", text)
    return found.group(1).strip() if found else err.__class__.__name__


class _DefaultTimeout(BaseAdapter):
    """Sends through ``inner`` with ``timeout`` when the request has none."""

    def __init__(self, inner: BaseAdapter, timeout: tuple[float, float]):
        super().__init__()
        self.inner = inner
        self.timeout = timeout

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        timeout = self.timeout if timeout is None else timeout
        return self.inner.send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class HubPolicy:
    """Timeouts and retries of Hub calls (see the module docstring). ``sleep`` is injectable:
    tests pass one that records the delays instead of waiting."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 4  # after the first try
    first_delay: float = 1.0  # seconds before the first retry; doubled for each next one
    max_delay: float = 30.0
    max_retry_after: float = 60.0  # a longer Retry-After is cut to this
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls, **overrides) -> HubPolicy:
        """The defaults, with :data:`ENV_SETTINGS` from the environment, then ``overrides``."""
        settings = {}
        for name, key in ENV_SETTINGS.items():
            value = os.environ.get(name, "").strip()
            if value:
                settings[key] = _parse_setting(name, value, int if key == "retries" else float)
        return cls(**{**settings, **overrides})

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` seconds, as requests (and HfApi's ``timeout=``) take them."""
        return (self.connect_timeout, self.read_timeout)

    @property
    def tries(self) -> int:
        return self.retries + 1

    def delay(self, retry: int, err: BaseException) -> float:
        """Seconds before retry number ``retry`` (1-based) of a call that failed with ``err``."""
        asked = retry_after(err)
        if asked is not None:
            return min(asked, self.max_retry_after)
        return min(self.first_delay * 2 ** (retry - 1), self.max_delay)

    def wait(self, retry: int, err: BaseException, what: str) -> None:
        """Log that ``what`` failed with ``err`` and sleep before retry number ``retry``."""
        delay = self.delay(retry, err)
        log.warning("%s failed (%s); retry %d of %d in %.1f s", what, describe(err), retry, self.retries, delay)
        self.sleep(delay)

    def call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)``, retried on transient failures; the last failure is raised.
        ``fn`` must be idempotent: a retry may follow a request that was served but whose reply
        was lost."""
        for attempt in range(1, self.tries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # classified by is_transient; anything else is raised as is
                if attempt == self.tries or not is_transient(err):
                    raise
                self.wait(attempt, err, what)  # retry number ``attempt`` follows try number ``attempt``
        raise AssertionError("unreachable")

    @contextmanager
    def session(self) -> Iterator[HubPolicy]:
        """Within: every huggingface_hub request without a timeout of its own gets :attr:`timeout`.
        Wraps the HTTP backend in place (``configure_http_backend``) and restores it after."""
        previous = _http._GLOBAL_BACKEND_FACTORY  # huggingface_hub has no public getter for it

        def factory() -> requests.Session:
            session = previous()
            for prefix, adapter in list(session.adapters.items()):
                session.mount(prefix, _DefaultTimeout(adapter, self.timeout))
            return session

        configure_http_backend(factory)
        try:
            yield self
        finally:
            configure_http_backend(previous)


def _parse_setting(name: str, value: str, kind: type) -> float | int:
    try:
        parsed = kind(value)
    except ValueError:
        parsed = -1
    if parsed < 0 or (kind is float and parsed == 0):
        allowed = "a whole number >= 0" if kind is int else "a number of seconds > 0"
        raise UsageError(f"{name}={value!r} is not {allowed}; unset it for the default, or set e.g. {name}=5.")
    return parsed
