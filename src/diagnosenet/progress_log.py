"""Progress lines for long stages: "done/total (pct), rate/s, ETA" at most every few seconds.

A stage that can run for minutes (windowing 8,528 records, reading a year of RHS lines, an
epoch of a large shard) otherwise prints nothing until it ends, and its Snakemake log cannot
tell a slow run from a hung one. :class:`Progress` costs one clock read per ``update`` and
logs at most one line per interval, so it can sit in a per-step or per-line loop. The
interval is ``every_s`` or the ``DIAGNOSENET_PROGRESS_S`` environment variable (default 10 s;
tests set it small to see lines without waiting). Lines carry counts only, never identifiers.
"""
from __future__ import annotations

import logging
import os
import time

ENV_INTERVAL = "DIAGNOSENET_PROGRESS_S"
DEFAULT_INTERVAL_S = 10.0


def interval_s() -> float:
    """Seconds between progress lines: ``$DIAGNOSENET_PROGRESS_S`` or 10."""
    text = os.environ.get(ENV_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENV_INTERVAL}={text!r}: expected seconds between progress lines") from None
    if value < 0:
        raise ValueError(f"{ENV_INTERVAL}={text!r}: expected seconds >= 0")
    return value


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``2 h 07 min``: ETAs a person reads at a glance."""
    seconds = max(0.0, float(seconds))
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Counts ``done`` of ``total`` and logs ``"{what} done/total (pct), rate/s, ETA"``.

    ``unit`` names what the rate counts (``records`` → ``"40.2 records/s"``); with
    ``update(n, rows=r)`` the rate is in ``rows/s`` instead (steps counted, rows timed).
    ``close()`` logs a final line with the elapsed time when ``final`` (or when an interim
    line was logged, so a long pass always ends with its total).
    """

    def __init__(self, total: int | None, what: str, unit: str = "", *, every_s: float | None = None,
                 final: bool = True, logger: logging.Logger | None = None):
        self.total = None if total is None else int(total)
        self.what, self.unit, self.final = what, unit, final
        self.every_s = interval_s() if every_s is None else float(every_s)
        self.log = logger or logging.getLogger(__name__)
        self.done = 0
        self.rows: int | None = None
        self.lines = 0
        self._start = time.monotonic()
        self._next = self._start + self.every_s

    def update(self, n: int = 1, *, rows: int | None = None) -> None:
        self.done += n
        if rows is not None:
            self.rows = (self.rows or 0) + rows
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self.lines += 1
            self.log.info("%s", self.line(now))

    def _rate(self, elapsed: float) -> str:
        count, unit = (self.rows, "rows") if self.rows is not None else (self.done, self.unit)
        rate = count / elapsed if elapsed > 0 else 0.0
        number = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
        return f"{number} {unit}/s" if unit else f"{number}/s"

    def line(self, now: float | None = None) -> str:
        """The progress line as of ``now`` (monotonic seconds)."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        count = f"{self.done:,}" if self.total is None else f"{self.done:,}/{self.total:,}"
        parts = [f"{self.what} {count}{' ' + self.unit if self.unit else ''}"]
        if self.total:
            parts[0] += f" ({100.0 * self.done / self.total:.1f}%)"
        parts.append(self._rate(elapsed))
        if self.total is not None:
            left = max(0, self.total - self.done)
            parts.append(f"ETA {format_seconds(left * elapsed / self.done)}" if self.done else "ETA ?")
        return ", ".join(parts)

    def close(self) -> None:
        if not (self.final or self.lines):
            return
        elapsed = time.monotonic() - self._start
        count = f"{self.done:,}" if self.total is None else f"{self.done:,}/{self.total:,}"
        self.log.info("%s %s%s in %s, %s", self.what, count, f" {self.unit}" if self.unit else "",
                      format_seconds(elapsed), self._rate(elapsed))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
