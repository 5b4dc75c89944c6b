"""The JSON Schemas in provenance/schemas/ checked against real outputs of every JSON-printing command."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

from provenance import schemas  # noqa: E402
from provenance.cli import main  # noqa: E402

from .builders import build_llama, build_qwen2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code in (0, 3, 4), err  # 4: scan, a candidate (the missing one) could not be audited
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemas")
    llama = build_llama(root / "llama").path
    qwen = build_qwen2(root / "qwen2").path
    return {"root": root, "llama": llama, "qwen": qwen}


def test_schemas_are_valid_and_shipped():
    for name in schemas.NAMES:
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:provenance:schema:{name}/1"
    shipped = sorted(p.name for p in (ROOT / "provenance" / "schemas").glob("*.schema.json"))
    assert shipped == sorted(f"{n}.schema.json" for n in schemas.NAMES)
    assert '"provenance.schemas" = ["*.schema.json"]' in (ROOT / "pyproject.toml").read_text()


def test_every_json_output_follows_its_schema(world, capsys):
    root, llama, qwen = world["root"], str(world["llama"]), str(world["qwen"])
    db, bundle, scan_out = root / "refs.sqlite", root / "b.zip", root / "scan.jsonl"
    outputs: list[tuple[str, object]] = []
    _run(capsys, "refs", "add", llama, "--name", "tiny-llama", "--refs", str(db))
    _run(capsys, "refs", "add", qwen, "--name", "tiny-qwen2", "--refs", str(db))
    outputs.append(("compare", json.loads(_run(capsys, "compare", llama, llama, "--json"))))
    outputs.append(("compare", json.loads(_run(capsys, "compare", llama, qwen, "--json"))))
    attestation = root / "attestation.json"
    outputs.append(("audit", json.loads(_run(capsys, "audit", llama, "--refs", str(db), "--json",
                                             "--attest", str(attestation)))))
    outputs.append(("attestation", json.loads(attestation.read_text())))
    outputs.append(("audit", json.loads(_run(capsys, "audit", qwen, "--json", "--refs", str(db), "--no-builtin"))))
    outputs.append(("refs-list", json.loads(_run(capsys, "refs", "list", "--json", "--refs", str(db)))))
    _run(capsys, "refs", "export", str(bundle), "--refs", str(db))
    with zipfile.ZipFile(bundle) as archive:
        outputs.append(("refs-bundle", json.loads(archive.read("manifest.json"))))
    outputs.append(("inspect", json.loads(_run(capsys, "inspect", llama, "--json"))))
    fp = root / "llama.fp.safetensors"
    _run(capsys, "fingerprint", llama, "-o", str(fp))
    outputs.append(("inspect", json.loads(_run(capsys, "inspect", str(fp), "--json"))))
    _run(capsys, "scan", llama, str(fp), str(root / "missing"), "-o", str(scan_out), "--refs", str(db), "--workers", "0")
    lines = [json.loads(line) for line in scan_out.read_text().splitlines()]
    assert {line["status"] for line in lines} == {"ok", "error"}
    outputs.extend(("scan-line", line) for line in lines)
    for name in ("a", "b"):
        folder = root / f"tok-{name}"
        folder.mkdir()
        tokens = ["x", "y", "z"] + (["w"] if name == "a" else [])
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}}}))
    outputs.append(("tokenizer-compare", json.loads(_run(capsys, "compare", str(root / "tok-a"), str(root / "tok-b"), "--json"))))
    outputs.append(("env", json.loads(_run(capsys, "env", "--json"))))
    assert {name for name, _ in outputs} == set(schemas.NAMES)
    for name, instance in outputs:
        schemas.validate(instance, name)  # each schema pins its `schema` field with a const


def test_schemas_reject_broken_outputs(world, capsys):
    report = json.loads(_run(capsys, "compare", str(world["llama"]), str(world["qwen"]), "--json"))
    schemas.validate(report, "compare")
    for break_it in (lambda r: r.update(verdict="copied"), lambda r: r.pop("evidence"),
                     lambda r: r["layers"][0].update(p_value=2.0), lambda r: r.update(confidence="high")):
        broken = json.loads(json.dumps(report))
        break_it(broken)
        with pytest.raises(jsonschema.ValidationError):
            schemas.validate(broken, "compare")
    error_line = {"candidate": "x", "status": "error", "error": "two\nlines", "seconds": 0, "finished": "t"}
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate(error_line, "scan-line")
