"""Generic sketches: one sample of every stored tensor, for checkpoints no transformer role map fits.

A Stable Diffusion UNet, VAE or text encoder, or a ViT, has tensors that the
family tables do not know and that structural inference can only half place
(it finds "layers" where a UNet has down, mid and up blocks). The comparison
of such checkpoints (`provenance.compare.generic`) pairs *stored* tensors by
name and shape, or by shape and value when renamed, and needs for each one:

- `generic/<stored name>` (array, float32): the values at the shape-seeded
  positions of `sketch.sketch_positions` for the tensor's shape as read, so
  two tensors of one shape are sampled at the same positions; a 1-D tensor up
  to 16,384 values is kept whole. Non-finite values are stored as 0, like
  the role sketches. A conv kernel (out, in, kh, kw) is the matrix
  (out, in*kh*kw) in memory order, so the comparison derives each position's
  input channel (its cluster) from the shape alone: nothing else is stored.
- `meta["generic"]`: `unmapped_share` (share of the stored parameters that
  no role was given to) and `tensors`, per stored name: `shape`, stored
  `dtype` (for the storage-rounding check of `identical`) and `order` (its
  index in storage order; pairs are listed in it).

Which tensors: every stored tensor when the role map is incomplete (no family
table matched, or some tensor was only inferred or left unmapped), since the
comparison may then take the generic path for the whole checkpoint; nothing
when a family table mapped every tensor (the role sketches cover it). Cost:
8 KiB per tensor, e.g. 5.5 MB for an SD-1.5 UNet's 686 tensors.

The values come from the read the builder already makes of each stored
tensor to hash it (`GenericSketches.add` is called with that tensor), so no
tensor is read twice; taking 2,048 values from it costs one gather.
"""

from __future__ import annotations

from typing import Any, MutableMapping

import numpy as np
import torch

from ..model import Checkpoint
from .sketch import sketch_positions

ARRAY_PREFIX = "generic/"
META_KEY = "generic"


def role_map_is_complete(checkpoint: Checkpoint) -> bool:
    """True when a family table gave every stored tensor its role (nothing inferred, nothing unmapped)."""
    roles = checkpoint.roles
    return (roles.family is not None and not roles.unmapped
            and all(assignment.how != "inferred" for assignment in roles.assignments))


class GenericSketches:
    """Collects `generic/<name>` samples into a fingerprint's arrays as the builder reads stored tensors."""

    def __init__(self, checkpoint: Checkpoint, arrays: MutableMapping[str, np.ndarray]):
        self.arrays = arrays
        self.order = {info.name: index for index, info in enumerate(checkpoint.infos)}
        self.dtypes = {info.name: info.dtype for info in checkpoint.infos}
        unmapped = set(checkpoint.roles.unmapped)
        # A complete role map needs no generic view (and then has no unmapped tensor to sample).
        self.wanted: set[str] | None = unmapped if role_map_is_complete(checkpoint) else None
        total = sum(info.numel for info in checkpoint.infos)
        self.unmapped_share = (sum(info.numel for info in checkpoint.infos if info.name in unmapped) / total
                               if total else 0.0)
        self.records: dict[str, dict[str, Any]] = {}

    def add(self, info, stored: torch.Tensor) -> None:
        """Sample one stored tensor (as read, before any split or transpose)."""
        if self.wanted is not None and info.name not in self.wanted or info.name in self.records:
            return
        shape = tuple(int(d) for d in stored.shape)
        flat = stored.detach().reshape(-1)
        sample = flat[torch.from_numpy(sketch_positions(shape))].to(torch.float32)
        sample = torch.nan_to_num(sample, nan=0.0, posinf=0.0, neginf=0.0)
        self.arrays[f"{ARRAY_PREFIX}{info.name}"] = sample.numpy().copy()
        self.records[info.name] = {"shape": list(shape), "dtype": self.dtypes.get(info.name, info.dtype),
                                   "order": self.order.get(info.name, len(self.order))}

    def meta(self) -> dict[str, Any]:
        """The fingerprint metadata entry (`{}` when nothing was sampled, so the key is absent)."""
        if not self.records:
            return {}
        return {META_KEY: {"unmapped_share": round(self.unmapped_share, 6), "tensors": self.records}}
