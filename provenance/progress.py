"""Progress bars for a person at a terminal, and silence everywhere else.

A bar is drawn (tqdm, on stderr) only when stderr is a terminal and the
command was not asked for JSON or `--no-progress`, so pipes, logs, CI and
`--json` consumers never see progress text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TensorCallback = Callable[[int, int], None]


def wanted(json_output: bool = False, disabled: bool = False) -> bool:
    """Whether to draw a bar: a terminal on stderr, no JSON, no --no-progress."""
    if json_output or disabled:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def tensor_progress(label: str, enabled: bool) -> Iterator[TensorCallback | None]:
    """An `on_tensor(done, total)` callback that draws a bar, or None when disabled.

    The bar appears at the first tensor (loading a saved fingerprint calls
    nothing, so draws nothing) and is erased when the block ends.
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # lazy: 27 ms, only when a bar is drawn (this module is imported at CLI start-up)

    bar: list[tqdm] = []

    def on_tensor(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=label, unit="tensor", file=sys.stderr, leave=False, dynamic_ncols=True))
        bar[0].update(done - bar[0].n)

    try:
        yield on_tensor
    finally:
        if bar:
            bar[0].close()
