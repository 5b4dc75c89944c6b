#!/usr/bin/env python3
"""Benchmark: does reading a checkpoint keep memory at about the largest tensor?

`provenance.model` claims that `Checkpoint.iter_canonical()` reads one stored
tensor at a time, "so memory stays at about the largest single tensor". This
script checks that claim on a generated LLaMA-7B-shaped checkpoint:

1. Generate random weights (hidden 4096, intermediate 11008, 32 heads,
   vocab 32000, untied lm_head; the layer count is chosen so that the bf16
   checkpoint is about --gb GiB) in up to three formats:
     safetensors  bf16, sharded (~1 GiB shards) with model.safetensors.index.json
     pytorch      one zip-format pytorch_model.bin (bf16)
     gguf         llama.cpp names, matrices F16, norms F32, Q/K rows permuted
                  the way llama.cpp's converter does (so after the library undoes
                  the permutation the values equal the safetensors ones)
   safetensors and gguf are written one tensor at a time (bounded memory);
   torch.save needs the whole state dict, so the pytorch writer holds the
   whole model in RAM and is skipped when there is not enough memory.
2. For each format, in a fresh subprocess: import, measure a baseline RSS,
   reset the peak-RSS counter (/proc/self/clear_refs, "5"), then
   `Checkpoint.open(path)` and iterate `iter_canonical()` computing
   float(t.float().abs().mean()) per tensor. Record VmHWM (peak RSS since the
   reset), ru_maxrss (peak RSS of the process's life, not resettable), the
   RSS split anon/file sampled by a background thread, and RSS after the pass.
3. Print a table, with `cat FILES > /dev/null` timed on the same files just
   before each pass as a throughput reference: seconds per GiB of the pass
   and of cat, and their ratio.
4. With --fingerprint, also time a full `build_fingerprint` (what
   `provenance fingerprint` does) in a fresh child per format, with its peak
   RSS: seconds per GiB against the same cat baseline.

With --header-caps (no checkpoint is generated then): the cost of the largest
headers and metadata the readers accept, each just under its cap in
provenance/formats/limits.py: opening the file (format level: header parsed,
tensors listed, metadata decoded) in a fresh child, seconds and peak RSS
above the RSS after imports.

Note on the ratio column: the per-tensor work itself needs, for the largest
tensor (embedding / lm_head, 32000 x 4096), the stored copy (bf16/f16), the
float32 copy made by .float() and the float32 result of .abs() -- about
2.5 x the float32 size for bf16 sources -- so a ratio of ~2-3.5 is
"bounded by the largest tensor"; what matters is that it does not grow with
--gb.

Usage:
    python bench/read_memory.py --gb 4
    python bench/read_memory.py --gb 8 --formats safetensors,gguf,pytorch --json out.json
    python bench/read_memory.py --gb 2 --fingerprint      # time per GB of reading and of fingerprinting
    python bench/read_memory.py --header-caps             # worst accepted headers: seconds and peak RSS
    python bench/read_memory.py --workdir /tmp/rm --keep ...   # reuse with --reuse
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1024 * 1024
GiB = 1024 * MiB

HIDDEN = 4096
INTERMEDIATE = 11008
HEADS = 32
KV_HEADS = 32
VOCAB = 32000
SHARD_BYTES = 1 * GiB
ALL_FORMATS = ("safetensors", "pytorch", "gguf")


# --------------------------------------------------------------------------- /proc helpers

def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def evict_from_page_cache(files: list[Path]) -> None:
    """Drop these files' clean pages from the page cache (only these files)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class Sampler(threading.Thread):
    """Samples /proc/self/status to find the anon/file split at the peak."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop_event = threading.Event()
        self.max_rss = 0
        self.max_anon = 0
        self.max_file = 0
        self.at_peak: dict[str, int] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            s = proc_status()
            self.max_anon = max(self.max_anon, s.get("RssAnon", 0))
            self.max_file = max(self.max_file, s.get("RssFile", 0))
            if s["VmRSS"] > self.max_rss:
                self.max_rss = s["VmRSS"]
                self.at_peak = s
            time.sleep(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


# --------------------------------------------------------------------------- model shapes

def num_layers_for(gb: float) -> int:
    per_layer = 2 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN)
    fixed = 2 * (2 * VOCAB * HIDDEN + HIDDEN)
    return max(1, round((gb * GiB - fixed) / per_layer))


def hf_tensors(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) in the order Hugging Face writes a LlamaForCausalLM."""
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    kv = HIDDEN // HEADS * KV_HEADS
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return out


def gguf_name(hf: str) -> str:
    table = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<a>.<b>.weight or model.layers.N.<a>.weight
    layer = parts[2]
    key = ".".join(parts[3:-1])
    return f"blk.{layer}.{table[key]}.weight"


def make_tensor(index: int, shape: tuple[int, ...]):
    """Deterministic random bf16 values for tensor number `index` (same in every format)."""
    import torch

    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)  # norms, as in a fresh LLaMA
    g = torch.Generator().manual_seed(1000 + index)
    t = torch.randn(shape, dtype=torch.float32, generator=g)
    t.mul_(0.02)
    return t.to(torch.bfloat16)


def llama_config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "num_hidden_layers": layers, "vocab_size": VOCAB,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02,
    }


# --------------------------------------------------------------------------- writers

def write_safetensors(out: Path, layers: int) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(llama_config(layers), indent=2))
    specs = hf_tensors(layers)
    # Plan shards first so the file names carry the shard count.
    shards: list[list[int]] = [[]]
    size = 0
    for i, (_, shape) in enumerate(specs):
        nbytes = math.prod(shape) * 2
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += nbytes
    n = len(shards)
    weight_map: dict[str, str] = {}
    total = 0
    for s, members in enumerate(shards, 1):
        fname = f"model-{s:05d}-of-{n:05d}.safetensors"
        tensors = {specs[i][0]: make_tensor(i, specs[i][1]) for i in members}  # this shard only
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = fname
            total += t.numel() * 2
        del tensors
        gc.collect()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return out


def write_pytorch(out: Path, layers: int) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(llama_config(layers), indent=2))
    state = {name: make_tensor(i, shape) for i, (name, shape) in enumerate(hf_tensors(layers))}
    torch.save(state, str(out / "pytorch_model.bin"))
    del state
    gc.collect()
    return out


def _llama_cpp_permute(w, n_head: int):
    """llama.cpp convert_hf_to_gguf: reorder Q/K rows from HF (half-split) to interleaved rope."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def write_gguf(out: Path, layers: int) -> Path:
    import numpy as np
    import torch
    from gguf import GGUFWriter, GGMLQuantizationType

    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.gguf"
    specs = hf_tensors(layers)
    w = GGUFWriter(str(path), "llama")
    w.add_name("read-memory-bench")
    w.add_context_length(4096)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(layers)
    w.add_feed_forward_length(INTERMEDIATE)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(VOCAB)
    w.add_file_type(1)  # MOSTLY_F16
    for name, shape in specs:
        dt = np.float32 if len(shape) == 1 else np.float16
        w.add_tensor_info(gguf_name(name), shape, np.dtype(dt), math.prod(shape) * np.dtype(dt).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (name, shape) in enumerate(specs):
        t = make_tensor(i, shape)
        if len(shape) == 1:
            arr = t.to(torch.float32).numpy()
        else:
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                t = _llama_cpp_permute(t, HEADS if "q_proj" in name else KV_HEADS)
            arr = t.to(torch.float16).numpy()
        w.write_tensor_data(np.ascontiguousarray(arr))
        del t, arr
    w.close()
    _ = GGMLQuantizationType  # imported to fail early on a too-old gguf
    return path


WRITERS = {"safetensors": write_safetensors, "pytorch": write_pytorch, "gguf": write_gguf}


def format_target(workdir: Path, fmt: str) -> Path:
    """What to pass to Checkpoint.open for this format."""
    return workdir / "gguf" / "model.gguf" if fmt == "gguf" else workdir / fmt


def data_files(workdir: Path, fmt: str) -> list[Path]:
    target = format_target(workdir, fmt)
    if target.is_file():
        return [target]
    return sorted(p for p in target.iterdir() if p.is_file())


# --------------------------------------------------------------------------- the measured pass (child)

def child_pass(path: str) -> dict:
    """Runs in a fresh interpreter. Prints one JSON line."""
    import torch  # noqa: F401  (imports before the baseline)
    from provenance.model import Checkpoint

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    gc.collect()
    before = proc_status()
    hwm_before_reset = before["VmHWM"]
    did_reset = reset_hwm()
    baseline = proc_status()["VmRSS"]

    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    ckpt = Checkpoint.open(path)
    t_open = time.perf_counter() - t0
    after_open = proc_status()["VmRSS"]
    largest_stored = max(i.nbytes for i in ckpt.infos)
    largest_stored_name = max(ckpt.infos, key=lambda i: i.nbytes).name
    largest_f32 = 0
    largest_yield_dtype = ""
    count = 0
    checksum = 0.0
    rss_trace: list[int] = []
    floor: list[tuple[int, int]] = []  # (index, RSS) after each 1-D tensor: only it is held then
    for assignment, t in ckpt.iter_canonical():
        is_small = t.dim() <= 1
        f = t.float()
        if f.numel() * 4 > largest_f32:
            largest_f32 = f.numel() * 4
            largest_yield_dtype = str(t.dtype).removeprefix("torch.")
        checksum += float(f.abs().mean())
        del f, t
        count += 1
        rss_trace.append(proc_status()["VmRSS"])
        if is_small:
            floor.append((count, rss_trace[-1]))
    elapsed = time.perf_counter() - t0
    end = proc_status()
    ckpt.close()
    gc.collect()
    after_close = proc_status()["VmRSS"]
    sampler.stop()
    final = proc_status()
    files = [Path(p) for p in (ckpt.files.all_files())]
    total_bytes = sum(p.stat().st_size for p in files if p.exists())
    n = len(rss_trace)
    tenth = max(1, n // 10)
    return {
        "path": path,
        "tensors_yielded": count,
        "checksum_sum_abs_mean": checksum,
        "checkpoint_bytes": total_bytes,
        "largest_stored_bytes": largest_stored,
        "largest_stored_name": largest_stored_name,
        "largest_float32_bytes": largest_f32,
        "largest_yielded_dtype": largest_yield_dtype,
        "baseline_rss": baseline,
        "hwm_before_reset": hwm_before_reset,
        "hwm_reset": did_reset,
        "peak_rss_vmhwm": final["VmHWM"],
        "peak_rss_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sampled_peak_rss": sampler.max_rss,
        "sampled_max_anon": sampler.max_anon,
        "sampled_max_file": sampler.max_file,
        "sampled_at_peak": sampler.at_peak,
        "rss_after_open": after_open,
        "rss_end_of_pass": end["VmRSS"],
        "rss_end_of_pass_anon": end.get("RssAnon", 0),
        "rss_end_of_pass_file": end.get("RssFile", 0),
        "rss_after_close": after_close,
        "rss_between_tensors_first10pct_max": max(rss_trace[:tenth]) if rss_trace else 0,
        "rss_between_tensors_last10pct_max": max(rss_trace[-tenth:]) if rss_trace else 0,
        "rss_floor_first": floor[0][1] if floor else 0,
        "rss_floor_last": floor[-1][1] if floor else 0,
        "rss_floor_max": max(v for _, v in floor) if floor else 0,
        "rss_floor_trace": floor,
        "rss_trace": rss_trace,
        "open_seconds": t_open,
        "seconds": elapsed,
    }


def child_fingerprint(path: str) -> dict:
    """Runs in a fresh interpreter: one full fingerprint build, timed, with its peak RSS. Prints one JSON line."""
    import torch  # noqa: F401  (imports before the baseline)
    from provenance.fingerprint import build_fingerprint
    from provenance.model import Checkpoint

    gc.collect()
    did_reset = reset_hwm()
    baseline = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    with Checkpoint.open(path) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "baseline_rss": baseline, "peak_rss_vmhwm": proc_status()["VmHWM"],
            "hwm_reset": did_reset, "tensors": len(fingerprint.tensors), "fingerprint_bytes": fingerprint.nbytes()}


def write_header_caps(out: Path) -> dict[str, tuple[str, Path, str]]:
    """Files whose header or metadata is just under each cap: name -> (kind, path, what)."""
    import struct

    import numpy as np
    import torch

    from provenance.formats.limits import MAX_GGUF_ARRAY, MAX_GGUF_STRINGS, MAX_PICKLE_BYTES, MAX_TENSORS
    from provenance.formats.safetensors_format import MAX_HEADER_BYTES
    from tests.support.attack_corpus import gguf_bytes, gstr, tiny_state

    out.mkdir(parents=True, exist_ok=True)
    cases = {}
    # safetensors: MAX_TENSORS one-byte tensors, names padded so that the header is just under 100 MB.
    n = MAX_TENSORS
    entry = '"{}":{{"dtype":"U8","shape":[1],"data_offsets":[{},{}]}}'
    plain = 2 + sum(len(entry.format(f"t{i:07d}", i, i + 1)) + 1 for i in range(n))
    pad = "x" * ((MAX_HEADER_BYTES - 1000 - plain) // n)
    raw = ("{" + ",".join(entry.format(f"t{i:07d}{pad}", i, i + 1) for i in range(n)) + "}").encode()
    path = out / "header_cap.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * n)
    cases["safetensors header"] = ("safetensors", path, f"{len(raw) / 1e6:.1f} MB header, {n} tensors")
    # GGUF: MAX_GGUF_STRINGS one-character strings and a MAX_GGUF_ARRAY-element uint8 array.
    strings = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, MAX_GGUF_STRINGS) + (
        struct.pack("<Q", 1) + b"a") * MAX_GGUF_STRINGS
    numbers = gstr("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 0, MAX_GGUF_ARRAY) + b"\1" * MAX_GGUF_ARRAY
    path = out / "metadata_cap.gguf"
    path.write_bytes(gguf_bytes(kvs=[strings, numbers], tensors=[("x", np.zeros(8, dtype=np.float32))]))
    cases["GGUF metadata"] = ("gguf", path, f"{MAX_GGUF_STRINGS} strings + {MAX_GGUF_ARRAY} uint8 in arrays")
    # PyTorch: as many views of one storage as fit in a pickle just under its cap (~78 bytes each).
    count = min(MAX_TENSORS, MAX_PICKLE_BYTES // 80)
    base = torch.zeros(64)
    state = {f"t{i}": base[i % 64:i % 64 + 1] for i in range(count)}
    path = out / "pickle_cap.bin"
    torch.save(state, path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        pickle_size = next(i.file_size for i in archive.infolist() if i.filename.endswith("data.pkl"))
    assert pickle_size <= MAX_PICKLE_BYTES, pickle_size
    cases["PyTorch pickle"] = ("pytorch", path, f"{pickle_size / 1e6:.1f} MB pickle, {count} tensors")
    # Fingerprint: metadata padded to just under its cap.
    from safetensors.numpy import save_file

    from provenance.fingerprint.store import MAX_META_BYTES
    from provenance.fingerprint import build_fingerprint
    from provenance.model import Checkpoint
    from tests.support.attack_corpus import write_model_dir

    with Checkpoint.open(write_model_dir(out / "tiny", tiny_state())) as checkpoint:
        fingerprint = build_fingerprint(checkpoint)
    arrays, metadata = fingerprint.file_contents()
    text = metadata["provenance"]
    meta = dict(json.loads(text), pad="x" * (MAX_META_BYTES - len(text) - 100))
    path = out / "meta_cap.fp.safetensors"
    save_file(arrays, str(path), metadata={"provenance": json.dumps(meta)})
    cases["fingerprint metadata"] = ("fingerprint", path, f"{len(json.dumps(meta)) / 1e6:.1f} MB metadata")
    return cases


def child_open(spec: str) -> dict:
    """Runs in a fresh interpreter: open one file at format level; seconds and peak RSS above the baseline."""
    import torch  # noqa: F401
    from provenance.fingerprint.store import load_fingerprint
    from provenance.formats.gguf_format import GgufFile
    from provenance.formats.pytorch_format import PytorchFile
    from provenance.formats.safetensors_format import SafetensorsFile

    kind, path = spec.split(":", 1)
    gc.collect()
    reset_hwm()
    baseline = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    if kind == "fingerprint":
        load_fingerprint(path)
    else:
        source = {"safetensors": SafetensorsFile, "gguf": GgufFile, "pytorch": PytorchFile}[kind](Path(path))
        source.metadata()
        source.tensor_infos()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "baseline_rss": baseline, "peak_rss_vmhwm": proc_status()["VmHWM"]}


def header_caps(workdir: Path, timeout: float) -> int:
    cases = write_header_caps(workdir / "caps")
    print("header caps: files just under each cap in provenance/formats/limits.py, opened in a fresh process")
    print(f"{'case':<22} {'file MB':>8} {'seconds':>8} {'peak above base MiB':>20}  what")
    for name, (kind, path, what) in cases.items():
        r = run_child(path, timeout, "--_open", prefix=f"{kind}:")
        print(f"{name:<22} {path.stat().st_size / 1e6:>8.1f} {r['seconds']:>8.1f} "
              f"{(r['peak_rss_vmhwm'] - r['baseline_rss']) / MiB:>20.0f}  {what}", flush=True)
    return 0


def run_child(path: Path, timeout: float, mode: str = "--_child", prefix: str = "") -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), mode, prefix + str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"pass over {path} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_cat(files: list[Path]) -> float:
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["cat", *map(str, files)], stdout=null, check=True)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- driver

def fmt_table(rows: list[dict]) -> str:
    head = ["format", "ckpt GiB", "largest MiB stored/f32", "baseline MiB", "peak MiB",
            "(peak-base)/f32", "seconds", "read MiB/s", "cat MiB/s", "s/GiB read", "s/GiB cat", "read/cat"]
    lines = []
    for r in rows:
        lines.append([
            r["format"],
            f"{r['checkpoint_bytes'] / GiB:.2f}",
            f"{r['largest_stored_bytes'] / MiB:.0f} / {r['largest_float32_bytes'] / MiB:.0f}",
            f"{r['baseline_rss'] / MiB:.0f}",
            f"{r['peak_rss_vmhwm'] / MiB:.0f}",
            f"{r['ratio']:.2f}",
            f"{r['seconds']:.1f}",
            f"{r['read_mib_s']:.0f}",
            f"{r['cat_mib_s']:.0f}",
            f"{r['seconds_per_gib']:.2f}",
            f"{r['cat_seconds_per_gib']:.2f}",
            f"{r['seconds_per_gib'] / r['cat_seconds_per_gib']:.1f}",
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) for l in lines]
    return "\n".join(out)


def fmt_detail(rows: list[dict]) -> str:
    head = ["format", "ru_maxrss MiB", "peak anon/file MiB", "after open", "floor first/last/max",
            "end of pass (anon/file)", "after close", "tensors"]
    lines = []
    for r in rows:
        lines.append([
            r["format"],
            f"{r['peak_rss_ru_maxrss'] / MiB:.0f}",
            f"{r['sampled_max_anon'] / MiB:.0f} / {r['sampled_max_file'] / MiB:.0f}",
            f"{r['rss_after_open'] / MiB:.0f}",
            f"{r['rss_floor_first'] / MiB:.0f} / {r['rss_floor_last'] / MiB:.0f} / {r['rss_floor_max'] / MiB:.0f}",
            f"{r['rss_end_of_pass'] / MiB:.0f} ({r['rss_end_of_pass_anon'] / MiB:.0f}/{r['rss_end_of_pass_file'] / MiB:.0f})",
            f"{r['rss_after_close'] / MiB:.0f}",
            str(r["tensors_yielded"]),
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) for l in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=4.0, help="approximate checkpoint size in GiB (bf16)")
    ap.add_argument("--formats", default="safetensors,gguf",
                    help="comma list of safetensors,pytorch,gguf (default safetensors,gguf)")
    ap.add_argument("--workdir", default=None, help="where to generate (default: a temp dir under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    ap.add_argument("--reuse", action="store_true", help="reuse formats already generated in --workdir with the same layer count")
    ap.add_argument("--cold", action="store_true",
                    help="evict the files from the page cache (posix_fadvise DONTNEED) before cat and before each pass")
    ap.add_argument("--timeout", type=float, default=3600, help="per-pass timeout in seconds")
    ap.add_argument("--json", dest="json_out", default=None, help="write results to this file")
    ap.add_argument("--fingerprint", action="store_true",
                    help="also time a full fingerprint build per format (seconds per GiB, peak RSS)")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_fingerprint", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--header-caps", action="store_true",
                    help="instead: time and peak RSS of opening files whose headers are just under each cap")
    ap.add_argument("--_open", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_generate", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        print(json.dumps(child_pass(args._child)))
        return 0
    if args._fingerprint:
        print(json.dumps(child_fingerprint(args._fingerprint)))
        return 0
    if args._open:
        print(json.dumps(child_open(args._open)))
        return 0
    if args.header_caps:
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="read_memory_caps_", dir="/tmp"))
        try:
            return header_caps(workdir, args.timeout)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    if args._generate:
        fmt, n, target = args._generate.split(":", 2)
        WRITERS[fmt](Path(target), int(n))
        return 0

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for f in formats:
        if f not in ALL_FORMATS:
            ap.error(f"unknown format {f!r}; choose from {', '.join(ALL_FORMATS)}")
    layers = num_layers_for(args.gb)
    made_temp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="read_memory_", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}; LLaMA-7B shapes, {layers} layers, formats {','.join(formats)}", flush=True)

    results: dict = {"gb_requested": args.gb, "layers": layers, "cold": args.cold, "formats": {},
                     "generation": {}, "skipped": {}}
    rows: list[dict] = []
    try:
        for fmt in formats:
            stamp = workdir / f".{fmt}.done"
            if args.reuse and stamp.exists() and stamp.read_text().strip() == str(layers):
                print(f"[{fmt}] reusing {format_target(workdir, fmt)}", flush=True)
            else:
                if fmt == "pytorch":
                    need = sum(math.prod(s) * 2 for _, s in hf_tensors(layers))
                    if mem_available() < 1.5 * need:
                        msg = (f"torch.save needs the whole state dict in RAM ({need / GiB:.1f} GiB); "
                               f"MemAvailable is {mem_available() / GiB:.1f} GiB")
                        print(f"[{fmt}] skipped: {msg}", flush=True)
                        results["skipped"][fmt] = msg
                        continue
                target_dir = workdir / fmt
                if target_dir.exists():
                    shutil.rmtree(target_dir)
                print(f"[{fmt}] generating ...", end="", flush=True)
                t0 = time.perf_counter()
                # In a child, so this driver stays small: a child started with
                # vfork inherits the parent's peak RSS into its ru_maxrss.
                subprocess.run([sys.executable, os.path.abspath(__file__), "--_generate",
                                f"{fmt}:{layers}:{target_dir}"], check=True)
                gen = time.perf_counter() - t0
                stamp.write_text(str(layers))
                results["generation"][fmt] = gen
                print(f" {gen:.0f} s", flush=True)

            files = data_files(workdir, fmt)
            if args.cold:
                evict_from_page_cache(files)
            cat_s = time_cat(files)
            if args.cold:
                evict_from_page_cache(files)
            print(f"[{fmt}] reading ...", end="", flush=True)
            try:
                r = run_child(format_target(workdir, fmt), args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f" FAILED: {exc}", flush=True)
                results["skipped"][fmt] = str(exc)
                continue
            print(f" {r['seconds']:.0f} s", flush=True)
            cat_bytes = sum(p.stat().st_size for p in files)
            r["format"] = fmt
            r["cat_seconds"] = cat_s
            r["cat_mib_s"] = cat_bytes / MiB / cat_s
            r["read_mib_s"] = r["checkpoint_bytes"] / MiB / r["seconds"]
            r["seconds_per_gib"] = r["seconds"] / (r["checkpoint_bytes"] / GiB)
            r["cat_seconds_per_gib"] = cat_s / (cat_bytes / GiB)
            if args.fingerprint:
                if args.cold:
                    evict_from_page_cache(files)
                print(f"[{fmt}] fingerprinting ...", end="", flush=True)
                try:
                    fp = run_child(format_target(workdir, fmt), args.timeout, "--_fingerprint")
                    print(f" {fp['seconds']:.0f} s", flush=True)
                    fp["seconds_per_gib"] = fp["seconds"] / (r["checkpoint_bytes"] / GiB)
                    r["fingerprint"] = fp
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f" FAILED: {exc}", flush=True)
            r["ratio"] = (r["peak_rss_vmhwm"] - r["baseline_rss"]) / r["largest_float32_bytes"]
            results["formats"][fmt] = r
            rows.append(r)
    finally:
        if made_temp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.keep and not args.reuse:
            for fmt in ALL_FORMATS:
                shutil.rmtree(workdir / fmt, ignore_errors=True)
                (workdir / f".{fmt}.done").unlink(missing_ok=True)

    if rows:
        cache = "cold (fadvise DONTNEED before cat and before the pass)" if args.cold else "warm page cache"
        print()
        print(f"read_memory: LLaMA-7B shapes, {layers} layers, {cache}; MiB = 2^20 bytes; "
              f"peak = VmHWM since reset after imports")
        print(fmt_table(rows))
        print()
        print("detail (MiB). floor = RSS right after a 1-D (norm) tensor, when the pass holds almost nothing;")
        print("it should stay flat from the first to the last layer. ru_maxrss is the whole child's life.")
        print(fmt_detail(rows))
        fingerprinted = [r for r in rows if "fingerprint" in r]
        if fingerprinted:
            print()
            print("fingerprint (a full build_fingerprint in a fresh process; cat = the same files just before):")
            print(f"{'format':<12} {'s/GiB fingerprint':>18} {'s/GiB cat':>10} {'fingerprint/cat':>16} "
                  f"{'peak MiB':>9} {'baseline MiB':>13}")
            for r in fingerprinted:
                fp = r["fingerprint"]
                print(f"{r['format']:<12} {fp['seconds_per_gib']:>18.2f} {r['cat_seconds_per_gib']:>10.2f} "
                      f"{fp['seconds_per_gib'] / r['cat_seconds_per_gib']:>16.1f} {fp['peak_rss_vmhwm'] / MiB:>9.0f} "
                      f"{fp['baseline_rss'] / MiB:>13.0f}")
    for fmt, why in results["skipped"].items():
        print(f"skipped {fmt}: {why.splitlines()[0] if why else ''}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json_out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
