"""The training run: config in, run directory out, byte-identical on CPU for a fixed seed.

What makes it reproducible, and resumable to the last bit:
- sample ``i`` of the run is a pure function of ``(seed, i)`` and step ``s`` uses samples
  ``s*B .. s*B+B-1``, so resuming at step ``s`` sees the very batches it would have seen;
- the learning rate is a pure function of the step (no scheduler object to restore);
- model, optimiser, EMA, discriminator, AMP scaler and python/numpy/torch RNG states
  are saved with the step in one atomic directory; rows of ``metrics.csv`` written after
  that step are dropped on resume;
- deterministic algorithms are enforced (:mod:`medsr.training.determinism`).

Under torchrun (:mod:`medsr.distributed`) the model is wrapped in
DistributedDataParallel, ``sampling.batch_size`` is the global batch and rank ``r`` takes
its block of every step's sample indices, so a step sees the same samples as the
single-process step; validation is sharded and gathered exactly; rank 0 alone writes.

The loop itself (:func:`run`) is a few lines over a :class:`~medsr.training.trainer.Trainer`;
:func:`train` sets the run up, :func:`train_from_config` is ``medsr train``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from medsr import distributed
from medsr.devices import select_device
from medsr.errors import UserError
from medsr.models.checkpoint import read_checkpoint
from medsr.training import determinism, schema
from medsr.training.build import (
    build_degradation,
    build_discriminator,
    create_model,
    model_channels,
    model_info,
    probe_model,
    sampling_spec,
)
from medsr.training.config import defaults, load_config, merge
from medsr.training.data.dataset import (
    SRPatchDataset,
    StepShardSampler,
    fixed_batch,
    load_volumes,
)
from medsr.training.data.sources import list_items, split_items
from medsr.training.losses import build_loss
from medsr.training.manifest import build_manifest, check_run_dir, read_manifest, write_manifest
from medsr.training.trainer import GANTrainer, Trainer

log = logging.getLogger("medsr.train")


def run(trainer: Trainer, loader: Iterable[dict[str, torch.Tensor]]) -> None:
    """The loop: from the trainer's step to the last, one batch of ``loader`` per step."""
    for step, batch in zip(range(trainer.state.step, trainer.total), loader):
        lr_now = trainer.set_lr(step)
        trainer.record(step, lr_now, trainer.step(batch))


def train_from_config(config: str | os.PathLike | None, sets: list[str] | None = None, *,
                      run_dir: str | os.PathLike | None = None,
                      resume: str | os.PathLike | None = None,
                      argv: list[str] | None = None,
                      progress: bool | None = None) -> dict[str, Any] | None:
    """``medsr train``: a YAML config (and ``--set`` items) trained into ``run_dir``
    (default ``runs/<config>-<time>``), or the run in ``resume`` continued (its manifest's
    config, plus ``sets``). The summary on rank 0; None on the other ranks of torchrun."""
    sets = list(sets or [])
    for flag, value in (("--run-dir", run_dir), ("--resume", resume)):
        if value is not None and not str(value).strip():
            raise UserError(f"{flag} must name a directory, got an empty path")
    if resume:
        out = Path(resume)
        if run_dir and Path(run_dir).resolve() != out.resolve():
            raise UserError("--resume DIR continues DIR; do not also give another --run-dir")
        base = read_manifest(out)["config"]
        try:  # the manifest's config checked as a config file is (keys, types, values)
            base = merge(defaults(), base)
        except UserError as exc:
            raise UserError(f"the config in {out / 'manifest.json'} is invalid: "
                            f"{exc}") from exc
        cfg = load_config(None, sets, base=base)
        if config and load_config(config, sets) != cfg:
            raise UserError(f"{config} differs from the config of the run in "
                            f"{out}; resume without CONFIG, or use --set")
        summary = train(cfg, out, resume=True, argv=argv, progress=progress)
    else:
        if not config:
            raise UserError("give a CONFIG.yaml (or --resume DIR)")
        cfg = load_config(config, sets)
        distributed.check_env()
        if distributed.world_size() > 1 and not run_dir:
            raise UserError("under torchrun give --run-dir: the default name holds the start "
                            "time, which the processes would not agree on")
        out = Path(run_dir) if run_dir else Path("runs") / (
            f"{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        summary = train(cfg, out, argv=argv, progress=progress)
    return summary if distributed.is_main_process() else None


def train(cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False,
          argv: list[str] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says, writing the run into ``run_dir``; returns a summary dict.

    With ``resume=True`` the run continues from the newest ``run_dir/checkpoints/state-*``.
    Under torchrun this joins the process group (NCCL on GPU, gloo on CPU) and leaves it
    at the end; every rank must call it with the same arguments.

    A failed start writes nothing: the config, ``run_dir`` (:func:`check_run_dir`), the
    data (every volume is read), the degradation, the model, the losses and the
    validation patches are all checked before ``run_dir`` is created; an unusable one is
    a UserError.
    """
    schema.validate(cfg)
    check_run_dir(run_dir, resume=resume)
    distributed.check_env()
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    device = select_device(cfg["device"])
    created = distributed.setup(device)
    try:
        summary = _train(cfg, Path(run_dir), device, resume=resume, argv=argv,
                         progress=progress)
        # rank 0 is still writing checkpoints and figures when the others finish: leave the
        # group together, so no rank tears down its connections under a peer's feet (an
        # early leaver was seen to abort in gloo's teardown once, under load)
        distributed.barrier()
        return summary
    finally:
        distributed.cleanup(created)


def _train(cfg: dict, run_dir: Path, device: torch.device, *, resume: bool,
           argv: list[str] | None, progress: bool | None) -> dict[str, Any]:
    bs, local_bs = _batch_sizes(cfg)
    # every rank checks before any rank writes (a late rank must not see rank 0's manifest);
    # run_dir is created only after the data, model and losses are built (a failed start
    # leaves nothing behind)
    check_run_dir(run_dir, resume=resume)
    distributed.barrier()
    seed = int(cfg["seed"])
    determinism.enable_determinism(seed)
    data = _Data(cfg, seed)
    trainer = _build_trainer(cfg, device, data, run_dir, resume)
    if distributed.is_main_process():
        _write_start(cfg, trainer, data, run_dir, device, resume=resume, argv=argv, bs=bs,
                     local_bs=local_bs)
    nw = int(cfg["sampling"]["num_workers"])
    loader = torch.utils.data.DataLoader(
        data.train_ds, batch_size=local_bs,
        sampler=StepShardSampler(trainer.state.step, trainer.total, bs, distributed.rank(),
                                 distributed.world_size()),
        num_workers=nw, worker_init_fn=determinism.seed_worker if nw else None,
        generator=determinism.make_generator(seed), pin_memory=device.type == "cuda")
    trainer.start(progress)
    run(trainer, loader)
    return trainer.finish()


def _batch_sizes(cfg: dict) -> tuple[int, int]:
    """(global batch, batch per process), with the micro-batch split checked."""
    bs = int(cfg["sampling"]["batch_size"])
    local_bs = distributed.local_batch(bs, distributed.world_size())
    chunks = int(cfg["train"]["micro_batches"])
    if chunks < 1 or local_bs % chunks:
        raise UserError(f"train.micro_batches ({chunks}) must be >= 1 and divide the batch "
                        f"per process ({local_bs})")
    if chunks > 1 and float(cfg["loss"]["adversarial"]) > 0:
        raise UserError("train.micro_batches > 1 is not supported with an adversarial loss")
    return bs, local_bs


def _with_planes(volumes: list[dict], spec) -> list[dict]:
    """The volumes with at least one plane ``spec`` may sample (``sampling.max_anisotropy``);
    the others are left out, by name in the log (a thick-slice scan under a sampling that
    would cut across its slices)."""
    keep = []
    for v in volumes:
        if spec.normals_for(v["spacing"]):
            keep.append(v)
        else:
            log.info("left out %s: spacing %s has no plane of sampling.axes %s within "
                     "sampling.max_anisotropy %s", v.get("source"), tuple(v["spacing"]),
                     list(spec.axes), spec.max_anisotropy)
    if volumes and not keep:
        raise UserError(f"no volume has a plane of sampling.axes {list(spec.axes)} within "
                        f"sampling.max_anisotropy {spec.max_anisotropy} of its finest spacing")
    return keep


class _Data:
    """The run's volumes (read and normalised), patch datasets and validation patches."""

    def __init__(self, cfg: dict, seed: int) -> None:
        self.spec = spec = sampling_spec(cfg)
        items = list_items(cfg["data"])
        self.train_items, self.val_items = split_items(
            items, float(cfg["data"]["val_fraction"]), seed, cfg["data"]["val_paths"])
        norm, cache = cfg["data"]["normalise"], cfg["data"]["cache"]
        self.train_vols = _with_planes(
            load_volumes(self.train_items, norm["lower"], norm["upper"], cache), spec)
        self.val_vols = (self.train_vols if self.val_items == self.train_items
                         else _with_planes(load_volumes(self.val_items, norm["lower"],
                                                        norm["upper"], cache), spec))
        self.degradation = build_degradation(cfg, spec.scale)
        target_noise = cfg["degradation"]["target_noise"]
        self.train_ds = SRPatchDataset(self.train_vols, spec, self.degradation, seed, stream=0,
                                       augment=True, target_noise=target_noise)
        val_ds = SRPatchDataset(self.val_vols, spec, build_degradation(cfg, spec.scale), seed,
                                stream=1, augment=False, target_noise=target_noise)
        self.val_batch = fixed_batch(val_ds, int(cfg["sampling"]["val_patches"]))


def _build_trainer(cfg: dict, device: torch.device, data: _Data, run_dir: Path,
                   resume: bool) -> Trainer:
    """Network, losses and (adversarial losses) discriminator, created after seeding in a
    fixed order (the same initial weights every run); the saved state on a resume."""
    in_ch, out_ch = model_channels(cfg, data.train_vols[0]["image"].shape[0])
    model = create_model(cfg, in_ch, out_ch).to(device)
    if cfg["model"]["init"] and not resume:
        init_state, _ = read_checkpoint(cfg["model"]["init"])
        try:
            model.load_state_dict(init_state)
        except RuntimeError as exc:
            raise UserError(f"model.init {cfg['model']['init']} does not fit "
                            f"{cfg['model']['name']}: {str(exc).splitlines()[0]}") from exc
    probe_model(model, cfg, in_ch, device)
    info = model_info(cfg, model, in_ch, out_ch, data.degradation)
    loss_fn = build_loss(cfg["loss"]).to(device)
    disc = build_discriminator(cfg, out_ch).to(device) if loss_fn.adversarial else None
    cls = GANTrainer if disc is not None else Trainer
    trainer = cls(cfg, model, loss_fn, device, info=info, val_batch=data.val_batch,
                  run_dir=run_dir, disc=disc)
    if distributed.rank() > 0:
        # stochastic layers (if any) draw different numbers on each rank; the data does not
        # use these generators (sample i is a pure function of (seed, i))
        determinism.seed_all(int(cfg["seed"]) + distributed.rank())
    if resume:
        trainer.resume()
        if distributed.is_main_process():
            log.info("resuming %s at step %d", run_dir, trainer.state.step)
    return trainer


def _write_start(cfg: dict, trainer: Trainer, data: _Data, run_dir: Path,
                 device: torch.device, *, resume: bool, argv: list[str] | None, bs: int,
                 local_bs: int) -> None:
    """Rank 0: the manifest (a resume appended to it), the checkpoint folder, metrics.csv."""
    world = distributed.world_size()
    if resume:
        manifest = read_manifest(run_dir)
        manifest.setdefault("resumes", []).append(
            {"step": trainer.state.step, "command": list(sys.argv if argv is None else argv),
             "world_size": world})
    else:
        info = trainer.info
        manifest = build_manifest(cfg, seed=int(cfg["seed"]), device=str(device), argv=argv,
                                  extra={
            "data": {"train": [v["source"] for v in data.train_vols],
                     "val": [v["source"] for v in data.val_vols],
                     "normalisation": {v["source"]: list(v["norm"]) for v in data.train_vols},
                     "validation_on_training_volumes": data.val_items == data.train_items},
            "model": {k: info[k] for k in ("architecture", "hparams", "scale",
                                           "spatial_dims", "in_channels", "out_channels")},
            "parameters": int(sum(p.numel() for p in trainer.model.parameters())),
            "distributed": {"world_size": world, "backend": (
                distributed.backend_for(device) if world > 1 else None),
                "global_batch": bs, "batch_per_process": local_bs},
        })
        run_dir.mkdir(parents=True, exist_ok=True)  # the first thing a run creates
    write_manifest(run_dir, manifest)
    trainer.ckpt_dir.mkdir(exist_ok=True)
    trainer.metrics.start(trainer.state.step if resume else None)
