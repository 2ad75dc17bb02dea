"""One progress helper for every long job: tqdm on a terminal, plain lines otherwise, or nothing.

    for item in progress.bar(items, "dci factors", total=F):   # enable=None: the current default
        ...
    with progress.enabled(False):                              # --no-progress for a whole job
        metrics.evaluate(...)

On a terminal (stderr is a tty) ``bar`` is a tqdm bar on stderr. Elsewhere (logs, CI, pipes) it
writes one line ``DESC: i/N`` to stderr per item, thinned to at most ``max_lines`` lines (every
ceil(N / max_lines)-th item, always the last) so a 10,000-item loop does not flood a log.
``enable=False`` (or the default set by ``enabled``) yields the items untouched and prints nothing.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DEFAULT = [True]


def is_enabled() -> bool:
    """The current default of ``bar(..., enable=None)``."""
    return _DEFAULT[0]


@contextlib.contextmanager
def enabled(enable: bool) -> Iterator[None]:
    """Within the block, ``bar(..., enable=None)`` shows progress iff ``enable``."""
    previous = _DEFAULT[0]
    _DEFAULT[0] = bool(enable)
    try:
        yield
    finally:
        _DEFAULT[0] = previous


MAX_LINES = 20
"""Off a terminal, a loop reports at most about this many plain lines."""


def line_every(total: int | None, max_lines: int = MAX_LINES) -> int:
    """Report every ``line_every``-th of ``total`` items off a terminal: ceil(total / max_lines), >= 1."""
    return max(1, math.ceil(total / max_lines)) if total else 1


def bar(items: Iterable[T], desc: str, total: int | None = None, enable: bool | None = None,
        unit: str = "it", max_lines: int = MAX_LINES) -> Iterator[T]:
    """Yield ``items`` while reporting progress as ``desc`` (see the module docstring)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if not (_DEFAULT[0] if enable is None else enable):
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm.auto import tqdm
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
        return
    every = line_every(total, max_lines)
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0 or i == total:
            print(f"{desc}: {i}/{total if total else '?'} {unit}", file=sys.stderr, flush=True)
