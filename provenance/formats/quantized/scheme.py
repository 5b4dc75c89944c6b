"""The interface of a quantization scheme: find its groups of stored tensors, dequantize one group.

A quantized checkpoint stores one logical weight (say
`model.layers.0.mlp.up_proj.weight`, shape [out, in]) as several stored
tensors: packed codes plus scales, zero points, group indices. A scheme
recognises those groups among a source's tensors (with the checkpoint's
`quantization_config` from config.json when there is one) and turns one
group back into float32 values in the unquantized layout, so everything
downstream (roles, fingerprints, comparison) sees the weight the reference
holds. Stored tensors that belong to no group pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..base import TensorInfo


@dataclass(frozen=True)
class QuantizedTensor:
    """One logical weight held by several stored tensors."""

    name: str  # the name an unquantized checkpoint gives the weight, e.g. "model.layers.0.mlp.up_proj.weight"
    shape: tuple[int, ...]  # its shape once dequantized ([out, in] for a Linear weight)
    storage: str  # the storage name `compare.thresholds.STORAGE_TOLERANCE` knows it by, e.g. "GPTQ_INT4"
    parts: Mapping[str, str]  # the scheme's name for each stored tensor -> that tensor's stored name
    detail: Mapping[str, Any] | None = None  # per-weight facts the scheme needs (group size, bits, symmetric...)


class QuantScheme(Protocol):
    """One quantization scheme (a module per scheme implements it)."""

    name: str  # "fp8", "mxfp4", "gptq", "awq", "compressed-tensors", "bitsandbytes"

    def find(self, infos: Sequence[TensorInfo], quantization_config: Mapping[str, Any] | None) -> list[QuantizedTensor]:
        """The groups of stored tensors this scheme holds in `infos` ([] when none)."""
        ...

    def dequantize(self, tensor: QuantizedTensor, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The float32 values of `tensor` from its stored parts (read by the caller, keyed as in `tensor.parts`).

        Raises `ValueError` with a plain sentence when the parts do not fit
        (wrong shapes, a scale of zero where the scheme forbids it, codes out of
        range); the wrapper turns it into a `CorruptFileError` naming the file.
        """
        ...


class RowScheme(QuantScheme, Protocol):
    """A scheme that can dequantize some rows of a weight from some rows of its parts (optional).

    Remote row sampling then fetches only those rows of the codes and of the
    scales; a scheme without these methods is read whole and the rows picked.
    """

    def row_parts(self, tensor: QuantizedTensor, rows: np.ndarray) -> dict[str, np.ndarray | None] | None:
        """For each part, the rows to read of it viewed as (-1, last dimension), in the order
        `dequantize_rows` expects them (None: read that part whole); None when rows cannot be read apart."""
        ...

    def dequantize_rows(self, tensor: QuantizedTensor, rows: np.ndarray, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The float32 values of `rows` of `tensor` viewed as (-1, last dimension), in the order given,
        from the parts read as `row_parts` asked. Raises `ValueError` as `dequantize` does."""
        ...
