"""The one image type every reader returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """An image with its place in the world.

    data:   array of shape (I, J, K) or, for several channels (colour, time), (I, J, K, C).
            The first three axes are the spatial voxel indices of ``affine``; a 2D image
            has K = 1.
    affine: 4x4 float64, voxel index (i, j, k) -> RAS+ millimetres, voxel centres at
            integer indices (NIfTI convention; DICOM LPS is converted on read).
    meta:   what the source said that a writer may need (format, path, original dtype,
            DICOM header template, TIFF axes ...). Readers document their keys.
    """

    data: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.data.ndim not in (3, 4):
            raise ValueError(f"data must be (I, J, K) or (I, J, K, C), got shape {self.data.shape}")

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return 1 if self.data.ndim == 3 else int(self.data.shape[3])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each index axis in mm (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def with_data(self, data: np.ndarray, affine: np.ndarray | None = None, **meta: Any) -> Volume:
        """A copy carrying new data (and optionally a new affine), metadata kept and updated."""
        new_meta = dict(self.meta)
        new_meta.update(meta)
        return replace(self, data=data, affine=self.affine if affine is None else affine,
                       meta=new_meta)
