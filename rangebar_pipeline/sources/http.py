"""The shared download client: one pooled ``requests`` session, bounded retries, ``file://`` mirrors.

Every source downloads through :class:`HttpClient`. It retries connection errors, timeouts and HTTP
5xx through urllib3's ``Retry`` and bodies cut short itself, with exponential backoff (bounded in
attempts *and* in total time), maps 404 to
:class:`~rangebar_pipeline.exceptions.DataNotFoundError` and fails at once on other 4xx. Bodies are
streamed into memory while their sha256 is computed; a ``tqdm`` progress bar shows for large bodies
when stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util import Retry

from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.exceptions import DataNotFoundError, DownloadError

if TYPE_CHECKING:
    from types import TracebackType

    import requests
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse
else:  # imported by the first download client
    requests = lazy_module("requests")

__all__ = ["Download", "HttpClient", "RetryPolicy", "join_url"]

_CHUNK = 1 << 20
#: Bodies larger than this show a progress bar (when stderr is a terminal).
_PROGRESS_MIN_BYTES = 8 << 20
_USER_AGENT = "rangebar-pipeline (+https://github.com/terrylica/rangebar-py)"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a download tries.

    A request is attempted at most ``max_attempts`` times; the n-th retry waits
    ``min(backoff_max, backoff_initial * 2**(n-1))`` seconds (with up to 10 % jitter), and no retry starts
    once ``total_timeout`` seconds have passed since the first attempt. ``connect_timeout`` and
    ``read_timeout`` bound each attempt (``read_timeout`` is the longest silence between two bytes).
    """

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    total_timeout: float = 600.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("backoff_initial", "backoff_max", "total_timeout", "connect_timeout", "read_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (retry - 1))
        return base * (1.0 + 0.1 * random.random())


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded body with its sha256 (empty if not asked for) and the number of attempts it took."""

    url: str
    content: bytes
    sha256: str
    attempts: int


class _BodyError(Exception):
    """The body of a 200 response failed after the headers came (cut short, reset, stalled, undecodable)."""


class _Budget(threading.local):
    """One download's retry budget in the calling thread, shared by urllib3's retries and the body retry."""

    policy: RetryPolicy | None = None
    failures = 0
    deadline = math.inf
    note = ""

    def start(self, policy: RetryPolicy) -> None:
        self.policy, self.failures, self.note = policy, 0, ""
        self.deadline = time.monotonic() + policy.total_timeout

    def allows_retry(self, wait: float) -> bool:
        """Another attempt after ``wait`` s fits ``max_attempts`` and ``total_timeout`` (else notes why)."""
        if self.policy is None:
            return True
        if self.failures >= self.policy.max_attempts:
            return False
        if time.monotonic() + wait > self.deadline:
            self.note = f" (retry budget of {self.policy.total_timeout:g} s exhausted)"
            return False
        return True


class _Retry(Retry):
    """urllib3's :class:`~urllib3.util.Retry` with the :class:`RetryPolicy` backoff (the first retry
    waits ``backoff_initial`` too) and a per-download budget bounding attempts and total time."""

    budget: _Budget | None = None

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.budget = self.budget
        return retry

    def get_backoff_time(self) -> float:
        budget = self.budget
        if budget is None or budget.policy is None:
            return super().get_backoff_time()
        return budget.policy.delay(budget.failures)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        budget = self.budget
        if budget is not None:
            budget.failures += 1
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if budget is not None and not budget.allows_retry(retry.get_backoff_time()):
            raise MaxRetryError(
                cast("ConnectionPool", _pool),
                url,
                error or ResponseError(f"HTTP {response.status if response else None}"),
            )
        return retry


def join_url(base: str, *parts: str) -> str:
    """``base`` joined with path ``parts`` by single slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


class HttpClient:
    """A thread-safe download client over a pooled :class:`requests.Session`.

    Connection errors, timeouts and HTTP 5xx are retried by urllib3's ``Retry`` mounted on the
    session's adapter; a body cut short after the headers is retried here (urllib3 has returned by
    then), both within one budget of ``max_attempts`` attempts and ``total_timeout`` seconds.

    Args:
        retry: The retry policy (defaults to :class:`RetryPolicy()`).
        pool_size: Connections kept per host (set it to the download concurrency).
        progress: Show a progress bar: ``None`` (default) only when stderr is a terminal.
    """

    def __init__(
        self, *, retry: RetryPolicy | None = None, pool_size: int = 8, progress: bool | None = None
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.progress = progress
        from requests.adapters import HTTPAdapter

        self._budget = _Budget()
        retries = _Retry(
            total=self.retry.max_attempts - 1,
            redirect=0,
            status_forcelist=range(500, 600),
            allowed_methods=frozenset({"GET", "HEAD"}),
            backoff_factor=self.retry.backoff_initial,
            backoff_max=self.retry.backoff_max,
            raise_on_status=False,  # the last 5xx response is returned and reported with its status
            respect_retry_after_header=False,
        )
        retries.budget = self._budget
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=retries)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = _USER_AGENT

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, url: str, *, description: str | None = None, sha256: bool = True) -> Download:
        """Download ``url`` (``http(s)://`` or ``file://``) completely into memory.

        With ``sha256=False`` the body is not hashed (``Download.sha256`` is empty), for a caller
        that hashes it while doing something else with it.

        Raises:
            DataNotFoundError: HTTP 404, or a ``file://`` path that does not exist.
            DownloadError: Any other 4xx at once; 5xx, timeouts and connection errors once the retry
                policy is exhausted. The message names the URL, the attempts and the last failure.
        """
        scheme = urlparse(url).scheme
        if scheme == "file":
            return self._get_file(url, sha256=sha256)
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}: expected http, https or file")
        budget = self._budget
        budget.start(self.retry)
        # urllib3 retries until the headers; a body that fails later is retried by this loop.
        while True:
            try:
                content = self._attempt(url, description)
            except _BodyError as exc:
                budget.failures += 1
                wait = self.retry.delay(budget.failures)
                if not budget.allows_retry(wait):
                    raise DownloadError(
                        f"download of {url} failed after {budget.failures} attempt(s): {exc}{budget.note}"
                    ) from None
                time.sleep(wait)
                continue
            attempts = budget.failures + 1
            return Download(url, content, hashlib.sha256(content).hexdigest() if sha256 else "", attempts)

    def _failed(self, url: str, last: str) -> DownloadError:
        budget = self._budget
        return DownloadError(
            f"download of {url} failed after {budget.failures} attempt(s): {last}{budget.note}"
        )

    def _attempt(self, url: str, description: str | None) -> bytes:
        policy = self.retry
        try:
            response = self._session.get(
                url, stream=True, timeout=(policy.connect_timeout, policy.read_timeout)
            )
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.RetryError) as exc:
            raise self._failed(url, f"{type(exc).__name__}: {exc}") from exc
        with response:
            status = response.status_code
            if status == 404:
                raise DataNotFoundError(f"not found (HTTP 404): {url}")
            if status >= 500:  # urllib3 retried it as far as the budget allows
                raise self._failed(url, f"HTTP {status} {response.reason}")
            if status >= 400:
                raise DownloadError(f"HTTP {status} {response.reason} for {url} (not retried)")
            if status != 200:
                raise _BodyError(f"unexpected HTTP {status} {response.reason}")
            try:
                return self._read_body(response, description or url)
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise _BodyError(f"{type(exc).__name__}: {exc}") from exc
            except requests.exceptions.ChunkedEncodingError as exc:
                raise _BodyError(f"body cut short: {exc}") from exc
            except requests.exceptions.ContentDecodingError as exc:
                raise _BodyError(f"body could not be decoded: {exc}") from exc

    def _read_body(self, response: requests.Response, description: str) -> bytes:
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        from tqdm import tqdm

        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = tqdm(
            total=expected,
            unit="B",
            unit_scale=True,
            desc=description.rsplit("/", 1)[-1],
            disable=not show or (expected or 0) < _PROGRESS_MIN_BYTES,
            leave=False,
        )
        chunks: list[bytes] = []
        with bar:
            for chunk in response.iter_content(_CHUNK):
                chunks.append(chunk)
                bar.update(len(chunk))
        content = b"".join(chunks)
        if expected is not None and len(content) != expected:
            raise _BodyError(f"body cut short: {len(content)} of {expected} bytes received")
        return content

    def exists(self, url: str, *, timeout: float = 10.0) -> bool:
        """Whether ``url`` answers a HEAD request with HTTP 200 (``file://``: the file exists).

        One request, no retries: a probe that fails is asked again at the next occasion.
        """
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return Path(url2pathname(unquote(parsed.path))).is_file()
        try:
            response = self._session.head(url, timeout=timeout, allow_redirects=True)
        except requests.RequestException:
            return False
        return response.status_code == 200

    @staticmethod
    def _get_file(url: str, *, sha256: bool = True) -> Download:
        parsed = urlparse(url)
        path = Path(url2pathname(unquote(parsed.path)))
        try:
            content = path.read_bytes()
        except FileNotFoundError as exc:
            raise DataNotFoundError(f"not found: {url} (no file {path})") from exc
        except OSError as exc:
            raise DownloadError(f"cannot read {url}: {exc}") from exc
        return Download(url, content, hashlib.sha256(content).hexdigest() if sha256 else "", 1)
