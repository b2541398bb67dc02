"""Quality benchmark for frames (x4, colour via Y) and microscopy (z x4), held-out data.

Frames: the 40 held-out ``lfw_subset`` faces (cropped to 24 x 24) and the held-out photos
``chelsea`` and ``coffee`` (cropped to multiples of 4), see pipelines/frames_data.py.
LR = antialiased bicubic x4 (MATLAB imresize, the SR literature's benchmark), rounded
to 8 bit; case ``bicubic+noise`` adds Gaussian noise of 1% of the range before rounding.
Methods: bicubic (Catmull-Rom), lanczos (Lanczos-3), medsr (``frames-x4`` on Y, bicubic
chroma: :func:`medsr.adapters.colour.super_resolve_colour`), every method through
``medsr infer``'s runner, :func:`medsr.pipeline.super_resolve_volume`. PSNR/SSIM on Y (BT.601, 8-bit
units, data range 255) and PSNR on RGB, with a 4-pixel border shaved (literature
convention). Faces are averaged over the 40.

Held-out photo set: the mean over many photographs, as the SR literature reports
Set14 / B100, since single images differ by several dB (a furry cat or baboon gains
little from any network; a sharp flower a lot). ``frames_data.HELDOUT_PHOTOS``:
``chelsea``, ``coffee``, the 21 photographs among OpenCV's samples and the 35 photographs
of Debian's wallpaper packages (shrunk to a long side of 1024), 58 in all, none seen by
the shipped ``frames-x4`` (train_frames.py without ``--opencv-photos`` /
``--wallpaper-photos``; the Debian packages are fetched from the package registry when
not installed, ``debian_data``). Same LR, methods and scores as above; reported per image
(clean LR) and as mean / median gain over bicubic with the count of images gaining at
least 1 dB (clean and ``+noise``). ``--no-photo-set`` skips it.

Multi-frame: ``chelsea`` and ``coffee`` as 9-frame stacks under synthetic camera shake
(whole-pixel translations, ``frames_data.shifted_stack``, seed 0 / 1), each frame
degraded by the camera model ``frames-x4-mf`` was trained for: 4 x 4 pixel means
(``downsample: area``, aliased), 8-bit. Methods: bicubic, medsr (``frames-x4``, one
frame at a time, trained for bicubic LR), medsr-mf (``frames-x4-mf``, frames t-2..t+2 as
channels, :mod:`medsr.inference.multiframe`) and medsr-mf-centre (the same network with every
neighbour replaced by the centre frame: what its neighbours add). Scores averaged over
the 9 frames. Skipped when ``frames-x4-mf`` is not installed.

Microscopy: the held-out rows 440..659 of scikit-image ``cell`` (220 x 548) taken as one
YZ plane of a stack (Z = columns); LR = the ``microscopy-axial`` degradation at z x4
(Gaussian axial PSF FWHM 4 voxels, decimation, Poisson-Gaussian noise, seed 0). Methods
as above through :func:`medsr.adapters.microscopy.super_resolve_stack` (1/99.8 percentile
normalisation); PSNR/SSIM against the HR plane (range 255), 8 z-pixels shaved at both
ends.

    python pipelines/benchmark_quality_frames.py [--json out.json] [--markdown out.md]
                                                 [--frames-model CHECKPOINT] [--no-photo-set]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frames_data  # noqa: E402

from medsr.adapters import kind_of  # noqa: E402
from medsr.adapters.colour import luma  # noqa: E402
from medsr.degrade import Degradation, degrade_volume, load_preset  # noqa: E402
from medsr.geometry import plan_grid  # noqa: E402
from medsr.inference.resolvers import default_model_for  # noqa: E402
from medsr.io.dtype import cast_like  # noqa: E402
from medsr.pipeline import super_resolve_volume  # noqa: E402
from medsr.volume import Volume  # noqa: E402

METHODS = ("bicubic", "lanczos", "medsr")
SHAVE = 4


def _sr(method: str, vol: Volume, plan, model: str | None) -> Volume:
    """``vol`` super-resolved onto ``plan`` by ``method`` through the runner of ``medsr
    infer`` (:func:`super_resolve_volume`: frames through Y with bicubic chroma, stacks
    per channel with percentile normalisation, outputs clipped at 0)."""
    if method == "medsr":
        if model is None:
            raise SystemExit("no shipped model for this case: run pipelines/train_frames.py "
                             "and pipelines/train_microscopy.py first")
        return super_resolve_volume(vol, plan, model=model, device="cpu",
                                    progress=False).volume
    return super_resolve_volume(vol, plan, method={"bicubic": "catmull-rom"}.get(method, method),
                                progress=False).volume


def _lr_frames(hr: np.ndarray, noise: float, seed: int, stack: bool = False,
               downsample: str = "bicubic") -> Volume:
    """uint8 HR (H, W[, 3]) -> uint8 LR Volume (H/4, W/4, 1[, 3]); with ``stack`` the HR
    is already (H, W, T[, 3])."""
    data = hr.astype(np.float32) if stack else hr.astype(np.float32)[:, :, None]
    d = Degradation.from_dict({"scale": [4, 4, 1], "profile": "none",
                               "downsample": downsample, "noise": "none"})
    d.set_random_state(seed)
    lr = degrade_volume(Volume(data, np.eye(4), {"format": "image"}), d).data
    if noise:
        lr = lr + np.random.default_rng(seed).normal(0, noise * 255, lr.shape)
    return Volume(cast_like(lr, np.dtype("uint8")), np.eye(4), {"format": "image"})


def _scores_frames(hr: np.ndarray, sr: np.ndarray) -> dict[str, float]:
    s = (slice(SHAVE, -SHAVE), slice(SHAVE, -SHAVE))
    yh, ys = luma(hr)[s], luma(sr)[s]
    out = {"psnr_y": sk_psnr(yh, ys, data_range=255),
           "ssim_y": sk_ssim(yh, ys, data_range=255, win_size=7)}
    if hr.ndim == 3:
        out["psnr_rgb"] = sk_psnr(hr[s].astype(float), sr[s].astype(float), data_range=255)
    return out


def _score_image(img: np.ndarray, noise: float, seed: int, model: str | None
                 ) -> dict[str, dict[str, float]]:
    """One uint8 picture (cropped to a multiple of 4) degraded and super-resolved by every
    method: scores and wall seconds per method."""
    h, w = (img.shape[0] // 4) * 4, (img.shape[1] // 4) * 4
    hr = img[:h, :w]
    lr = _lr_frames(hr, noise, seed=seed)
    plan = plan_grid(lr, scale=(4, 4, 1))
    net = model or default_model_for(kind_of(lr), plan)
    per = {}
    for m in METHODS:
        t = time.perf_counter()
        out = _sr(m, lr, plan, net).data[:, :, 0]
        per[m] = {**_scores_frames(hr, out), "seconds": time.perf_counter() - t}
    return per


def photo_set_case(noise: float, model: str | None = None) -> dict:
    """The held-out photo set: per image scores and the gain of medsr over bicubic on Y
    (mean, median, min, max, images gaining >= 1 dB)."""
    per = {name: _score_image(frames_data.natural(name), noise, 1000 + i, model)
           for i, name in enumerate(frames_data.HELDOUT_PHOTOS)}
    gain = np.array([p["medsr"]["psnr_y"] - p["bicubic"]["psnr_y"] for p in per.values()])
    summary = {"images": int(gain.size), "mean_gain_y": float(gain.mean()),
               "median_gain_y": float(np.median(gain)), "min_gain_y": float(gain.min()),
               "max_gain_y": float(gain.max()), "at_least_1db": int((gain >= 1.0).sum()),
               **{f"mean_psnr_y_{m}": float(np.mean([p[m]["psnr_y"] for p in per.values()]))
                  for m in METHODS}}
    return {"summary": summary, "images": per}


def frames_cases(noise: float, model: str | None = None
                 ) -> dict[str, dict[str, dict[str, float]]]:
    """Per held-out image (faces averaged) and method: PSNR/SSIM on Y, PSNR on RGB and the
    wall seconds of the super-resolution. ``model``: a checkpoint instead of the shipped
    frames model."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    face_scores: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for i, (name, img) in enumerate(frames_data.heldout_frames()):
        per = _score_image(img, noise, i, model)
        if name.startswith("face"):
            for m in METHODS:
                face_scores[m].append(per[m])
        else:
            results[name] = per
    results["faces (40, mean)"] = {m: {k: float(np.mean([s[k] for s in face_scores[m]]))
                                       for k in face_scores[m][0]} for m in METHODS}
    return results


def _centre_only(method: str, vol: Volume, plan, model: str | None) -> Volume:
    """:func:`_sr` of each frame alone (the frame repeated as its own neighbours)."""
    n = vol.data.shape[2]
    outs = [_sr(method, vol.with_data(np.repeat(vol.data[:, :, t:t + 1], n, axis=2)), plan,
                model).data[:, :, t] for t in range(n)]
    return vol.with_data(np.stack(outs, axis=2), affine=plan.affine_out)


def multiframe_cases(noise: float, n_frames: int = 9) -> dict[str, dict[str, dict[str, float]]]:
    """Held-out photos as synthetic moving-camera stacks: bicubic, frames-x4, frames-x4-mf."""
    from medsr import pretrained

    if not pretrained.PRETRAINED["frames-x4-mf"].available:
        return {}
    results = {}
    for i, name in enumerate(frames_data.HELDOUT_NATURAL):
        st = frames_data.shifted_stack(frames_data.natural(name), n_frames,
                                       np.random.default_rng(i))
        h, w = (st.shape[0] // 4) * 4, (st.shape[1] // 4) * 4
        hr = st[:h, :w]
        lr = _lr_frames(hr, noise, seed=100 + i, stack=True, downsample="area")
        plan = plan_grid(lr, scale=(4, 4, 1))
        per = {}
        for m, model in (("bicubic", None), ("medsr", "frames-x4"),
                         ("medsr-mf", "frames-x4-mf"), ("medsr-mf-centre", "frames-x4-mf")):
            method = "medsr" if model else "bicubic"
            run = _centre_only if m == "medsr-mf-centre" else _sr
            out = run(method, lr, plan, model).data
            scores = [_scores_frames(hr[:, :, t], out[:, :, t]) for t in range(n_frames)]
            per[m] = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        results[f"{name} ({n_frames} frames)"] = per
    return results


def microscopy_case() -> dict[str, dict[str, float]]:
    hr2d = frames_data.cell_heldout()[:, :548].astype(np.float32)   # (220, 548)
    hr = Volume(hr2d[:, None, :], np.diag([1.0, 1.0, 1.0, 1.0]), {"format": "tiff"})
    d = load_preset("microscopy-axial", scale=(1, 1, 4))
    d.set_random_state(0)
    lr = degrade_volume(hr, d)
    lr = lr.with_data(cast_like(lr.data, np.dtype("uint8")), format="tiff")
    plan = plan_grid(lr, scale=(1, 1, 4))
    model = default_model_for(kind_of(lr), plan)
    out = {}
    for m in METHODS:
        sr = _sr(m, lr, plan, model).data[:, 0, :]
        a, b = hr2d[:, 8:-8], sr[:, 8:-8].astype(np.float32)
        out[m] = {"psnr": sk_psnr(a, b, data_range=255),
                  "ssim": sk_ssim(a, b, data_range=255, win_size=7)}
    return out


def markdown(res: dict) -> str:
    lines = ["| case | image | method | PSNR Y | SSIM Y | PSNR RGB |", "|---|---|---|---|---|---|"]
    for case in ("bicubic", "bicubic+noise"):
        for img, per in res["frames"][case].items():
            for m, s in per.items():
                rgb = f"{s['psnr_rgb']:.2f}" if "psnr_rgb" in s else "-"
                lines.append(f"| frames x4, {case} | {img} | {m} | {s['psnr_y']:.2f} | "
                             f"{s['ssim_y']:.4f} | {rgb} |")
    for case in ("bicubic", "bicubic+noise"):
        for img, per in res.get("multiframe", {}).get(case, {}).items():
            for m, s in per.items():
                lines.append(f"| frames x4 multi-frame, {case} | {img} | {m} | "
                             f"{s['psnr_y']:.2f} | {s['ssim_y']:.4f} | {s['psnr_rgb']:.2f} |")
    for m, s in res["microscopy"].items():
        lines.append(f"| microscopy z x4 | cell rows 440-659 | {m} | {s['psnr']:.2f} | "
                     f"{s['ssim']:.4f} | - |")
    return "\n".join(lines) + "\n"


def photo_set_markdown(res: dict) -> str:
    """Summary lines (clean and noisy LR) and the per-image table (clean) of the photo set."""
    lines = ["", "Held-out photo set (frames x4, Y PSNR dB; gain = medsr - bicubic):", "",
             "| LR | images | bicubic (mean) | lanczos (mean) | medsr (mean) | mean gain | "
             "median gain | min / max gain | gaining >= 1 dB |", "|---" * 9 + "|"]
    for case, r in res.items():
        s = r["summary"]
        lines.append(f"| {case} | {s['images']} | {s['mean_psnr_y_bicubic']:.2f} | "
                     f"{s['mean_psnr_y_lanczos']:.2f} | {s['mean_psnr_y_medsr']:.2f} | "
                     f"{s['mean_gain_y']:+.2f} | {s['median_gain_y']:+.2f} | "
                     f"{s['min_gain_y']:+.2f} / {s['max_gain_y']:+.2f} | "
                     f"{s['at_least_1db']} of {s['images']} |")
    lines += ["", "| image (clean LR) | bicubic | lanczos | medsr | gain |", "|---" * 5 + "|"]
    for name, p in res["bicubic"]["images"].items():
        b, la, m = (p[k]["psnr_y"] for k in ("bicubic", "lanczos", "medsr"))
        lines.append(f"| {name} | {b:.2f} | {la:.2f} | {m:.2f} | {m - b:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames-model", metavar="CHECKPOINT",
                    help="benchmark this frames checkpoint instead of the shipped frames-x4")
    ap.add_argument("--no-photo-set", action="store_true",
                    help="skip the held-out photo set (frames_data.HELDOUT_PHOTOS)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fm = args.frames_model
    res = {"frames": {"bicubic": frames_cases(0.0, fm), "bicubic+noise": frames_cases(0.01, fm)},
           "multiframe": {"bicubic": multiframe_cases(0.0),
                          "bicubic+noise": multiframe_cases(0.01)},
           "microscopy": microscopy_case()}
    if not args.no_photo_set:
        if fm:
            print("note: the photo set is held out only for a model trained without "
                  "--opencv-photos / --wallpaper-photos", file=sys.stderr)
        res["photo_set"] = {"bicubic": photo_set_case(0.0, fm),
                            "bicubic+noise": photo_set_case(0.01, fm)}
    text = markdown(res)
    clean = res["frames"]["bicubic"]
    text += ("\nSeconds per image, medsr / bicubic (the whole colour path, "
             f"{args.threads} thread(s)): " + ", ".join(
                 f"{img} {per['medsr']['seconds']:.2f} / {per['bicubic']['seconds']:.2f}"
                 for img, per in clean.items()) + "\n")
    if "photo_set" in res:
        text += photo_set_markdown(res["photo_set"])
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
