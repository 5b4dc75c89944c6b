"""PyTorch pickles and zips: code-running globals (sentinels), bad storages, zip bombs, legacy files."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import torch

from .corpus import Corpus, tiny_config, tiny_state


def payload_classes(sentinel: Path) -> dict[str, type]:
    """Pickle payloads by the global each one calls; run, the first three would create `sentinel`."""
    import builtins
    import os

    command = f"touch {sentinel}"
    code = f"open({str(sentinel)!r}, 'w').close()"

    class OsSystem:
        def __reduce__(self):
            return (os.system, (command,))

    class Exec:
        def __reduce__(self):
            return (builtins.exec, (code,))

    class Eval:
        def __reduce__(self):
            return (builtins.eval, (f"__import__('os').system({command!r})",))

    class Import:  # imports os; a second reduce would call it, so the import alone must already be refused
        def __reduce__(self):
            return (builtins.__import__, ("os",))

    return {"os.system": OsSystem, "builtins.exec": Exec, "builtins.eval": Eval, "builtins.__import__": Import}


def _uni(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def tensor_pickle(storage_numel: int, size: tuple[int, ...], stride: tuple[int, ...], key: str = "0",
                  storage_offset: int = 0, extra_id: bool = False) -> bytes:
    """A protocol-2 pickle of {"w": tensor} as torch.save writes it, with every number chosen by the caller."""
    ints = lambda values: b"(" + b"".join(_int(v) for v in values) + b"t"  # noqa: E731
    persistent = (b"(" + _uni("storage") + b"ctorch\nFloatStorage\n" + _uni(key) + _uni("cpu") + _int(storage_numel)
                  + (b"N" if extra_id else b"") + b"tQ")
    return (b"\x80\x02}" + _uni("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + persistent + _int(storage_offset)
            + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtRs.")


def _torch_zip(path: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None,
               compress: set[str] = frozenset()) -> Path:
    """A copy of a genuine torch.save zip of {"w": zeros(4, 4)} with entries replaced, added or deflated."""
    base = path.with_suffix(".base")
    torch.save({"w": torch.zeros(4, 4)}, base)
    with zipfile.ZipFile(base) as source, zipfile.ZipFile(path, "w") as target:
        prefix = source.namelist()[0].split("/", 1)[0]
        for info in source.infolist():
            short = info.filename.split("/", 1)[1]
            data = (replace or {}).get(short, source.read(info.filename))
            target.writestr(zipfile.ZipInfo(info.filename, info.date_time), data,
                            compress_type=zipfile.ZIP_DEFLATED if short in compress else zipfile.ZIP_STORED)
        for name, data in (add or {}).items():
            target.writestr(zipfile.ZipInfo(name if name.startswith("..") else f"{prefix}/{name}"), data)
    base.unlink()
    return path


def _deflated_zeros(total: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of `total` zero bytes, from one compressed chunk repeated (full flushes are byte-aligned)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\0" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # an empty final block
    return block * (total // chunk) + final


def _zip_bomb(path: Path, size: int) -> Path:
    """A torch zip whose data/0 entry is a deflate stream inflating to `size` bytes (zip64; CRC left 0)."""
    pickle_bytes = tensor_pickle(size // 4, (size // 4,), (1,))
    stored = {"archive/data.pkl": pickle_bytes, "archive/byteorder": b"little", "archive/version": b"3\n"}
    compressed = _deflated_zeros(size)
    local, central = bytearray(), bytearray()

    def entry(name: str, data: bytes, method: int, usize: int, crc: int) -> None:
        raw_name = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, usize, len(data))  # zip64: both sizes
        offset = len(local)
        local.extend(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                 len(raw_name), len(extra)) + raw_name + extra + data)
        cextra = struct.pack("<HHQQQ", 1, 24, usize, len(data), offset)
        central.extend(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0, crc, 0xFFFFFFFF,
                                   0xFFFFFFFF, len(raw_name), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + raw_name + cextra)

    for name, data in stored.items():
        entry(name, data, 0, len(data), zlib.crc32(data))
    entry("archive/data/0", compressed, 8, size, 0)
    count, cd_offset = len(stored) + 1, len(local)
    tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, cd_offset + len(central), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(local) + bytes(central) + tail + locator + end)
    return path


def _legacy_with_numel(path: Path, numel: int) -> Path:
    """A legacy (non-zip) torch file whose storage declares `numel` elements (the data holds 16)."""
    import io
    import pickletools

    base = path.with_suffix(".base")
    torch.save({"w": torch.zeros(4, 4)}, base, _use_new_zipfile_serialization=False)
    data = base.read_bytes()
    base.unlink()
    stream = io.BytesIO(data)
    bounds = []
    for _ in range(4):  # magic, protocol, sys info, then the object pickle
        start = stream.tell()
        ops = list(pickletools.genops(stream))
        bounds.append((start, stream.tell(), ops))
    start, end, ops = bounds[3]
    (position,) = [pos for op, arg, pos in ops if op.name == "BININT1" and arg == 16]
    patched = data[start:position] + _int(numel) + data[position + 2:end]
    path.write_bytes(data[:start] + patched + data[end:])
    return path


def add_cases(c: Corpus) -> None:
    import pickle

    directory = c.directory("pt/valid")
    torch.save(tiny_state(), directory / "pytorch_model.bin")
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("pytorch/valid", "control: the tiny model as a zip-format pytorch_model.bin", directory)

    directory = c.directory("pt/legacy_benign")
    torch.save(tiny_state(), directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    (directory / "config.json").write_text(json.dumps(tiny_config()))
    c.valid("pytorch/legacy_benign", "valid: legacy (non-zip) format, loaded whole with a note", directory)

    for culprit, cls in payload_classes(c.sentinel("pickles")).items():
        stem = culprit.replace(".", "_")
        zipped = c.path(f"pt/zip_{stem}.bin")
        torch.save({"model.embed_tokens.weight": torch.zeros(4, 2), "payload": cls()}, zipped)
        c.checkpoint(f"pytorch/reduce_{stem}", f"__reduce__ calling {culprit}, inside a torch zip", zipped, zipped,
                     culprit, forbidden=[c.sentinel("pickles")])
        legacy = c.path(f"pt/legacy_{stem}.bin")
        torch.save({"w": torch.zeros(2), "payload": cls()}, legacy, _use_new_zipfile_serialization=False)
        c.checkpoint(f"pytorch/legacy_reduce_{stem}", f"__reduce__ calling {culprit}, legacy format", legacy, legacy,
                     culprit, forbidden=[c.sentinel("pickles")])
        plain = c.path(f"pt/plain_{stem}.pt")
        plain.write_bytes(pickle.dumps({"weight": cls()}, protocol=2))
        c.checkpoint(f"pytorch/plain_pickle_{stem}", f"a bare pickle whose __reduce__ calls {culprit}", plain, plain,
                     "refused", forbidden=[c.sentinel("pickles")])

    p = _zip_bomb(c.path("pt/zip_bomb.bin"), 6 << 30)
    c.checkpoint("pytorch/zip_bomb_6GiB", f"data/0 is a {p.stat().st_size // 1024} KiB deflate stream inflating to 6 GiB",
                 p, p, "compressed")

    p = _torch_zip(c.path("pt/deflated_pickle.bin"), compress={"data.pkl"})
    c.checkpoint("pytorch/deflated_pickle", "data.pkl deflate-compressed (torch would mmap compressed bytes)", p, p,
                 "compressed")

    p = _torch_zip(c.path("pt/claims_2GiB.bin"))
    raw = bytearray(p.read_bytes())
    index = raw.find(b"PK\x01\x02")  # central directory records: patch data/0's sizes to 2 GiB
    while not raw[index + 46:index + 46 + struct.unpack_from("<H", raw, index + 28)[0]].endswith(b"/data/0"):
        index = raw.find(b"PK\x01\x02", index + 4)
    struct.pack_into("<II", raw, index + 20, 0x7FFFFFFF, 0x7FFFFFFF)
    p.write_bytes(bytes(raw))
    c.checkpoint("pytorch/zip_entry_claims_2GiB", "data/0's directory record claims 2 GiB in a 1 KB file", p, p,
                 "claims 2147483647 bytes")

    escape = c.out.parent / "escaped_by_zip_entry"
    p = _torch_zip(c.path("pt/path_escape.bin"), add={"../../escaped_by_zip_entry": b"owned"})
    c.checkpoint("pytorch/zip_path_escape", "an entry named ../../escaped_by_zip_entry", p, p, "not in a subdirectory",
                 forbidden=[escape])

    p = _torch_zip(c.path("pt/stride0.bin"), replace={"data.pkl": tensor_pickle(16, (2**20, 2**20), (0, 0))})
    c.checkpoint("pytorch/stride0_view_4TiB", "a [2^20, 2^20] float tensor with strides (0, 0) over 64 bytes", p, p,
                 "overlapping strides")

    p = _torch_zip(c.path("pt/shape_past_storage.bin"), replace={"data.pkl": tensor_pickle(16, (4096, 4096), (4096, 1))})
    c.checkpoint("pytorch/shape_past_storage", "a [4096, 4096] tensor over a 16-element storage", p, p,
                 "not a readable PyTorch")

    p = _legacy_with_numel(c.path("pt/legacy_storage_64GiB.bin"), 1 << 34)
    c.checkpoint("pytorch/legacy_storage_claims_64GiB", "legacy file whose storage declares 2^34 floats", p, p,
                 "not a readable PyTorch")

    p = c.path("pt/big_pickle.bin")
    torch.save({"w": torch.zeros(2), "pad": "x" * (16 * 1024 * 1024)}, p)
    c.checkpoint("pytorch/pickle_over_16MiB", "data.pkl of 16 MiB + ~100 bytes (a padding string)", p, p,
                 "over the 16777216-byte limit")

    p = c.path("pt/truncated.bin")
    torch.save(tiny_state(), p)
    p.write_bytes(p.read_bytes()[:20_000])
    c.checkpoint("pytorch/truncated_zip", "the tiny model's zip cut at 20,000 bytes", p, p, "directory")

    p = c.path("pt/garbage.bin")
    p.write_bytes(bytes(range(256)) * 64)
    c.checkpoint("pytorch/garbage", "16 KB of bytes 0..255", p, p, "not a readable PyTorch")
