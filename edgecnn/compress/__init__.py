"""Compression (host side): structured pruning (torch-pruning), unstructured magnitude pruning, QAT (torchao pt2e).

Importing this package registers the "pruned" structure loader, so `model_from_checkpoint`
rebuilds pruned checkpoints from their recorded layer shapes.
"""

try:
    from ..train.checkpoint import STRUCTURE_LOADERS
    from .structure import KIND as _PRUNED
    from .structure import rebuild_pruned, record_structure

    STRUCTURE_LOADERS.setdefault(_PRUNED, rebuild_pruned)
except ImportError as _e:  # torch absent (a device install): `edgecnn run` must still start
    if _e.name is None or _e.name.split(".")[0] != "torch":
        raise

__all__ = ["rebuild_pruned", "record_structure"]
