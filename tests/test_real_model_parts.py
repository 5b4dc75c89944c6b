"""A real model shipped in parts by several PyPI packages (Gemma-3-270M): joined once, checked, never trusted blindly.

Tiny stand-in packages are written to a temporary folder on sys.path, so the
joining and its checksum are tested without the real 253 MB parts.
"""

from __future__ import annotations

import hashlib
import importlib
import sys

import pytest

from provenance import real_models
from provenance.errors import CorruptFileError, UnreadablePathError

PARTS = (b"GGUF first part ", b"and the second")


def _package(root, name: str, files: dict[str, bytes]) -> None:
    folder = root / name
    (folder / "data").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('the joiner must not import this package')\n")
    for relative, content in files.items():
        (folder / relative).write_bytes(content)


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A two-part model and its SHA256SUMS package; returns a function writing them with a given checksum."""
    packages = tmp_path / "site"
    monkeypatch.syspath_prepend(str(packages))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = real_models.SplitModel("model.gguf", (("fake_part_a", "data/model.gguf.part00"),
                                                  ("fake_part_b", "data/model.gguf.part01")),
                                   ("fake_sums", "data/SHA256SUMS"), "pip install fake-parts")
    monkeypatch.setitem(real_models.SPLIT_MODELS, "fake", model)

    def write(digest: str) -> None:
        _package(packages, "fake_part_a", {"data/model.gguf.part00": PARTS[0]})
        _package(packages, "fake_part_b", {"data/model.gguf.part01": PARTS[1]})
        _package(packages, "fake_sums", {"data/SHA256SUMS": f"{digest}  model.gguf\n".encode()})
        importlib.invalidate_caches()

    yield write
    for name in ("fake_part_a", "fake_part_b", "fake_sums"):
        sys.modules.pop(name, None)


def test_parts_are_joined_once_into_the_cache_and_checked(split_model, tmp_path):
    split_model(hashlib.sha256(b"".join(PARTS)).hexdigest())
    path = real_models.real_model_path("fake")
    assert path == tmp_path / "cache" / "provenance" / "real-models" / "model.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert "fake_part_a" not in sys.modules  # located, never imported
    first = path.stat().st_mtime_ns
    assert real_models.real_model_path("fake") == path and path.stat().st_mtime_ns == first  # not joined again


def test_a_wrong_checksum_is_an_error_naming_the_file_and_leaves_nothing(split_model, tmp_path):
    split_model("0" * 64)
    with pytest.raises(CorruptFileError) as caught:
        real_models.real_model_path("fake")
    assert "model.gguf" in str(caught.value) and "sha256" in str(caught.value)
    assert list((tmp_path / "cache" / "provenance" / "real-models").iterdir()) == []


def test_a_missing_part_names_the_install_command(split_model, tmp_path, monkeypatch):
    split_model(hashlib.sha256(b"".join(PARTS)).hexdigest())
    (tmp_path / "site" / "fake_part_b" / "data" / "model.gguf.part01").unlink()
    with pytest.raises(UnreadablePathError, match="pip install fake-parts"):
        real_models.real_model_path("fake")
