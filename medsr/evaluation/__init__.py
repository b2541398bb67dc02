"""Evaluation: per-volume PSNR / SSIM / NRMSE tables.

- :mod:`~medsr.evaluation.compare`: files against files (``medsr eval --reference ...
  --test ...``);
- :mod:`~medsr.evaluation.benchmark`: a model against the interpolation baselines on
  held-out volumes, the model run by :func:`medsr.pipeline.super_resolve_volume` (the runner
  of ``medsr infer``); ``medsr eval (--run | --model) --data ...``;
- :mod:`~medsr.evaluation.report`: the one summary (mean and sample std, ddof=1) and the
  CSV / JSON / Markdown / terminal table writers;
- :mod:`~medsr.evaluation.figures`: their figures (matplotlib);
- :mod:`~medsr.evaluation.command`: ``medsr eval`` as one call (:func:`evaluate_command`).

Names are imported on first use (PEP 562), so comparing files never imports torch.
"""

from __future__ import annotations

from medsr._lazy import lazy_exports

_WHERE = {
    "EvaluationResult": "compare", "compare_files": "compare", "evaluate_files": "compare",
    "evaluate_volumes": "compare", "method_labels": "compare",
    "corner_distance_mm": "compare", "middle_slices": "compare",
    "BASELINES": "benchmark", "benchmark_model": "benchmark",
    "benchmark_command": "benchmark", "predict_volume": "benchmark",
    "volume_factors": "benchmark",
    "METRICS": "report", "STD_CONVENTION": "report", "summary": "report",
    "group_summaries": "report",
    "EvalOptions": "command", "evaluate_command": "command",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
