"""Applying trained networks to whole volumes: tiling, slice-wise planes, fusion."""

# choices shared by the library and the CLI (kept here, free of torch imports)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BLENDS = ("crop", "gaussian")
