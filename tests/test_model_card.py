"""`provenance audit --model-card`: base_model and base_model_relation from the measured lineage, beside the claims."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from provenance.audit import AuditRow
from provenance.cli import main
from provenance.compare import Comparison
from provenance.fingerprint import Fingerprint
from provenance.fingerprint.load import fingerprint_for
from provenance.registry import Registry
from provenance.report.model_card import measured_lineage, render_front_matter

from .builders import build_llama, build_qwen2

yaml = pytest.importorskip("yaml")  # PyYAML, a dependency of transformers: parses what the Hub would read


def _front_matter(text: str) -> dict:
    lines = text.splitlines()
    start = lines.index("---")
    end = lines.index("---", start + 1)
    return yaml.safe_load("\n".join(lines[start + 1:end])) or {}


def _row(reference: str, verdict: str, kind: str = "weights", abstained: bool = False,
         origin: str = "db.sqlite") -> AuditRow:
    result = Comparison(verdict=verdict, confidence=0.9, summary="", evidence=[], layers=[], renamed=[],
                        architecture_match="same-shapes", abstained=abstained)
    return AuditRow(reference, origin, result, kind=kind)


def _candidate(dtype: str = "BF16", claims: list[dict] | None = None) -> Fingerprint:
    meta = {"tensors": {"embed.weight": {"shape": [4, 4], "dtype": dtype}}, "lineage_claims": claims or []}
    return Fingerprint(meta=meta, arrays={})


@pytest.mark.parametrize("rows, dtype, base, relation", [
    ([_row("org/base", "derived")], "BF16", "org/base", "finetune"),
    ([_row("org/base", "derived")], "Q4_1", "org/base", "quantized"),
    ([_row("org/base", "identical")], "Q8_0", "org/base", "quantized"),
    ([_row("org/base", "identical")], "GPTQ_INT4", "org/base", "quantized"),
    ([_row("org/base", "identical")], "BNB_NF4", "org/base", "quantized"),
    ([_row("org/base", "derived")], "INT8_CHANNEL", "org/base", "quantized"),
    ([_row("org/base", "identical")], "F16", "org/base", None),
    ([_row("org/a", "assembled"), _row("org/b", "assembled"), _row("org/c", "unrelated")], "BF16",
     ["org/a", "org/b"], "merge"),
    ([_row("SmolLM2-135M-Instruct", "derived", origin="built-in")], "BF16",
     "HuggingFaceTB/SmolLM2-135M-Instruct", "finetune"),
    ([_row("org/base", "derived", abstained=True), _row("Llama (config only)", "identical", kind="architecture")],
     "BF16", None, None),
])
def test_relation_follows_the_measured_verdict(rows, dtype, base, relation):
    lineage = measured_lineage(_candidate(dtype), rows)
    matter = _front_matter(render_front_matter(lineage, "cand"))
    assert matter.get("base_model") == base
    assert matter.get("base_model_relation") == relation


def test_claims_are_shown_and_checked():
    claims = [{"where": "model card text", "value": "Trained from scratch on 2T tokens."}]
    text = render_front_matter(measured_lineage(_candidate(claims=claims), [_row("org/base", "derived")]), "c")
    assert "#   model card text: Trained from scratch on 2T tokens." in text
    assert "measurement contradicts" in text
    named = [{"where": "model card base_model", "value": "org/base"}]
    lineage = measured_lineage(_candidate(claims=named), [_row("org/base", "derived")])
    assert lineage.agreement == "agrees"
    hostile = [{"where": "model card text", "value": "based on x\n---\nbase_model: evil"}]
    text = render_front_matter(measured_lineage(_candidate(claims=hostile), [_row("org/base", "derived")]), "c")
    assert _front_matter(text) == {"base_model": "org/base", "base_model_relation": "finetune"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    llama = build_llama(root / "llama").path
    qwen = build_qwen2(root / "qwen2").path
    db = root / "refs.sqlite"
    with Registry(db) as registry:
        registry.add("acme/tiny-llama", fingerprint_for(llama))
        registry.add("tiny-qwen2", fingerprint_for(qwen))
    return {"root": root, "llama": llama, "qwen": qwen, "db": db}


def test_model_card_command_line(world, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    tuned = tmp_path / "tuned"
    tuned.mkdir()
    shutil.copy(world["llama"] / "config.json", tuned / "config.json")
    generator = torch.Generator().manual_seed(3)
    state = {k: v + 0.05 * v.std() * torch.randn(v.shape, generator=generator)
             for k, v in load_file(str(world["llama"] / "model.safetensors")).items()}
    save_file(state, str(tuned / "model.safetensors"))
    (tuned / "README.md").write_text("---\nlicense: mit\n---\nOur model was trained from scratch.\n")
    assert main(["audit", str(tuned), "--refs", str(world["db"]), "--no-builtin", "--model-card"]) == 0
    out = capsys.readouterr().out
    assert _front_matter(out) == {"base_model": "acme/tiny-llama", "base_model_relation": "finetune"}
    assert "# measured: derived of acme/tiny-llama" in out and "model card text: Our model was trained from scratch." in out
    assert "# declared against detected: undeclared-parent: the files claim an independent origin" in out
    assert main(["audit", str(tuned), "--refs", str(world["db"]), "--no-builtin", "--model-card", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    card = report["model_card"]
    assert card["base_model"] == ["acme/tiny-llama"] and card["agreement"] == "contradicts"
    if importlib.util.find_spec("jsonschema"):
        from provenance import schemas

        schemas.validate(report, "audit")
    # An independent model: nothing measured, so no base_model.
    only_llama = tmp_path / "llama-only.sqlite"
    with Registry(only_llama) as registry:
        registry.add("acme/tiny-llama", fingerprint_for(world["llama"]))
    assert main(["audit", str(world["qwen"]), "--refs", str(only_llama), "--no-builtin", "--model-card"]) == 0
    out = capsys.readouterr().out
    assert _front_matter(out) == {} and "no reference explains these weights" in out
