"""edgecnn: from a PyTorch CNN to verified, real-time inference on edge devices.

Host side (needs torch): models, data, train, compress, export.
Device side (numpy + one backend, never torch): bundle, preprocess, runtime, profile, devices.

The Python API is re-exported here lazily (PEP 562 module `__getattr__`): `import edgecnn` loads
nothing heavy, and `edgecnn.export_model` imports torch only when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "export_model": "edgecnn.export.module",
    "export_bundle": "edgecnn.export.api",
    "verify_bundle": "edgecnn.export.verify",
    "save_checkpoint": "edgecnn.train.portable",
    "load_checkpoint": "edgecnn.train.portable",
    "prune_model": "edgecnn.compress.live",
    "qat_model": "edgecnn.compress.live",
    "import_model": "edgecnn.export.importer",
    "register_model": "edgecnn.models.registry",
    "build_model": "edgecnn.models.registry",
    "list_models": "edgecnn.models.registry",
    "load_dataset": "edgecnn.data",
    "Classifier": "edgecnn.runtime.classifier",
    "EdgeCNNError": "edgecnn.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgecnn' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
