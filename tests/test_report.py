"""`provenance audit --report FILE [--lang zh]`: HTML and Markdown reports, escaping, atomic writes, a browser.

A generated pair (a tiny LLaMA and a noisy copy of it, both with a small
tokenizer.json whose special token and config `_name_or_path` are hostile
markup) is audited against a database holding the original; the built-in
SmolLM2 fingerprint (made from the real GGUF) is audited against the
built-in references. One test renders the HTML in headless Chromium.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from provenance.cli import main

from .builders import llama_model

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<script>alert(1)</script>"
LAYERS = 4
CHROMIUM = Path("/usr/bin/chromium")


def _tokenizer_json(path: Path, vocab: int) -> None:
    tokens = {f"tok{i}": i for i in range(vocab - 1)}
    data = {"model": {"type": "WordLevel", "vocab": tokens, "unk_token": "tok0"},
            "added_tokens": [{"id": vocab - 1, "content": HOSTILE, "special": True}]}
    (path / "tokenizer.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(base, derived, refs database): the derived copy adds noise of half each tensor's std."""
    import torch
    from safetensors.torch import load_file, save_file

    from provenance.fingerprint.load import fingerprint_for
    from provenance.registry import Registry

    root = tmp_path_factory.mktemp("report")
    model, _ = llama_model(0, vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                           num_attention_heads=4, num_key_value_heads=2)
    base = root / "base"
    model.save_pretrained(base)
    _tokenizer_json(base, 96)
    derived = root / "derived"
    derived.mkdir()
    generator = torch.Generator().manual_seed(1)
    state = {k: v + 0.5 * v.float().std().nan_to_num(0.02) * torch.randn(v.shape, generator=generator)
             for k, v in load_file(str(base / "model.safetensors")).items()}
    save_file(state, str(derived / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((base / "config.json").read_text())
    cfg["_name_or_path"] = HOSTILE
    (derived / "config.json").write_text(json.dumps(cfg))
    _tokenizer_json(derived, 96)
    refs = root / "refs.sqlite"
    with Registry(refs) as registry:
        registry.add("base-model", fingerprint_for(base))
    return base, derived, refs


def _audit(*args: str) -> int:
    return main(["audit", *args])


@pytest.fixture(scope="module")
def html_report(pair, tmp_path_factory):
    _, derived, refs = pair
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 0
    return out.read_text(encoding="utf-8")


def test_html_report_content(pair, html_report):
    _, derived, refs = pair
    html = html_report
    assert html.startswith("<!DOCTYPE html>")
    assert "These weights are a derived copy of base-model" in html
    # the heatmap: one cell per (candidate layer, reference layer), the layer map outlined on the diagonal
    heatmap = html[html.index('<section id="layers">'):html.index('<section id="roles">')]
    assert heatmap.count("<rect") >= LAYERS * LAYERS
    assert len(re.findall(r'stroke="#d62728" stroke-width', heatmap)) == LAYERS + 1  # + the legend swatch
    # per-role charts for every projection, bars for every layer
    roles = html[html.index('<section id="roles">'):html.index('<section id="tokenizer">')]
    for role in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down"):
        assert f'<h3 class="role-name">{role}</h3>' in roles
    assert roles.count("<title>layer ") == 7 * LAYERS
    # p-values in words, with the odds as a power of ten
    assert re.search(r"less than once in 10<sup>\d+</sup> tries", html)
    assert "unrelated pairs give p spread evenly between 0 and 1" in html
    # reproducibility: the candidate's files with their sha256, the database and its revision, the tool
    digest = hashlib.sha256((derived / "model.safetensors").read_bytes()).hexdigest()
    assert digest in html
    assert f"{refs}, revision 1" in html
    from provenance import __version__
    assert f"provenance {__version__}" in html
    # self-contained: no script, no remote resource
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)


def test_html_escapes_hostile_claims_and_tokens(html_report):
    assert HOSTILE not in html_report
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    lineage = html_report[html_report.index('<section id="lineage">'):html_report.index('<section id="references">')]
    assert escaped in lineage  # config.json _name_or_path, recorded at fingerprint time
    tokenizer = html_report[html_report.index('<section id="tokenizer">'):html_report.index('<section id="renamed">')]
    assert escaped in tokenizer  # the hostile special token


def test_markdown_report(pair, tmp_path):
    _, derived, refs = pair
    out = tmp_path / "report.md"
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 0
    md = out.read_text(encoding="utf-8")
    assert "These weights are a derived copy of base-model" in md
    assert "<script" not in md and "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md
    assert "| Signal | Value | p-value | What it means | Decides |" in md
    assert re.search(r"less than once in 10\^\d+ tries", md)
    # the text heatmap: LAYERS rows, the diagonal marked
    block = md[md.index("```text") + len("```text\n"):]
    block = block[:block.index("```")].splitlines()
    assert len(block) == LAYERS + 1 and all(row[2:][i] == "x" for i, row in enumerate(block[1:]))
    assert "<svg" not in md


def test_the_report_renders_the_audit_result_without_reading_or_computing(pair, tmp_path, monkeypatch):
    """Everything the report shows is computed when the audit runs: rendering an `AuditResult` reads no file,
    reloads no reference and computes no signal, so it works after the checkpoint is gone."""
    import shutil

    import provenance.audit.builtin
    import provenance.compare.signals.vocabulary
    import provenance.compare.sketches
    import provenance.hashing
    from provenance.audit import AuditResult, run_audit
    from provenance.fingerprint.load import fingerprint_for
    from provenance.registry import Registry
    from provenance.report.audit_report import build_report
    from provenance.report.write import render, write_audit_report

    _, derived, refs = pair
    copy = tmp_path / "candidate"
    shutil.copytree(derived, copy)
    with Registry(refs, create=False) as registry:
        audit = run_audit(fingerprint_for(copy), registry, include_builtin=False, candidate_path=str(copy),
                          hash_files=True)
    assert isinstance(audit, AuditResult) and audit[0] is audit.rows[0] and len(audit) == len(audit.rows) == 1
    assert audit.best_match.row.reference == "base-model" and audit.best_match.role_profiles
    digest = hashlib.sha256((copy / "model.safetensors").read_bytes()).hexdigest()
    shutil.rmtree(copy)

    def forbidden(*args, **kwargs):
        raise AssertionError("the report computed or read something")

    for module, name in ((provenance.compare.sketches, "layer_view"), (provenance.compare.signals.vocabulary, "vocabulary_overlap"),
                         (provenance.hashing, "sha256_file"), (provenance.audit.builtin, "builtin_references"),
                         (provenance.audit.builtin, "builtin_file_hashes"), (Registry, "fingerprint")):
        monkeypatch.setattr(module, name, forbidden)
    context = build_report(audit, argv=["provenance", "audit", "x"])
    assert context["roles"] and context["tokenizer"]["overlap"] is not None
    assert context["repro"]["candidate"]["files"][0]["sha256"] == digest
    md = render(context, "markdown")
    assert "These weights are a derived copy of base-model" in md and digest in md
    out = write_audit_report(tmp_path / "report.html", audit)
    assert digest in out.read_text(encoding="utf-8")


def test_report_modules_import_nothing_that_reads_or_measures():
    """Renderers render: no report module imports the signals, the statistics, the readers, the database or
    the fingerprint loaders (what they show comes in an `AuditResult` or a `Comparison`)."""
    import ast

    banned = ("provenance.compare.signals", "provenance.compare.sketches", "provenance.compare.stats", "provenance.compare.engine",
              "provenance.commands", "provenance.hashing", "provenance.formats", "provenance.registry", "provenance.fingerprint.load",
              "provenance.fingerprint.build", "provenance.audit.builtin", "provenance.audit.details",
              "provenance.audit.run", "provenance.remote")
    found = []
    for path in sorted((ROOT / "provenance" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = "provenance." + (node.module or "") if node.level == 2 else "provenance.report." + (node.module or "")
                names = [f"{module}.{alias.name}" for alias in node.names] + [module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(path.name, n) for n in names if n.startswith(banned)]
    assert not found, found


def test_chinese_report(pair, tmp_path):
    _, derived, refs = pair
    out = tmp_path / "report.html"
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out), "--lang", "zh") == 0
    html = out.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html
    assert "这些权重是 base-model 的衍生副本" in html
    assert "证据：待审模型与 base-model 的比对" in html and "可复现性" in html
    assert "Evidence:" not in html and "What it means" not in html


def test_strings_files_have_the_same_keys():
    from provenance.report.i18n import _keys, load_strings

    en, zh = load_strings("en"), load_strings("zh")
    assert _keys(en) == _keys(zh)
    # every placeholder of a sentence is kept in its translation
    def placeholders(tree, prefix=""):
        out = {}
        for k, v in tree.items():
            if isinstance(v, dict):
                out.update(placeholders(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = sorted(re.findall(r"\{(\w+)\}", json.dumps(v)))
        return out
    assert placeholders(en) == placeholders(zh)


def test_bad_extension_and_lang_without_report_are_usage_errors(pair, tmp_path, capsys):
    _, derived, _ = pair
    out = tmp_path / "report.pdf"
    assert _audit(str(derived), "--report", str(out)) == 2
    err = capsys.readouterr().err
    assert "unknown report format ('.pdf')" in err and ".html or .md" in err
    assert not out.exists()
    assert _audit(str(derived), "--lang", "zh") == 2
    assert "--lang" in capsys.readouterr().err
    assert _audit(str(derived), "--report", str(tmp_path / "r.html"), "--lang", "fr") == 2


def test_unwritable_folder_is_one_line_error(pair, tmp_path, capsys):
    """A missing folder is made (one rule for every output: provenance/outputs.py); one that cannot be is an error."""
    _, derived, refs = pair
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "report.html"
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report" in err[0] and str(out) in err[0]


def test_report_write_is_atomic(tmp_path, monkeypatch):
    from provenance import atomic_files
    from provenance.report import write

    target = tmp_path / "report.html"
    target.write_text("old report")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_files.os, "replace", fail)
    with pytest.raises(write.ReportPathError, match="No space left"):
        write.write_atomic(target, "<p>new</p>" * 1000)
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left behind

    monkeypatch.undo()
    monkeypatch.setattr(atomic_files.os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed while writing
        write.write_atomic(target, "<p>new</p>")
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    monkeypatch.undo()
    write.write_atomic(target, "<p>new</p>")
    assert target.read_text() == "<p>new</p>"


def test_render_error_leaves_no_file(pair, tmp_path, monkeypatch):
    from provenance.report import write

    _, derived, refs = pair
    out = tmp_path / "report.md"

    def broken(context, fmt):
        raise RuntimeError("template failed half-way")

    monkeypatch.setattr(write, "render", broken)
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 1
    assert list(tmp_path.iterdir()) == []


def test_hostile_fingerprint_metadata_is_escaped(pair, tmp_path):
    """Every string a fingerprint file carries is hostile: names, paths, claims, tokens, bidi overrides."""
    from provenance.fingerprint.load import fingerprint_for
    from provenance.fingerprint.store import Fingerprint

    _, derived, refs = pair
    fp = fingerprint_for(derived)
    meta = json.loads(json.dumps(fp.meta))
    evil = HOSTILE + '"><img src=x onerror=alert(2)>|@octocat [x](javascript:alert(3)) \u202e'
    meta["renamed_tensors"] = [{"tensor": evil, "standard": "model.layers.0.mlp.up_proj.weight", "role": "mlp.up"}]
    key = "layers.0.mlp.up.weight"
    meta["tensors"][key]["source"] = evil  # differs from the reference's name: listed as renamed
    meta["lineage_claims"] = [{"where": evil, "value": evil}, {"where": 3, "value": ["not", "text"]}]
    meta["source"]["path"] = evil
    meta["vocabulary"]["special_tokens"] = [evil]
    meta["family"]["name"] = evil
    meta["vocabulary"]["source"] = evil
    candidate = tmp_path / "evil.fp.safetensors"
    Fingerprint(meta=meta, arrays=fp.arrays).save(candidate)

    html_path, md_path = tmp_path / "evil.html", tmp_path / "evil.md"
    for out in (html_path, md_path):
        assert _audit(str(candidate), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 0
    html, md = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    for text in (html, md):
        assert "<script" not in text and "<img" not in text and "\u202e" not in text
        assert "\\u202e" in text  # the override is shown, not obeyed
    renamed = html[html.index('<section id="renamed">'):html.index('<section id="lineage">')]
    assert renamed.count("&lt;script&gt;") == 2  # in both renamed tables
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in renamed
    assert "@\u2060octocat" in md and "\\[x\\]\\(javascript:alert\\(3\\)\\)" in md and "\\|" in md
    # a table row with the hostile name still has exactly its three cells
    row = next(line for line in md.splitlines() if line.startswith("| ") and "octocat" in line and "mlp.up" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 4


def test_real_smollm2_fingerprint_against_builtin_references(tmp_path):
    """The built-in SmolLM2-135M fingerprint (made from the real Q4_1 GGUF) audited as a candidate."""
    candidate = ROOT / "provenance" / "references" / "SmolLM2-135M-Instruct.fp.safetensors"
    out = tmp_path / "smol.html"
    assert _audit(str(candidate), "--report", str(out)) == 0
    html = out.read_text(encoding="utf-8")
    assert "These weights are an identical copy of SmolLM2-135M-Instruct" in html
    heatmap = html[html.index('<section id="layers">'):html.index('<section id="roles">')]
    assert heatmap.count("<title>candidate layer ") == 30 * 30
    assert heatmap.count('stroke="#d62728" stroke-width') == 31
    assert "49152" in html  # vocabulary size, both sides
    assert "Not recorded: the candidate" not in html  # rebuilt with schema 2: its claims are recorded
    digest = hashlib.sha256(candidate.read_bytes()).hexdigest()
    assert html.count(digest) == 2  # as the candidate, and among the built-in references
    # No path of the machine that built the package (the built-in fingerprints record where their files were).
    from provenance.fingerprint.store import load_fingerprint

    built_at = load_fingerprint(candidate).meta["vocabulary"]["source"]
    assert built_at.startswith("/") and built_at not in html and "site-packages" not in html
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in html  # the file name is kept

    # a fingerprint made before fingerprints kept the claims: said so, and it still loads
    from provenance.fingerprint import Fingerprint, load_fingerprint

    loaded = load_fingerprint(candidate)
    older = Fingerprint(meta={k: v for k, v in loaded.meta.items() if k != "lineage_claims"}, arrays=loaded.arrays)
    old_out = tmp_path / "older.html"
    assert _audit(str(older.save(tmp_path / "older.fp.safetensors")), "--report", str(old_out)) == 0
    assert "Not recorded: the candidate" in old_out.read_text(encoding="utf-8")


def test_layer_matrix_on_comparisons(pair):
    from provenance.compare import compare_fingerprints
    from provenance.fingerprint.load import fingerprint_for
    from provenance.report.compare_json import comparison_to_json

    base, derived, _ = pair
    cand, ref = fingerprint_for(derived), fingerprint_for(base)
    result = compare_fingerprints(cand, ref)
    matrix = result.layer_matrix
    sim = np.array(matrix["similarity"])
    assert sim.shape == (LAYERS, LAYERS) and np.array(matrix["log10_p"]).shape == (LAYERS, LAYERS)
    assert np.all(np.diag(sim) > 0.5) and np.all(np.abs(sim[~np.eye(LAYERS, dtype=bool)]) < 0.2)
    assert json.loads(json.dumps(comparison_to_json("c", cand, "r", ref, result)))["layer_matrix"] == matrix
    claims = cand.meta["lineage_claims"]
    assert {"where": "config.json _name_or_path", "value": HOSTILE} in claims


def test_p_value_sentences():
    from provenance.report.audit_report import Power, p_phrase
    from provenance.report.i18n import load_strings

    t = load_strings("en")
    tiny = p_phrase(-40.3, True, t)
    assert tiny.args == {"p": "5e-41", "odds": Power(10, 40)}
    # One floor, as the engine writes it (format_p: "p < 1e-300"), not a second one at 1e-1000.
    assert p_phrase(-1000.0, True, t).args["odds"] == Power(10, 300)
    assert p_phrase(-1000.0, True, t).template.startswith("p < 1e-300:")
    small = p_phrase(np.log10(0.003), True, t)
    assert (small.args["times"], small.args["outof"]) == (3, "1,000")
    large = p_phrase(np.log10(0.4), True, t)
    assert (large.args["times"], large.args["outof"]) == (40, "100") and "no evidence" in large.template
    assert "exact equality" in p_phrase(None, True, t).template
    assert "screening" in p_phrase(None, False, t).template


def test_one_p_value_notation():
    from provenance.report.audit_report import p_inline, p_text

    assert [p_text(x) for x in (None, 0.0, np.log10(0.0063), -40.3, -300.0, -300.5, -1000.0)] == \
        ["-", "1", "0.0063", "5e-41", "1e-300", "< 1e-300", "< 1e-300"]
    assert [p_inline(x) for x in (0.0, -40.3, -1000.0)] == ["p = 1", "p = 5e-41", "p < 1e-300"]


def _p_value(cell: str) -> float:
    return 0.0 if cell.startswith("<") else float(cell)


def test_report_polish_in_the_page(pair, html_report, tmp_path):
    """One p notation, "Decides: yes" only for signals that reached the bar, the legend dark at its "1" end."""
    _, derived, refs = pair
    md_path = tmp_path / "r.md"
    assert _audit(str(derived), "--refs", str(refs), "--report", str(md_path)) == 0  # with the built-ins too
    html_path = tmp_path / "r.html"
    assert _audit(str(derived), "--refs", str(refs), "--report", str(html_path)) == 0
    for text in (html_report, html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")):
        assert "1e-1000" not in text
        assert not re.search(r"\bp \d", text), re.search(r".{40}\bp \d.{20}", text)  # never "p 1"
    evidence = html_report[html_report.index('<section id="evidence">'):html_report.index('<section id="layers">')]
    rows = re.findall(r'<td class="num">([^<]*)</td>\s*<td class="num">([^<]*)</td>\s*<td>.*?</td>\s*<td>([^<]*)</td>',
                      evidence, flags=re.S)
    assert rows and any(decides == "yes" for _, _, decides in rows)
    for _, p, decides in rows:
        if decides == "yes":
            assert p != "-" and _p_value(p) <= 1e-6, (p, decides)
        elif p not in ("-",) and _p_value(p) > 1e-6:
            assert decides.startswith("no"), (p, decides)
    # The legend: its first gradient stop (the top, labelled 1) is the darkest colour of the scale.
    from provenance.report import charts

    stops = re.findall(r'<stop offset="(\d+)%" stop-color="(#[0-9a-f]{6})"/>', html_report)
    assert stops[0] == ("0", charts.color(1.0)) and stops[-1] == ("100", charts.color(0.0))


def test_decides_follows_the_decision_bar():
    from provenance.compare import Comparison
    from provenance.compare.engine import Evidence
    from provenance.report.audit_report import decides

    def result(verdict, abstained=False):
        return Comparison(verdict, 0.9, "", [], [], [], "same-shapes", abstained)

    strong, weak = Evidence("layers", 1.0, -20.0, ""), Evidence("final norm", 1.0, -2.2, "")
    screening = Evidence("std curve (screening only)", 0.9, None, "", decisive=False)
    hashes = Evidence("exact tensor hashes", 1.0, None, "")
    assert decides(strong, result("derived")) == "yes"
    assert decides(weak, result("derived")) == "below_bar"
    assert decides(strong, result("derived", abstained=True)) == "below_bar"
    assert decides(strong, result("unrelated")) == "below_bar"
    assert decides(screening, result("identical")) == "no"
    assert decides(hashes, result("identical")) == "yes" and decides(hashes, result("derived")) == "below_bar"


def test_renamed_tables_sorted_naturally_and_folded(pair, tmp_path):
    import random

    from provenance.fingerprint.load import fingerprint_for
    from provenance.fingerprint.store import Fingerprint
    from provenance.report.audit_report import SHOWN_OPEN, natural_key

    assert sorted(["blocks.10.w", "blocks.2.w", "blocks.1.w"], key=natural_key) == ["blocks.1.w", "blocks.2.w", "blocks.10.w"]
    _, derived, refs = pair
    fp = fingerprint_for(derived)
    meta = json.loads(json.dumps(fp.meta))
    names = [f"blocks.{i}.ffn.w_in" for i in range(45)]
    random.Random(0).shuffle(names)
    meta["renamed_tensors"] = [{"tensor": n, "standard": "model.layers.0.mlp.up_proj.weight", "role": "mlp.up"}
                               for n in names]
    candidate = tmp_path / "many.fp.safetensors"
    Fingerprint(meta=meta, arrays=fp.arrays).save(candidate)
    out = tmp_path / "many.html"
    assert _audit(str(candidate), "--refs", str(refs), "--no-builtin", "--report", str(out)) == 0
    html = out.read_text(encoding="utf-8")
    section = html[html.index("Tensors whose names differ"):html.index('<section id="lineage">')]
    shown = re.findall(r"blocks\.(\d+)\.ffn\.w_in", section)
    assert shown == [str(i) for i in range(45)]  # natural order: 2 before 10
    opened, folded = section.split('<details class="folded">')
    assert len(re.findall(r"blocks\.\d+", opened)) == SHOWN_OPEN == 20
    assert "show 25 more rows" in folded and "open" not in folded.split(">")[0]


def test_report_is_reproducible(pair, tmp_path):
    """Two runs on the same files (fingerprinted twice) give the same report apart from the date."""
    _, derived, refs = pair
    texts = []
    for name in ("a.md", "b.md"):
        assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(tmp_path / name)) == 0
        texts.append(re.sub(r"Generated \S+", "", (tmp_path / name).read_text(encoding="utf-8")))
    assert texts[0] == texts[1]


def test_command_line_is_recorded(pair, tmp_path, monkeypatch, capsys):
    _, derived, refs = pair
    out = tmp_path / "with space.md"
    argv = ["provenance", "audit", str(derived), "--refs", str(refs), "--no-builtin", "--json", "--report", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert main(argv[1:]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays pure JSON
    assert f"wrote report {out}" in captured.err
    md = out.read_text(encoding="utf-8")
    assert f"--report '{tmp_path}/with space.md'".replace("_", "\\_") in md


# --- the page in a browser ---------------------------------------------------------------------------

def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into an (h, w, channels) array.

    Hand-written (zlib + the five PNG row filters) because no image library is a dependency of the project.
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0
    bpp = 3 if color_type == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line.astype(np.uint8)
        elif kind == 1:  # Sub: a running sum per channel
            row = (np.cumsum(line.reshape(-1, bpp), axis=0) % 256).astype(np.uint8).reshape(-1)
        elif kind == 2:  # Up
            row = ((line + prev) % 256).astype(np.uint8)
        else:  # Average and Paeth depend on the byte to the left: one byte at a time (lists: faster than numpy)
            cur, up, row_list = line.tolist(), prev.tolist(), [0] * stride
            for x in range(stride):
                left = row_list[x - bpp] if x >= bpp else 0
                if kind == 3:
                    row_list[x] = (cur[x] + (left + up[x]) // 2) & 255
                else:
                    upleft = up[x - bpp] if x >= bpp else 0
                    p = left + up[x] - upleft
                    pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - upleft)
                    pred = left if pa <= pb and pa <= pc else (up[x] if pb <= pc else upleft)
                    row_list[x] = (cur[x] + pred) & 255
            row = np.array(row_list, dtype=np.uint8)
        out[y] = row
        prev = row
    return out.reshape(height, width, bpp)


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={user_dir}", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_report_renders_in_chromium(pair, html_report, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html_report, encoding="utf-8")
    dom = _chromium("--dump-dom", page.as_uri(), user_dir=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "These weights are a derived copy of base-model" in dom.stdout
    assert dom.stdout.count("<svg") == 1 + 7  # the heatmap and one chart per role
    assert "<script" not in dom.stdout  # the hostile token stayed text after parsing

    # A 1000 x 2400 page (down to the heatmap) drawn at half scale: 500 x 1200 pixels to decode.
    shot = tmp_path / "shot.png"
    result = _chromium("--window-size=1000,2400", "--force-device-scale-factor=0.5", f"--screenshot={shot}",
                       page.as_uri(), user_dir=tmp_path / "profile-png")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = _png_pixels(shot)[..., :3].astype(int)
    assert pixels.shape[:2] == (1200, 500)

    def count(rgb, tolerance=6):
        return int(np.sum(np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=-1)))

    assert count((253, 236, 234)) > 10_000  # the verdict box's background (an accusing verdict)
    assert count((198, 40, 40)) > 100  # its red border
    # the diagonal heatmap cells, in the colour the page gives them: the SVG was drawn
    diagonal = re.search(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="#([0-9a-f]{6})"><title>candidate layer 0, '
                         r'reference layer 0:', html_report).group(1)
    assert count(tuple(int(diagonal[k:k + 2], 16) for k in (0, 2, 4)), tolerance=12) > 100
    assert count((214, 39, 40)) > 50  # the layer-map outlines
    assert count((255, 255, 255)) < 0.9 * pixels.shape[0] * pixels.shape[1]  # not a blank page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_heatmap_legend_direction_in_chromium(html_report, tmp_path):
    """The legend is drawn dark at its top, where it says 1, and light at its bottom, where it says <=0."""
    from provenance.report import charts

    figure = html_report[html_report.index('<figure class="heatmap">'):]
    figure = figure[figure.index("<svg"):figure.index("</svg>") + len("</svg>")]  # the picture alone, at (0, 0)
    width, height = (int(float(v)) for v in re.search(r'<svg[^>]* width="([\d.]+)" height="([\d.]+)"', figure).groups())
    page = tmp_path / "legend.html"
    page.write_text(f'<!DOCTYPE html><html><body style="margin:0"><div style="line-height:0">{figure}</div></body></html>',
                    encoding="utf-8")
    shot = tmp_path / "legend.png"
    result = _chromium(f"--window-size={width + 20},{height + 20}", "--force-device-scale-factor=1",
                       f"--screenshot={shot}", page.as_uri(), user_dir=tmp_path / "profile-legend")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = _png_pixels(shot)[..., :3].astype(int)
    x, y, w, h = (float(v) for v in re.search(
        r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="url\(#legend-scale\)"', figure).groups())
    labels = re.findall(r'<text class="tick" x="[\d.]+" y="([\d.]+)">(1|≤0)</text>', figure)
    assert [label for _, label in sorted(labels, key=lambda item: float(item[0]))] == ["1", "≤0"]  # 1 on top

    def rgb(hex_color: str) -> np.ndarray:
        return np.array([int(hex_color[k:k + 2], 16) for k in (1, 3, 5)])

    top = pixels[int(y + 3), int(x + w / 2)]
    bottom = pixels[int(y + h - 3), int(x + w / 2)]
    assert np.abs(top - rgb(charts.color(1.0))).max() < 30, top
    assert np.abs(bottom - rgb(charts.color(0.0))).max() < 30, bottom


def _cjk_fonts() -> list[str]:
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted({name.split(",")[0].strip() for name in listed.splitlines() if name.strip()})


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (Debian package chromium)")
def test_chinese_report_uses_a_cjk_font_in_chromium(pair, tmp_path):
    """Where a CJK font is installed, the Chinese report is drawn with it (its glyphs, not empty boxes)."""
    fonts = _cjk_fonts()
    if not fonts:
        pytest.skip("no CJK font installed (fc-list :lang=zh is empty; e.g. Debian fonts-wqy-microhei)")
    _, derived, refs = pair
    out = tmp_path / "zh.html"
    assert _audit(str(derived), "--refs", str(refs), "--no-builtin", "--report", str(out), "--lang", "zh") == 0
    html = out.read_text(encoding="utf-8")
    css = html[html.index("<style>"):html.index("</style>")]
    assert css.count('"Noto Sans CJK SC"') >= 3  # body, monospace and the charts' text all name CJK fonts
    pdf = tmp_path / "zh.pdf"
    result = _chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", out.as_uri(), user_dir=tmp_path / "profile-pdf")
    assert result.returncode == 0 and pdf.exists(), result.stderr[-2000:]
    embedded = set(re.findall(rb"/BaseFont\s*/[A-Z]{6}\+([A-Za-z0-9_-]+)", pdf.read_bytes()))
    wanted = {font.replace(" ", "").encode() for font in fonts}
    assert any(name.startswith(w) for name in embedded for w in wanted), (embedded, wanted)


@pytest.fixture(scope="module")
def json_outputs(pair):
    """`audit --json` (with the built-in references) and `compare --json` of the derived copy."""
    import contextlib
    import io

    base, derived, refs = pair
    outputs = []
    for args in (["audit", str(derived), "--refs", str(refs), "--json"], ["compare", str(derived), str(base), "--json"]):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            assert main(args) == 0
        outputs.append(json.loads(stdout.getvalue()))
    return outputs


@pytest.mark.parametrize("width", [60, 80, 132])
def test_terminal_tables_fit_the_width(json_outputs, width):
    """`audit` and `compare` text wraps at word boundaries to the terminal width: no line is longer, and every
    number of the JSON output is printed whole."""
    from provenance.report.audit_text import render_audit
    from provenance.report.compare_json import render_comparison

    report, comparison = json_outputs
    for text, source in ((render_audit(report, width=width), report), (render_comparison(comparison, width=width), comparison)):
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width, max(lines, key=len)
        flat = " ".join(" ".join(lines).split())
        for row in source.get("references", []) + [{"strongest_evidence": e} for e in source.get("evidence", [])]:
            e = row.get("strongest_evidence")
            if e and row.get("kind", "weights") == "weights":
                for number in re.findall(r"p [=<] [\d.e-]+", e["detail"]):
                    assert number in flat, number  # "p = 1e-20" never split or cut


def test_terminal_width_follows_columns(monkeypatch):
    from provenance.report.terminal import fit, terminal_width, wrap

    monkeypatch.setenv("COLUMNS", "90")
    assert terminal_width() == 90
    assert wrap("correlation of 2048 sampled values, p = 0.0063", 30) == ["correlation of 2048 sampled", "values, p = 0.0063"]
    assert fit("SmolLM2-135M-Instruct-with-a-long-name", 12) == "SmolLM2-135…"
