"""medsr self-supervised SR against ECLARE (the reference tool) at equal wall time.

ECLARE (``pip install eclare``; Remedios et al.) pins scipy 1.11.4 and wants torch, so it
gets its own virtual environment, created by this script outside CI under
``~/.cache/medsr-eclare`` (``--venv``). PyPI's torch wheel for Linux drags in several GB
of CUDA libraries, so the venv borrows this interpreter's (CPU) torch through a ``.pth``
shim of symlinks instead; ECLARE and radifox-utils are installed with ``--no-deps`` and
their other requirements explicitly.

For each case the HR volume (the held-out posterior block of MNI152 at 1 mm, as in
``benchmark_selfsup.py``) gets thick slices simulated exactly as there
(``benchmark_selfsup.thick_slices``: profile FWHM / width = k mm, integrated around each
slice centre) and written as NIfTI.
ECLARE runs first with the true slice profile and ``--n-patches`` (default 12,800 = 100
steps of batch 128, the cut the issue measured at ~10.5 minutes on this machine); its
wall time T, process start to finish, is then the budget medsr gets
(``super_resolve_self_supervised(budget_s=T)``). Prints case, method, PSNR, SSIM,
seconds. ``--threads N`` gives both the same number of CPU threads (ECLARE through
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in its environment, medsr through
``torch.set_num_threads``). ECLARE's output and wall time are kept in the case's work
folder; ``--reuse-eclare`` takes them from there instead of running ECLARE again (same
LR volume, same settings), e.g. to re-run medsr after a change. Long: run by hand, never
in CI.

    python pipelines/compare_eclare.py --threads 1 --out docs/benchmarks/eclare.txt
    python pipelines/compare_eclare.py --cases mni-gauss-x4 mni-rect-x4 --n-patches 6400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_selfsup import CASES, load_image, run_cubic, score, thick_slices  # noqa: E402

ECLARE = "eclare==1.0.1"
NO_DEPS = [ECLARE, "radifox-utils==1.0.3"]
DEPS = ["numpy<2", "scipy==1.11.4", "nibabel", "tqdm", "matplotlib", "exceptiongroup",
        "tomli", "sigpy-lite", "transforms3d"]
# torch and its pure-python requirements, borrowed from this interpreter
TORCH_PACKAGES = ["torch", "torchgen", "functorch", "filelock", "fsspec", "jinja2",
                  "markupsafe", "networkx", "sympy", "mpmath", "typing_extensions"]


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kw)


def ensure_venv(root: Path) -> Path:
    """Create (once) the ECLARE venv; returns its ``run-eclare`` executable."""
    venv = root / "venv"
    exe = venv / "bin" / "run-eclare"
    if exe.is_file():
        return exe
    root.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run([*pip, *DEPS])
    run([*pip, "--no-deps", *NO_DEPS])
    shim = root / "torch-shim"
    shim.mkdir(exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for name in TORCH_PACKAGES:
        for src in site.glob(f"{name}*"):
            if src.name.startswith(name) and (src.is_dir() or src.suffix == ".py"):
                dst = shim / src.name
                if not dst.exists():
                    dst.symlink_to(src)
    vsite = next((venv / "lib").glob("python3*/site-packages"))
    (vsite / "medsr_torch_shim.pth").write_text(str(shim) + "\n")
    run([str(venv / "bin" / "python"), "-c", "import torch, scipy, eclare; "
         "print('eclare venv: torch', torch.__version__, 'scipy', scipy.__version__)"])
    return exe


def run_eclare(exe: Path, lr_path: Path, out_dir: Path, k: int, profile: str,
               n_patches: int, batch: int, threads: int | None, reuse: bool
               ) -> tuple[np.ndarray, float, str]:
    """ECLARE's output, its wall time (process start to finish) and a note."""
    import json

    import nibabel as nib

    record = out_dir / "eclare.json"
    settings = {"k": k, "profile": profile, "n_patches": n_patches, "batch": batch,
                "threads": threads}
    if reuse and record.is_file():
        rec = json.loads(record.read_text())
        out = next(out_dir.glob("*_eclare.nii*"), None)
        if rec.get("settings") == settings and out is not None:
            data = np.asarray(nib.load(str(out)).get_fdata(), dtype=np.float32)
            return data, float(rec["seconds"]), "reused from " + str(record)
        print(f"# {record} does not match these settings: running ECLARE", file=sys.stderr)
    for old in out_dir.glob("*_eclare.nii*"):
        old.unlink()
    env = dict(os.environ)
    if threads:
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                              "OPENBLAS_NUM_THREADS")})

    cmd = [str(exe), "--in-fpath", str(lr_path), "--out-dir", str(out_dir),
           "--relative-slice-thickness", str(float(k)),
           "--relative-slice-profile-type", profile, "--n-patches", str(n_patches),
           "--batch-size", str(batch), "--gpu-id", "-1"]
    t = time.perf_counter()
    with open(out_dir / "eclare.log", "w") as log:
        run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - t
    record.write_text(json.dumps({"settings": settings, "seconds": seconds}) + "\n")
    out = next(out_dir.glob("*_eclare.nii*"))
    return np.asarray(nib.load(str(out)).get_fdata(), dtype=np.float32), seconds, ""


def common(hr: np.ndarray, sr: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Same-shape views (ECLARE may round the through-plane length differently)."""
    if hr.shape == sr.shape:
        return hr, sr, ""
    sl = tuple(slice(0, min(a, b)) for a, b in zip(hr.shape, sr.shape))
    return hr[sl], sr[sl], f"shape {sr.shape} vs {hr.shape}: compared on the overlap"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=["mni-gauss-x4"],
                    choices=[c for c in CASES if c.startswith("mni")])
    ap.add_argument("--n-patches", type=int, default=12_800)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "medsr-eclare")
    ap.add_argument("--work", type=Path, default=None, help="where volumes go (default: "
                    "<venv>/runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=None, metavar="N",
                    help="use only a central N x N in-plane block (a quick pipeline check; "
                    "ECLARE's inference takes ~4 s per full MNI slice on this machine)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for both ECLARE and medsr (default: their own)")
    ap.add_argument("--reuse-eclare", action="store_true",
                    help="reuse ECLARE's output and time from an earlier run with the "
                    "same settings")
    ap.add_argument("--skip-medsr", action="store_true",
                    help="run ECLARE (and cubic) only, e.g. to reuse it later")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    if os.environ.get("CI"):
        print("compare_eclare.py is a long manual benchmark; not run in CI")
        return 0
    import nibabel as nib
    import torch

    from medsr.selfsup import super_resolve_self_supervised

    if args.threads:
        torch.set_num_threads(args.threads)

    exe = ensure_venv(args.venv)
    work = args.work or args.venv / "runs"
    rows = []
    for case in args.cases:
        name, axis, k, profile = CASES[case]
        image = load_image(name)
        if args.crop:
            c = [(n - args.crop) // 2 if ax != axis and n > args.crop else 0
                 for ax, n in enumerate(image.spatial_shape)]
            sl = tuple(slice(c[ax], c[ax] + args.crop) if ax != axis else slice(None)
                       for ax in range(3))
            image = image.with_data(np.ascontiguousarray(image.data[sl]))
        hr, lr = thick_slices(image, axis, k, profile)
        d = work / (case + (f"-crop{args.crop}" if args.crop else ""))
        d.mkdir(parents=True, exist_ok=True)
        lr_path = d / "lr.nii.gz"
        nib.save(nib.Nifti1Image(lr.data, lr.affine), str(lr_path))
        t = time.perf_counter()
        cub = run_cubic(lr, axis, k)
        rows.append((case, "cubic", *score(hr.data, cub), time.perf_counter() - t, ""))
        ecl, t_ecl, reused = run_eclare(exe, lr_path, d, k, profile, args.n_patches,
                                        args.batch_size, args.threads, args.reuse_eclare)
        h, e, note = common(hr.data, ecl)
        note = "; ".join(x for x in (note, reused) if x)
        rows.append((case, f"ECLARE ({args.n_patches} patches)", *score(h, e), t_ecl, note))
        if args.skip_medsr:
            continue
        t = time.perf_counter()
        sr, rep = super_resolve_self_supervised(lr, budget_s=t_ecl, profile=profile,
                                                seed=args.seed, progress=sys.stderr.isatty())
        rows.append((case, f"medsr self-sup ({t_ecl:.0f}s)", *score(hr.data, sr.data),
                     time.perf_counter() - t,
                     f"{rep['init']}; {rep['train']['steps']} steps"))
    lines = [f"threads: {args.threads or 'each tool its default'}",
             f"{'case':<14} {'method':<28} {'PSNR':>7} {'SSIM':>7} {'seconds':>8}  note"]
    for case, method, p, s, sec, note in rows:
        lines.append(f"{case:<14} {method:<28} {p:7.2f} {s:7.4f} {sec:8.1f}  {note}")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("python pipelines/compare_eclare.py " + " ".join(
            argv if argv is not None else sys.argv[1:]) + "\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
