"""How long `refs sync` takes and how many bytes it reads, measured on a local hub with the catalog's real shapes.

Usage (from the checkout root):

    python bench/refs_sync.py                 # every default-size catalog model whose shapes are known
    python bench/refs_sync.py --only Llama-2-7B Qwen2.5-7B --json out.json

For each model of the default `refs sync` selection (up to 15B parameters)
whose published shapes are in `provenance/references/architectures.json`
(layers, hidden size, heads, KV heads, head size, MLP width, vocabulary), it
writes a LLaMA-layout bf16 safetensors checkpoint of exactly those shapes,
in shards of at most 5 GB with an index as the hub stores them, plus
config.json and a tokenizer.json of that many tokens. The files are
*sparse*: headers and norm weights are real bytes, matrices are holes that
read as zeros, so a 15 GB checkpoint takes a second and no disk. They are
served by `tests/range_server.py` as a Hugging Face-compatible hub on
127.0.0.1 (HF_ENDPOINT), and `refs sync` runs on the catalog's entries for
them into a fresh database, then once more (everything already at its
commit). Printed: per model the bytes and seconds, the totals, and the
estimate for the catalog models whose shapes are not known (scaled by
parameter count from the measured ones: bytes read per parameter, seconds
per model).

What this does not measure: the real hub's latency and bandwidth (the
local server answers in well under a millisecond), families whose tensors
are not LLaMA-layout (fused QKV, for example, changes the number of range
requests, not the bytes much), and side files beyond config and tokenizer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.range_server import RangeServer  # noqa: E402

SHARD_BYTES = 5_000_000_000


def shapes_by_repo() -> dict[str, dict]:
    data = json.loads((ROOT / "provenance" / "references" / "architectures.json").read_text())
    out = {}
    for ref in data["references"]:
        out[ref["config"].lower()] = ref
        out[ref["config"].lower().removesuffix("-base") + "-base"] = ref  # chatglm3-6b vs chatglm3-6b-base
    return out


def llama_tensors(shape: dict) -> list[tuple[str, tuple[int, ...]]]:
    hidden, inter, vocab = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    q_rows = shape["num_heads"] * shape["head_dim"]
    kv_rows = shape["num_kv_heads"] * shape["head_dim"]
    tensors = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(shape["num_layers"]):
        p = f"model.layers.{i}."
        tensors += [(p + "input_layernorm.weight", (hidden,)), (p + "self_attn.q_proj.weight", (q_rows, hidden)),
                    (p + "self_attn.k_proj.weight", (kv_rows, hidden)), (p + "self_attn.v_proj.weight", (kv_rows, hidden)),
                    (p + "self_attn.o_proj.weight", (hidden, q_rows)), (p + "post_attention_layernorm.weight", (hidden,)),
                    (p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                    (p + "mlp.down_proj.weight", (hidden, inter))]
    return tensors + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def write_sparse_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], seed: int) -> int:
    """bf16 safetensors with real header and norm values, matrices left as holes (zeros); returns its size."""
    import numpy as np

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    start = 8 + len(raw)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(start + offset)
        for name, shape in tensors:
            if len(shape) == 1:  # bf16 = the high half of float32
                values = (1.0 + 0.1 * rng.standard_normal(shape[0])).astype(np.float32)
                handle.seek(start + header[name]["data_offsets"][0])
                handle.write((values.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    return start + offset


def write_repo(folder: Path, shape: dict, seed: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = llama_tensors(shape)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, dims in tensors:
        nbytes = 2
        for d in dims:
            nbytes *= d
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, dims))
        size += nbytes
    total, weight_map = 0, {}
    for index, part in enumerate(shards, start=1):
        file = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        total += write_sparse_safetensors(folder / file, part, seed + index)
        weight_map.update({name: file for name, _ in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": shape["hidden_size"],
              "intermediate_size": shape["intermediate_size"], "num_hidden_layers": shape["num_layers"],
              "num_attention_heads": shape["num_heads"], "num_key_value_heads": shape["num_kv_heads"],
              "head_dim": shape["head_dim"], "vocab_size": shape["vocab_size"], "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config))
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < shape["vocab_size"]:
        words.add("Ġ" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))))
    vocab = {token: index for index, token in enumerate(sorted(words))}
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "added_tokens": [], "model": {
        "type": "BPE", "vocab": vocab, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these catalog names only")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    from provenance.commands.refs_sync import run_sync_command, sync
    from provenance.registry.catalog import load_catalog, select
    from provenance.registry import Registry

    chosen, _ = select(load_catalog(), args.only, None, False)
    known = shapes_by_repo()
    measured = [m for m in chosen if m.repo.lower() in known]
    estimated = [m for m in chosen if m.repo.lower() not in known]
    work = Path(tempfile.mkdtemp(prefix="refs-sync-bench-", dir=os.environ.get("TMPDIR", "/tmp")))
    results: dict = {"models": {}}
    try:
        start = time.perf_counter()
        sizes = {}
        for number, model in enumerate(measured):
            sizes[model.name] = write_repo(work / "repos" / model.name, known[model.repo.lower()], number * 100)
        print(f"wrote {len(measured)} sparse checkpoints, {sum(sizes.values()) / 1e9:.0f} GB apparent, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        catalog = {"schema": "provenance.catalog/1", "models": [
            {"name": m.name, "repo": m.repo, "revision": "main", "revision_kind": "branch", "params": m.params,
             "bytes": sizes[m.name], "family": m.family} for m in measured]}
        (work / "catalog.json").write_text(json.dumps(catalog))
        os.environ["HF_HUB_CACHE"] = str(work / "hf-cache")
        from huggingface_hub import constants

        constants.HF_HUB_CACHE = str(work / "hf-cache")
        with RangeServer(work / "repos") as server:
            for model in measured:
                server.add_repo(model.repo, work / "repos" / model.name,
                                commit=hashlib.sha1(model.name.encode()).hexdigest())
            os.environ["HF_ENDPOINT"] = server.endpoint
            with Registry(work / "refs.sqlite") as registry:
                start = time.perf_counter()
                code = run_sync_command(registry, str(work / "catalog.json"), None, None, True, False)
                first = time.perf_counter() - start
                served = server.served()
                server.reset_counts()
                start = time.perf_counter()
                again = sync(registry, load_catalog(work / "catalog.json"))
                second = time.perf_counter() - start
                for entry in registry.entries():
                    fp_meta = registry.fingerprint(entry.name).meta["remote"]
                    results["models"][entry.name] = {"checkpoint_bytes": fp_meta["checkpoint_bytes"],
                                                     "bytes_read": fp_meta["bytes_read"],
                                                     "requests": fp_meta["tensor_requests"]}
        read = sum(r["bytes_read"] for r in results["models"].values())
        checkpoint = sum(r["checkpoint_bytes"] for r in results["models"].values())
        params = sum(m.params for m in measured)
        per_param = read / params
        per_model = first / max(len(measured), 1)
        est_bytes = sum(m.params for m in estimated) * per_param
        est_seconds = per_model * len(estimated)
        results.update({"synced": len(results["models"]), "exit_code": code, "seconds": round(first, 1),
                        "bytes_read": read, "bytes_served_all_files": served, "checkpoint_bytes": checkpoint,
                        "second_run_seconds": round(second, 2), "second_run_up_to_date": len(again.up_to_date),
                        "estimated_models": [m.name for m in estimated], "estimated_bytes": int(est_bytes),
                        "estimated_seconds": round(est_seconds, 1)})
        print(f"measured: {len(results['models'])} models, {checkpoint / 1e9:.0f} GB of checkpoints, "
              f"{read / 1e9:.2f} GB read from weight files ({100 * read / checkpoint:.2f}%; "
              f"{served / 1e9:.2f} GB served with config and tokenizers), {first:.0f} s "
              f"({per_model:.1f} s per model); second run: {len(again.up_to_date)} already at their commit, "
              f"{second:.1f} s", flush=True)
        print(f"estimated for the {len(estimated)} default-size catalog models without known shapes "
              f"({', '.join(m.name for m in estimated)}): {est_bytes / 1e9:.2f} GB, {est_seconds:.0f} s "
              f"(scaled by parameters: {per_param * 1e3:.3f} bytes read per 1000 parameters)", flush=True)
        print(f"default catalog in all: {(read + est_bytes) / 1e9:.2f} GB read, {(first + est_seconds) / 60:.1f} min "
              f"on the local server", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
