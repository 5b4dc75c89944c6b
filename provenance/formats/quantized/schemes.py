"""Every quantization scheme the readers know, in the order they claim stored tensors (first claim wins).

compressed-tensors comes first: it reads its config's strategy for each
module (block sizes, groups) instead of inferring it from the scale's shape,
so its float8 weights are read by it rather than by the generic FP8 scheme.
"""

from __future__ import annotations

from . import awq, bitsandbytes, compressed_tensors, gptq
from .fp8 import Fp8Scheme
from .mxfp4 import Mxfp4Scheme
from .scheme import QuantScheme

SCHEMES: list[QuantScheme] = [
    compressed_tensors.SCHEME,
    Fp8Scheme(),
    Mxfp4Scheme(),
    gptq.SCHEME,
    awq.SCHEME,
    bitsandbytes.SCHEME,
]
