"""Training SR networks from a YAML config: config (schema + loading), the loop over a
trainer object (plus a GAN step), data, losses, EMA, determinism, manifests, figures,
precision and the training state on disk.

    >>> from medsr.training import train_from_config
    >>> summary = train_from_config("configs/smoke.yaml", ["train.steps=40"], run_dir="runs/a")
"""

from __future__ import annotations

from medsr._lazy import lazy_exports

# name -> submodule, imported on first use (PEP 562): reading a config needs no torch
_WHERE = {
    **dict.fromkeys(("train", "train_from_config"), "loop"),
    **dict.fromkeys(("Trainer", "GANTrainer"), "trainer"),
    **dict.fromkeys(("load_config", "defaults", "merge"), "config"),
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
