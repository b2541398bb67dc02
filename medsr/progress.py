"""One progress reporter for long work: a rich bar on a terminal, timed log lines otherwise.

When stderr is not a terminal (a batch job, a pipe, a log file) progress is written as
lines such as ``medsr: progress: scan.nii.gz: super-resolving 40/160 (25%) 12.3 s``: none
in the first ``LOG_DELAY_S`` seconds (quick work stays quiet), then one each time another
tenth of the work is done or ``LOG_INTERVAL_S`` seconds have passed, and one at the end.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

LOG_DELAY_S = 2.0  # no lines for work that finishes sooner
LOG_INTERVAL_S = 30.0  # a line at least this often (when the fraction done moves slowly)
LOG_STEPS = 10  # and a line per tenth of the work

Update = Callable[..., None]


def progress_mode(enabled: bool | None = None, stream: TextIO | None = None) -> str | None:
    """"bar" (a terminal, or ``enabled=True``), "log" (``enabled=None`` and not a
    terminal) or None (``enabled=False``)."""
    if enabled is False:
        return None
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if enabled or (isatty is not None and isatty()):
        return "bar"
    return "log"


def _fmt_count(n: float) -> str:
    return f"{int(n)}" if float(n).is_integer() else f"{n:.3g}"


class LogProgress:
    """``update(done, total, info="")`` writing timed progress lines to ``stream``.

    ``clock`` (seconds) is injectable for tests; ``delay``, ``interval`` and ``steps``
    default to the module's ``LOG_DELAY_S``, ``LOG_INTERVAL_S`` and ``LOG_STEPS``."""

    def __init__(self, description: str, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, delay: float | None = None,
                 interval: float | None = None, steps: int | None = None) -> None:
        self.description = description
        self.stream = stream
        self.clock = clock
        self.delay = LOG_DELAY_S if delay is None else float(delay)
        self.interval = LOG_INTERVAL_S if interval is None else float(interval)
        self.steps = LOG_STEPS if steps is None else max(1, int(steps))
        self.t0 = clock()
        self.last_time: float | None = None  # when the last line was written
        self.last_step = -1  # the tenth of the work that line reported
        self.last_done: float = -1
        self.lines = 0

    def __call__(self, done: float, total: float | None = None, info: str = "") -> None:
        now = self.clock()
        elapsed = now - self.t0
        if done < self.last_done:  # a new pass or channel starts from 0 again
            self.last_step = -1
        self.last_done = done
        finished = bool(total) and done >= total
        step = int(self.steps * done / total) if total else -1
        due = (self.last_time is None and elapsed >= self.delay) or (
            self.last_time is not None and now - self.last_time >= self.interval)
        if elapsed < self.delay and not (finished and self.lines):
            return
        if not (due or step > self.last_step or (finished and step != self.last_step)):
            return
        self.last_step, self.last_time = step, now
        self.write(done, total, elapsed, info)

    def write(self, done: float, total: float | None, elapsed: float, info: str = "") -> None:
        """One line, whatever the rate limits say."""
        count = (f"{_fmt_count(done)}/{_fmt_count(total)} ({100.0 * done / total:.0f}%)"
                 if total else _fmt_count(done))
        extra = f" {info}" if info else ""
        line = f"medsr: progress: {self.description} {count}{extra} {elapsed:.1f} s"
        stream = sys.stderr if self.stream is None else self.stream
        print(line, file=stream, flush=True)
        self.lines += 1


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool | None = None, *,
                 stream: TextIO | None = None) -> Iterator[Update]:
    """Yield ``update(done, total, info="")``: a bar on a terminal (or ``enabled=True``),
    timed log lines when stderr is not a terminal (``enabled=None``), nothing for
    ``enabled=False``."""
    mode = progress_mode(enabled, stream)
    if mode is None:
        yield lambda done, total=None, info="": None
        return
    if mode == "log":
        yield LogProgress(description, stream=stream)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(description, total=None)

        def update(done: float, total: float | None = None, info: str = "") -> None:
            desc = f"{description} {info}" if info else description
            prog.update(task, completed=done, total=total, description=desc)

        yield update
