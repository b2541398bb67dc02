"""Parameters, training-step and CPU inference time of candidate default architectures.

One CPU thread, in-plane x2: a training step (batch 16, 48 x 48 HR patches, Adam) and
the inference of the held-out CT's 108 slices (128 x 124 -> 256 x 248; a quarter timed,
x 4). Output: one JSON line per candidate (docs/benchmarks/default_sizes.md).

    python pipelines/arch_speed.py
"""

import json
import time

import torch

from medsr import models

torch.set_num_threads(1)
C = [("sp_vdsr 10x32 (current)", "sp_vdsr", dict(depth=10, features=32)),
     ("sp_vdsr 10x48", "sp_vdsr", dict(depth=10, features=48)),
     ("sp_vdsr 16x64", "sp_vdsr", dict(depth=16, features=64)),
     ("edsr 8x48", "edsr", dict(n_blocks=8, features=48, interpolation="lanczos")),
     ("edsr 16x64", "edsr", dict(n_blocks=16, features=64, interpolation="lanczos")),
     ("rcan 2x4x32", "rcan", dict(n_groups=2, n_blocks=4, features=32, interpolation="lanczos"))]
rows = []
for label, name, hp in C:
    m = models.create(name, spatial_dims=2, scale=(2, 2), in_channels=1, out_channels=1, **hp)
    n = sum(p.numel() for p in m.parameters())
    opt = torch.optim.Adam(m.parameters())
    x, y = torch.rand(16, 1, 24, 24), torch.rand(16, 1, 48, 48)
    ts = []
    for _ in range(4):
        t = time.perf_counter()
        opt.zero_grad()
        (m(x) - y).abs().mean().backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    m.eval()
    with torch.no_grad():
        xi = torch.rand(27, 1, 128, 124)  # a quarter of the CT's 108 slices, in-plane x2
        t = time.perf_counter()
        m(xi)
        ti = (time.perf_counter() - t) * 4
    rows.append({"model": label, "params": n, "train_step_s": min(ts[1:]), "infer_ct_x2_s": ti})
    print(json.dumps(rows[-1]), flush=True)
