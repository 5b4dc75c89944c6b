"""Byte ranges of a remote file over HTTP(S): retries with backoff, byte accounting, one-line errors.

Every request goes through huggingface_hub's shared HTTP client
(`huggingface_hub.utils.get_session()`), for plain URLs and hf:// alike, so
what a user configured for the hub applies here too: a client factory set
with `set_client_factory` (proxies, certificates), HF_HUB_DOWNLOAD_TIMEOUT,
HF_HUB_OFFLINE. Authorization headers (HF_TOKEN) are added only for hf://
files (see `hub.py`); a plain URL is fetched without credentials.

Why a hand-written retry loop instead of huggingface_hub's `http_backoff`:
that helper retries a request whose response never arrived, but not a body
cut off half-way (the usual "dropped connection" on a long download), and it
would read a whole 13 GB file into memory if a server ignored the Range
header. Here each range is streamed, checked (206 and the Content-Range we
asked for), resumed from the last byte received after a drop, and refused
outright when the server does not honour ranges.

Every read answers to the deadlines and the minimum rate of `budget.py`
(checked on every chunk, and no socket wait outlasts what is left), and to
the file as first seen: the first response's ETag, Last-Modified and total
size are pinned, later ranges of a plain URL are sent with `If-Match` /
`If-Range`, and any response that disagrees (or a 412) is an error, "changed
while it was read", never bytes of two versions mixed into one fingerprint.
hf:// files are read at their resolved commit (the URL names it; the
`X-Repo-Commit` the hub answers is checked against it).
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlsplit

from huggingface_hub import constants

from ..errors import CorruptFileError, UnreadablePathError
from ..visible_text import clean, quoted
from .budget import BudgetExceeded, FileClock

MAX_RETRIES = 5  # per range, counted while an attempt brings less than RESUME_PROGRESS bytes
RESUME_PROGRESS = 64 * 1024  # a dropped attempt that brought this much (or finished) is progress, not a failure
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time
BACKOFF_MAX = 8.0
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CONCURRENCY = 8  # ranges in flight at once
MERGE_GAP = 1024  # ranges of one file closer than this (about the headers of one request) are fetched as one
REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone"}


class RemoteAccessError(UnreadablePathError):
    """A remote file that cannot be fetched: HTTP 401/403/404, no range support, connection failures."""


class FileChangedError(RemoteAccessError):
    """A remote file that changed between two requests of one read: no verdict may come from its bytes."""


class _Retryable(Exception):
    """A failure worth another try (5xx, 429, a connection dropped mid-body)."""


@dataclass
class TransferStats:
    """Bytes and requests made by this process (thread-safe); `on_bytes` sees every chunk received."""

    bytes: int = 0
    requests: int = 0
    retries: int = 0
    on_bytes: Callable[[int], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, nbytes: int = 0, requests: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.requests += requests
            self.retries += retries
        if nbytes and self.on_bytes is not None:
            self.on_bytes(nbytes)

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.bytes, self.requests, self.retries


TRANSFERS = TransferStats()


_PLAIN_CLIENT: list = []  # one client for plain URLs while HF_HUB_OFFLINE is set (made on first use)


def _session(plain: bool = False):
    """huggingface_hub's shared client; for a plain URL in offline mode, a client without its hub-only block.

    HF_HUB_OFFLINE keeps the tool off the hub; a plain URL (a mirror on the
    local network) is not the hub, but the shared client refuses every
    request in offline mode, so plain URLs then get a client of the same
    library without that hook (proxies from the environment still apply).
    """
    from huggingface_hub.utils import get_session  # lazy: huggingface_hub's HTTP stack loads httpx (about 50 ms)

    session = get_session()
    if not (plain and constants.is_offline_mode()):
        return session
    if not _PLAIN_CLIENT:
        module = sys.modules[type(session).__module__.split(".")[0]]
        _PLAIN_CLIENT.append(module.Client(follow_redirects=True, timeout=None))
    return _PLAIN_CLIENT[0]


def _transport_errors(session) -> tuple[type[BaseException], ...]:
    """The client library's network errors (httpx or httpx2, whichever this huggingface_hub uses)."""
    module = sys.modules.get(type(session).__module__.split(".")[0])
    error = getattr(module, "TransportError", None)
    return ((error,) if isinstance(error, type) else ()) + (OSError,)


def _permanent_errors(session) -> tuple[type[BaseException], ...]:
    """Transport errors no retry can mend: a redirect to file:// or another scheme the client cannot speak."""
    module = sys.modules.get(type(session).__module__.split(".")[0])
    found = (getattr(module, name, None) for name in ("UnsupportedProtocol", "LocalProtocolError", "InvalidURL"))
    return tuple(error for error in found if isinstance(error, type))


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a remote file: the first response's ETag, Last-Modified and total size."""

    etag: str | None
    modified: str | None
    total: int | None
    commit: str | None  # X-Repo-Commit (hub)

    @classmethod
    def of(cls, response, total: int | None) -> "Validators":
        headers = response.headers
        return cls(headers.get("ETag"), headers.get("Last-Modified"), total, headers.get("X-Repo-Commit"))

    def differences(self, later: "Validators", by_content: bool = True) -> list[str]:
        """What changed; `by_content` False (an hf:// URL naming its commit) compares only size and commit, since
        a hub's CDN may answer one immutable file with different ETags."""
        pairs = [("size", self.total, later.total), ("commit", self.commit, later.commit)]
        if by_content:
            pairs += [("ETag", self.etag, later.etag), ("Last-Modified", self.modified, later.modified)]
        out = []
        for name, first, now in pairs:
            if first is not None and now is not None and first != now:
                out.append(f"{name} {quoted(first)} then {quoted(now)}")
        return out


def _timeout() -> float:
    try:
        return float(constants.HF_HUB_DOWNLOAD_TIMEOUT)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 10.0


@dataclass
class RemoteFile:
    """One remote file: its URL, the name it has in its folder, request headers and (once known) its size."""

    url: str
    name: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    size: int | None = None
    shown: str = ""  # how errors name the file (the URL, or hf://ORG/NAME@REV/FILE)
    commit: str | None = None  # an hf:// file: the commit its URL names (checked against X-Repo-Commit)
    clock: FileClock = field(default_factory=FileClock, repr=False)  # deadlines and rate (budget.py)
    pinned: Validators | None = field(default=None, repr=False)  # the version first seen
    _pin_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        if not self.shown:
            self.shown = self.url

    def __str__(self) -> str:
        return self.shown

    @property
    def host(self) -> str:
        return clean(urlsplit(self.url).netloc or self.url, 200)

    # -- ranges ---------------------------------------------------------------------------------------------

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file, by one Range request (resumed after drops)."""
        if end <= start:
            return b""
        session = _session(plain=self.commit is None)
        transport = _transport_errors(session)
        permanent = _permanent_errors(session)
        received = bytearray()
        failures = 0
        while len(received) < end - start:
            position = start + len(received)
            before = len(received)
            try:
                self._check_budget()
                self._stream_range(session, position, end, received)
                if self.size is not None and end > self.size:
                    end = max(start, self.size)  # a range past the end gets what there is (side files)
                if len(received) < end - start:
                    raise _Retryable(f"connection closed after {len(received)} of {end - start} bytes")
            except (RemoteAccessError, CorruptFileError):
                raise
            except permanent as exc:
                raise RemoteAccessError(self.shown, _describe(exc)) from exc
            except (_Retryable, *transport) as exc:
                progress = len(received) - before
                failures = 0 if progress >= min(RESUME_PROGRESS, end - position) else failures + 1
                if failures > MAX_RETRIES:
                    raise RemoteAccessError(self.shown, f"bytes {position}-{end - 1}: {_describe(exc)} (gave up after "
                                                        f"{MAX_RETRIES} retries; {self.clock.describe(self.host)})") from exc
                TRANSFERS.add(retries=1)
                pause = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(failures - 1, 0))
                if pause >= self.clock.remaining():
                    self._check_budget(at_end=True)
                time.sleep(pause)
            except Exception as exc:  # offline mode, invalid URL ...: the client library's own errors vary
                raise RemoteAccessError(self.shown, _describe(exc)) from exc
        return bytes(received)

    def _check_budget(self, at_end: bool = False) -> None:
        try:
            self.clock.check(self.host)
            if at_end:
                raise BudgetExceeded(f"{self.host}: the deadline passes before the next retry")
        except BudgetExceeded as exc:
            raise RemoteAccessError(self.shown, str(exc)) from None

    def _conditions(self) -> dict[str, str]:
        """If-Match / If-Range for a plain URL once its version is pinned (an hf:// URL names its commit)."""
        pinned = self.pinned
        if pinned is None or self.commit is not None:
            return {}
        if pinned.etag and not pinned.etag.startswith("W/"):
            return {"If-Match": pinned.etag, "If-Range": pinned.etag}
        return {"If-Range": pinned.modified} if pinned.modified else {}

    def _same_version(self, response, total: int | None) -> None:
        seen = Validators.of(response, total)
        if self.commit is not None and seen.commit is not None and seen.commit != self.commit:
            raise FileChangedError(self.shown, f"the hub answered for commit {quoted(seen.commit)}, not the resolved "
                                               f"{self.commit}; run again")
        with self._pin_lock:
            if self.pinned is None:
                self.pinned = seen
                return
            changes = self.pinned.differences(seen, by_content=self.commit is None)
        if changes:
            raise FileChangedError(self.shown, f"changed while it was read ({'; '.join(changes)}); run again")

    def _stream_range(self, session, position: int, end: int, received: bytearray) -> None:
        conditions = self._conditions()
        headers = {**self.headers, "Range": f"bytes={position}-{end - 1}", "Accept-Encoding": "identity", **conditions}
        TRANSFERS.add(requests=1)
        timeout = max(0.05, min(_timeout(), self.clock.remaining()))
        self.clock.begin()
        try:
            with session.stream("GET", self.url, headers=headers, timeout=timeout, follow_redirects=True) as response:
                status = response.status_code
                if status == 412 and conditions:
                    raise FileChangedError(self.shown, "changed while it was read (HTTP 412 Precondition Failed on "
                                                       f"{', '.join(conditions)}); run again")
                self._check_status(status)
                if status == 200:
                    length = response.headers.get("Content-Length")
                    if position != 0 and "If-Range" in conditions:
                        raise FileChangedError(self.shown, "changed while it was read (a range sent with If-Range "
                                                           "was answered with the whole file); run again")
                    if position != 0 or length is None or not length.isdigit() or int(length) > end:
                        raise RemoteAccessError(self.shown, "the server ignored the Range request (HTTP 200 instead of "
                                                            "206); remote reading needs range requests")
                    self._same_version(response, int(length))
                    self.size = int(length)
                elif status == 206:
                    total = self._check_content_range(response.headers.get("Content-Range"), position, end)
                    self._same_version(response, total)
                    if total is not None:
                        self.size = total
                else:
                    raise RemoteAccessError(self.shown, f"unexpected HTTP {status} for a range request")
                wanted = end - position
                got = 0
                for chunk in response.iter_bytes():
                    got += len(chunk)
                    if got > wanted:
                        raise RemoteAccessError(self.shown, f"the server sent more than the {wanted} bytes asked for")
                    received += chunk
                    TRANSFERS.add(len(chunk))
                    self.clock.add(len(chunk))
                    self._check_budget()
        finally:
            self.clock.end()

    def _check_status(self, status: int) -> None:
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status}")
        if status in REASONS:
            hub = self.shown.startswith("hf://") and status in (401, 403)
            hint = " (set HF_TOKEN for a private or gated repository)" if hub else ""
            raise RemoteAccessError(self.shown, f"HTTP {status} {REASONS[status]}{hint}")
        if status == 416:
            raise CorruptFileError(self.shown, "range not satisfiable (HTTP 416): the file is shorter than its header says")
        if status >= 400:
            raise RemoteAccessError(self.shown, f"HTTP {status}")

    def _check_content_range(self, value: str | None, position: int, end: int) -> int | None:
        # "bytes START-LAST/TOTAL" (TOTAL may be "*")
        try:
            unit, _, spec = (value or "").partition(" ")
            span, _, total = spec.partition("/")
            first, _, last = span.partition("-")
            first_i, last_i = int(first), int(last)
        except ValueError:
            raise RemoteAccessError(self.shown, f"HTTP 206 with an unreadable Content-Range {quoted(value)}") from None
        if unit != "bytes" or first_i != position or last_i > end - 1:
            raise RemoteAccessError(self.shown, f"asked for bytes {position}-{end - 1}, the server sent {quoted(value)}")
        return int(total) if total.isdigit() else None

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several [start, end) ranges, near ones merged into one request, fetched CONCURRENCY at a time."""
        if not ranges:
            return []
        order = sorted(range(len(ranges)), key=lambda i: ranges[i])
        spans: list[list[int]] = []  # merged [start, end]
        for i in order:
            start, end = ranges[i]
            if spans and start <= spans[-1][1] + MERGE_GAP:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if len(spans) == 1:
            blobs = [self.read(*spans[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(spans))) as pool:
                blobs = list(pool.map(lambda span: self.read(span[0], span[1]), spans))
        out: list[bytes] = []
        for start, end in ranges:
            for (s, e), blob in zip(spans, blobs):
                if s <= start and end <= e:
                    out.append(blob[start - s:end - s])
                    break
        return out

    # -- whole small files ---------------------------------------------------------------------------------

    def read_small(self, limit: int, missing_ok: bool = False) -> bytes | None:
        """The whole file when it is at most `limit` bytes (side files: config, index, tokenizer).

        None when `missing_ok` and the server answers 404. Fetched as one range
        [0, limit] so a server never sends more than the cap.
        """
        try:
            data = self.read(0, limit + 1) if self.size is None else self.read(0, min(self.size, limit + 1))
        except RemoteAccessError as exc:
            if missing_ok and "HTTP 404" in exc.problem:
                return None
            raise
        except CorruptFileError:
            # 416 on an empty file
            return b""
        if len(data) > limit or (self.size is not None and self.size > limit):
            raise CorruptFileError(self.shown, f"file is {self.size or len(data)} bytes, over the {limit}-byte limit")
        return data


def _describe(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
    return text
