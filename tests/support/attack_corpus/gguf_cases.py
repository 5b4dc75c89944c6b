"""GGUF headers: key/value tables, arrays and tensor records that lie or overflow."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .corpus import HEADS, HIDDEN, INTER, KV_HEADS, LAYERS, VOCAB, Corpus, Run, tiny_state


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, kind: str, value) -> bytes:
    codes = {"str": 8, "u32": 4, "f32": 6, "arr_str": 9, "arr_i32": 9, "arr_u8": 9}
    head = gstr(key) + struct.pack("<I", codes[kind])
    if kind == "str":
        return head + gstr(value)
    if kind == "u32":
        return head + struct.pack("<I", value)
    if kind == "f32":
        return head + struct.pack("<f", value)
    if kind == "arr_str":
        return head + struct.pack("<IQ", 8, len(value)) + b"".join(gstr(v) for v in value)
    if kind == "arr_u8":
        return head + struct.pack("<IQ", 0, len(value)) + bytes(value)
    return head + struct.pack("<IQ", 5, len(value)) + b"".join(struct.pack("<i", v) for v in value)


def gguf_bytes(kvs: list[bytes] | None = None, tensors: list[tuple[str, np.ndarray]] | None = None, *,
               version: int = 3, tensor_count: int | None = None, kv_count: int | None = None, alignment: int = 32,
               offset_shift: int = 0, magic: bytes = b"GGUF", ggml_type: int = 0) -> bytes:
    """A GGUF file written by hand (F32 tensors), so that every count and offset can be set to anything."""
    kvs = _gguf_llama_kvs() if kvs is None else kvs
    tensors = _gguf_llama_tensors() if tensors is None else tensors
    infos, blobs, offset = b"", [], 0
    for index, (name, values) in enumerate(tensors):
        dims = list(reversed(values.shape))  # ggml order: innermost first
        shift = offset_shift if index == len(tensors) - 1 else 0
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset + shift)
        raw = values.astype("<f4").tobytes()
        blobs.append(raw + b"\0" * (-len(raw) % alignment))
        offset += len(blobs[-1])
    head = magic + struct.pack("<IQQ", version, len(tensors) if tensor_count is None else tensor_count,
                               len(kvs) if kv_count is None else kv_count)
    body = head + b"".join(kvs) + infos
    return body + b"\0" * (-len(body) % alignment) + b"".join(blobs)


def _gguf_llama_kvs() -> list[bytes]:
    return [kv("general.architecture", "str", "llama"), kv("general.name", "str", "attack-corpus-tiny"),
            kv("llama.block_count", "u32", LAYERS), kv("llama.embedding_length", "u32", HIDDEN),
            kv("llama.feed_forward_length", "u32", INTER), kv("llama.attention.head_count", "u32", HEADS),
            kv("llama.attention.head_count_kv", "u32", KV_HEADS), kv("llama.context_length", "u32", 128),
            kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-6),
            kv("tokenizer.ggml.model", "str", "gpt2"),
            kv("tokenizer.ggml.tokens", "arr_str", [f"tok{i}" for i in range(VOCAB)]),
            kv("tokenizer.ggml.token_type", "arr_i32", [1] * VOCAB)]


def _gguf_llama_tensors() -> list[tuple[str, np.ndarray]]:
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer_names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                   "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                   "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                   "mlp.down_proj": "ffn_down"}
    for layer in range(LAYERS):
        for hf, short in layer_names.items():
            names[f"model.layers.{layer}.{hf}.weight"] = f"blk.{layer}.{short}.weight"
    state = tiny_state()
    return [(names[k], v.numpy()) for k, v in state.items()]


def add_cases(c: Corpus) -> None:
    def write(name: str, data: bytes) -> Path:
        path = c.path(f"gguf/{name}.gguf")
        path.write_bytes(data)
        return path

    good = gguf_bytes()
    p = write("valid", good)
    c.valid("gguf/valid", "control: the tiny model as a hand-written F32 GGUF", p)

    p = write("bad_magic", b"GGUX" + good[4:])
    c.checkpoint("gguf/bad_magic", "magic GGUX", p, p, "not a GGUF file")
    p = write("version_99", gguf_bytes(version=99))
    c.checkpoint("gguf/unsupported_version", "version 99", p, p, "version 99 is not supported")
    p = write("version_1", gguf_bytes(version=1))
    c.checkpoint("gguf/version_1", "version 1 (32-bit counts, unsupported)", p, p, "version 1 is not supported")
    p = write("alignment_7", gguf_bytes(kvs=_gguf_llama_kvs() + [kv("general.alignment", "u32", 7)]))
    c.checkpoint("gguf/alignment_not_power_of_two", "general.alignment = 7", p, p, "not a power of two")
    p = write("misaligned", gguf_bytes(offset_shift=4))
    c.checkpoint("gguf/misaligned_tensor_data", "last tensor's data offset moved by 4 bytes", p, p, "aligned to 32 bytes")
    p = write("tensor_count_2_60", gguf_bytes(tensor_count=1 << 60))
    c.checkpoint("gguf/tensor_count_2_60", "tensor count 2^60", p, p, f"declares {1 << 60} tensors")
    p = write("kv_count_2_60", gguf_bytes(kv_count=1 << 60))
    c.checkpoint("gguf/kv_count_2_60", "key/value count 2^60", p, p, f"declares {1 << 60} metadata keys")
    p = write("kv_count_plus_one", gguf_bytes(kv_count=len(_gguf_llama_kvs()) + 1))
    c.checkpoint("gguf/kv_count_one_too_many", "one key more than the file holds: tensor infos read as a key",
                 p, p, "past the end")
    long_name = gstr("general.name") + struct.pack("<I", 8) + struct.pack("<Q", 1 << 40) + b"attack"
    p = write("string_past_end", gguf_bytes(kvs=_gguf_llama_kvs()[:1] + [long_name], tensors=[]))
    c.checkpoint("gguf/string_length_2_40", "a value string claiming 2^40 bytes", p, p, "past the end")
    huge_array = gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 60)
    p = write("array_2_60", gguf_bytes(kvs=_gguf_llama_kvs()[:1] + [huge_array], tensors=[]))
    c.checkpoint("gguf/array_length_2_60", "a string array claiming 2^60 elements", p, p, "over the 4194304-element limit")
    p = write("uint8_array_1M", gguf_bytes(kvs=_gguf_llama_kvs() + [kv("attack.bytes", "arr_u8", [7] * 1_000_000)]))
    c.add("gguf/uint8_array_1M", "valid: a 1,000,000-element uint8 array (36 s and 600 MB in gguf's own reader)",
          [Run(("inspect", str(p), "--no-hash"), "ok")])
    nested = gstr("attack.nested") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 5, 1) + struct.pack("<i", 1)
    p = write("nested_array", gguf_bytes(kvs=_gguf_llama_kvs() + [nested]))
    c.checkpoint("gguf/nested_array", "an array of arrays", p, p, "nested arrays are not supported")
    p = write("duplicate_key", gguf_bytes(kvs=_gguf_llama_kvs() + [kv("general.name", "str", "again")]))
    c.checkpoint("gguf/duplicate_key", "general.name twice", p, p, "appears twice")
    p = write("unknown_type", gguf_bytes(ggml_type=200))
    c.checkpoint("gguf/unknown_ggml_type", "tensor type 200", p, p, "ggml type 200")
    p = write("truncated", good[: len(good) - 2000])
    c.checkpoint("gguf/truncated", "the valid file without its last 2000 bytes", p, p, "past the end")
    p = write("header_only", good[:300])
    c.checkpoint("gguf/cut_in_metadata", "the first 300 bytes", p, p, "past the end")
    p = write("empty", b"")
    c.checkpoint("gguf/empty", "an empty .gguf file", p, p, "not a GGUF file")
    five_dims = [("x", np.zeros((1, 1, 1, 1, 2), dtype=np.float32))]
    p = write("five_dims", gguf_bytes(tensors=five_dims))
    c.checkpoint("gguf/five_dimensions", "a tensor with 5 dimensions (GGML has 4)", p, p, "5 dimensions")
    p = write("bad_utf8_key", gguf_bytes(kvs=_gguf_llama_kvs() + [gstr(b"\xff\xfe") + struct.pack("<I", 4) + b"\0" * 4]))
    c.checkpoint("gguf/key_not_utf8", "a key of bytes ff fe", p, p, "not UTF-8")
