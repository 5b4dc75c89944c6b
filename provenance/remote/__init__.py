"""Remote checkpoints read by HTTP Range requests: plain URLs and hf://ORG/NAME[@REVISION].

`fingerprint`, `compare` and `audit` accept, besides local paths, an
http(s) URL of a `.safetensors` file, of a sharded index `.json` (shards,
`config.json` and tokenizer files are looked for beside it) or of a `.gguf`
file, and hf://ORG/NAME[@REVISION][/FILE] for a model repository on a
Hugging Face-compatible hub (HF_ENDPOINT, HF_TOKEN and the Hugging Face cache
apply). A bare repo id ORG/NAME[@REVISION] is resolved by `locate`: the local
Hugging Face cache when the snapshot is there, else hf://.

Only what the fingerprint needs is fetched: for each safetensors file the
8-byte header length and the header (validated like a local one), then the
1-D tensors (norms, biases) whole, and for every matrix the rows of its *row
sample* (4 blocks of 8 consecutive rows, at positions seeded by the shape,
see `fingerprint.sketch.row_sample_rows`) plus the embedding and output-head
rows of the anchor tokens. That is the "remote" fingerprint variant
(`meta["variant"] == "remote"`): remote sources declare that they read row
blocks by range (`formats.base.Reads.ROW_BLOCKS`), and the one fingerprint
builder (`fingerprint.build`) makes what that allows. It has no
full-tensor statistics, hashes, sketches or unit signatures, so it is
compared on what both sides hold (`compare.views`). For LLaMA-7B shapes it
reads about 0.6% of the checkpoint (measured by bench/remote_bytes.py).

A GGUF is read the same way: its header, then only the rows (whole
quantization blocks) of the sample.

The formats' own readers (`formats.safetensors_format`, `formats.gguf_format`)
parse and read a remote file: they read through a `formats.byte_reader.ByteReader`,
and this package gives them one over HTTP.

Modules: `http` (ranges, retries, errors, pinning), `budget` (deadlines and
minimum rate), `coalesce` (many reads as few range requests), `byte_ranges`
(the `ByteReader` over HTTP), `sharded` (a remote index and its shards),
`checkpoint` (plain URLs, side files), `scratch` (the side files' temporary
folders), `hub` (hf://), `locate` (repo ids and the local cache). Transport
only: nothing here parses a weights format or computes a fingerprint.
"""


def is_remote(location: object) -> bool:
    """True for http://, https:// and hf:// locations (str only: a Path cannot hold a URL)."""
    return isinstance(location, str) and location.lower().startswith(("http://", "https://", "hf://"))


__all__ = ["is_remote"]
