"""Merge shim (issue 22): evaluate.py's / evaluation.py's old import path; remove after."""
from medsr.training.figures import *  # noqa: F403
from medsr.training.figures import comparison_figure, file_comparison_figure  # noqa: F401
