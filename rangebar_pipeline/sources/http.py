"""The shared download client: one pooled ``requests`` session, bounded retries, ``file://`` mirrors.

Every source downloads through :class:`HttpClient`. It retries connection errors, timeouts, bodies cut
short and HTTP 5xx with exponential backoff (bounded in attempts *and* in total time), maps 404 to
:class:`~rangebar_pipeline.exceptions.DataNotFoundError` and fails at once on other 4xx. Bodies are
streamed into memory while their sha256 is computed; a ``tqdm`` progress bar shows for large bodies
when stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.exceptions import DataNotFoundError, DownloadError

if TYPE_CHECKING:
    import requests
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


class _RetryableError(Exception):
    """An attempt failed in a way worth retrying."""


def join_url(base: str, *parts: str) -> str:
    """``base`` joined with path ``parts`` by single slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


class HttpClient:
    """A thread-safe download client over a pooled :class:`requests.Session`.

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

        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
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
        policy = self.retry
        started = time.monotonic()
        last = ""
        for attempt in range(1, policy.max_attempts + 1):
            try:
                content = self._attempt(url, description)
            except _RetryableError as exc:
                last = str(exc)
                if attempt == policy.max_attempts:
                    break
                wait = policy.delay(attempt)
                if time.monotonic() - started + wait > policy.total_timeout:
                    last += f" (retry budget of {policy.total_timeout:g} s exhausted)"
                    break
                time.sleep(wait)
                continue
            return Download(url, content, hashlib.sha256(content).hexdigest() if sha256 else "", attempt)
        raise DownloadError(f"download of {url} failed after {attempt} attempt(s): {last}")

    def _attempt(self, url: str, description: str | None) -> bytes:
        policy = self.retry
        try:
            with self._session.get(
                url, stream=True, timeout=(policy.connect_timeout, policy.read_timeout)
            ) as response:
                status = response.status_code
                if status == 404:
                    raise DataNotFoundError(f"not found (HTTP 404): {url}")
                if status >= 500:
                    raise _RetryableError(f"HTTP {status} {response.reason}")
                if status >= 400:
                    raise DownloadError(f"HTTP {status} {response.reason} for {url} (not retried)")
                if status != 200:
                    raise _RetryableError(f"unexpected HTTP {status} {response.reason}")
                return self._read_body(response, description or url)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            raise _RetryableError(f"body cut short: {exc}") from exc
        except requests.exceptions.ContentDecodingError as exc:
            raise _RetryableError(f"body could not be decoded: {exc}") from exc

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
            raise _RetryableError(f"body cut short: {len(content)} of {expected} bytes received")
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
