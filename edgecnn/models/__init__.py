"""Model architectures and their registry (host side, needs torch)."""

from .registry import MODELS, build_model, count_macs, count_params, get_spec, input_size_for

__all__ = ["MODELS", "build_model", "count_macs", "count_params", "get_spec", "input_size_for"]
