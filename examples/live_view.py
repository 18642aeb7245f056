"""A small live view of signatures and their statuses, for the demos.

On a terminal the table is redrawn in place (about twice a second) with the
latest task activity below it. When the output is not a terminal (CI logs,
pipes) every status change and every activity is printed as one line, and the
final table is printed once at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import TextIO

_COLOURS = {
    "pending": "\x1b[2m",
    "active": "\x1b[36m",
    "suspended": "\x1b[33m",
    "interrupted": "\x1b[33m",
    "done": "\x1b[32m",
    "failed": "\x1b[31m",
    "canceled": "\x1b[2m",
}
_RESET = "\x1b[0m"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _rows_on_screen(lines: list[str], columns: int) -> int:
    """Terminal rows ``lines`` take, counting the ones that wrap."""
    rows = 0
    for line in lines:
        width = len(_ANSI.sub("", line))
        rows += max(1, -(-width // columns))
    return rows


@dataclass(frozen=True)
class Row:
    order_id: int
    step: str
    task_name: str
    key: str
    status: str | None
    note: str = ""


class LiveView:
    def __init__(self, out: TextIO | None = None, *, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        if live is None:
            live = self.out.isatty() and os.environ.get("TERM") != "dumb"
        self.live = live
        self.colour = live and "NO_COLOR" not in os.environ
        self.events: list[str] = []
        self._drawn = 0
        self._last: dict[str, tuple[str | None, str]] = {}
        self._rows: list[Row] = []
        self._elapsed = 0.0

    # -- output ----------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def print(self, text: str = "") -> None:
        """A line above the live table (setup messages, results)."""
        self._clear()
        self._write(text + "\n")

    def _clear(self) -> None:
        if self.live and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _status(self, status: str | None, width: int) -> str:
        text = (status or "missing").ljust(width)
        if self.colour and status in _COLOURS:
            return f"{_COLOURS[status]}{text}{_RESET}"
        return text

    def table(self, rows: list[Row], elapsed: float) -> list[str]:
        key_w = max([len("KEY"), *(len(r.key) for r in rows)])
        lines = [
            f"signatures after {elapsed:5.1f}s",
            f"{'ORDER':<6} {'STEP':<11} {'TASK':<13} {'KEY':<{key_w}} {'STATUS':<10} NOTE",
        ]
        for r in rows:
            lines.append(
                f"{r.order_id:<6} {r.step:<11} {r.task_name:<13} {r.key:<{key_w}} "
                f"{self._status(r.status, 10)} {r.note}".rstrip()
            )
        return lines

    # -- API used by the pipeline ------------------------------------------------------------

    def event(self, elapsed: float, text: str) -> None:
        line = f"[{elapsed:5.1f}s] {text}"
        self.events.append(line)
        if not self.live:
            self._write(line + "\n")

    def render(self, rows: list[Row], elapsed: float) -> None:
        self._rows, self._elapsed = rows, elapsed
        if self.live:
            lines = [*self.table(rows, elapsed), "", "activity:", *self.events[-8:]]
            self._clear()
            self._write("\n".join(lines) + "\n")
            self._drawn = _rows_on_screen(lines, shutil.get_terminal_size().columns)
            return
        for r in rows:
            before = self._last.get(r.key)
            now = (r.status, r.note)
            if before != now:
                self._last[r.key] = now
                note = f"  ({r.note})" if r.note else ""
                was = f"{before[0]} -> " if before and before[0] != r.status else ""
                self._write(
                    f"[{elapsed:5.1f}s] {r.key:<28} {r.task_name:<13} {was}{r.status}{note}\n"
                )

    def finish(self, ok: bool) -> None:
        """Leave the final table on screen."""
        if self.live:
            self._clear()
            lines = [*self.table(self._rows, self._elapsed), "", "activity:", *self.events]
        else:
            lines = ["", *self.table(self._rows, self._elapsed)]
        self._write("\n".join(lines) + "\n")
