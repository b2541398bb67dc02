"""``medsr eval`` as one library call: the CLI builds an :class:`EvalOptions` and calls
:func:`evaluate_command`, which picks the mode (files against files, or a model against
the baselines), checks the extras it needs and runs it. The model mode's module (torch)
is imported only when that mode runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import medsr.evaluation
from medsr.errors import UserError
from medsr.evaluation.compare import compare_files
from medsr.extras import require


@dataclass(frozen=True)
class EvalOptions:
    """Every option of ``medsr eval``; the CLI fills it from its flags."""

    # files against files
    reference: Sequence[str] | None = None
    test: Sequence[str] | None = None
    mask: Sequence[str] | None = None  # also the model mode's masks
    auto_mask: bool = False
    crop: int = 0  # both modes
    data_range: float | None = None
    ssim_mode: str = "3d"
    ssim_axis: int = 2
    json: str | None = None
    csv: str | None = None
    overwrite: bool = False  # both modes
    label: Sequence[str] | None = None
    figure: str | None = None
    no_figure: bool = False
    # a model against the baselines
    run: str | None = None
    model: str | None = None
    checkpoint: str = "best"
    data: Sequence[str] | None = None
    lr_data: Sequence[str] | None = None
    degradation: str | None = None
    axis: int | None = None
    out: str | None = None
    no_figures: bool = False
    seed: int = 0
    device: str = "auto"
    tta: bool = False

    @property
    def model_mode(self) -> bool:
        """``--run`` or ``--model`` given: a model against the baselines."""
        return bool(self.run or self.model)


def evaluate_command(opts: EvalOptions) -> int:
    """Run ``medsr eval`` as ``opts`` describe it; the exit code (0)."""
    if opts.model_mode:
        if opts.reference or opts.test:
            raise UserError("--reference/--test compare files; --run/--model evaluate a "
                            "model: use one mode")
        if not opts.no_figures:
            require("figures", "medsr eval --run/--model (its figures; --no-figures skips them)")
        if any(str(d).startswith("mni152:") for d in opts.data or []):
            require("train", "medsr eval --data mni152:...")
        medsr.evaluation.benchmark_command(
            data=list(opts.data or []), run=opts.run, model=opts.model,
            checkpoint=opts.checkpoint, lr_data=list(opts.lr_data) if opts.lr_data else None,
            degradation=opts.degradation, masks=list(opts.mask) if opts.mask else None,
            crop=opts.crop, axis=opts.axis, out=opts.out, figures=not opts.no_figures,
            seed=opts.seed, device=opts.device, tta=opts.tta, overwrite=opts.overwrite)
        return 0
    if opts.data:
        raise UserError("--data needs --run DIR or --model PATH; to compare files use "
                        "--reference HR ... --test SR ...")
    if not opts.reference or not opts.test:
        raise UserError("give --reference HR ... and --test SR ... (or --run/--model with --data)")
    compare_files(opts.reference, opts.test, masks=opts.mask, auto_mask=opts.auto_mask,
                  crop=opts.crop, data_range=opts.data_range, ssim_mode=opts.ssim_mode,
                  ssim_axis=opts.ssim_axis, labels=opts.label, json_path=opts.json,
                  csv_path=opts.csv, figure=opts.figure, auto_figure=not opts.no_figure,
                  overwrite=opts.overwrite)
    return 0
