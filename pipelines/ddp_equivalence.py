"""How far two torchrun processes are from one process, over a whole training run.

Trains one config three times on this machine's CPUs (gloo for the two-process run):
  * one process, as configured;
  * one process with ``train.micro_batches: 2`` (each step's batch in two halves);
  * ``torchrun --nproc_per_node 2`` (each process takes half the global batch).
Prints, for each single-process run against the two-process run: whether the last
checkpoint and metrics.csv are byte-identical, the largest parameter difference, and
the final validation PSNR / SSIM of each run (docs/scaling.md quotes this output).

    python pipelines/ddp_equivalence.py [CONFIG] [--out DIR]    # default configs/smoke.yaml
"""

from __future__ import annotations

import argparse
import csv
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(config: Path, run: Path, *extra: str, processes: int = 1) -> None:
    cmd = [sys.executable, "-m", "medsr", "train", str(config), "--run-dir", str(run),
           "--no-progress", *extra]
    if processes > 1:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        cmd = [torchrun, "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *cmd[1:]]
    print("$", " ".join(cmd[-8:]) if processes == 1 else " ".join(cmd[:6]), "...", flush=True)
    subprocess.run(cmd, check=True, capture_output=True)


def _last_val(run: Path) -> tuple[float, float]:
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["val_psnr"]]
    return float(rows[-1]["val_psnr"]), float(rows[-1]["val_ssim"])


def compare(a: Path, b: Path) -> dict:
    """Byte identity of the last checkpoint and metrics, and the largest parameter gap."""
    ta = load_file(str(a / "checkpoints" / "last.safetensors"))
    tb = load_file(str(b / "checkpoints" / "last.safetensors"))
    gap = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
    same = all((a / n).read_bytes() == (b / n).read_bytes()
               for n in ("checkpoints/last.safetensors", "metrics.csv"))
    return {"identical": same, "max_param_diff": gap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "smoke.yaml"))
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="medsr-ddp-"))
    config = Path(args.config).resolve()
    _train(config, out / "two", processes=2)
    _train(config, out / "one")
    _train(config, out / "one_chunked", "--set", "train.micro_batches=2")
    print(f"config: {config.name}, torch {torch.__version__}")
    print(f"{'run':<34} {'vs two processes':<44} {'val PSNR':>9} {'val SSIM':>9}")
    for name, label in (("two", "torchrun, 2 processes"), ("one", "1 process"),
                        ("one_chunked", "1 process, micro_batches: 2")):
        psnr, ssim = _last_val(out / name)
        if name == "two":
            how = "-"
        else:
            c = compare(out / name, out / "two")
            how = ("byte-identical" if c["identical"]
                   else f"differs: max |param diff| {c['max_param_diff']:.3g}")
        print(f"{label:<34} {how:<44} {psnr:9.3f} {ssim:9.4f}")


if __name__ == "__main__":
    main()
