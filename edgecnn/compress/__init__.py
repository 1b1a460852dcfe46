"""Compression (host side): structured pruning (torch-pruning), unstructured magnitude pruning, QAT (torchao pt2e).

Importing this package registers the "pruned" structure loader, so `model_from_checkpoint`
rebuilds pruned checkpoints from their recorded layer shapes.
"""

from ..train.checkpoint import STRUCTURE_LOADERS
from .structure import KIND as _PRUNED
from .structure import rebuild_pruned, record_structure

STRUCTURE_LOADERS.setdefault(_PRUNED, rebuild_pruned)

__all__ = ["rebuild_pruned", "record_structure"]
