"""Applying trained networks to whole volumes: tiling, slice-wise planes, fusion."""
