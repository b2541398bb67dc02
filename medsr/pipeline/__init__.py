"""One pipeline for every file ``medsr infer`` takes: read -> plan -> resolve -> adapt ->
project -> write (:func:`infer_file`); :func:`super_resolve_volume` is the in-memory
runner that ``medsr eval --model`` shares with it."""

from medsr.pipeline.infer_file import infer_file, infer_file_with_sidecar, plan
from medsr.pipeline.result import InferResult
from medsr.pipeline.run import Resolved, super_resolve_volume

__all__ = ["InferResult", "Resolved", "infer_file", "infer_file_with_sidecar", "plan",
           "super_resolve_volume"]
