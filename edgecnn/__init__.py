"""edgecnn: from a PyTorch CNN to verified, real-time inference on edge devices.

Host side (needs torch): models, data, train, compress, export.
Device side (numpy + one backend, never torch): bundle, preprocess, runtime, profile, devices.
"""

__version__ = "0.1.0"
