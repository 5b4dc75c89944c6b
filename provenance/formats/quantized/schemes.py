"""Every quantization scheme the readers know, in the order they claim stored tensors (first claim wins)."""

from __future__ import annotations

from .fp8 import Fp8Scheme
from .mxfp4 import Mxfp4Scheme
from .scheme import QuantScheme

SCHEMES: list[QuantScheme] = [
    Fp8Scheme(),
    Mxfp4Scheme(),
]
