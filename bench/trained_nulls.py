"""Trained nulls: independent trainings on real text, compared pair by pair with the project's engine.

Usage (from the checkout root):

    python bench/trained_nulls.py --out DIR [--cache DIR] [--train-only] [--quick]

The generated null suite (`bench/nulls.py`) draws models with the structure
of trained LLMs; this one trains them. Every model is trained here, on this
CPU, from its own seed, on real text, and cached (default
~/.cache/provenance-bench/trained; one folder per model, keyed by family,
shape, seed, data shard, steps and optimiser settings, and the corpus and
tokenizer digests), so a rerun only fingerprints and compares.

Decisions (sized for a 2-core machine shared with other work: about 50
minutes of one thread for every training together, measured 0.35-0.45 s per
decoder step):

- Text: a deterministic corpus of real text read from this machine in sorted
  order: the plain-text documentation under /usr/share/doc (copyright files,
  READMEs, *.md, *.txt; at most DOC_CHARS characters) and the standard
  library's Python sources (docstrings, comments and code, tests excluded; at
  most CODE_CHARS characters). Its files are split by index into two
  disjoint shards, "A" (even) and "B" (odd); the independent models train on
  both ("all"), the same-seed pairs on A and on B.
- Tokenizer: one byte-level BPE (vocabulary VOCAB, specials <|endoftext|> and
  [MASK]) trained on the corpus with the `tokenizers` library and saved with
  every model (tokenizer.json), so anchor tokens and vocabularies are real.
  All models share it: a hard null (one lab, one tokenizer, one text, other
  seeds).
- Shapes (hidden 256, 4 layers): LLaMA (RMSNorm, SwiGLU 688, 4 heads in 2 KV
  groups, untied head), GPT-2 (LayerNorm, GELU 1024, 4 heads, tied,
  Conv1D), BERT (post-LayerNorm encoder, GELU 1024, 4 heads, masked-LM with
  15% of tokens masked; saved as BertForMaskedLM). 16 LLaMA seeds give the
  120 cross pairs the table needs; 3 GPT-2 and 3 BERT seeds (what the time
  left allowed) add 3 + 3 pairs within their family and every cross-family
  pair of equal width (105 more).
- Training: AdamW (betas 0.9/0.95, weight decay 0.01), linear warm-up over
  30 steps then cosine decay to 10%, gradient clipping at 1, batches of 8
  windows of 64 tokens, STEPS = 240 steps (learning rate 3e-3 for the
  decoders, 1e-3 for BERT), one thread: about 120k tokens per model (loss
  8.1 -> 6.0 for LLaMA). Far from converged: `structure_report` measures what
  the weights show at this point, beside generated models of the same shape
  (q/k, v/o and up/down alignment appear; heavy tails and large-norm residual
  dimensions do not yet; see docs/accuracy.md).
- Same seed, different data: two LLaMA seeds trained on shard A and on
  shard B. They share their initialisation, so they are *not* independent:
  they are reported apart from the null table (what the engine says of a
  shared initialisation is its `shared_init` note), never counted in it.
- Generic path: 10 small CNNs (three conv blocks with BatchNorm, two linear
  layers) trained from independent seeds on generated images (eight classes
  of coloured shapes on noise), saved as bare safetensors (no config: only
  the generic path fits them); every cross pair (45) is compared.

Comparison: every model is fingerprinted with the project's builder
(`fingerprint_for`, what `provenance compare` does), every cross pair is
compared with `compare_fingerprints` locally and with the candidate read as a
remote fingerprint, and every decisive signal's raw p-values are collected
with the null suite's adapters (`bench/nulls/draws.py`); the generic path's
raw per-tensor p-values are taken as `compare/generic.py` tests them. Printed
and written to DIR/trained_nulls.json and DIR/trained_nulls.md (the pair
records first to DIR/records.json): per signal the share of
p-values at or below alpha for alpha 0.1, 0.01, 1e-3, 1e-4, flagged where it
exceeds twice alpha, the verdicts (accusing = identical, derived, assembled),
the same-seed pairs, the generic pairs, and the structure statistics.
--train-only trains (or finds cached) and stops; --cached-only trains nothing and
compares what the cache holds; --quick: two LLaMA models
of 20 steps (a smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.zoo import text as X  # noqa: E402

CACHE = Path.home() / ".cache" / "provenance-bench" / "trained"
DOC_CHARS = 1_500_000
CODE_CHARS = 1_500_000
VOCAB = 4096
MASK = "[MASK]"
STEPS = 240
BATCH, SEQ, WARMUP = 8, 64, 30
TRAIN_VERSION = 1  # bump when the training recipe changes what a cached model holds

LLAMA_SEEDS = tuple(range(1, 17))
GPT2_SEEDS = (101, 102, 103)
BERT_SEEDS = (201, 202, 203)
SAME_SEEDS = (301, 302)
CNN_SEEDS = tuple(range(401, 411))
CNN_STEPS = 300


# --- text -----------------------------------------------------------------------------------------------

def corpus() -> tuple[list[tuple[str, str]], dict]:
    """(name, text) of every file of the corpus, in a fixed order, and its description."""
    import sysconfig

    files: list[tuple[str, str]] = []
    total = 0
    for path in X._doc_files():
        text = X._read(path)
        if text and total < DOC_CHARS:
            files.append((str(path), text))
            total += len(text)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = 0
    for root, dirs, names in sorted(os.walk(stdlib)):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "test", "tests", "idlelib", "site-packages",
                                                      "dist-packages", "lib2to3"))
        for name in sorted(names):
            if name.endswith(".py") and code < CODE_CHARS:
                text = X._read(Path(root) / name)
                if text:
                    files.append((str((Path(root) / name).relative_to(stdlib)), text))
                    code += len(text)
    digest = hashlib.sha256()
    for name, text in files:
        digest.update(name.encode() + b"\x00" + text.encode() + b"\x00")
    return files, {"files": len(files), "doc_chars": total, "code_chars": code, "sha256": digest.hexdigest()}


def shard(files: list[tuple[str, str]], which: str) -> list[str]:
    if which == "all":
        return [t for _, t in files]
    return [t for k, (_, t) in enumerate(files) if k % 2 == (0 if which == "A" else 1)]


def train_tokenizer(texts: list[str]) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[X.EOT, MASK], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return json.loads(tokenizer.to_str())


class Text:
    """The corpus, its tokenizer and the token streams of its shards, cached in the cache folder."""

    def __init__(self, cache: Path, log=print):
        self.files, self.meta = corpus()
        folder = cache / "text"
        folder.mkdir(parents=True, exist_ok=True)
        key = self.meta["sha256"][:16]
        path = folder / f"tokenizer-{key}.json"
        if not path.exists():
            path.write_text(json.dumps(train_tokenizer(shard(self.files, "all")), ensure_ascii=False))
        self.tokenizer = json.loads(path.read_text())
        self.key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.vocab = X.vocab_size(self.tokenizer)
        self.eot = self.tokenizer["model"]["vocab"][X.EOT]
        self.mask = next(a["id"] for a in self.tokenizer["added_tokens"] if a["content"] == MASK)
        self.ids = {}
        for which in ("all", "A", "B"):
            ids_path = folder / f"ids-{self.key}-{which}.npy"
            if not ids_path.exists():
                np.save(ids_path, X.encode(self.tokenizer, shard(self.files, which)))
            self.ids[which] = np.load(ids_path)
        log(f"text: {self.meta['files']} files, {self.meta['doc_chars']} + {self.meta['code_chars']} chars -> "
            f"{len(self.ids['all'])} tokens (A {len(self.ids['A'])}, B {len(self.ids['B'])}); vocabulary {self.vocab}")


# --- models ---------------------------------------------------------------------------------------------

def config_for(family: str, text: Text):
    import transformers as T

    if family == "llama":
        config = T.LlamaConfig(vocab_size=text.vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                               tie_word_embeddings=False, bos_token_id=text.eot, eos_token_id=text.eot)
        config.architectures = ["LlamaForCausalLM"]
        return config, "LlamaForCausalLM"
    if family == "gpt2":
        config = T.GPT2Config(vocab_size=text.vocab, n_embd=256, n_inner=1024, n_layer=4, n_head=4, n_positions=256,
                              bos_token_id=text.eot, eos_token_id=text.eot, resid_pdrop=0.0, embd_pdrop=0.0,
                              attn_pdrop=0.0)
        config.architectures = ["GPT2LMHeadModel"]
        return config, "GPT2LMHeadModel"
    if family == "bert":
        config = T.BertConfig(vocab_size=text.vocab, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                              num_attention_heads=4, max_position_embeddings=256, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0, pad_token_id=text.eot)
        config.architectures = ["BertForMaskedLM"]
        return config, "BertForMaskedLM"
    raise ValueError(family)


def recipe(family: str, seed: int, data: str, steps: int, text: Text) -> dict:
    return {"family": family, "seed": seed, "data": data, "steps": steps, "batch": BATCH, "seq": SEQ,
            "warmup": WARMUP, "lr": 1e-3 if family == "bert" else 3e-3, "shape": "h256-L4",
            "corpus": text.meta["sha256"][:16], "tokenizer": text.key, "version": TRAIN_VERSION}


def model_dir(cache: Path, spec: dict) -> Path:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return cache / "models" / f"{spec['family']}-{spec['shape']}-s{spec['seed']}-{spec['data']}-{spec['steps']}st-{key}"


def batch_of(family: str, ids: torch.Tensor, rng: np.random.Generator, text: Text) -> dict:
    offsets = rng.integers(0, len(ids) - SEQ - 1, size=BATCH)
    x = torch.stack([ids[o:o + SEQ] for o in offsets])
    if family != "bert":
        return {"input_ids": x, "labels": x}
    masked = torch.from_numpy(rng.random(x.shape) < 0.15)
    labels = torch.where(masked, x, torch.full_like(x, -100))
    inputs = torch.where(masked, torch.full_like(x, text.mask), x)
    return {"input_ids": inputs, "labels": labels}


def train_model(spec: dict, text: Text, directory: Path, log=print) -> dict:
    """Train one model from its seed and save it as transformers saves it (config.json, model.safetensors)."""
    import transformers as T

    torch.manual_seed(spec["seed"])
    config, model_class = config_for(spec["family"], text)
    config._attn_implementation = "eager"
    model = getattr(T, model_class)(config)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01, betas=(0.9, 0.95))
    data = text.ids[spec["data"]]
    split = int(len(data) * 0.98)
    ids = torch.from_numpy(data[:split])
    rng = np.random.default_rng(spec["seed"])
    losses, started, steps = [], time.time(), spec["steps"]
    for step in range(steps):
        scale = (step + 1) / WARMUP if step < WARMUP else \
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / max(1, steps - WARMUP)))
        for group in optimiser.param_groups:
            group["lr"] = spec["lr"] * scale
        loss = model(**batch_of(spec["family"], ids, rng, text)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    held = torch.from_numpy(data[split:])
    with torch.no_grad():
        val = float(np.mean([model(**batch_of(spec["family"], held, np.random.default_rng(k), text)).loss.item()
                             for k in range(4)]))
    info = {**spec, "first_loss": round(float(np.mean(losses[:10])), 3), "last_loss": round(float(np.mean(losses[-20:])), 3),
            "val_loss": round(val, 3), "seconds": round(time.time() - started, 1)}
    directory.mkdir(parents=True, exist_ok=True)
    model.config.architectures = config.architectures
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "tokenizer.json").write_text(json.dumps(text.tokenizer, ensure_ascii=False))
    (directory / "train.json").write_text(json.dumps(info, indent=1))
    log(f"  trained {directory.name}: loss {info['first_loss']} -> {info['last_loss']} (held out {info['val_loss']}), "
        f"{info['seconds']} s")
    return info


# --- generic path: small CNNs on generated images ------------------------------------------------------

def shape_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """count 3x32x32 images of eight classes (circle, square, triangle, cross; small or large) on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images = rng.normal(0.0, 0.3, size=(count, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 8, size=count)
    for k, label in enumerate(labels):
        kind, large = label % 4, label // 4
        r = rng.uniform(8, 12) if large else rng.uniform(3, 6)
        cy, cx = rng.uniform(r, 32 - r, size=2)
        dy, dx = yy - cy, xx - cx
        mask = [dy ** 2 + dx ** 2 <= r ** 2, np.maximum(abs(dy), abs(dx)) <= r,
                (dy <= r) & (dy >= -r) & (abs(dx) <= (dy + r) / 2),
                (np.minimum(abs(dy), abs(dx)) <= r / 4) & (np.maximum(abs(dy), abs(dx)) <= r)][kind]
        images[k][:, mask] += rng.uniform(0.5, 1.5, size=3)[:, None].astype(np.float32)
    return torch.from_numpy(images), torch.from_numpy(labels)


def cnn() -> torch.nn.Module:
    nn = torch.nn

    def block(a: int, b: int) -> list:
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(), nn.Linear(128 * 16, 128),
                         nn.ReLU(), nn.Linear(128, 8))


def cnn_recipe(seed: int) -> dict:
    return {"family": "cnn", "seed": seed, "data": "shapes", "steps": CNN_STEPS, "batch": 32, "lr": 1e-3,
            "shape": "c32-64-128", "version": TRAIN_VERSION}


def train_cnn(spec: dict, directory: Path, log=print) -> dict:
    from safetensors.torch import save_file

    torch.manual_seed(spec["seed"])
    model = cnn()
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01)
    images, labels = shape_images(8192, 0)  # one image set: every model sees the same data, in its own order
    rng = np.random.default_rng(spec["seed"])
    started = time.time()
    losses = []
    model.train()
    for _ in range(spec["steps"]):
        pick = torch.from_numpy(rng.integers(0, len(images), size=spec["batch"]))
        loss = torch.nn.functional.cross_entropy(model(images[pick]), labels[pick])
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    test_x, test_y = shape_images(1024, 1)
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    info = {**spec, "first_loss": round(float(np.mean(losses[:10])), 3), "last_loss": round(float(np.mean(losses[-20:])), 3),
            "test_accuracy": round(accuracy, 3), "seconds": round(time.time() - started, 1)}
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
               if v.dtype.is_floating_point}, str(directory / "model.safetensors"))
    (directory / "train.json").write_text(json.dumps(info, indent=1))
    log(f"  trained {directory.name}: loss {info['first_loss']} -> {info['last_loss']}, accuracy {accuracy:.3f}, "
        f"{info['seconds']} s")
    return info


# --- the plan -------------------------------------------------------------------------------------------

def plan(text: Text, quick: bool) -> dict[str, list[dict]]:
    """Every model to train, by group, in training order (the order a shortened run keeps)."""
    if quick:
        return {"llama": [recipe("llama", s, "all", 20, text) for s in (1, 2)], "gpt2": [], "bert": [],
                "same-seed": [], "cnn": [{**cnn_recipe(s), "steps": 20} for s in (401, 402)]}
    return {"llama": [recipe("llama", s, "all", STEPS, text) for s in LLAMA_SEEDS],
            "gpt2": [recipe("gpt2", s, "all", STEPS, text) for s in GPT2_SEEDS],
            "bert": [recipe("bert", s, "all", STEPS, text) for s in BERT_SEEDS],
            "cnn": [cnn_recipe(s) for s in CNN_SEEDS],
            "same-seed": [recipe("llama", s, d, STEPS, text) for s in SAME_SEEDS for d in ("A", "B")]}


def ensure_trained(models: dict[str, list[dict]], text: Text, cache: Path, log=print,
                   cached_only: bool = False) -> dict[str, list[Path]]:
    torch.set_num_threads(1)
    found: dict[str, list[Path]] = {}
    for group, specs in models.items():
        found[group] = []
        for spec in specs:
            directory = model_dir(cache, spec)
            if not (directory / "train.json").exists():
                if cached_only:
                    log(f"  not in the cache, left out: {directory.name}")
                    continue
                if spec["family"] == "cnn":
                    train_cnn(spec, directory, log)
                else:
                    train_model(spec, text, directory, log)
            found[group].append(directory)
    return found


# --- comparisons --------------------------------------------------------------------------------------

ALPHAS = (0.1, 0.01, 1e-3, 1e-4)
_FPS: dict[str, object] = {}  # fingerprints by model name, shared with forked workers


def name_of(directory: Path) -> str:
    info = json.loads((directory / "train.json").read_text())
    return f"{info['family']}-s{info['seed']}" + ("" if info["data"] in ("all", "shapes") else f"-{info['data']}")


def cross_pairs(directories: dict[str, list[Path]]) -> list[tuple[str, str]]:
    """Every pair of independently seeded transformers: within each family and across families (all hidden 256)."""
    names = [name_of(d) for g in ("llama", "gpt2", "bert") for d in directories.get(g, [])]
    return [(a, b) for k, a in enumerate(names) for b in names[k + 1:]]


def pair_job(pair: tuple[str, str]) -> dict:
    from bench.nulls import draws as D

    cand, ref = _FPS[pair[0]], _FPS[pair[1]]
    draws = [d for adapter in D.PAIR_SIGNALS for d in adapter(cand, ref)]
    return {"pair": pair, "verdicts": D.verdicts(cand, ref), "draws": [(d.signal, d.log10p, d.where) for d in draws]}


def strongest(result) -> float:
    return round(min((e.log10p for e in result.evidence if e.decisive and e.log10p is not None), default=0.0), 2)


def plain_pair(pair: tuple[str, str]) -> dict:
    """The verdict of one pair, its strongest decisive p, summary and notes (same-seed and generic pairs)."""
    from provenance.compare import compare_fingerprints

    result = compare_fingerprints(_FPS[pair[0]], _FPS[pair[1]])
    return {"pair": list(pair), "verdict": str(result.verdict), "strongest_log10p": strongest(result),
            "summary": result.summary, "notes": list(result.notes),
            "evidence": [(e.signal, None if e.log10p is None else round(float(e.log10p), 2)) for e in result.evidence
                         if e.decisive]}


def generic_draws(pair: tuple[str, str]) -> list[float]:
    """Raw log10 p of every stored-tensor pair the generic path tests (`compare/generic.py`: pairs by name and shape,
    the clustered correlation test over input-channel clusters), before its Bonferroni correction."""
    from provenance.compare.generic import generic_tensors, input_channel_clusters, pair_tensors
    from provenance.compare.stats import clustered_log10p

    cand, ref = generic_tensors(_FPS[pair[0]]), generic_tensors(_FPS[pair[1]])
    found = []
    for test in pair_tensors(cand or {}, ref or {}):
        x, y = test.cand.sample, test.ref.sample
        clusters = input_channel_clusters(test.cand.shape)
        count = x.size if clusters is None else np.unique(clusters).size
        if test.how == "name" and x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0 and count >= 3:
            found.append(float(clustered_log10p(x, y, clusters)[1]))
    return found


def tail_rows(values: dict[str, list[float]]) -> list[dict]:
    """Per signal: draws, the share (count) of p-values at or below each alpha, a flag above twice alpha, and the
    binomial p of the count (uniform p-values, draws taken as independent, which draws sharing a model are not)."""
    from scipy import stats

    rows = []
    for signal, logs in sorted(values.items()):
        logs_array = np.asarray(logs, dtype=np.float64)
        n = len(logs_array)
        tails = []
        for alpha in ALPHAS:
            count = int(np.sum(logs_array <= np.log10(alpha)))
            tails.append({"alpha": alpha, "count": count, "share": count / n if n else None,
                          "flag": bool(n and count / n > 2 * alpha),
                          "binomial_p": float(stats.binom.sf(count - 1, n, alpha)) if n else None})
        rows.append({"signal": signal, "draws": n, "min_log10p": round(float(logs_array.min()), 2) if n else None,
                     "tails": tails})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| signal | draws | <= 0.1 | <= 0.01 | <= 1e-3 | <= 1e-4 | min p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        cells = [("n/a" if t["share"] is None else f"{t['share']:.4f} ({t['count']})") + (" **!**" if t["flag"] else "")
                 for t in row["tails"]]
        min_p = "n/a" if row["min_log10p"] is None else f"1e{row['min_log10p']:.1f}"
        lines.append(f"| {row['signal']} | {row['draws']} | {' | '.join(cells)} | {min_p} |")
    return lines


def run_comparisons(directories: dict[str, list[Path]], args, started: float, log) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from bench.nulls import draws as D
    from provenance.fingerprint.load import fingerprint_for

    args.out.mkdir(parents=True, exist_ok=True)
    every = [d for group in directories.values() for d in group]
    for directory in every:
        _FPS[name_of(directory)] = fingerprint_for(directory)
    log(f"fingerprinted {len(every)} models")
    pairs = cross_pairs(directories)
    records = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:  # forked workers see _FPS
        for done, record in enumerate(pool.map(pair_job, pairs), 1):
            records.append(record)
            if done % 20 == 0 or done == len(pairs):
                log(f"  compared {done}/{len(pairs)} cross pairs")
    same = [(name_of(a), name_of(b)) for a, b in zip(directories["same-seed"][0::2], directories["same-seed"][1::2])]
    cnn_names = [name_of(d) for d in directories["cnn"]]
    generic_pairs = [(a, b) for k, a in enumerate(cnn_names) for b in cnn_names[k + 1:]]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        same_records = list(pool.map(plain_pair, same))
        generic_records = list(pool.map(plain_pair, generic_pairs))
        generic_values = {"generic tensor pair (raw)": [v for found in pool.map(generic_draws, generic_pairs) for v in found]}
    log("compared the same-seed and generic pairs")
    values: dict[str, list[float]] = {}
    for record in records:
        for signal, log10p, _ in record["draws"]:
            values.setdefault(signal, []).append(log10p)
    accusing = {view: [r for r in records if r["verdicts"][view]["verdict"] in D.ACCUSING] for view in ("local", "remote")}
    (args.out / "records.json").write_text(json.dumps({"pairs": records, "same_seed": same_records,
                                                       "generic": generic_records}, default=str))
    properties = structure_report(directories)
    result = {
        "schema": "provenance.trained-nulls/1",
        "command": "python bench/trained_nulls.py " + " ".join(sys.argv[1:]),
        "models": {g: [name_of(d) for d in ds] for g, ds in directories.items()},
        "training": {name_of(d): json.loads((d / "train.json").read_text()) for d in every},
        "pairs": len(records), "signals": tail_rows(values),
        "verdicts": {view: {v: sum(1 for r in records if r["verdicts"][view]["verdict"] == v)
                            for v in sorted({r["verdicts"][view]["verdict"] for r in records})} for view in accusing},
        "accusations": {view: [{"pair": r["pair"], **r["verdicts"][view]} for r in found] for view, found in accusing.items()},
        "strongest_decisive_log10p": {view: min((r["verdicts"][view]["strongest_log10p"] for r in records), default=None)
                                      for view in accusing},
        "exceedances": [{"signal": row["signal"], "alpha": t["alpha"], "count": t["count"], "draws": row["draws"],
                         "binomial_p": t["binomial_p"],
                         "worst": sorted((round(log10p, 2), r["pair"], where) for r in records
                                         for s, log10p, where in r["draws"]
                                         if s == row["signal"] and log10p <= np.log10(t["alpha"]))[:5]}
                        for row in tail_rows(values) for t in row["tails"] if t["flag"]],
        "same_seed": same_records, "generic": generic_records, "generic_signals": tail_rows(generic_values), "structure": properties,
        "pair_list": [{"pair": r["pair"], "verdicts": r["verdicts"]} for r in records],
    }
    result["seconds"] = round(time.time() - started, 1)
    (args.out / "trained_nulls.json").write_text(json.dumps(result, indent=1, default=str))
    text = markdown(result)
    (args.out / "trained_nulls.md").write_text(text)
    print(text)
    return 0


def markdown(result: dict) -> str:
    counts = {g: len(v) for g, v in result["models"].items()}
    lines = [f"Trained nulls: {counts.get('llama', 0)} LLaMA, {counts.get('gpt2', 0)} GPT-2, {counts.get('bert', 0)} "
             f"BERT models trained from independent seeds on real text; {result['pairs']} cross pairs "
             f"(within and across families). Command: `{result['command']}`", ""]
    lines += table(result["signals"])
    lines += ["", "Share (count) of raw p-values at or below alpha (before any selection or correction); expected: "
              "alpha; **!** marks a share above twice alpha."]
    for view in ("local", "remote"):
        verdicts = ", ".join(f"{k} {v}" for k, v in result["verdicts"][view].items())
        lines += ["", f"Verdicts ({view}{', candidate read as a remote fingerprint' if view == 'remote' else ''}): "
                  f"**{len(result['accusations'][view])} accusing** of {result['pairs']}; {verdicts}; strongest "
                  f"decisive p over all pairs: 1e{result['strongest_decisive_log10p'][view]}"]
        for item in result["accusations"][view]:
            lines.append(f"- {item['pair'][0]} vs {item['pair'][1]}: {item['verdict']}, strongest "
                         f"1e{item['strongest_log10p']}: {item['summary']}")
    for item in result["exceedances"]:
        lines.append(f"- exceedance: {item['signal']} <= {item['alpha']:g}: {item['count']} of {item['draws']} "
                     f"(expected {item['alpha'] * item['draws']:.2g}, binomial p {item['binomial_p']:.2g}); smallest: " + "; ".join(f"1e{p} ({a} vs {b}, {w})" for p, (a, b), w in item["worst"]))
    lines += ["", "Same seed, different data (shared initialisation; not independent, not in the table):"]
    for item in result["same_seed"]:
        lines.append(f"- {item['pair'][0]} vs {item['pair'][1]}: {item['verdict']}, strongest 1e{item['strongest_log10p']}"
                     f"; {item['summary']}" + (f" Notes: {' / '.join(item['notes'])}" if item["notes"] else ""))
    generic = result["generic"]
    if generic:
        verdicts: dict[str, int] = {}
        for item in generic:
            verdicts[item["verdict"]] = verdicts.get(item["verdict"], 0) + 1
        accused = [g for g in generic if g["verdict"] in ("identical", "derived", "assembled")]
        lines += ["", f"Generic path: {len(result['models'].get('cnn', []))} CNNs from independent seeds, {len(generic)} "
                  f"pairs: {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))}; **{len(accused)} accusing**; "
                  f"strongest decisive p (Bonferroni-corrected, as the verdict reads it) "
                  f"1e{min(g['strongest_log10p'] for g in generic)}; raw per-tensor p-values:"]
        for item in accused:
            lines.append(f"- {item['pair'][0]} vs {item['pair'][1]}: {item['verdict']}: {item['summary']}")
        lines += [""] + table(result["generic_signals"])
    lines += ["", "Structure of the trained models beside generated ones of the same shape (median over models; "
              "alignment scores are 1 for independent bases):", ""]
    lines += structure_table(result["structure"])
    return "\n".join(lines) + "\n"


# --- structure: what training puts into the weights -----------------------------------------------------

READING = ("q", "k", "v", "gate", "up")


def layer_matrices(family: str, state: dict[str, torch.Tensor], heads: int) -> list[dict]:
    """Per layer: q, k, v, o, up, down (and gate) as (out, in) float64 arrays, with the head counts."""
    def get(suffix: str) -> np.ndarray:
        key = next(k for k in state if k.endswith(suffix))
        return state[key].double().numpy()

    layers = []
    for i in range(10_000):
        try:
            if family == "llama":
                found = {r: get(f"layers.{i}.{n}.weight") for r, n in (
                    ("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                    ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
                    ("down", "mlp.down_proj"))}
                found["norms"] = [get(f"layers.{i}.input_layernorm.weight"), get(f"layers.{i}.post_attention_layernorm.weight")]
            elif family == "gpt2":
                qkv = get(f"h.{i}.attn.c_attn.weight").T
                h = qkv.shape[1]
                found = {"q": qkv[:h], "k": qkv[h:2 * h], "v": qkv[2 * h:], "o": get(f"h.{i}.attn.c_proj.weight").T,
                         "up": get(f"h.{i}.mlp.c_fc.weight").T, "down": get(f"h.{i}.mlp.c_proj.weight").T,
                         "norms": [get(f"h.{i}.ln_1.weight"), get(f"h.{i}.ln_2.weight")]}
            else:
                base = f"encoder.layer.{i}."
                found = {r: get(base + n + ".weight") for r, n in (
                    ("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"),
                    ("o", "attention.output.dense"), ("up", "intermediate.dense"), ("down", "output.dense"))}
                found["norms"] = [get(base + "attention.output.LayerNorm.weight"), get(base + "output.LayerNorm.weight")]
        except StopIteration:
            break
        found["heads"], found["kv_heads"] = heads, found["k"].shape[0] // (found["q"].shape[0] // heads)
        layers.append(found)
    return layers


def product_alignment(a: np.ndarray, b: np.ndarray) -> float:
    """k ||a b||^2 / (||a||^2 ||b||^2) for a (m, k), b (k, n): 1 on average when the shared k-dimensional space
    of the two is rotated at random (independent bases), above 1 when their large directions coincide."""
    k = a.shape[1]
    return float(k * np.sum((a @ b) ** 2) / (np.sum(a * a) * np.sum(b * b)))


def excess_kurtosis(x: np.ndarray) -> float:
    x = x.ravel() - x.mean()
    return float(np.mean(x ** 4) / np.mean(x ** 2) ** 2 - 3.0)


def model_structure(family: str, state: dict[str, torch.Tensor], heads: int) -> dict:
    """Alignment of the pairs training couples (q/k and v/o through the head space, up/down through the units),
    heavy tails, and large-norm residual dimensions, for one model."""
    qk, vo, updown, unit_cos, gate_up, kurt, read_ratio, top_dims, norm_ratio = [], [], [], [], [], [], [], [], []
    for layer in layer_matrices(family, state, heads):
        d = layer["q"].shape[0] // layer["heads"]
        group = layer["heads"] // layer["kv_heads"]
        for h in range(layer["heads"]):
            g = h // group
            q, k = layer["q"][h * d:(h + 1) * d], layer["k"][g * d:(g + 1) * d]
            v, o = layer["v"][g * d:(g + 1) * d], layer["o"][:, h * d:(h + 1) * d]
            qk.append(product_alignment(q.T, k))
            vo.append(product_alignment(o, v))
        updown.append(product_alignment(layer["down"], layer["up"]))
        up, down = layer["up"], layer["down"].T  # unit i: up row i and down column i, both in the residual
        unit_cos.append(float(np.mean(np.sum(up * down, 1) / (np.linalg.norm(up, axis=1) * np.linalg.norm(down, axis=1)))))
        if "gate" in layer:
            gate = layer["gate"]
            gate_up.append(float(np.mean(np.abs(np.sum(up * gate, 1)) / (np.linalg.norm(up, axis=1) * np.linalg.norm(gate, axis=1)))
                                 * np.sqrt(up.shape[1])))
        kurt += [excess_kurtosis(layer[r]) for r in ("q", "k", "v", "o", "up", "down")]
        columns = np.sqrt(sum(np.sum(layer[r] ** 2, 0) for r in READING if r in layer))  # per residual dimension
        read_ratio.append(float(columns.max() / np.median(columns)))
        top_dims.append(int(np.argmax(columns)))
        norm_ratio += [float(np.max(np.abs(n)) / np.median(np.abs(n))) for n in layer["norms"]]
    common = max(set(top_dims), key=top_dims.count)
    return {"qk_alignment": float(np.mean(qk)), "vo_alignment": float(np.mean(vo)), "up_down_alignment": float(np.mean(updown)),
            "up_down_unit_cos": float(np.mean(unit_cos)),
            "gate_up_unit_cos_x_sqrt_h": float(np.mean(gate_up)) if gate_up else None,
            "weight_excess_kurtosis_median": float(np.median(kurt)), "weight_excess_kurtosis_max": float(np.max(kurt)),
            "reading_column_max_over_median": float(np.mean(read_ratio)),
            "layers_sharing_top_residual_dim": f"{top_dims.count(common)}/{len(top_dims)}",
            "norm_weight_max_over_median": float(np.median(norm_ratio))}


def generated_states(family: str, count: int, **options) -> list[dict[str, torch.Tensor]]:
    """Generated null models (`bench/nulls/models.py`) of the trained models' shapes."""
    from bench.nulls import models as G

    shape = {"llama": (688, 4, 2), "gpt2": (1024, 4, 4), "bert": (1024, 4, 4)}[family]
    return [G.generate_state(G.ModelSpec(f"g{k}", "g", family, 256, shape[0], shape[1], shape[2], 4, 4096, False,
                                         7000 + k, **options))[0] for k in range(count)]


def structure_report(directories: dict[str, list[Path]], generated: int = 3) -> dict:
    from safetensors.torch import load_file

    from bench.nulls import models as G

    found: dict[str, dict] = {}
    for family in ("llama", "gpt2", "bert"):
        if not directories.get(family):
            continue
        trained = [model_structure(family, load_file(str(d / "model.safetensors")), 4) for d in directories[family]]
        found[f"{family} trained ({len(trained)})"] = _median(trained)
        found[f"{family} generated ({generated})"] = _median([model_structure(family, s, 4)
                                                             for s in generated_states(family, generated)])
        found[f"{family} generated, trained kind ({generated})"] = _median(
            [model_structure(family, s, 4) for s in generated_states(family, generated, **G.TRAINED_KIND)])
    return found


def _median(rows: list[dict]) -> dict:
    def middle(key: str):
        values = [r[key] for r in rows]
        if values[0] is None:
            return None
        if isinstance(values[0], str):
            return sorted(values)[len(values) // 2]
        return round(float(np.median(values)), 3)

    return {key: middle(key) for key in rows[0]}


def structure_table(structure: dict) -> list[str]:
    if not structure:
        return []
    names = list(structure)
    keys = list(structure[names[0]])
    lines = ["| property | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(str(structure[n][key]) for n in names) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cached-only", action="store_true", help="compare the models in the cache, train none")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    started = time.time()

    def log(line: str) -> None:
        print(f"[{time.time() - started:6.0f}s] {line}", flush=True)

    text = Text(args.cache, log)
    directories = ensure_trained(plan(text, args.quick), text, args.cache, log, args.cached_only)
    log(f"models ready: {', '.join(f'{g} {len(d)}' for g, d in directories.items())}")
    if args.train_only:
        return 0
    return run_comparisons(directories, args, started, log)


if __name__ == "__main__":
    sys.exit(main())
