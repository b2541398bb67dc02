"""Evaluation and prediction engines (moving to medsr.evaluation); training is medsr.training,
checkpoints medsr.models.checkpoint."""
