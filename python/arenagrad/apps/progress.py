"""A progress bar for the command line: tqdm on a terminal when it is installed, else plain
lines (and always plain lines in a log file, which tqdm would fill with
one carriage-return-separated line).

bar = progress(range(steps), total=steps, desc="training")
for k in bar:
    ...
    bar.set_postfix_str(f"loss {loss:.4f}")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


class PlainProgress:
    """tqdm's small subset we use, printed as one line (rewritten in place on a terminal,
    otherwise printed at most every couple of seconds and at the end)."""

    def __init__(self, iterable: Iterable[Any], total: int, desc: str, file: TextIO) -> None:
        self.iterable, self.total, self.desc, self.file = iterable, total, desc, file
        self.postfix = ""
        self.tty = file.isatty()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _show(self, done: int, end: str) -> None:
        line = f"{self.desc}: {done}/{self.total}" + (f" {self.postfix}" if self.postfix else "")
        self.file.write(("\r" if self.tty else "") + line + end)
        self.file.flush()

    def __iter__(self) -> Iterator[Any]:
        last = time.perf_counter()
        done = 0
        for done, item in enumerate(self.iterable, 1):
            yield item
            now = time.perf_counter()
            if self.tty or now - last > 2.0:
                self._show(done, "" if self.tty else "\n")
                last = now
        self._show(done, "\n")


def progress(iterable: Iterable[Any], total: int, desc: str, file: TextIO | None = None) -> Any:
    file = sys.stderr if file is None else file
    if not file.isatty():
        return PlainProgress(iterable, total, desc, file)  # a log file gets whole lines, no \r
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainProgress(iterable, total, desc, file)
    return tqdm(iterable, total=total, desc=desc, file=file, dynamic_ncols=True, leave=True)
