"""Merge shim (issue 22): evaluate.py's old import path; remove when it has moved."""
from medsr.models.checkpoint import *  # noqa: F403
from medsr.models.checkpoint import load_model  # noqa: F401
