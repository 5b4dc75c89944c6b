"""Many small reads of one remote file grouped into few large range requests, with bounded memory.

A fingerprint read by range wants, per tensor, a few byte ranges (a 1-D
tensor whole, the row blocks of a matrix's row sample). One request per
tensor was the rule: 153,890 requests for a 200,000-tensor MoE. Here every
range of a batch of reads is sorted by offset and merged into spans: ranges
closer than GAP_BYTES, and than the length of the range joining, make one
span (the gap is fetched and dropped: at 100 MB/s 64 KiB cost under a
millisecond, far less than a request's round trip; and, gaps under
SMALL_GAP = 1 KiB apart, the bytes fetched stay under twice the bytes wanted,
so a row sample still reads a small share of a large matrix), and
no span grows past SPAN_BYTES unless one range alone is larger (a tensor read
whole). WAVE spans are kept in flight at once (each by `fetch`, on a
thread of a pool: a new span starts as soon as the oldest arrives, also
while the caller works on what was handed back); a read is handed back as
soon as all its spans have arrived, and a span is dropped once no pending
read needs it.
Memory: at most WAVE spans of SPAN_BYTES plus the largest single range, and
the spans of reads still waiting, which are local to one tensor.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

GAP_BYTES = 64 * 1024
SMALL_GAP = 1024
SPAN_BYTES = 8 * 1024 * 1024
WAVE = 8  # spans in flight at once (the HTTP layer's concurrency)


@dataclass(frozen=True)
class Read:
    """One wanted read: its byte ranges [start, end) in the file, in the order their bytes are joined."""

    ranges: tuple[tuple[int, int], ...]


def plan_spans(reads: list[Read], gap: int = GAP_BYTES, span: int = SPAN_BYTES) -> list[tuple[int, int]]:
    """The merged spans covering every range of `reads`, in file order."""
    spans: list[list[int]] = []
    for start, end in sorted(r for read in reads for r in read.ranges if r[1] > r[0]):
        # a gap is fetched only when no longer than the range it brings in (at most twice the useful bytes),
        # or than SMALL_GAP (a request's own headers cost about a kilobyte)
        if spans and start - spans[-1][1] <= min(gap, max(SMALL_GAP, end - start)) and max(end, spans[-1][1]) - spans[-1][0] <= span:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]


def fetch_coalesced(reads: list[Read], fetch: Callable[[list[tuple[int, int]]], list[bytes]],
                    gap: int = GAP_BYTES, span: int = SPAN_BYTES, wave: int = WAVE) -> Iterator[tuple[int, bytes]]:
    """(index in `reads`, the read's bytes) for every read, as its spans arrive; `fetch(spans)` gets spans' bytes."""
    spans = plan_spans(reads, gap, span)
    starts = [s for s, _ in spans]
    needs: list[set[int]] = []  # per read, the spans it needs
    for read in reads:
        needs.append({_span_of(starts, start) for start, end in read.ranges if end > start})
    waiting_on: dict[int, set[int]] = {}
    for index, wanted in enumerate(needs):
        for s in wanted:
            waiting_on.setdefault(s, set()).add(index)
    for index, wanted in enumerate(needs):
        if not wanted:
            yield index, b""
    # each read is handed back after the last of its spans: order reads by that span
    by_last: dict[int, list[int]] = {}
    for index, wanted in enumerate(needs):
        if wanted:
            by_last.setdefault(max(wanted), []).append(index)
    held: dict[int, bytes] = {}
    # a sliding window of `wave` spans in flight: a new one starts as soon as the oldest has arrived, and
    # keeps coming while the caller works on the reads already handed back (no wait for a whole wave)
    with ThreadPoolExecutor(max_workers=max(1, min(wave, len(spans)))) as pool:
        pending: deque = deque()
        for s in range(len(spans)):
            pending.append((s, pool.submit(_one, fetch, spans[s])))
            if len(pending) < wave and s + 1 < len(spans):
                continue
            while pending and (len(pending) >= wave or s + 1 == len(spans)):
                done, future = pending.popleft()
                held[done] = future.result()
                for index in by_last.get(done, []):
                    yield index, b"".join(_cut(held, spans, starts, start, end) for start, end in reads[index].ranges)
                    for needed in needs[index]:
                        waiting_on[needed].discard(index)
                        if not waiting_on[needed]:
                            held.pop(needed, None)


def _one(fetch: Callable[[list[tuple[int, int]]], list[bytes]], span: tuple[int, int]) -> bytes:
    return fetch([span])[0]


def _span_of(starts: list[int], position: int) -> int:
    low, high = 0, len(starts) - 1
    while low < high:  # the last span starting at or before `position`
        middle = (low + high + 1) // 2
        if starts[middle] <= position:
            low = middle
        else:
            high = middle - 1
    return low


def _cut(held: dict[int, bytes], spans: list[tuple[int, int]], starts: list[int], start: int, end: int) -> bytes:
    if end <= start:
        return b""
    s = _span_of(starts, start)
    return held[s][start - spans[s][0]:end - spans[s][0]]
