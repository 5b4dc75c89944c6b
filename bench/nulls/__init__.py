"""Null calibration suite: independent checkpoints with the structure of trained LLMs.

`models.py` writes seeded, independent Hugging Face style checkpoints
(power-law spectra in model-specific bases, massive residual dimensions,
non-uniform norms, GQA, LayerNorm and RMSNorm families, stand-ins built from
the real SmolLM2 and MiniLM statistics in `real_stats.py`); `draws.py`
collects every decisive signal's p-values for one independent pair;
`python bench/nulls.py` runs the whole suite and writes the tables.
"""
