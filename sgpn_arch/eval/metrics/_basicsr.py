"""Import ``basicsr.metrics`` behind the project's torchvision compatibility shim."""

from __future__ import annotations


def basicsr_metrics():
    """The ``basicsr.metrics`` module (imported lazily: basicsr is heavy to import)."""
    import basicsr_plugin.compat  # noqa: F401  (must run before the first basicsr import)
    import basicsr.metrics

    return basicsr.metrics
