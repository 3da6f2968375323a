"""mtatune: Multi-Token Attention kernels, generated and tuned by mtatune,
for Python.

    from mtatune.torch import mta_attention, MTAttention

mtatune.torch needs PyTorch; this package itself only loads the C library
(libmtatune.so, see mtatune._lib for where it is looked for).
"""
from ._lib import MTAError, library_path, loaded_path

__version__ = "0.1.0"
__all__ = ["MTAError", "library_path", "loaded_path", "__version__"]
