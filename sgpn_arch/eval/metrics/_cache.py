"""One cached instance per (metric network, weights, device): metrics run per image in loops."""

from __future__ import annotations

from typing import Callable

import torch

_NETWORKS: dict[tuple, torch.nn.Module] = {}


def cached_network(kind: str, build: Callable[[], torch.nn.Module], *key) -> torch.nn.Module:
    """``build()`` once for ``(kind, *key)``; later calls return the same network."""
    full_key = (kind, *key)
    if full_key not in _NETWORKS:
        _NETWORKS[full_key] = build()
    return _NETWORKS[full_key]


def clear_cache() -> None:
    """Forget every cached metric network (frees their memory)."""
    _NETWORKS.clear()
