"""safetensors headers: lengths, offsets, dtypes, shapes and sizes that lie."""

from __future__ import annotations

import json

import torch

from .corpus import HIDDEN, VOCAB, Corpus, Run, f32, safetensors_raw, tiny_config, tiny_state, write_model_dir


def add_cases(c: Corpus) -> None:
    good = c.out / "base" / "model" / "model.safetensors"
    c.valid("safetensors/valid", "control: the unbroken tiny model", c.out / "base" / "model")

    p = safetensors_raw(c.path("st/header_2_63.safetensors"), {"a": f32(0, 1)}, b"\0" * 4, header_len=2**63)
    c.checkpoint("safetensors/header_length_2_63", "header length field 2^63", p, p, "exceeds the 100000000-byte limit")

    p = safetensors_raw(c.path("st/header_past_end.safetensors"), {"a": f32(0, 1)}, b"\0" * 4, header_len=5000)
    c.checkpoint("safetensors/header_past_end", "header longer than the file", p, p, "runs past the end")

    p = c.path("st/header_over_cap.safetensors")
    pad = "x" * (100_000_001 - len('{"__metadata__":{"pad":""}}'))
    raw = ('{"__metadata__":{"pad":"' + pad + '"}}').encode()
    assert len(raw) == 100_000_001
    safetensors_raw(p, raw)
    c.checkpoint("safetensors/header_100MB", "a real 100,000,001-byte JSON header, one byte over the cap", p, p,
                 "exceeds the 100000000-byte limit")

    p = safetensors_raw(c.path("st/invalid_json.safetensors"), b'{"a": {"dtype": "F32", ', b"\0" * 4)
    c.checkpoint("safetensors/invalid_json", "header cut in the middle of an object", p, p, "not valid JSON")

    p = safetensors_raw(c.path("st/deep_json.safetensors"), b"[" * 100_000 + b"]" * 100_000)
    c.checkpoint("safetensors/deeply_nested_json", "100,000 nested JSON arrays", p, p, "nested too deeply")

    p = safetensors_raw(c.path("st/offsets_past_end.safetensors"),
                        {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 16)
    c.checkpoint("safetensors/offsets_past_end", "data_offsets beyond the data section", p, p, "past the 16-byte data section")

    p = safetensors_raw(c.path("st/huge_offset.safetensors"),
                        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [10**30, 10**30 + 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/offset_10_30", "an offset of 10^30 (past any 64-bit size)", p, p, "past the 4-byte data section")

    p = safetensors_raw(c.path("st/overlap.safetensors"), {"a": f32(0, 4), "b": f32(8, 4)}, b"\0" * 24)
    c.checkpoint("safetensors/overlapping_offsets", "two tensors sharing bytes", p, p, "overlaps")

    p = safetensors_raw(c.path("st/reversed.safetensors"),
                        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8)
    c.checkpoint("safetensors/reversed_offsets", "data_offsets [8, 0] (end before begin)", p, p, "not increasing")

    p = safetensors_raw(c.path("st/hole.safetensors"), {"a": f32(0, 4), "b": f32(20, 4)}, b"\0" * 36)
    c.checkpoint("safetensors/hole_between_tensors", "4 unclaimed bytes between two tensors", p, p, "hole")

    p = safetensors_raw(c.path("st/dtype_shape.safetensors"),
                        {"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16)
    c.checkpoint("safetensors/dtype_shape_vs_bytes", "F16 [4] over 16 bytes", p, p, "needs 8 bytes")

    p = safetensors_raw(c.path("st/huge_shape.safetensors"),
                        {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/shape_2_80_elements", "shape [2^40, 2^40] over 4 bytes", p, p, "needs")

    entry = json.dumps(f32(0, 1))
    p = safetensors_raw(c.path("st/duplicate.safetensors"), ('{"w": ' + entry + ', "w": ' + entry + "}").encode(), b"\0" * 4)
    c.checkpoint("safetensors/duplicate_names", "one tensor name twice", p, p, "'w' twice")

    p = safetensors_raw(c.path("st/unknown_dtype.safetensors"),
                        {"a": {"dtype": "Q9_ZZ", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4)
    c.checkpoint("safetensors/unknown_dtype", "dtype Q9_ZZ", p, p, "unknown dtype 'Q9_ZZ'")

    p = safetensors_raw(c.path("st/f6.safetensors"), {"a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}},
                        b"\0" * 3)
    c.checkpoint("safetensors/dtype_without_torch_type", "F6_E2M3: in the spec, no PyTorch dtype (inspect reads no data)",
                 p, p, "F6_E2M3", inspect_ok=True)

    p = safetensors_raw(c.path("st/metadata.safetensors"), {"__metadata__": {"n": 3}, "a": f32(0, 1)}, b"\0" * 4)
    c.checkpoint("safetensors/metadata_not_strings", "__metadata__ value 3", p, p, "__metadata__")

    count = (1 << 18) + 1
    header = ",".join(f'"t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i in range(count))
    p = safetensors_raw(c.path("st/too_many_tensors.safetensors"), ("{" + header + "}").encode(), b"\0" * count)
    c.checkpoint("safetensors/262145_tensors", "one tensor more than the per-checkpoint cap", p, p, "more than 262144 tensors")

    data = good.read_bytes()
    p = c.path("st/truncated.safetensors")
    p.write_bytes(data[: len(data) - 1000])
    c.checkpoint("safetensors/truncated", "the tiny model's file without its last 1000 bytes", p, p, "truncated")

    # Valid but unusual: header order differs from data order; zero-sized tensors; NaN/Inf; bool bytes.
    state = tiny_state()
    names = list(state)
    blobs, offsets, begin = [], {}, 0
    for name in names:
        raw = state[name].contiguous().numpy().tobytes()
        offsets[name] = [begin, begin + len(raw)]
        blobs.append(raw)
        begin += len(raw)
    shuffled = {n: {"dtype": "F32", "shape": list(state[n].shape), "data_offsets": offsets[n]} for n in reversed(names)}
    directory = c.directory("st/out_of_order")
    directory.mkdir(exist_ok=True)
    safetensors_raw(directory / "model.safetensors", shuffled, b"".join(blobs))
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("safetensors/header_order_not_data_order", "valid: header lists tensors in reverse data order", directory)

    state = tiny_state()
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(0, HIDDEN)
    state["model.layers.0.mlp.gate_proj.weight"] = torch.zeros(0, HIDDEN)
    state["model.layers.0.mlp.down_proj.weight"] = torch.zeros(HIDDEN, 0)
    state["extra.empty"] = torch.zeros(3, 0, 2)
    c.valid("safetensors/zero_sized_tensors", "valid: a layer's MLP has width 0, plus an empty 3-D tensor",
            write_model_dir(c.path("st/zero_sized"), state))

    state = tiny_state()
    state["model.layers.0.mlp.up_proj.weight"][3] = float("nan")
    state["model.layers.1.self_attn.q_proj.weight"][0, 0] = float("inf")
    state["model.norm.weight"][2] = float("-inf")
    state["model.layers.1.mlp.down_proj.weight"][:] = float("nan")
    c.valid("safetensors/nan_and_inf", "valid: NaN and +-Inf values, one matrix all NaN (fingerprinted with a note)",
            write_model_dir(c.path("st/nan_inf"), state))

    p = safetensors_raw(c.path("st/bool_bytes/model.safetensors"),
                        {"mask": {"dtype": "BOOL", "shape": [4], "data_offsets": [0, 4]}, **{
                            "model.embed_tokens.weight": {"dtype": "F32", "shape": [VOCAB, HIDDEN],
                                                          "data_offsets": [4, 4 + 4 * VOCAB * HIDDEN]}}},
                        bytes([0, 1, 2, 255]) + tiny_state()["model.embed_tokens.weight"].numpy().tobytes())
    c.add("safetensors/bool_bytes_2_and_255", "valid: BOOL bytes other than 0/1",
          [Run(("inspect", str(p), "--no-hash"), "ok")])
