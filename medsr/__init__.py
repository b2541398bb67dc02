"""medsr: super-resolution of medical and scientific images with exact geometry.

The public API (docs/api.md), imported on first use (PEP 562) so that ``import medsr``
stays cheap: :func:`read`, :func:`write`, :func:`super_resolve` and :class:`Volume`.
Internals may move behind these names.
"""

from medsr._lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["__version__", "Volume", "read", "write", "super_resolve", "UserError"]

__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    "Volume": "volume", "read": "api", "write": "api", "super_resolve": "api",
    "UserError": "errors",
})
