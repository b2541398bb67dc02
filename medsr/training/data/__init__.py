"""Datasets and patch samplers for training: sources, normalisation, 2D/2.5D/3D sampling."""

from medsr.training.data.dataset import (
           IndexRangeSampler,
           SRPatchDataset,
           StepShardSampler,
           load_volumes,
)
from medsr.training.data.normalise import RobustNormalise, RobustNormalised, robust_range
from medsr.training.data.sampling import SamplingSpec, draw
from medsr.training.data.sources import list_items, split_items

__all__ = ["IndexRangeSampler", "RobustNormalise", "RobustNormalised", "SRPatchDataset",
           "SamplingSpec", "StepShardSampler", "draw", "list_items", "load_volumes",
           "robust_range", "split_items"]
