"""How many bytes a remote fingerprint reads, and whether its verdict agrees with a local one.

Usage (from the checkout root):

    python bench/remote_bytes.py                    # LLaMA-7B shapes, 32 layers (~13.5 GB written; check df -h first)
    python bench/remote_bytes.py --layers 4 --pairs # quick: 4 layers, plus a derivative and an independent model
    python bench/remote_bytes.py --gguf             # a LLaMA-7B-shaped Q8_0 GGUF (7.16 GB, written sparse)

It writes a LLaMA-7B-shaped bf16 checkpoint (hidden 4096, MLP 11008, 32
heads, vocabulary 32000, random weights, sharded safetensors with an index:
`bench/read_memory.py`'s generator) with a generated 32000-token byte-level
BPE tokenizer.json (so the 512 anchor rows of the embedding and head are
read, as for a real model), serves it from 127.0.0.1 with
`tests/range_server.py` (HTTP Range, bytes counted per file), and measures:
- the remote fingerprint of the index URL: bytes the server sent for the
  weight files (headers + tensor data) over the weight files' total size,
  the side files' bytes, requests and seconds;
- the baseline in the same run: a full local fingerprint, which reads every
  byte (fraction 1 by construction), and its seconds;
- `compare` of the remote fingerprint against the local one (must be
  `identical`); with --pairs also a noisy derivative (w + 0.1 std noise,
  must be `derived`) and an independent model (must not be accused), each
  fingerprinted remotely and compared with the local base.
The checkpoints are deleted at the end unless --keep.

With --gguf it measures a remote GGUF instead: one LLaMA-7B-shaped file
(Q8_0 matrices as llama.cpp stores them, F32 norms, the same 32000 tokens in
its metadata as a byte-level BPE vocabulary; 7.16 GB at 32 layers) written
*sparse*: header, tensor infos and norm values are real bytes, the
quantized data is left as holes that read as zero blocks (a Q8_0 block of
zeros is a valid block: scale 0), so it takes seconds and almost no disk.
Served by the same server, fingerprinted from its URL, it gives the bytes
and requests a remote GGUF read needs at that scale (there is no local
baseline to compare verdicts with: the sampled rows are zeros; correctness is
checked at small scale by tests/test_hub.py, against the local reader).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (str(BENCH), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

import read_memory as rm  # noqa: E402  (LLaMA-7B shapes and the streaming generator)
import speed  # noqa: E402  (base / derived / independent variants of that generator)

from tests.range_server import RangeServer  # noqa: E402


def tokenizer_json(vocab: int) -> dict:
    """A byte-level BPE tokenizer.json with `vocab` distinct seeded tokens (id = position)."""
    import random

    rng = random.Random(7)
    words: set[str] = set()
    while len(words) < vocab:
        words.add("Ġ" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))))
    table = {token: index for index, token in enumerate(sorted(words))}
    return {"version": "1.0", "added_tokens": [], "pre_tokenizer": {"type": "ByteLevel"},
            "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": table, "merges": []}}


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def remote_run(server: RangeServer, name: str, folder: Path) -> tuple[object, dict]:
    from provenance.fingerprint.load import fingerprint_for
    from provenance.remote.http import TRANSFERS

    server.reset_counts()
    before = TRANSFERS.snapshot()
    start = time.perf_counter()
    fingerprint = fingerprint_for(server.url(f"{name}/model.safetensors.index.json"))
    seconds = time.perf_counter() - start
    after = TRANSFERS.snapshot()
    weights = {p.name for p in weight_files(folder)}
    served = dict(server.state.served)
    weight_bytes = sum(n for key, n in served.items() if key.split("/", 1)[1] in weights)
    side_bytes = sum(n for key, n in served.items() if key.split("/", 1)[1] not in weights)
    total = sum(p.stat().st_size for p in weight_files(folder))
    return fingerprint, {
        "checkpoint_bytes": total, "weight_bytes_served": weight_bytes, "fraction": weight_bytes / total,
        "side_file_bytes_served": side_bytes, "requests": after[1] - before[1], "retries": after[2] - before[2],
        "seconds": round(seconds, 2), "fingerprint_meta": fingerprint.meta["remote"],
    }


GGUF_HIDDEN, GGUF_INTER, GGUF_HEADS, GGUF_VOCAB = 4096, 11008, 32, 32000


def write_sparse_gguf(path: Path, layers: int) -> int:
    """A LLaMA-7B-shaped Q8_0 GGUF with real header and norms and zero-block (sparse) matrices; returns its size."""
    import gguf
    import numpy as np

    q8 = gguf.GGMLQuantizationType.Q8_0
    block, type_size = gguf.GGML_QUANT_SIZES[q8]
    tensors: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (GGUF_VOCAB, GGUF_HIDDEN))]
    for i in range(layers):
        p = f"blk.{i}."
        tensors += [(p + "attn_norm.weight", (GGUF_HIDDEN,)), (p + "attn_q.weight", (GGUF_HIDDEN, GGUF_HIDDEN)),
                    (p + "attn_k.weight", (GGUF_HIDDEN, GGUF_HIDDEN)), (p + "attn_v.weight", (GGUF_HIDDEN, GGUF_HIDDEN)),
                    (p + "attn_output.weight", (GGUF_HIDDEN, GGUF_HIDDEN)), (p + "ffn_norm.weight", (GGUF_HIDDEN,)),
                    (p + "ffn_gate.weight", (GGUF_INTER, GGUF_HIDDEN)), (p + "ffn_up.weight", (GGUF_INTER, GGUF_HIDDEN)),
                    (p + "ffn_down.weight", (GGUF_HIDDEN, GGUF_INTER))]
    tensors += [("output_norm.weight", (GGUF_HIDDEN,)), ("output.weight", (GGUF_VOCAB, GGUF_HIDDEN))]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("sparse-llama-7b-shape")
    writer.add_context_length(4096)
    writer.add_embedding_length(GGUF_HIDDEN)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(GGUF_INTER)
    writer.add_head_count(GGUF_HEADS)
    writer.add_head_count_kv(GGUF_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(GGUF_VOCAB)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    words = sorted(tokenizer_json(GGUF_VOCAB)["model"]["vocab"])
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(words)
    writer.add_token_types([1] * len(words))
    for name, shape in tensors:
        if len(shape) == 1:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            row_bytes = shape[1] // block * type_size
            writer.add_tensor_info(name, (shape[0], row_bytes), np.dtype(np.uint8), shape[0] * row_bytes, raw_dtype=q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    alignment = 32
    header = path.stat().st_size
    data_start = -(-header // alignment) * alignment
    nbytes = [shape[0] * 4 if len(shape) == 1 else shape[0] * (shape[1] // block * type_size) for _, shape in tensors]
    size = data_start + sum(-(-n // alignment) * alignment for n in nbytes)
    with open(path, "r+b") as handle:
        handle.truncate(size)  # holes: zero blocks, no disk
    reader = gguf.GGUFReader(str(path))
    rng = np.random.default_rng(0)
    with open(path, "r+b") as handle:
        for tensor in reader.tensors:
            if len(tensor.shape) == 1:  # norms: real values, so the row sample is scaled as for a real model
                handle.seek(int(tensor.data_offset))
                handle.write((1.0 + 0.1 * rng.standard_normal(int(tensor.shape[0]))).astype(np.float32).tobytes())
    return size


def gguf_main(args: argparse.Namespace) -> int:
    from provenance.fingerprint.load import fingerprint_for
    from provenance.remote.http import TRANSFERS

    work = args.dir or Path(tempfile.mkdtemp(prefix="remote-bytes-gguf-", dir=os.environ.get("TMPDIR", "/tmp")))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "llama-7b-shape.Q8_0.gguf"
    try:
        start = time.perf_counter()
        size = write_sparse_gguf(path, args.layers)
        print(f"wrote {path.name}: {size / 1e9:.2f} GB sparse ({os.stat(path).st_blocks * 512 / 1e6:.1f} MB on disk, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
        with RangeServer(work) as server:
            before = TRANSFERS.snapshot()
            start = time.perf_counter()
            fingerprint = fingerprint_for(server.url(path.name))
            seconds = time.perf_counter() - start
            after = TRANSFERS.snapshot()
            served = server.served(path.name)
        meta = fingerprint.meta["remote"]
        row = {"layers": args.layers, "checkpoint_bytes": size, "bytes_served": served, "fraction": served / size,
               "header_bytes": meta["header_bytes"], "requests": after[1] - before[1], "seconds": round(seconds, 2),
               "anchor_rows": len((fingerprint.meta["vocabulary"] or {}).get("anchor_tokens") or []),
               "fingerprint_meta": meta}
        print(f"remote GGUF: {served / 1e6:.1f} MB of {size / 1e9:.2f} GB = {100 * served / size:.3f}% of the file "
              f"(header {meta['header_bytes'] / 1e6:.2f} MB; {row['anchor_rows']} anchor tokens), "
              f"{row['requests']} range requests, {seconds:.1f} s",
              flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(row, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=32, help="decoder layers (32 = LLaMA-7B, ~13.5 GB)")
    parser.add_argument("--pairs", action="store_true", help="also a derivative and an independent model")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoints (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--gguf", action="store_true", help="a sparse LLaMA-7B-shaped Q8_0 GGUF instead (seconds, no disk)")
    args = parser.parse_args(argv)
    if args.gguf:
        return gguf_main(args)

    from provenance.compare import compare_fingerprints
    from provenance.fingerprint.load import fingerprint_for

    work = args.dir or Path(tempfile.mkdtemp(prefix="remote-bytes-", dir=os.environ.get("TMPDIR", "/tmp")))
    work.mkdir(parents=True, exist_ok=True)
    kinds = ["base"] + (["derived", "independent"] if args.pairs else [])
    results: dict = {"layers": args.layers, "runs": {}}
    try:
        tokenizer = json.dumps(tokenizer_json(rm.VOCAB))
        for kind in kinds:
            start = time.perf_counter()
            speed.generate(kind, args.layers, work / kind)
            (work / kind / "tokenizer.json").write_text(tokenizer)
            print(f"wrote {kind}: {sum(p.stat().st_size for p in weight_files(work / kind)) / 1e9:.2f} GB "
                  f"in {len(weight_files(work / kind))} shards ({time.perf_counter() - start:.0f} s)", flush=True)

        start = time.perf_counter()
        local = fingerprint_for(work / "base")
        local_seconds = time.perf_counter() - start
        results["local_fingerprint_seconds"] = round(local_seconds, 2)
        print(f"local fingerprint of base (reads every byte): {local_seconds:.1f} s", flush=True)

        with RangeServer(work) as server:
            for kind in kinds:
                remote, row = remote_run(server, kind, work / kind)
                verdict = compare_fingerprints(remote, local)
                row.update({"verdict_vs_local_base": verdict.verdict, "abstained": verdict.abstained,
                            "confidence": verdict.confidence, "summary": verdict.summary})
                results["runs"][kind] = row
                print(f"remote {kind}: {row['weight_bytes_served'] / 1e6:.1f} MB of {row['checkpoint_bytes'] / 1e9:.2f} GB "
                      f"= {100 * row['fraction']:.3f}% of the weight files (+ {row['side_file_bytes_served'] / 1e6:.2f} MB "
                      f"side files), {row['requests']} range requests, {row['seconds']:.1f} s "
                      f"({row['seconds'] / local_seconds:.3f} x the local fingerprint); "
                      f"compare vs local base: {verdict.verdict}{' (abstained)' if verdict.abstained else ''}",
                      flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    expected = {"base": ("identical",), "derived": ("derived",), "independent": ("same-architecture", "unrelated")}
    wrong = [k for k, row in results["runs"].items() if row["verdict_vs_local_base"] not in expected[k]]
    if wrong:
        print(f"UNEXPECTED verdicts: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
