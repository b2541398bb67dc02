"""medsr: super-resolution of medical and scientific images with exact geometry."""

__version__ = "0.1.0"
