"""Command-line progress that suits where it goes: a repainting tqdm bar on a terminal; in a pipe or a CI
log (stderr not a terminal) one plain line per stage and per ``every`` of progress, so a log of a long run
stays a few dozen lines instead of one repaint per training batch."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class StageProgress:
    """``update(fraction, message, stage)`` after each event; ``close()`` at the end."""

    def __init__(self, desc: str, *, quiet: bool = False, stream: TextIO | None = None, every: float = 0.1,
                 tty: bool | None = None) -> None:
        self.desc, self.quiet, self.every = desc, quiet, every
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self._bar: Any = None
        self._stage: str | None = None
        self._next = 0.0
        self._start = time.perf_counter()
        if self.tty and not quiet:
            self._bar = tqdm(total=1000, desc=desc, file=self.stream,
                             bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def update(self, fraction: float | None, message: str, stage: str | None = None) -> None:
        if self.quiet:
            return
        frac = None if fraction is None else min(max(float(fraction), 0.0), 1.0)
        if self._bar is not None:
            if frac is not None:
                self._bar.n = int(1000 * frac)
            self._bar.set_postfix_str(message[:70])
            self._bar.refresh()
            return
        new_stage = stage is not None and stage != self._stage
        crossed = frac is not None and frac >= self._next
        if not (new_stage or crossed):
            return
        if stage is not None:
            self._stage = stage
        if frac is not None:
            self._next = (int(frac / self.every + 1e-9) + 1) * self.every
        pct = f"{100 * frac:3.0f}%" if frac is not None else "   "
        elapsed = time.perf_counter() - self._start
        print(f"{self.desc} {pct} {elapsed:6.0f}s {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
