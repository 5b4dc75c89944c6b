"""What a PATH argument names: a local path, a URL, hf://, or a bare Hugging Face repo id ORG/NAME[@REVISION].

The order, and why:
1. an http(s):// or hf:// location is remote, as written (`--revision`
   completes an hf:// location that names no revision);
2. anything that exists on disk is that local path, even when it also looks
   like a repo id (`meta-llama/Llama-2-7b` may be a folder in the current
   directory): a file the user has is never replaced by a download (when
   the cache also holds that repository, a note says which was read);
3. a repo id `ORG/NAME[@REVISION]` (one slash, no weights-file suffix) is
   looked up in the local Hugging Face cache with huggingface_hub's own
   scanner (`scan_cache_dir` on `constants.HF_HUB_CACHE`, which follows
   HF_HUB_CACHE and HF_HOME); a snapshot for the revision (a branch or tag
   in `refs/`, or a commit hash or its prefix; `main` when none is given)
   that holds a weights file is used as a local folder;
4. otherwise, only when the caller allows the hub (`hub=True`: the command
   line's `--hub`), the repo id becomes hf://ORG/NAME[@REVISION], read by
   range requests, and the reason it was not found locally is returned, for
   the command line to say on stderr. Without it, the name is a missing
   local path: a mistyped `fixtures/suspec` has the shape of a repo id, and
   the name of a private folder must not leave the machine in a request.
   A cache snapshot holding only side files (config.json and tokenizer,
   as other tools' downloads leave) does not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from ..errors import UnreadablePathError
from . import is_remote
from .hub import parse_hub_location

REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@(?P<revision>[^\s/@]+))?$")
# A name ending like a file is a missing local file, not a repository.
FILE_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".json", ".zip", ".sqlite")
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt")

LOCATION_HELP = ("a checkpoint folder or weights file (.safetensors/.bin/.pt/.gguf), a fingerprint file, a Hugging "
                 "Face cache folder (models--ORG--NAME), an http(s):// URL, hf://ORG/NAME[@REV][/FILE.gguf], or a "
                 "repo id ORG/NAME[@REV] (the local Hugging Face cache first, else the hub by range requests; "
                 "an existing local path of that name wins; the hub only with --hub)")


class RevisionError(UnreadablePathError):
    """`--revision` given where it cannot apply, or disagreeing with ORG/NAME@REV."""


@dataclass(frozen=True)
class Located:
    location: str  # a local path, or an http(s)/hf:// location
    note: str | None = None  # how the argument was resolved, for stderr (None when it is what was written)


def repo_id_parts(text: str) -> tuple[str, str | None] | None:
    """(ORG/NAME, REVISION or None) when `text` has the shape of a bare repo id, else None."""
    match = REPO_ID.match(text)
    if not match or match["repo"].lower().endswith(FILE_SUFFIXES):
        return None
    return match["repo"], match["revision"]


def locate(text: str, revision: str | None = None, local_only: bool = False, hub: bool = False) -> Located:
    """Resolve one PATH argument (see the module docstring); raises UnreadablePathError with the reason."""
    if not text.strip():
        raise UnreadablePathError(None, f"an empty PATH {text!r} names nothing (write '.' for the current folder)")
    if is_remote(text):
        return Located(_with_revision(text, revision)) if revision else Located(text)
    path = Path(text)
    if path.exists() or path.is_symlink():
        if revision:
            raise RevisionError(text, "--revision applies to a repo id ORG/NAME or hf://ORG/NAME; this is a local path")
        parts = repo_id_parts(text)
        if parts and cached_snapshot(*parts)[0] is not None:  # said only when the name really is ambiguous
            return Located(text, f"{text}: an existing local path, read as such, not the cached repository "
                                 f"of that name (write hf://{parts[0]} for the hub)")
        return Located(text)
    parts = repo_id_parts(text)
    if parts is None:
        if revision:
            raise RevisionError(text, "--revision applies to a repo id ORG/NAME or hf://ORG/NAME")
        raise UnreadablePathError(text, "no such file or directory (a remote model is an http(s):// URL, "
                                        "hf://ORG/NAME or a repo id ORG/NAME)")
    repo, written = parts
    if revision and written and revision != written:
        raise RevisionError(text, f"names revision {written!r} and --revision says {revision!r}")
    wanted = written or revision
    snapshot, why = cached_snapshot(repo, wanted)
    if snapshot is not None:
        return Located(str(snapshot), f"{text}: local Hugging Face cache folder {snapshot}")
    remote = f"hf://{repo}" + (f"@{wanted}" if wanted else "")
    if local_only:
        raise UnreadablePathError(text, f"not a local path, and {why}; this command reads local files only "
                                        f"(fingerprint, compare and audit read {remote} by range requests)")
    if not hub:
        raise UnreadablePathError(text, f"no such file or directory, and as a repo id {why}; nothing was sent to "
                                        f"the hub (to read it from there, write {remote} or add --hub)")
    return Located(remote, f"{text}: {why}; reading {remote} from the hub by range requests")


def _with_revision(text: str, revision: str) -> str:
    if not text.lower().startswith("hf://"):
        raise RevisionError(text, "--revision applies to hf:// locations and repo ids, not to URLs")
    repo, written, file = parse_hub_location(text)
    if written and written != revision:
        raise RevisionError(text, f"names revision {written!r} and --revision says {revision!r}")
    return f"hf://{repo}@{revision}" + (f"/{file}" if file else "")


def cache_folder() -> str:
    return str(constants.HF_HUB_CACHE)


def cached_snapshot(repo: str, revision: str | None) -> tuple[Path | None, str]:
    """The cache snapshot folder of `repo` at `revision` holding weights, or None and why not."""
    # lazy: the cache scanner and its errors load httpx (about 50 ms); repo ids only
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = cache_folder()
    try:
        info = scan_cache_dir(folder)
    except CacheNotFound:
        return None, f"there is no Hugging Face cache folder at {folder} (HF_HUB_CACHE)"
    except OSError as exc:
        return None, f"the Hugging Face cache folder {folder} cannot be read ({exc.strerror or exc})"
    repos = [r for r in info.repos if r.repo_type == "model" and r.repo_id.lower() == repo.lower()]
    if not repos:
        return None, f"it is not in the Hugging Face cache folder {folder}"
    cached = repos[0]
    wanted = revision or "main"
    matches = [r for r in cached.revisions
               if wanted in r.refs or r.commit_hash == wanted
               or (len(wanted) >= 7 and re.fullmatch(r"[0-9a-f]+", wanted) and r.commit_hash.startswith(wanted))]
    if not matches and revision is None and len(cached.revisions) == 1:
        matches = list(cached.revisions)  # no refs/main (a snapshot copied in by hand): the only one there is
    if not matches:
        have = sorted({ref for r in cached.revisions for ref in r.refs} | {r.commit_hash[:12] for r in cached.revisions})
        return None, (f"the cache folder {cached.repo_path} has no snapshot for revision {wanted!r} "
                      f"(it has {', '.join(have) or 'none'})")
    snapshot = matches[0]
    names = [f.file_name for f in snapshot.files if f.file_path.parent == snapshot.snapshot_path]
    if not any(n.lower().endswith(WEIGHT_SUFFIXES) and n not in NOT_WEIGHTS for n in names):
        return None, (f"its cache snapshot {snapshot.snapshot_path} holds no weights file "
                      f"({len(names)} side files only)")
    return Path(snapshot.snapshot_path), ""


__all__ = ["LOCATION_HELP", "Located", "RevisionError", "cached_snapshot", "locate", "repo_id_parts"]
