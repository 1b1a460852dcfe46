"""Model architectures and their registry (host side, needs torch)."""

from .registry import (
    MODELS,
    ModelSpec,
    build_model,
    count_macs,
    count_params,
    get_spec,
    input_size_for,
    list_models,
    register_model,
)

__all__ = ["MODELS", "ModelSpec", "build_model", "count_macs", "count_params", "get_spec", "input_size_for",
           "list_models", "register_model"]
