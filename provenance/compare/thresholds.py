"""Every threshold the comparison decides with, in one place, each with its reason.

p-values are handled as log10 p. Each bar applies to a p-value that is
already corrected for every comparison it was chosen from (the reference
layers a candidate layer was matched against, the candidate layers, the
layers tested for permuted units), so picking the best of many never
manufactures strength. The null calibration suite (`python bench/nulls.py`)
measures the rates behind these numbers on independent pairs that carry the
structure of trained LLMs; docs/accuracy.md publishes its table.
"""

from __future__ import annotations

# A candidate layer is *matched* to a reference layer when its best p-value,
# Bonferroni-corrected over the reference layers it was chosen from, is below
# 1e-6. Reason: a layer map is read layer by layer, and a model has at most a
# few hundred layers, so under a calibrated null an independent pair shows a
# spurious matched layer with probability below about 1e-4; matched layers
# only shape the map and the verdict's kind, never an accusation on their own.
LAYER_MATCH_LOG10P = -6.0

# Every accusing verdict (identical, derived, assembled) needs one decisive
# signal below 1e-12 after correction for the comparisons it was chosen from.
# Reason: the null suite checks tail rates down to 1e-4 with 10^4 draws, and
# the tests' far tails rest on approximations (self-normalised sums referred to
# Student's t); the bar keeps eight orders of magnitude between what is
# measured and what accuses, enough for 10^4 references times 10^4 audits
# with an expected false accusation count below 1e-4 under a correct null.
# Copies and derivatives reach 1e-300 on 135M-parameter models, so the
# margin costs no power where it matters.
ACCUSATION_LOG10P = -12.0

# A layer "shows no relation" to the reference when its best p-value is above
# 1e-2 (uncorrected: a lenient reading of "nothing there"). Used only to say,
# after the accusation bar is met, that part of a model comes from elsewhere.
NULL_LIKE_LOG10P = -2.0

# `assembled` needs a coherent map of at least this many matched layers, each
# below the accusation bar: one strong layer alone never makes a second source
# (a single spurious or transplanted layer is not an assembly).
ASSEMBLED_MIN_LAYERS = 2

# `derived` through the layers needs at least this share of the candidate's
# layers matched; fewer matched layers with no null-like remainder is weak or
# conflicting evidence, and the tool abstains rather than accuse.
DERIVED_MIN_LAYER_SHARE = 0.5

# Non-transformer checkpoints (`generic.py`, stored tensors paired by name or shape): `derived` needs at least
# this many pairs matched (and DERIVED_MIN_LAYER_SHARE of the testable ones), so one matched tensor never
# accuses; a pair below 1e-2 leans towards dependence and lowers a no-relation verdict's confidence only; and
# the architecture matches when half the tensors pair by name.
GENERIC_MIN_MATCHED = 2
GENERIC_LEANING_LOG10P = -2.0
GENERIC_SAME_ARCHITECTURE_SHARE = 0.5

# Relative RMS difference that storage alone explains, by stored dtype (safetensors,
# PyTorch and GGUF names). Reason for each: float32 rounds at 2^-24 (6e-8
# relative), float16 at 2^-11 and bfloat16 at 2^-8 (half an ulp at most, about
# ulp/sqrt(12) RMS: 1.4e-4 and 1.1e-3); the bars allow 3x that for the two
# roundings of a norm folded into a matrix. Block quantization rounds to a
# step of (block max)/(levels): the RMS error relative to the values'
# RMS is about (max/rms)/(levels*sqrt(12)), with max/rms near 3 for blocks of
# 32 trained weights; the bars allow 2x that. A difference above the bar of
# *both* sides' storage is a change of the weights (`derived`), however small.
# Scaled FP8 and MXFP4 (the storage names of `formats/quantized/`): the scale
# (per tensor, output row or block) only moves the range, so the rounding is
# the format's own: E4M3 keeps 3 mantissa bits (relative step 2^-3, about
# 0.027 RMS measured on Gaussian and on all-MiniLM-L6-v2's weights, at any
# granularity), E5M2 keeps 2 (2^-2, about 0.053), and the bars are the
# unscaled FP8 ones (2.2x). MXFP4 rounds each value to an E2M1 level
# {0, 0.5, 1, 1.5, 2, 3, 4, 6} times its block's power of two (1 mantissa
# bit: relative step 2^-1, and the block's largest value lands anywhere in
# [4, 8) of the scale, clamped at 6): 0.115 RMS on Gaussian blocks of 32,
# 0.115-0.13 on MiniLM's weights; the bar allows 2x.
# Integer codes with a scale (and zero point) per group of inputs, row or
# tensor (GPTQ_*, AWQ_INT4, compressed-tensors' INT*; `formats/quantized/`):
# the round-to-nearest error measured with compressed-tensors' quantizer on
# Gaussian matrices and all-MiniLM-L6-v2's (the larger, MiniLM's heavier
# tails, is the one given), groups of 128 / one scale a row / one a tensor:
# 8 bits 0.021 / 0.021 / 0.21, 4 bits 0.14 / 0.22 / 0.97, 3 bits 0.25 / 0.40,
# 2 bits 0.56 (groups of 64 to 128); the bars allow 2x (GPTQ's error
# feedback trades weight error for output error, so its weights stray
# further than round-to-nearest's; the 2x covers that, not measured here).
# bitsandbytes (BNB_*): NF4 and FP4 in blocks of 64 measured 0.098 and 0.139,
# LLM.int8's per-row absmax 0.021 (bitsandbytes' own quantizer); 2x again.
STORAGE_TOLERANCE = {
    "F64": 3e-6, "F32": 3e-6, "float64": 3e-6, "float32": 3e-6,
    "F16": 5e-4, "float16": 5e-4, "BF16": 3.5e-3, "bfloat16": 3.5e-3,
    "F8_E4M3": 0.06, "F8_E5M2": 0.12, "float8_e4m3fn": 0.06, "float8_e5m2": 0.12,
    "FP8_E4M3_TENSOR": 0.06, "FP8_E4M3_CHANNEL": 0.06, "FP8_E4M3_BLOCK": 0.06,
    "FP8_E5M2_TENSOR": 0.12, "FP8_E5M2_CHANNEL": 0.12, "FP8_E5M2_BLOCK": 0.12,
    "MXFP4": 0.26,
    "INT8": 0.045, "INT4": 0.3, "INT3": 0.5, "INT2": 1.1,
    "INT8_CHANNEL": 0.045, "INT4_CHANNEL": 0.45, "INT3_CHANNEL": 0.8, "INT2_CHANNEL": 1.5,
    "INT8_TENSOR": 0.45, "INT4_TENSOR": 2.0,
    "GPTQ_INT8": 0.045, "GPTQ_INT4": 0.3, "GPTQ_INT3": 0.5, "GPTQ_INT2": 1.1,
    "GPTQ_INT8_CHANNEL": 0.045, "GPTQ_INT4_CHANNEL": 0.45, "GPTQ_INT3_CHANNEL": 0.8, "GPTQ_INT2_CHANNEL": 1.5,
    "AWQ_INT4": 0.3,
    "BNB_NF4": 0.2, "BNB_FP4": 0.28, "BNB_INT8": 0.045,
    "Q8_0": 0.012, "Q8_1": 0.012, "Q8_K": 0.012,
    "Q6_K": 0.045,
    "Q5_0": 0.09, "Q5_1": 0.09, "Q5_K": 0.09,
    "Q4_0": 0.18, "Q4_1": 0.18, "Q4_K": 0.18, "IQ4_NL": 0.18, "IQ4_XS": 0.18,
    "Q3_K": 0.35, "IQ3_XXS": 0.35, "IQ3_S": 0.35,
    "Q2_K": 0.7, "IQ2_XXS": 0.7, "IQ2_XS": 0.7, "IQ2_S": 0.7,
}
# A stored dtype the table does not know (an integer type, a new quantization):
# float32's bar, so an unknown storage never excuses a difference.
DEFAULT_STORAGE_TOLERANCE = STORAGE_TOLERANCE["F32"]


def storage_tolerance(*dtypes: str | None) -> float:
    """The largest relative difference the given stored dtypes explain (the coarsest of them)."""
    return max((STORAGE_TOLERANCE.get(d or "", DEFAULT_STORAGE_TOLERANCE) for d in dtypes),
               default=DEFAULT_STORAGE_TOLERANCE)


# Stored formats whose values lie on a grid of their own (codes times scales): plain FP8 casts and the
# quantized safetensors schemes of `formats/quantized/` (GGUF's types are checked by `audit/quant_source.py`,
# which re-quantizes a candidate from its reference's files).
GRID_STORAGE = frozenset(name for name in STORAGE_TOLERANCE
                         if name.startswith(("F8_", "float8", "FP8_", "MXFP4", "INT", "GPTQ_", "AWQ_", "BNB_")))


def identity_tolerance(candidate: str | None, reference: str | None) -> float:
    """The relative difference that storage explains between a candidate tensor and its reference tensor.

    The rule for `identical` (how-it-decides.md, "Storage rounding"): a
    difference is excused by the rounding of the *candidate's* storage only,
    never by the reference's. So a candidate stored finer than a quantized
    reference (bf16, f16, f32 against FP8 or int4) must equal the reference's
    dequantized values within bf16's (f16's, f32's) rounding: the reference's
    values are on its grid already, and a copy of them stores them (nearly)
    exactly; a fine-tune smaller than one quantization step is a change.
    A candidate stored in the reference's own grid format (same scheme name:
    FP8 with block scales against FP8 with block scales, GPTQ int4 against
    GPTQ int4) is held to float32's rounding, not to the step: re-quantizing
    the reference's dequantized values with its scheme gives back its codes,
    so a copy has the reference's values, while a fine-tune of less than a
    step, quantized again, moves some codes by one step (within the step's
    rounding, which had made it `identical`). Two quantizations of one float
    model with different tools or scales then differ (`derived`); each is
    `identical` to the float model. A candidate stored coarser than, or on a
    different grid from, its reference keeps its own storage's bar (an int4
    copy of an FP8 model is `identical` within int4's step).
    """
    if candidate is not None and candidate == reference and candidate in GRID_STORAGE:
        return DEFAULT_STORAGE_TOLERANCE
    return storage_tolerance(candidate)


def confidence_for_accusation(strongest_log10p: float, coverage: float) -> float:
    """How firmly an accusing verdict stands: the margin below the bar times the share of the model it covers.

    margin: 0.5 at the bar, 1.0 at twice the bar's exponent (1e-24) and beyond;
    coverage: the share of the candidate's layers (or tensors) the verdict's
    evidence covers (1.0 for identity checks over the whole model).
    """
    margin = min(1.0, 0.5 + 0.5 * (ACCUSATION_LOG10P - strongest_log10p) / abs(ACCUSATION_LOG10P))
    return round(max(0.0, min(1.0, margin * max(0.0, min(1.0, coverage)))), 3)


# When no decisive weight signal could run at all (no tensor of the candidate has a reference tensor of the same
# shape), "no weight relation" rests on nothing measured: its confidence is 0, not the 1.0 a null-like p-value
# earns. The verdict then speaks of the architecture only, and the evidence says "not compared".
CONFIDENCE_NOTHING_COMPARED = 0.0


def confidence_for_no_relation(strongest_log10p: float) -> float:
    """How firmly "no weight relation" stands: 1.0 when the strongest signal is null-like (p >= 0.01),
    falling linearly to 0 at the accusation bar."""
    if strongest_log10p >= NULL_LIKE_LOG10P:
        return 1.0
    share = (strongest_log10p - ACCUSATION_LOG10P) / (NULL_LIKE_LOG10P - ACCUSATION_LOG10P)
    return round(max(0.0, min(1.0, share)), 3)
