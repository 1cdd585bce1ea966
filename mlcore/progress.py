"""Progress of long commands: a tqdm bar on a terminal, a log line every ``every`` seconds otherwise.

Airflow task logs (and any non-terminal stderr) get the log lines; a person at a terminal gets the bar.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mlcore.progress")

#: Seconds between two progress log lines when stderr is not a terminal.
EVERY_SECONDS = 15.0


class Progress:
    """Report ``done`` (absolute, in ``unit``) of ``total`` (None when unknown) for the task ``what``.

    Use as a context manager; call :meth:`step` with the new absolute amount and an optional note
    (for a command made of phases, the phase about to start, with ``always=True``).
    """

    def __init__(self, what: str, total: float | None = None, unit: str = "rows", every: float | None = None,
                 stream=None, bytes_unit: bool = False):
        self.what, self.total, self.unit = what, total, unit
        self.every = EVERY_SECONDS if every is None else every
        self.started = self._last = time.monotonic()
        self.done, self.note = 0, ""
        stream = stream if stream is not None else sys.stderr
        self._bar = None
        if getattr(stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit="B" if bytes_unit else unit, unit_scale=True,
                             unit_divisor=1024 if bytes_unit else 1000, file=stream, leave=False, dynamic_ncols=True)
        self._bytes = bytes_unit

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _amount(self, x: float) -> str:
        return f"{x / 2**20:,.0f} MiB" if self._bytes else f"{x:,.0f} {self.unit}"

    def step(self, done: float, note: str = "", always: bool = False) -> None:
        """Set the amount done; off a terminal, log it if ``every`` seconds have passed (or ``always``)."""
        self.done, self.note = done, note
        if self._bar is not None:
            self._bar.n = done
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.refresh()
        elif always or time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            log.info("%s: %s", self.what, self._line())

    def _line(self) -> str:
        share = f" of {self._amount(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        elapsed = time.monotonic() - self.started
        return f"{self._amount(self.done)}{share}{', ' + self.note if self.note else ''}, {elapsed:.0f}s so far"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
