"""The training loop: config in, run directory out, byte-identical on CPU for a fixed seed.

What makes it reproducible, and resumable to the last bit:
- sample ``i`` of the run is a pure function of ``(seed, i)`` and step ``s`` uses samples
  ``s*B .. s*B+B-1``, so resuming at step ``s`` sees the very batches it would have seen;
- the learning rate is a pure function of the step (no scheduler object to restore);
- model, optimiser, EMA, discriminator, AMP scaler and python/numpy/torch RNG states
  are saved with the step in one atomic directory; rows of ``metrics.csv`` written after
  that step are dropped on resume;
- deterministic algorithms are enforced (:mod:`medsr.engine.determinism`).

Under torchrun (:mod:`medsr.engine.distributed`) the model is wrapped in
DistributedDataParallel, ``sampling.batch_size`` is the global batch and rank ``r`` takes
its block of every step's sample indices, so a step sees the same samples as the
single-process step; validation is sharded and gathered exactly; rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsr.devices import select_device, training_precision
from medsr.engine import config as cfgmod
from medsr.engine import determinism, distributed
from medsr.engine.checkpoint import (
    flatten_optimizer,
    latest_state,
    load_state,
    save_model,
    save_state_versioned,
    unflatten_optimizer,
)
from medsr.engine.ema import EMA
from medsr.engine.manifest import build_manifest, check_run_dir, read_manifest, write_manifest
from medsr.errors import UserError

log = logging.getLogger("medsr.train")

CREATE_KEYS = ("spatial_dims", "scale", "in_channels", "out_channels", "name")


# --- small pure helpers -----------------------------------------------------------------

def lr_at(step: int, optim_cfg: dict, sched_cfg: dict, total: int) -> float:
    """Learning rate of (0-based) ``step``: linear warm-up, then none / step / cosine."""
    base = float(optim_cfg["lr"])
    warm = int(sched_cfg["warmup"])
    if warm > 0 and step < warm:
        return base * (step + 1) / warm
    name = sched_cfg["name"]
    t = step - warm
    if name == "step":
        return base * float(sched_cfg["gamma"]) ** (t // int(sched_cfg["step_size"]))
    if name == "cosine":
        span = max(1, total - warm)
        lo = float(sched_cfg["min_lr"])
        return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    return base


def build_optimizer(params, optim_cfg: dict, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the ``optim`` section."""
    lr = float(optim_cfg["lr"]) if lr is None else lr
    wd = float(optim_cfg["weight_decay"])
    name = optim_cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(optim_cfg["momentum"]),
                               weight_decay=wd)
    betas = tuple(float(b) for b in optim_cfg["betas"])
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, weight_decay=wd)  # type: ignore[arg-type]


def build_degradation(cfg: dict, scale: tuple[int, ...]):
    """The Degradation of the config for a given per-axis ``scale`` (patch or volume)."""
    from medsr import degrade

    dcfg = cfg["degradation"]
    try:
        if dcfg["spec"]:
            return degrade.Degradation.from_dict(dcfg["spec"])
        return degrade.load_preset(dcfg["preset"], scale=tuple(int(k) for k in scale),
                                   **dcfg["params"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        key = "degradation.spec" if dcfg["spec"] else "degradation.params"
        raise UserError(f"config key '{key}' does not give a degradation: "
                        f"{_one_line(exc)}") from exc


def model_channels(cfg: dict, data_channels: int) -> tuple[int, int]:
    """(in, out) channels: 2.5D stacks 2*context+1 slices into the input."""
    if cfg["sampling"]["mode"] == "2.5d":
        return 2 * int(cfg["sampling"]["context"]) + 1, 1
    return data_channels, data_channels


def sampling_spec(cfg: dict):
    from medsr.data.sampling import SamplingSpec

    s = cfg["sampling"]
    nd = cfgmod.spatial_dims(cfg)
    axes = s["axes"] if isinstance(s["axes"], list) else [s["axes"]]
    scale = cfgmod.per_axis(cfg["model"]["scale"], nd, "model.scale")
    patch = cfgmod.per_axis(s["patch_size"], nd, "sampling.patch_size")
    for p, k in zip(patch, scale):
        if int(k) != k or k < 1:
            raise UserError(f"config key 'model.scale' must hold integers >= 1, got {scale}")
        if p % int(k):
            raise UserError(f"sampling.patch_size {patch} must be divisible by model.scale "
                            f"{scale}")
    return SamplingSpec(mode=s["mode"], axes=tuple(int(a) for a in axes),
                        context=int(s["context"]), patch=tuple(int(p) for p in patch),
                        scale=tuple(int(k) for k in scale), flips=bool(s["flips"]),
                        permute=bool(s["permute"]),
                        min_foreground=float(s["min_foreground"]),
                        gamma=None if s["gamma"] is None else (float(s["gamma"][0]),
                                                               float(s["gamma"][1])),
                        remap=float(s["remap"]))


def create_model(cfg: dict, in_ch: int, out_ch: int) -> nn.Module:
    from medsr import models

    spec = sampling_spec(cfg)
    name = cfg["model"]["name"]
    if name not in models.available():
        raise UserError(f"unknown model {name!r}; available: {', '.join(models.available())}")
    hparams = cfg["model"]["hparams"]
    _check_model_hparams(name, hparams)
    kwargs = {"spatial_dims": spec.spatial_dims, "scale": spec.scale, "in_channels": in_ch,
              "out_channels": out_ch, **hparams}
    try:
        # sizes first, on the meta device (nothing allocated): a huge width or depth is one
        # line, not the OOM killer
        with torch.device("meta"):
            probe = models.create(name, **kwargs)
        n = sum(p.numel() for p in probe.parameters())
        del probe
        if n > MAX_MODEL_PARAMETERS:
            raise UserError(f"model {name!r} with model.hparams {_short_hp(hparams)} would "
                            f"have {n:.3g} parameters (more than {MAX_MODEL_PARAMETERS:.0e})")
        return models.create(name, **kwargs)
    except UserError as exc:
        if "model.hparams" in str(exc) or not hparams:
            raise
        raise UserError(_one_line(f"model {name!r} cannot be built with model.hparams "
                                  f"{_short_hp(hparams)}: {exc}")) from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a user's hparams is one line
        raise UserError(_one_line(f"model {name!r} cannot be built with model.hparams "
                                  f"{_short_hp(hparams)}: {exc}")) from exc


MAX_MODEL_PARAMETERS = 1_000_000_000


def _short_hp(hparams: dict) -> str:
    return _one_line(str(hparams), 120)


def _check_model_hparams(name: str, hparams: dict) -> None:
    """Whole-number hparams (sizes, counts) in 1..MAX_HPARAM_INT (0 where 0 is the default)."""
    import inspect

    from medsr import models
    from medsr.engine.checkpoint import MAX_HPARAM_INT

    params = inspect.signature(models.NETWORKS[name].__init__).parameters
    for key, value in hparams.items():
        if key not in params:  # models.create names the unknown hyperparameter
            continue
        default = params[key].default
        for x in value if isinstance(value, list | tuple) else [value]:
            if isinstance(x, bool) or not isinstance(x, int):
                continue
            if x > MAX_HPARAM_INT or x < 0 or (x == 0 and default != 0):
                raise UserError(f"model {name!r} cannot be built with model.hparams "
                                f"{key} = {_one_line(str(value), 60)}: whole numbers here are "
                                f"sizes or counts, 1..{MAX_HPARAM_INT}")


def probe_model(model: nn.Module, cfg: dict, in_ch: int, device: torch.device) -> None:
    """One forward pass on a zero LR patch (no gradients), before anything is written: a
    network that builds but cannot run (a zero width, ...) is a one-line UserError."""
    spec = sampling_spec(cfg)
    shape = (1, in_ch, *(p // k for p, k in zip(spec.patch, spec.scale)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=device))
    except Exception as exc:  # noqa: BLE001 - a lazy check (interpolation, ...) included
        raise UserError(_one_line(f"model {cfg['model']['name']!r} with model.hparams "
                                  f"{_short_hp(cfg['model']['hparams'])} cannot run on a "
                                  f"{list(shape[2:])} patch: {exc}")) from exc
    finally:
        model.train(was_training)


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def model_info(cfg: dict, model: nn.Module, in_ch: int, out_ch: int,
               degradation: Any) -> dict[str, Any]:
    """Everything ``load_model`` / ``medsr infer --model`` need besides the weights."""
    spec = sampling_spec(cfg)
    hp = dict(getattr(model, "hparams", None) or cfg["model"]["hparams"])
    hp = {k: v for k, v in hp.items() if k not in CREATE_KEYS}
    try:
        deg = degradation.to_dict()
    except Exception:  # noqa: BLE001 - a degradation without to_dict is recorded by name
        deg = None
    return {
        "architecture": cfg["model"]["name"],
        "hparams": json.loads(json.dumps(hp)),
        "scale": list(spec.scale),
        "spatial_dims": spec.spatial_dims,
        "in_channels": in_ch,
        "out_channels": out_ch,
        "normalisation": {"method": "percentile", **cfg["data"]["normalise"]},
        "degradation": {"preset": cfg["degradation"]["preset"],
                        "params": cfg["degradation"]["params"],
                        "spec": cfg["degradation"]["spec"], "patch": deg,
                        **({"target_noise": cfg["degradation"]["target_noise"]}
                           if cfg["degradation"]["target_noise"]["kind"] != "none" else {})},
        "sampling": {"mode": spec.mode, "axes": list(spec.axes), "context": spec.context,
                     "patch_size": list(spec.patch)},
    }


# --- metrics.csv ------------------------------------------------------------------------

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


# --- the loop ---------------------------------------------------------------------------

@dataclass
class RunState:
    """Counters that must survive a resume."""

    step: int = 0
    best_psnr: float = -math.inf
    best_step: int = -1
    acc: dict[str, float] = field(default_factory=dict)
    acc_n: int = 0


@torch.no_grad()
def validate(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
             chunk: int = 8) -> tuple[float, float]:
    """Mean PSNR / SSIM over the fixed validation patches (normalised intensities, range 1).

    Under torchrun each rank scores its contiguous block of the patches; the per-patch
    values are put in place in a zero vector and summed over ranks (adding zeros is exact),
    so every rank gets the very per-patch list, and mean, a single process computes.
    """
    from medsr.losses.ssim import ssim

    n = batch["lr"].shape[0]
    mine = distributed.shard(n) if distributed.is_active() else range(n)
    was = model.training
    model.eval()
    values = np.zeros((2, n), dtype=np.float64)
    for a in range(mine.start, mine.stop, chunk):
        b = min(a + chunk, mine.stop)
        lr = batch["lr"][a:b].to(device)
        hr = batch["hr"][a:b].to(device)
        sr = model(lr).float()
        for i in range(sr.shape[0]):
            mse = float(torch.mean((sr[i] - hr[i]) ** 2))
            values[0, a + i] = 10.0 * math.log10(1.0 / mse) if mse > 0 else 100.0
            values[1, a + i] = float(ssim(sr[i:i + 1], hr[i:i + 1], data_range=1.0))
    model.train(was)
    if distributed.is_active():
        values = distributed.all_reduce_sum(torch.from_numpy(values), device).numpy()
    return float(np.mean(values[0].tolist())), float(np.mean(values[1].tolist()))


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
    cfgmod.validate(cfg)
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
    from torch.nn.parallel import DistributedDataParallel

    from medsr.data.dataset import SRPatchDataset, StepShardSampler, fixed_batch, load_volumes
    from medsr.data.sources import list_items, split_items
    from medsr.losses import build_loss, discriminator_loss

    ckpt_dir = run_dir / "checkpoints"
    main = distributed.is_main_process()
    rank, world = distributed.rank(), distributed.world_size()
    bs = int(cfg["sampling"]["batch_size"])
    local_bs = distributed.local_batch(bs, world)
    chunks = int(cfg["train"]["micro_batches"])
    if chunks < 1 or local_bs % chunks:
        raise UserError(f"train.micro_batches ({chunks}) must be >= 1 and divide the batch "
                        f"per process ({local_bs})")
    if chunks > 1 and float(cfg["loss"]["adversarial"]) > 0:
        raise UserError("train.micro_batches > 1 is not supported with an adversarial loss")
    # every rank checks before any rank writes (a late rank must not see rank 0's manifest);
    # run_dir is created only after the data, model and losses are built (a failed start
    # leaves nothing behind)
    check_run_dir(run_dir, resume=resume)
    distributed.barrier()

    seed = int(cfg["seed"])
    determinism.enable_determinism(seed)
    amp_dtype, use_scaler = training_precision(cfg["train"]["amp"], device)
    use_amp = amp_dtype is not None

    # data
    spec = sampling_spec(cfg)
    items = list_items(cfg["data"])
    train_items, val_items = split_items(items, float(cfg["data"]["val_fraction"]), seed,
                                         cfg["data"]["val_paths"])
    norm = cfg["data"]["normalise"]
    train_vols = load_volumes(train_items, norm["lower"], norm["upper"], cfg["data"]["cache"])
    val_vols = (train_vols if val_items == train_items
                else load_volumes(val_items, norm["lower"], norm["upper"], cfg["data"]["cache"]))
    degradation = build_degradation(cfg, spec.scale)
    target_noise = cfg["degradation"]["target_noise"]
    train_ds = SRPatchDataset(train_vols, spec, degradation, seed, stream=0, augment=True,
                              target_noise=target_noise)
    val_ds = SRPatchDataset(val_vols, spec, build_degradation(cfg, spec.scale), seed,
                            stream=1, augment=False, target_noise=target_noise)
    val_batch = fixed_batch(val_ds, int(cfg["sampling"]["val_patches"]))

    # model, losses, optimisers (created after seeding: same init every run)
    in_ch, out_ch = model_channels(cfg, train_vols[0]["image"].shape[0])
    model = create_model(cfg, in_ch, out_ch).to(device)
    if cfg["model"]["init"] and not resume:
        from medsr.engine.checkpoint import read_checkpoint

        init_state, _ = read_checkpoint(cfg["model"]["init"])
        try:
            model.load_state_dict(init_state)
        except RuntimeError as exc:
            raise UserError(f"model.init {cfg['model']['init']} does not fit "
                            f"{cfg['model']['name']}: {str(exc).splitlines()[0]}") from exc
    probe_model(model, cfg, in_ch, device)
    info = model_info(cfg, model, in_ch, out_ch, degradation)
    loss_fn = build_loss(cfg["loss"]).to(device)
    optimizer = build_optimizer(model.parameters(), cfg["optim"])
    ema = EMA(model, cfg["train"]["ema"]) if cfg["train"]["ema"] > 0 else None
    disc = opt_d = None
    if loss_fn.adversarial:
        from medsr import models

        disc = models.create_discriminator(cfg["discriminator"]["name"],
                                           spatial_dims=spec.spatial_dims, in_channels=out_ch,
                                           patch_size=spec.patch,
                                           **cfg["discriminator"]["hparams"]).to(device)
        opt_d = build_optimizer(disc.parameters(), {**cfg["optim"], "weight_decay": 0.0},
                                lr=float(cfg["discriminator"]["lr"]))
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    if rank > 0:
        # stochastic layers (if any) draw different numbers on each rank; the data does not
        # use these generators (sample i is a pure function of (seed, i))
        determinism.seed_all(seed + rank)

    state = RunState()
    if resume:
        tensors, meta = load_state(latest_state(ckpt_dir))
        model.load_state_dict(_sub(tensors, "model."))
        unflatten_optimizer(optimizer, tensors, meta["optimizer"], "optim")
        if ema is not None:
            ema.load_state_dict(_sub(tensors, "ema."))
        if disc is not None and opt_d is not None:
            disc.load_state_dict(_sub(tensors, "disc."))
            unflatten_optimizer(opt_d, tensors, meta["optimizer_d"], "optim_d")
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        _restore_rng(tensors, meta, rank)
        state = RunState(step=meta["step"], best_psnr=meta["best_psnr"],
                         best_step=meta["best_step"], acc=meta["acc"], acc_n=meta["acc_n"])
        if main:
            log.info("resuming %s at step %d", run_dir, state.step)

    terms = sorted(loss_fn.weights)
    columns = ["step", "lr", "loss", *[f"loss_{t}" for t in terms]]
    columns += ["loss_d"] if disc is not None else []
    columns += ["val_psnr", "val_ssim"]
    metrics = MetricsLog(run_dir / "metrics.csv", columns)
    if main:
        if resume:
            manifest = read_manifest(run_dir)
            manifest.setdefault("resumes", []).append(
                {"step": state.step, "command": list(sys.argv if argv is None else argv),
                 "world_size": world})
        else:
            manifest = build_manifest(cfg, seed=seed, device=str(device), argv=argv, extra={
                "data": {"train": [v["source"] for v in train_vols],
                         "val": [v["source"] for v in val_vols],
                         "normalisation": {v["source"]: list(v["norm"]) for v in train_vols},
                         "validation_on_training_volumes": val_items == train_items},
                "model": {k: info[k] for k in ("architecture", "hparams", "scale",
                                               "spatial_dims", "in_channels", "out_channels")},
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "distributed": {"world_size": world, "backend": (
                    distributed.backend_for(device) if world > 1 else None),
                    "global_batch": bs, "batch_per_process": local_bs},
            })
            run_dir.mkdir(parents=True, exist_ok=True)  # the first thing a run creates
        write_manifest(run_dir, manifest)
        ckpt_dir.mkdir(exist_ok=True)
        metrics.start(state.step if resume else None)

    total = int(cfg["train"]["steps"])
    nw = int(cfg["sampling"]["num_workers"])
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=local_bs,
        sampler=StepShardSampler(state.step, total, bs, rank, world),
        num_workers=nw, worker_init_fn=determinism.seed_worker if nw else None,
        generator=determinism.make_generator(seed), pin_memory=device.type == "cuda")

    kind = cfg["loss"]["adversarial_kind"]
    clip = float(cfg["train"]["grad_clip"])
    t = cfg["train"]
    bar = _Progress(total, state.step, progress)
    model.train()
    # DDP averages gradients over ranks in backward; `model` stays the bare network (saved
    # without a "module." prefix, used for validation and EMA)
    ddp_ids = [device.index] if device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=ddp_ids) if world > 1 else model
    disc_net = (DistributedDataParallel(disc, device_ids=ddp_ids)
                if world > 1 and disc is not None else disc)

    def save_all(step: int) -> None:
        r_t, r_m = determinism.rng_state()
        per_rank = distributed.all_gather_objects(
            ({k: v.clone() for k, v in r_t.items()}, r_m))
        if not main:
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        o_t, o_m = flatten_optimizer(optimizer, "optim")
        tensors.update(o_t)
        meta: dict[str, Any] = {"step": step, "best_psnr": state.best_psnr,
                                "best_step": state.best_step, "acc": state.acc,
                                "acc_n": state.acc_n, "optimizer": o_m}
        if ema is not None:
            tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        if disc is not None and opt_d is not None:
            tensors.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
            d_t, d_m = flatten_optimizer(opt_d, "optim_d")
            tensors.update(d_t)
            meta["optimizer_d"] = d_m
        if scaler is not None:
            meta["scaler"] = scaler.state_dict()
        tensors.update(r_t)
        meta["rng"] = r_m
        for r, (t_r, m_r) in enumerate(per_rank[1:], start=1):
            tensors.update({f"rank{r}.{k}": v for k, v in t_r.items()})
            meta.setdefault("rng_ranks", {})[str(r)] = m_r
        save_state_versioned(ckpt_dir, step, tensors, meta)
        save_model(ckpt_dir / "last.safetensors", _export(model, ema), {**info, "step": step})

    for step, batch in zip(range(state.step, total), loader):
        lr_now = lr_at(step, cfg["optim"], cfg["schedule"], total)
        for g in optimizer.param_groups:
            g["lr"] = lr_now
        lr_t = batch["lr"].to(device, non_blocking=device.type == "cuda")
        hr_t = batch["hr"].to(device, non_blocking=device.type == "cuda")
        optimizer.zero_grad(set_to_none=True)
        loss_sum, parts_sum = 0.0, {}
        for i, (lr_c, hr_c) in enumerate(zip(lr_t.chunk(chunks), hr_t.chunk(chunks))):
            # gradient of the mean over the chunks, as DDP averages over ranks; all chunks
            # but the last skip DDP's all-reduce
            last = i == chunks - 1
            with (contextlib.nullcontext() if world == 1 or last else net.no_sync()):
                with torch.autocast(device_type=device.type, dtype=amp_dtype,
                                    enabled=use_amp):
                    sr = net(lr_c)
                    fake = real = None
                    if disc is not None:
                        disc.requires_grad_(False)
                        fake = disc(sr)
                        real = disc(hr_c) if kind == "relativistic" else None
                    loss, parts = loss_fn(sr, hr_c, fake, real)
                part = loss / chunks if chunks > 1 else loss
                if scaler is not None:
                    scaler.scale(part).backward()
                else:
                    part.backward()
            loss_sum += float(loss.detach())
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
        if scaler is not None:
            scaler.unscale_(optimizer)
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
        loss_d = None
        if disc is not None and opt_d is not None:
            disc.requires_grad_(True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                ld = discriminator_loss(kind, disc_net(hr_t), disc_net(sr.detach()))
            opt_d.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(ld).backward()
                scaler.step(opt_d)
            else:
                ld.backward()
                opt_d.step()
            loss_d = float(ld.detach())
        if scaler is not None:
            scaler.update()
        if ema is not None:
            ema.update(model)

        vals = {"loss": loss_sum / chunks, **{f"loss_{k}": v / chunks
                                               for k, v in parts_sum.items()}}
        if loss_d is not None:
            vals["loss_d"] = loss_d
        if world > 1:  # the mean of the ranks' local-batch means = the global-batch mean
            summed = distributed.all_reduce_sum(list(vals.values()), device)
            vals = {k: float(v) / world for k, v in zip(vals, summed.tolist())}
        if not math.isfinite(vals["loss"]):  # the same decision on every rank
            raise UserError(f"training diverged at step {step + 1} (loss is not finite); "
                            "lower optim.lr or set train.grad_clip")
        state.step = step + 1
        for k, v in vals.items():
            state.acc[k] = state.acc.get(k, 0.0) + v
        state.acc_n += 1
        s = state.step
        do_log = s % t["log_every"] == 0 or s == total
        do_val = s % t["val_every"] == 0 or s == total
        row: dict[str, Any] = {}
        if do_log or do_val:
            row = {"step": s, "lr": lr_now,
                   **{k: v / max(1, state.acc_n) for k, v in state.acc.items()}}
            state.acc, state.acc_n = {}, 0
        if do_val:
            eval_model = _ema_model(model, ema)
            psnr, ssim_v = validate(eval_model, val_batch, device)
            row.update(val_psnr=psnr, val_ssim=ssim_v)
            if psnr > state.best_psnr:
                state.best_psnr, state.best_step = psnr, s
                if main:
                    save_model(ckpt_dir / "best.safetensors", _export(model, ema),
                               {**info, "step": s, "val_psnr": psnr, "val_ssim": ssim_v})
        if row and main:
            metrics.write(row)
        bar.update(s, row)
        if s % t["ckpt_every"] == 0 or s == total:
            save_all(s)
    bar.close()
    metrics.close()

    if main:
        from medsr.engine.figures import training_curve

        training_curve(run_dir / "metrics.csv", run_dir / "training_curve.png")
    return {"run_dir": str(run_dir), "steps": state.step, "best_psnr": state.best_psnr,
            "best_step": state.best_step, "last": str(ckpt_dir / "last.safetensors"),
            "best": str(ckpt_dir / "best.safetensors")}


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict, rank: int) -> None:
    """This rank's saved RNG states (rank 0's when the run was saved with fewer ranks)."""
    own = _sub(tensors, f"rank{rank}.") if rank > 0 else {}
    if own and str(rank) in meta.get("rng_ranks", {}):
        determinism.set_rng_state(own, meta["rng_ranks"][str(rank)])
    else:
        if rank > 0:
            log.warning("no saved RNG state for rank %d (the run was saved with fewer "
                        "processes); using rank 0's", rank)
        determinism.set_rng_state(tensors, meta["rng"])


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _export(model: nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """The weights a checkpoint carries: the EMA average when EMA is on."""
    return ema.weights_for(model) if ema is not None else model.state_dict()


def _ema_model(model: nn.Module, ema: EMA | None) -> nn.Module:
    if ema is None:
        return model
    import copy

    m = copy.deepcopy(model)
    m.load_state_dict(ema.weights_for(model))
    return m


class _Progress:
    """A rich progress bar on a terminal, a log line per logged step otherwise."""

    def __init__(self, total: int, start: int, enabled: bool | None) -> None:
        self.total = total
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if self.tty and distributed.is_main_process():
            from rich.progress import Progress

            self.bar = Progress(transient=False)
            self.bar.start()
            self.task = self.bar.add_task("training", total=total, completed=start)

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self.bar is not None:
            desc = f"loss {row['loss']:.4g}" if "loss" in row else None
            self.bar.update(self.task, completed=step, **({"description": desc} if desc else {}))
        elif row and distributed.is_main_process():
            extra = (f" val_psnr {row['val_psnr']:.3f} val_ssim {row['val_ssim']:.4f}"
                     if "val_psnr" in row else "")
            log.info("step %d/%d loss %.5g%s", step, self.total, row.get("loss", float("nan")),
                     extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
