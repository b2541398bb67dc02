"""What a run reports while it trains: ``metrics.csv`` (and TensorBoard when installed)
and the progress bar (a log line per logged step off a terminal)."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
from pathlib import Path
from typing import Any

from medsr import distributed
from medsr.progress import progress_bar

log = logging.getLogger("medsr.train")


class MetricsLog:
    """Append-only CSV with a fixed header; on resume, rows after the saved step are cut.

    When TensorBoard is installed the same scalars also go to ``<run>/tensorboard``
    (events after the resume step are purged, as in the CSV).
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        self.board: Any = None

    def _open_board(self, resume_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        purge = None if resume_step is None else resume_step + 1
        self.board = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=purge)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def start(self, resume_step: int | None) -> None:
        self._open_board(resume_step)
        if resume_step is None or not self.path.exists():
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self.columns)
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= resume_step]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(keep)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self.columns])
            f.flush()
            os.fsync(f.fileno())
        if self.board is not None:
            for c in self.columns[1:]:
                v = row.get(c)
                if isinstance(v, int | float) and not isinstance(v, bool):
                    self.board.add_scalar(c, float(v), int(row["step"]))
            self.board.flush()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


class Progress:
    """Training progress: medsr's one reporter (:func:`medsr.progress.progress_bar`) as a
    bar on a terminal; otherwise a log line per logged step (with the validation scores)."""

    def __init__(self, total: int, start: int, enabled: bool | None) -> None:
        self.total = total
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self._stack = contextlib.ExitStack()
        self.bar: Any = None
        if self.tty and distributed.is_main_process():
            self.bar = self._stack.enter_context(progress_bar("training", True))
            self.bar(start, total)

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar(step, self.total, f"loss {row['loss']:.4g}" if "loss" in row else "")
        elif row and distributed.is_main_process():
            extra = (f" val_psnr {row['val_psnr']:.3f} val_ssim {row['val_ssim']:.4f}"
                     if "val_psnr" in row else "")
            log.info("step %d/%d loss %.5g%s", step, self.total, row.get("loss", float("nan")),
                     extra)

    def close(self) -> None:
        self._stack.close()
