"""The architecture zoo: classic SR networks in 2D and 3D behind one factory.

>>> from medsr import models
>>> net = models.create("edsr", spatial_dims=3, scale=(1, 1, 4), preset="light")
>>> net(x)  # (N, C, I, J, K) -> (N, C, I, J, 4 K)

See docs/models.md for each network, its paper and the 2D -> 3D choices.
"""

from medsr.models.complexity import count_parameters, macs_per_output_voxel, parameters_of
from medsr.models.registry import (
    NETWORKS,
    PRESETS,
    available,
    create,
    create_discriminator,
    discriminators,
)

__all__ = ["NETWORKS", "PRESETS", "available", "count_parameters", "create",
           "create_discriminator", "discriminators", "macs_per_output_voxel", "parameters_of"]
