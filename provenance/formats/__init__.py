"""Checkpoint file formats behind one interface (see `base.TensorSource`)."""

from .base import TensorInfo, TensorSource
from .checkpoint_files import CheckpointFiles, open_checkpoint_files

__all__ = ["TensorInfo", "TensorSource", "CheckpointFiles", "open_checkpoint_files"]
