"""The generic comparison of stored tensors: diffusion UNets and ViTs, which no transformer role map fits.

Models are generated in tmp_path by diffusers and transformers (random
initialisation, bench/zoo/diffusion.py): a UNet of the Stable Diffusion
design and a tiny ViT, with noisy, renamed, cast and independent variants.
The null check pools the per-pair p-values of independent pairs, both from
the real pipeline (random-initialised UNets) and from matrices with the
structure of trained weights (power-law spectra in model-specific bases,
column scales shared by both models), and asks for rates near alpha.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from bench.zoo import diffusion as D
from provenance.compare import compare_fingerprints
from provenance.compare.generic import (MATCHED, compare_generic, generic_tensors, input_channel_clusters,
                                        pair_tensors)
from provenance.compare.stats import clustered_log10p
from provenance.fingerprint.load import fingerprint_for
from provenance.fingerprint.sketch import sketch_positions

pytest.importorskip("diffusers", reason="diffusers (the `test` extra) builds the UNets")

ACCUSING = {"identical", "derived", "assembled"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic")
    base, config = D.unet_state(0)
    made = {
        "unet": D.save(root / "unet", base, config, "diffusion_pytorch_model.safetensors"),
        "unet-noisy": D.save(root / "unet-noisy", D.with_noise(base, 0.10, 1), config),
        "unet-indep": D.save(root / "unet-indep", D.unet_state(7)[0], config),
        "unet-bf16": D.save(root / "unet-bf16", {k: v.to(torch.bfloat16) for k, v in base.items()}, config),
        # a change far below 1% but far above float32 rounding, stored in float32
        "unet-tiny-change": D.save(root / "unet-tiny-change", D.with_noise(base, 0.002, 3), config),
    }
    # Renamed: opaque names assigned in a shuffled order, no config.json (nothing says what the tensors are).
    names = list(base)
    random.Random(5).shuffle(names)
    made["unet-renamed"] = D.save(root / "unet-renamed", {f"p{i:04d}": base[n] for i, n in enumerate(names)}, None)
    noisy = D.with_noise(base, 0.10, 4)
    made["unet-renamed-noisy"] = D.save(root / "unet-renamed-noisy",
                                        {f"p{i:04d}": noisy[n] for i, n in enumerate(names)}, None)
    vit, vit_config = D.vit_state(0)
    made["vit"] = D.save(root / "vit", vit, vit_config)
    made["vit-noisy"] = D.save(root / "vit-noisy", D.with_noise(vit, 0.10, 1), vit_config)
    made["vit-indep"] = D.save(root / "vit-indep", D.vit_state(9)[0], vit_config)
    return {name: fingerprint_for(path) for name, path in made.items()}


def compare(models, cand, ref):
    return compare_fingerprints(models[cand], models[ref])


def test_every_unet_tensor_has_a_generic_sample(models):
    fp = models["unet"]
    view = generic_tensors(fp)
    assert view is not None and len(view) == len(fp.meta["stored_tensors"]) > 200
    assert fp.meta["generic"]["unmapped_share"] > 0.5  # convolutions: no role fits them
    from safetensors.torch import load_file

    stored = load_file(fp.meta["source"]["files"] and f"{fp.meta['source']['path']}/diffusion_pytorch_model.safetensors")
    for name in ("conv_in.weight", "mid_block.resnets.0.conv1.weight", "conv_norm_out.bias"):
        tensor = view[name]
        assert tensor.shape == tuple(stored[name].shape)
        # the sample is the stored values at the shape-seeded positions of the layer engine's sketches
        expected = stored[name].reshape(-1)[torch.from_numpy(sketch_positions(tensor.shape))].double().numpy()
        assert np.array_equal(tensor.sample, expected)


def test_noisy_unet_is_derived_by_the_generic_path(models):
    result = compare(models, "unet-noisy", "unet")
    assert result.verdict == "derived", result.summary
    assert result.layers == []  # no layer grouping involved
    strongest = next(e for e in result.evidence if e.signal.startswith("generic tensor pairs (clustered"))
    assert strongest.log10p < -12
    share = next(e for e in result.evidence if e.signal == "generic tensor pairs matched")
    assert share.value >= 0.5


def test_independent_unet_is_not_accused(models):
    result = compare(models, "unet-indep", "unet")
    assert result.verdict == "same-architecture", result.summary
    assert not result.abstained
    strongest = next(e for e in result.evidence if e.signal.startswith("generic tensor pairs (clustered"))
    assert strongest.log10p > MATCHED


def test_renamed_shuffled_unet_is_identical(models):
    # every tensor is bit-identical to one of the reference's: the names and their order are all that changed
    result = compare(models, "unet-renamed", "unet")
    assert result.verdict == "identical", result.summary
    assert len(result.renamed) > 100 and result.confidence == 1.0


def test_renamed_noisy_unet_is_derived(models):
    # partners found by shape and value (p-value times the number of same-shaped tensors)
    result = compare(models, "unet-renamed-noisy", "unet")
    assert result.verdict == "derived", result.summary


def test_identical_means_explained_by_storage(models):
    cast = compare(models, "unet-bf16", "unet")
    assert cast.verdict == "identical", cast.summary
    assert any(e.signal == "storage rounding check" for e in cast.evidence)
    # float32 both sides, 0.2% change: not storage, so not identical (and clearly related)
    changed = compare(models, "unet-tiny-change", "unet")
    assert changed.verdict == "derived", changed.summary


def test_vit_noisy_is_derived_and_independent_vit_is_not_accused(models):
    noisy = compare(models, "vit-noisy", "vit")
    assert noisy.verdict == "derived", noisy.summary
    independent = compare(models, "vit-indep", "vit")
    assert independent.verdict not in ACCUSING, independent.summary


def test_layer_engine_keeps_transformers(models, tmp_path):
    from tests.builders import build_llama

    built = build_llama(tmp_path / "llama")
    fp = fingerprint_for(built.path)
    assert compare_generic(fp, fp) is None  # a family table maps every tensor: no generic samples
    assert compare_generic(models["unet"], fp) is None  # one side has none: the layer engine decides


def _pooled_raw_log10p(fingerprints) -> list[float]:
    values = []
    for i, cand in enumerate(fingerprints):
        for ref in fingerprints[i + 1:]:
            for pair in pair_tensors(generic_tensors(cand), generic_tensors(ref)):
                x, y = pair.cand.sample, pair.ref.sample
                if np.ptp(x) == 0 or np.ptp(y) == 0 or x.size < 16:
                    continue
                values.append(clustered_log10p(x, y, input_channel_clusters(pair.cand.shape))[1])
    return values


def _not_above(rate_count: int, total: int, alpha: float) -> float:
    """One-sided binomial p of seeing this many below alpha if the true rate were alpha."""
    return stats.binomtest(rate_count, total, alpha, alternative="greater").pvalue


def test_null_p_values_of_independent_unets_are_uniform(tmp_path):
    fps = []
    for seed in (11, 12, 13):
        state, config = D.unet_state(seed)
        fps.append(fingerprint_for(D.save(tmp_path / f"u{seed}", state, config)))
    log10ps = np.array(_pooled_raw_log10p(fps))
    assert log10ps.size > 300
    for alpha in (0.05, 0.01):
        below = int(np.sum(log10ps < math.log10(alpha)))
        assert _not_above(below, log10ps.size, alpha) > 1e-3, (alpha, below, log10ps.size)
    assert log10ps.min() > -4.5


def _structured_sample(rng: np.random.Generator, shape: tuple[int, ...], positions: np.ndarray,
                       column_scale: np.ndarray, rank: int = 24) -> np.ndarray:
    """The sampled values of a weight with the structure of trained ones: a power-law spectrum in random
    (model-specific) directions, heavy-tailed noise, and per-input-channel scales shared by every model
    (a few of them massive). Only the sampled positions are computed."""
    rows, cols = shape[0], math.prod(shape[1:])
    r, c = positions // cols, positions % cols
    left = rng.standard_normal((rows, rank)) / math.sqrt(rows)
    right = rng.standard_normal((rank, cols)) / math.sqrt(cols)
    spectrum = np.arange(1, rank + 1) ** -1.0
    low_rank = np.einsum("pk,k,pk->p", left[r], spectrum, right[:, c].T)
    heavy = 0.02 * rng.standard_t(3, size=positions.size) / math.sqrt(cols)
    channel = c // math.prod(shape[2:])
    return (low_rank + heavy) * column_scale[channel]


def test_null_p_values_under_trained_like_structure_are_uniform():
    rng = np.random.default_rng(0)
    log10ps = []
    for shape in [(128, 96), (96, 64, 3, 3), (256, 64)]:
        positions = sketch_positions(shape)
        clusters = input_channel_clusters(shape)
        shared = np.exp(rng.standard_normal(shape[1]))  # shared by both models
        shared[:3] *= 20.0  # a few massive input channels
        for _ in range(400):
            a = _structured_sample(rng, shape, positions, shared)
            b = _structured_sample(rng, shape, positions, shared)
            log10ps.append(clustered_log10p(a, b, clusters)[1])
    log10ps = np.array(log10ps)
    for alpha in (0.05, 0.01, 0.001):
        below = int(np.sum(log10ps < math.log10(alpha)))
        assert _not_above(below, log10ps.size, alpha) > 1e-3, (alpha, below, log10ps.size)
    # the p-values cover the range: independence does not mean p = 1 everywhere
    assert np.mean(log10ps < math.log10(0.5)) > 0.3


def test_a_corrupt_generic_record_fails_in_one_line(models):
    from provenance.errors import CorruptFileError
    from provenance.fingerprint.store import Fingerprint

    fp = models["unet"]
    meta = {**fp.meta, "generic": {"unmapped_share": 0.9, "tensors": {"conv_in.weight": {"shape": "big"}}}}
    with pytest.raises(CorruptFileError, match="generic tensor record"):
        compare_fingerprints(Fingerprint(meta=meta, arrays=fp.arrays), fp)
    short = dict(fp.arrays)
    short["generic/conv_in.weight"] = short["generic/conv_in.weight"][:10]
    with pytest.raises(CorruptFileError, match="generic sample"):
        compare_fingerprints(Fingerprint(meta=fp.meta, arrays=short), fp)
