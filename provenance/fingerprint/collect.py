"""What a fingerprint build collects as it reads tensors, and the steps every reading does the same way.

`Collected` holds the prelude (vocabulary, anchor tokens), then fills the
tensor records, the arrays (each named by its `Part` through
`store.array_name`, written to a spool file as made: `arrays_file.Spool`), the norm scales later matrices fold in, the stored
tensors' hashes and the set of parts actually made. A reducer (`whole.py`
for sources that read whole tensors, `row_blocks.py` for sources that read row
blocks) calls it once per canonical tensor; `build.py` turns it into a
fingerprint. Shared steps:

- `record_key` and `record`: one record per canonical tensor;
- `add_sketch`: a tensor's values at shape-seeded positions (1-D: the
  `VECTORS` part; others: `SKETCHES`);
- `add_norm`: a norm weight's scale, kept for the matrices after it;
- `add_rows`: what a matrix's rows give, from whichever rows were read: its
  row sample, the anchor tokens' rows (embedding, output head; the
  embedding's also kept as `probes` for the MLP units' anchor responses)
  and, where the source allows, the sampled `mlp.up` rows' unit signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..architectures.roles import Role, expert_role_name
from ..formats.tokenizer import Vocabulary, load_vocabulary
from ..model import Checkpoint
from .arrays_file import Spool
from .generic import GenericSketches
from .parts import PRECEDING_NORM_OF, anchor_probes, anchor_tokens, norm_scale, unit_signature
from .sketch import row_sample, row_sample_rows
from .store import Part, array_name

EXPERT_UNITS = 32  # units per expert whose signatures are kept (evenly spaced over the expert's units)


def expert_unit_rows(units: int) -> np.ndarray:
    """Which of an expert's `units` rows have their signatures kept: up to EXPERT_UNITS, evenly spaced."""
    return np.unique(np.linspace(0, units - 1, min(units, EXPERT_UNITS)).round().astype(np.int64))


@dataclass
class Collected:
    checkpoint: Checkpoint
    allowed: frozenset[Part]  # what the source lets the build make
    vocabulary: Vocabulary | None
    anchors: list[tuple[str, int]]
    gguf_metadata: dict[str, Any] | None  # a GGUF's header keys (it carries its tokenizer and lineage keys)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays: Spool = field(default_factory=Spool)  # written to a temporary file as made (`arrays_file.py`)
    norms: dict[tuple[int | None, str], torch.Tensor] = field(default_factory=dict)
    stored_hashes: dict[str, str] = field(default_factory=dict)
    unusual: dict[str, int] = field(default_factory=dict)  # record key -> count of NaN/Inf values
    made: set[Part] = field(default_factory=set)
    dtypes: dict[str, str] = field(default_factory=dict)  # stored name -> stored dtype
    generic: GenericSketches | None = None  # stored tensors no role map fits (see generic.py)
    probes: torch.Tensor | None = None  # the embedding's first anchor rows, as `parts.anchor_probes` makes them

    @classmethod
    def start(cls, checkpoint: Checkpoint, allowed: frozenset[Part]) -> "Collected":
        """The prelude: the vocabulary and its anchor tokens, nothing read from the weights yet."""
        metadata = checkpoint.metadata() if checkpoint.format == "gguf" else None
        vocabulary = load_vocabulary(checkpoint.files.tokenizer_paths, metadata, str(checkpoint.path))
        collected = cls(checkpoint, allowed, vocabulary, anchor_tokens(vocabulary) if vocabulary else [], metadata)
        collected.dtypes = {info.name: info.dtype for info in checkpoint.infos}
        collected.generic = GenericSketches(checkpoint, collected.arrays)
        return collected

    def put(self, part: Part, values: np.ndarray, *key: object) -> None:
        # spilled to the spool file at once: the build holds no array beyond the tensor it is reading
        self.arrays[array_name(part, *key)] = values
        self.made.add(part)

    def record_key(self, assignment) -> str:
        """The record's key: the canonical name, or with the stored name when two tensors share it.

        (Inferred roles whose layer is unknown, from opaque or shuffled names, can share a key.)
        """
        name = assignment.key.name
        return name if name not in self.records else f"{name}@{assignment.source}"

    def record(self, record_key: str, assignment, shape: tuple[int, ...], dtype: str | None, sha256: str | None,
               stats: dict[str, float] | None = None, nonfinite: int = 0) -> None:
        entry: dict[str, Any] = {"shape": list(shape), "dtype": dtype, "source": assignment.source,
                                 "how": assignment.how, "sha256": sha256}
        if stats is not None:
            entry["stats"] = stats
        if nonfinite:
            entry["nonfinite"] = nonfinite
            self.unusual[record_key] = nonfinite
        self.records[record_key] = entry

    def add_sketch(self, record_key: str, sketch: torch.Tensor, dims: int) -> None:
        """A tensor's float32 values at its shape's sketch positions (`sketch.sketch_positions`)."""
        self.put(Part.VECTORS if dims <= 1 else Part.SKETCHES, sketch.numpy(), record_key)

    def add_norm(self, key, values: torch.Tensor) -> None:
        """Keep a norm weight's scale (a copy, float32) for the matrices after it."""
        if values.dim() == 1 and key.role.endswith("norm") and key.param == "weight":
            scale = norm_scale(values.to(torch.float32).clone(), self.checkpoint.architecture.norm_type)
            self.norms[(key.layer, key.role)] = scale

    def norm_before(self, key) -> torch.Tensor | None:
        """The scale of the norm before a matrix reading the residual stream (None if none was read)."""
        return self.norms.get((key.layer, PRECEDING_NORM_OF.get(key.role, "")))

    def anchor_ids(self, rows: int) -> np.ndarray:
        """The anchor tokens' ids below `rows`, in anchor order (empty for a matrix that is not an embedding)."""
        return np.array([i for _, i in self.anchors if i < rows], dtype=np.int64)

    def wants_anchors(self, key) -> bool:
        return key.role in (Role.EMBED, Role.LM_HEAD) and key.param == "weight" and bool(self.anchors)

    def rows_wanted(self, key, shape: tuple[int, ...]) -> np.ndarray:
        """The canonical rows `add_rows` takes from a matrix (sorted): its row sample and any anchor rows."""
        wanted = row_sample_rows(shape)
        if self.wants_anchors(key):
            wanted = np.union1d(wanted, self.anchor_ids(shape[0]))
        return wanted

    def add_expert_units(self, key, units: int, take: Callable[[np.ndarray], torch.Tensor]) -> None:
        """Signatures of up to EXPERT_UNITS evenly spaced units of an expert's `mlp.up` (`take(rows)` gives
        those rows in float32): `units/<layer>/experts.<e>.mlp.up`, what `compare/experts.py` places among
        another model's MLP units (an MoE upcycled from a dense model). 2 KiB per expert."""
        if key.role != Role.MLP_UP or key.param != "weight" or key.layer is None or key.expert is None:
            return
        signature = unit_signature(take(expert_unit_rows(units)), key.role, self.norm_before(key))
        if signature is not None:
            self.put(Part.UNIT_SIGNATURES, signature, key.layer, expert_role_name(key.expert, key.role))

    def add_rows(self, key, record_key: str, shape: tuple[int, ...], take: Callable[[np.ndarray], torch.Tensor]) -> None:
        """What a matrix's rows give; `take(rows)` returns those canonical rows (in the order given) in float32."""
        sampled = take(row_sample_rows(shape))
        self.put(Part.ROW_SAMPLES, row_sample(sampled, shape), record_key)
        if self.wants_anchors(key):
            ids = self.anchor_ids(shape[0])
            rows = take(ids)
            self.put(Part.ANCHORS, rows.to(torch.float16).numpy(), key.role)
            # probes only when every anchor has a row, so that the responses' columns are the anchors in order
            if key.role == Role.EMBED and Part.ANCHOR_RESPONSES in self.allowed and len(ids) == len(self.anchors):
                self.probes = anchor_probes(rows)
        if (Part.SAMPLED_UNIT_SIGNATURES in self.allowed and key.role == Role.MLP_UP and key.param == "weight"
                and key.expert is None and key.layer is not None):
            signature = unit_signature(sampled, key.role, self.norm_before(key))
            if signature is not None:
                self.put(Part.SAMPLED_UNIT_SIGNATURES, signature, key.layer, key.role)
