"""Set-up memory of self-supervised training pairs against the number of kernels.

``PairSampler`` keeps one blurred copy of each pair source per kernel (the blind
default has six: two families at 0.8, 1 and 1.25x their estimated widths,
``medsr.selfsup.blind.BLIND_SPREAD``). This builds a sampler on a random float32 volume
with each number of kernels, each in a fresh process (peak RSS only grows), and prints
the growth of the peak resident memory over the set-up, also as a multiple of the
volume's size.

    python pipelines/selfsup_memory.py --shape 256,256,50 --k 4 --kernels 2,6
Results: docs/self-supervised.md, "Spread over the estimate's error".
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys


def one(shape: tuple[int, ...], k: int, n: int) -> None:
    """Build one sampler with ``n`` kernels (thick axis last) and print its memory."""
    import numpy as np

    from medsr.selfsup.pairs import PairSampler

    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    kernels = [np.ones(k) / k + 1e-3 * i for i in range(n)]  # distinct, k-voxel boxes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    sampler = PairSampler(data, (0, 1), 2, kernels, k)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(f"{n} kernels, {len(sampler.sources)} pair sources: peak RSS +{grown / 2**20:.0f} "
          f"MiB, {grown / data.nbytes:.1f}x the volume ({data.nbytes / 2**20:.1f} MiB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="256,256,50", help="volume shape, thick axis last")
    ap.add_argument("--k", type=int, default=4, help="the through-plane factor")
    ap.add_argument("--kernels", default="2,6", help="numbers of kernels to compare")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.one is not None:
        one(shape, args.k, args.one)
        return 0
    for n in args.kernels.split(","):
        subprocess.run([sys.executable, __file__, "--shape", args.shape, "--k", str(args.k),
                        "--one", n], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
