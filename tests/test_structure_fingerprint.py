"""A fingerprint's metadata is read as typed records outside provenance/fingerprint/.

The file's dictionary (`Fingerprint.meta`) and its JSON belong to `fingerprint/store.py` (the layout) and
`fingerprint/records.py` (the typed views made from it); everything else reads `fp.records`, `fp.arch`,
`fp.stored_records`, `fp.vocabulary`, `fp.source`, `fp.family`, `fp.renamed_tensors`, `fp.lineage_claims`,
`fp.notes`, `fp.made`, `fp.generic` and `fp.parts`. Read as syntax, outside `provenance/fingerprint/`:

- no `.meta` attribute at all: JSON of the metadata, or any key of it, needs the dictionary, which only
  `.meta` gives (the metadata's canonical JSON is `Fingerprint.metadata_json`, a section's
  `Fingerprint.section_json`);
- no `.tensors` attribute, except in `provenance/formats/`, where a format's header lists its own tensors
  (not a fingerprint's records);
- no `.architecture` subscripted (`x.architecture[...]`) or read through a dictionary method
  (`.get`, `.items`, `.keys`, `.values`): a checkpoint's `.architecture` is an `Architecture`, read by
  attribute, and a fingerprint's is `fp.arch`. The recorded section itself, `fp.architecture`, may still be
  handed whole to an output that prints it as recorded (`compare --json`, `inspect`), byte for byte.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "provenance"
LAYOUT = PACKAGE / "fingerprint"  # the file's layout and its typed views
FORMATS = PACKAGE / "formats"  # format headers have `.tensors` of their own
DICT_METHODS = {"get", "items", "keys", "values"}


def dictionary_reads(source: str, formats: bool = False) -> list[tuple[int, str]]:
    """(line, what) for each read of a fingerprint's metadata as a dictionary (the rules of this module)."""
    tree = ast.parse(source)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr == "meta" and not _called(node, parents):
            found.append((node.lineno, f"the metadata dictionary: {ast.unparse(node)}"))
        elif node.attr == "tensors" and not formats:
            found.append((node.lineno, f"the tensor records as a dictionary: {ast.unparse(node)}"))
        elif node.attr == "architecture":
            parent = parents.get(id(node))
            if isinstance(parent, ast.Subscript) and parent.value is node:
                found.append((node.lineno, f"the architecture as a dictionary: {ast.unparse(parent)}"))
            elif isinstance(parent, ast.Attribute) and parent.attr in DICT_METHODS:
                found.append((node.lineno, f"the architecture as a dictionary: {ast.unparse(parent)}"))
    return sorted(set(found))


def _called(node: ast.Attribute, parents: dict[int, ast.AST]) -> bool:
    """`x.meta()`: a method of that name (a builder part's metadata entry), not the fingerprint's dictionary."""
    parent = parents.get(id(node))
    return isinstance(parent, ast.Call) and parent.func is node


def test_the_rules_find_dictionary_reads():
    source = '''
fp.meta["source"]
fp.meta.get("family", {})
meta = fp.meta
fp.tensors[key]
for key, record in fp.tensors.items(): pass
fp.architecture["num_layers"]
fp.architecture.get("hidden_size")
'''
    assert [line for line, _ in dictionary_reads(source)] == [2, 3, 4, 5, 6, 7, 8]


def test_the_rules_leave_typed_reads_alone():
    source = '''
fp.records[key].shape
fp.arch.num_layers
fp.source.path
checkpoint.architecture.norm_type
checkpoint.architecture.to_dict()
{"architecture": fp.architecture}
collected.generic.meta()
'''
    assert dictionary_reads(source) == []
    assert dictionary_reads("header.tensors", formats=True) == []


def test_no_module_outside_fingerprint_reads_the_metadata_as_a_dictionary():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if LAYOUT in path.parents:
            continue
        for line, what in dictionary_reads(path.read_text(encoding="utf-8"), formats=FORMATS in path.parents):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not offenders, "read the typed records (Fingerprint.records, .arch, .source, ...) instead:\n" + "\n".join(offenders)
