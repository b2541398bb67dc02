"""Small pieces of the training engine: schedule, EMA, RNG state round trip, sampling."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
import torch

from medsr.errors import UserError
from medsr.training.build import lr_at
from medsr.training.data.sampling import SamplingSpec, draw
from medsr.training.determinism import rng_state, set_rng_state
from medsr.training.ema import EMA


def test_lr_schedules():
    opt = {"lr": 1.0}
    sched = {"name": "cosine", "warmup": 4, "step_size": 10, "gamma": 0.5, "min_lr": 0.0}
    assert [lr_at(s, opt, sched, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(54, opt, sched, 104) == pytest.approx(0.5)
    assert lr_at(104, opt, sched, 104) == pytest.approx(0.0)
    step = {**sched, "name": "step", "warmup": 0}
    assert [lr_at(s, opt, step, 100) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_ema_formula():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, 0.9)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.shadow["weight"], 0.9 * w0 + 0.1 * (w0 + 1.0))


def test_rng_state_round_trip_without_pickle():
    import json

    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    tensors, meta = rng_state()
    meta = json.loads(json.dumps(meta))  # must survive JSON
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(tensors, meta)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_sampling_geometry_and_permutation_rules():
    vol = np.arange(20 * 18 * 16, dtype=np.float32).reshape(1, 20, 18, 16)
    spec = SamplingSpec("2d", (2,), 1, (8, 8), (2, 2), flips=False, permute=False)
    s = draw({"image": vol, "spacing": (1.0, 1.0, 3.0)}, spec, np.random.default_rng(0))
    hr = s["hr"][0]
    # an axial slice: constant k, i and j varying with the volume's strides
    assert hr.shape == (8, 8) and np.all(np.diff(hr, axis=0) == 18 * 16)
    assert np.all(np.diff(hr, axis=1) == 16) and s["spacing"] == (1.0, 1.0)
    # a thick-slice plane (axis 2 spacing 3 mm) is never transposed, an isotropic one may be
    spec_p = SamplingSpec("2d", (0,), 1, (8, 8), (1, 2), flips=False, permute=True)
    for seed in range(20):
        s = draw({"image": vol, "spacing": (1.0, 1.0, 3.0)}, spec_p, np.random.default_rng(seed))
        assert np.all(np.diff(s["hr"][0], axis=1) == 1)  # second patch axis stays k
    spec_i = SamplingSpec("2d", (2,), 1, (8, 8), (2, 2), flips=False, permute=True)
    transposed = [np.all(np.diff(draw({"image": vol, "spacing": (1.0, 1.0, 3.0)}, spec_i,
                                      np.random.default_rng(seed))["hr"][0], axis=0) == 16)
                  for seed in range(20)]
    assert 0 < sum(transposed) < 20
    # 2.5d: neighbouring slices become channels, in order
    spec_c = SamplingSpec("2.5d", (2,), 2, (8, 8), (2, 2), flips=False, permute=False)
    s = draw({"image": vol, "spacing": (1.0, 1.0, 1.0)}, spec_c, np.random.default_rng(1))
    assert s["hr"].shape == (5, 8, 8)
    d = np.diff(s["hr"][:, 4, 4])
    assert set(d.tolist()) <= {0.0, 1.0} and d.sum() >= 2  # edges replicate at the border
    assert math.isclose(float(s["hr"][2, 0, 0] % 1), 0.0)


def test_max_anisotropy_samples_only_the_acquired_planes_of_thick_slice_scans():
    """sampling.max_anisotropy: a 0.6 x 0.6 x 5 mm scan gives only axial patches; an
    isotropic one every orientation, drawn exactly as without the option."""
    vol = np.arange(20 * 18 * 16, dtype=np.float32).reshape(1, 20, 18, 16)
    base = dict(mode="2d", axes=(0, 1, 2), context=1, patch=(8, 8), scale=(2, 2),
                flips=False, permute=False)
    spec = SamplingSpec(**base, max_anisotropy=1.5)
    thick, iso = (0.6, 0.6, 5.0), (1.0, 1.0, 1.0)
    assert spec.normals_for(thick) == (2,) and spec.normals_for(iso) == (0, 1, 2)
    assert spec.normals_for((1.0, 1.4, 1.0)) == (0, 1, 2)        # within 1.5 x
    assert SamplingSpec(**base).normals_for(thick) == (0, 1, 2)  # option off: all
    normals = {draw({"image": vol, "spacing": thick}, spec, np.random.default_rng(s))["normal"]
               for s in range(30)}
    assert normals == {2}
    for seed in range(10):  # an isotropic volume: the same draws as with the option off
        a = draw({"image": vol, "spacing": iso}, spec, np.random.default_rng(seed))
        b = draw({"image": vol, "spacing": iso}, SamplingSpec(**base), np.random.default_rng(seed))
        assert a["normal"] == b["normal"] and np.array_equal(a["hr"], b["hr"])
    with pytest.raises(UserError, match="max_anisotropy"):
        draw({"image": vol, "spacing": thick},
             SamplingSpec(**{**base, "axes": (0, 1)}, max_anisotropy=1.5),
             np.random.default_rng(0))


def test_intensity_augmentation_gamma_remap_and_paired_refusal():
    from medsr.errors import UserError

    ramp = np.linspace(-0.2, 1.3, 16, dtype=np.float32)
    vol = {"image": np.broadcast_to(ramp[:, None], (1, 16, 16, 16)).copy(),  # along j
           "spacing": (1.0,) * 3}
    base = dict(mode="2d", axes=(2,), context=1, patch=(16, 16), scale=(1, 1), flips=False,
                permute=False)
    plain = draw(vol, SamplingSpec(**base), np.random.default_rng(0))["hr"][0]
    np.testing.assert_array_equal(plain, np.broadcast_to(ramp, (16, 16)))
    # gamma: monotone, 0 and 1 fixed, excess outside [0, 1] kept, exponent within [lo, hi]
    exps = []
    for seed in range(10):
        hr = draw(vol, SamplingSpec(**base, gamma=(0.5, 2.0)), np.random.default_rng(seed))["hr"][0]
        row = hr[0].astype(np.float64)
        inside = (ramp > 0) & (ramp < 1)
        assert np.all(np.diff(row) > 0)
        np.testing.assert_allclose(row[~inside], ramp[~inside], atol=1e-6)
        g = np.log(row[inside]) / np.log(ramp[inside].astype(np.float64))
        assert np.ptp(g) < 1e-4 and 0.5 - 1e-4 <= g[0] <= 2.0 + 1e-4
        exps.append(g[0])
    assert min(exps) < 0.9 and max(exps) > 1.1
    # remap=1: a new look-up table per draw, 0 kept at 0, values in [0, 1], not monotone
    luts = [draw(vol, SamplingSpec(**base, remap=1.0), np.random.default_rng(s))["hr"][0][0]
            for s in range(5)]
    for row in luts:
        inside = row[(ramp >= 0) & (ramp <= 1)]
        assert inside.min() >= -1e-6 and inside.max() <= 1 + 1e-6
    assert any(np.any(np.diff(r[(ramp >= 0) & (ramp <= 1)]) < 0) for r in luts)
    assert not np.allclose(luts[0], luts[1])
    # a paired LR cannot follow a nonlinear change of the HR
    paired = {**vol, "lr": vol["image"].copy()}
    with pytest.raises(UserError, match="unpaired"):
        draw(paired, SamplingSpec(**base, gamma=(0.5, 2.0)), np.random.default_rng(0))


def test_metrics_mirror_to_tensorboard_and_purge_on_resume(tmp_path):
    """The CSV's scalars also go to TensorBoard; a resume purges events after its step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from medsr.training.logs import MetricsLog

    log = MetricsLog(tmp_path / "metrics.csv", ["step", "loss", "val_psnr"])
    log.start(None)
    for step in (1, 2, 3):
        log.write({"step": step, "loss": 1.0 / step, "val_psnr": 20.0 + step})
    log.close()
    # TensorBoard reads event files in name order: <seconds>.<host>.<pid>.<writer count>.
    # A real resume is a later process; two writers of one process in the same second
    # would sort by the count as text ("10" < "9"), so the resume starts a second later.
    time.sleep(1.1)
    log = MetricsLog(tmp_path / "metrics.csv", ["step", "loss", "val_psnr"])
    log.start(2)  # resumed after step 2: step 3 is redone with another value
    log.write({"step": 3, "loss": 0.125, "val_psnr": None})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    loss = {e.step: e.value for e in acc.Scalars("loss")}
    assert loss == {1: 1.0, 2: 0.5, 3: 0.125}
    assert [e.step for e in acc.Scalars("val_psnr")] == [1, 2]


def test_training_precision_choices():
    from medsr.errors import UserError
    from medsr.training.precision import training_precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert training_precision("bf16", cpu) == (torch.bfloat16, False)
    assert training_precision("bf16", gpu) == (torch.bfloat16, False)
    assert training_precision(True, gpu) == (torch.float16, True)    # GradScaler with fp16
    assert training_precision(True, cpu) == (None, False)            # no fp16 on the CPU
    assert training_precision(False, gpu) == (None, False)
    with pytest.raises(UserError, match="train.amp"):
        training_precision("fp8", cpu)


def test_bf16_training_is_reproducible_keeps_float32_weights_and_learns(tmp_path):
    """train.amp=bf16 on the CPU: the run is bitwise repeatable, its weights stay float32,
    it differs from the float32 run (autocast really engaged) and learns as much."""
    from pathlib import Path

    from safetensors.torch import load_file

    from medsr.training.config import load_config
    from medsr.training.loop import train

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    sets = ["train.steps=40", "train.val_every=40", "train.ckpt_every=40", "train.log_every=40"]
    out = {}
    for name, amp in (("a", "bf16"), ("b", "bf16"), ("f32", "false")):
        summary = train(load_config(smoke, [*sets, f"train.amp={amp}"]), tmp_path / name,
                        progress=False)
        out[name] = (summary, load_file(str(tmp_path / name / "checkpoints" / "last.safetensors")))
    (sa, wa), (_, wb), (sf, wf) = out["a"], out["b"], out["f32"]
    assert all(v.dtype == torch.float32 for v in wa.values())
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wf[k]) for k in wa)
    assert abs(sa["best_psnr"] - sf["best_psnr"]) < 0.5


def test_target_noise_on_hr_patch_before_degrading_and_default_no_op():
    """degradation.target_noise: the HR target carries the added noise and the LR is
    degraded from that noisy HR; only matching volumes; kind none is byte-identical."""
    from medsr.degrade import Degradation
    from medsr.errors import UserError
    from medsr.training.config import load_config
    from medsr.training.data.dataset import SRPatchDataset

    rng = np.random.default_rng(1)
    smooth = np.full((1, 24, 24, 24), 0.5, np.float32) + rng.random((1, 1, 1, 24),
                                                                     dtype=np.float32) * 0.01
    vols = [{"image": smooth, "spacing": (1.0,) * 3, "source": "data/template.nii.gz"},
            {"image": smooth.copy(), "spacing": (1.0,) * 3, "source": "data/scan.nii.gz"}]
    spec = SamplingSpec(mode="2d", axes=(2,), context=1, patch=(16, 16), scale=(2, 2),
                        flips=False, permute=False, min_foreground=0.0)

    def deg():
        return Degradation.from_dict({"scale": [2, 2], "profile": "gaussian",
                                      "downsample": "area"})

    plain = SRPatchDataset(vols, spec, deg(), seed=3)
    off = SRPatchDataset(vols, spec, deg(), seed=3,
                         target_noise={"kind": "none", "sigma": [0.01, 0.03], "match": []})
    for i in range(6):  # the default (kind none) changes nothing, byte for byte
        a, b = plain[i], off[i]
        assert a["hr"].numpy().tobytes() == b["hr"].numpy().tobytes()
        assert a["lr"].numpy().tobytes() == b["lr"].numpy().tobytes()
    tn = {"kind": "rician", "sigma": 0.05, "match": ["template*"]}
    noisy = SRPatchDataset(vols, spec, deg(), seed=3, target_noise=tn)
    assert noisy.noisy_target == [True, False]
    seen = set()
    for i in range(12):
        s = noisy[i]
        hr = s["hr"].numpy()
        resid = hr - smooth[0, :16, :16, 0].mean()
        if hr.std() > 0.02:  # a template patch: HR target carries the added noise
            seen.add("noisy")
            assert 0.03 < hr.std() < 0.08
            # the LR is the degradation of that noisy HR: its noise is averaged down
            assert s["lr"].numpy().std() < hr.std() / 1.5
        else:  # the real scan keeps its own (here: none)
            seen.add("clean")
            assert np.abs(resid).max() < 0.02
    assert seen == {"noisy", "clean"}
    cfg = load_config(sets=["data.path=x", "degradation.target_noise.kind=rician",
                            "degradation.target_noise.sigma=[0.01, 0.03]",
                            "degradation.target_noise.match=['mni*']"])
    assert cfg["degradation"]["target_noise"]["match"] == ["mni*"]
    for bad in ("degradation.target_noise.kind=poisson", "degradation.target_noise.sigma=-1",
                "degradation.target_noise.sigma=[0.03, 0.01]",
                "degradation.target_noise.match=[1]"):
        with pytest.raises(UserError, match="target_noise"):
            load_config(sets=["data.path=x", bad])
