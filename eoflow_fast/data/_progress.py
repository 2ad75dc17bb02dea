"""Progress for long data jobs: a tqdm bar on a terminal, otherwise one plain line per ``every`` items.

Lines go to stderr (stdout stays for results) and read ``<desc>: <done>/<total> <unit> (<pct>%)``;
the last line is always printed, so a log shows that the job finished.
"""
from __future__ import annotations

import sys


class Progress:
    """``update(n)`` after each ``n`` items; ``write(text)`` prints a message without breaking the bar."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0,
                 every: int = 1000, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, max(1, every)
        self.stream = stream if stream is not None else sys.stderr
        self.done, self._shown = initial, initial
        self.enabled = enabled
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, file=self.stream,
                             dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self.done - self._shown >= self.every:
            self._line()

    def _line(self) -> None:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%)", file=self.stream, flush=True)
        self._shown = self.done

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._shown != self.done:
            self._line()
