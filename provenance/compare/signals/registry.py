"""The one list of signals, in the order they run and report (each sees the layers the earlier ones placed)."""

from __future__ import annotations

from .anchors import AnchorEmbeddings
from .base import Signal
from .exact import ExactHashes
from .gram import GramMatrices
from .layers import LayerSketches
from .non_layer import NonLayerTensors
from .responses import AnchorResponses
from .std_curve import StdCurve
from .units import UnitMatching
from .vocabulary import VocabularyOverlap

SIGNALS: list[Signal] = [
    ExactHashes(),  # bit-identical tensors under any name
    LayerSketches(),  # the first layer map: every layer pair, one sign-flip test each
    UnitMatching(),  # unplaced layers: permuted MLP units
    GramMatrices(),  # still unplaced: a rotated residual basis
    AnchorResponses(),  # still unplaced: rotated and permuted at once
    NonLayerTensors(),  # embedding, head, final norm by id
    AnchorEmbeddings(),  # embedding rows by token string
    StdCurve(),  # screening only
    VocabularyOverlap(),  # screening only
]
