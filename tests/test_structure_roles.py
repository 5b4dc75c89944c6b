"""Roles and canonical tensor names are spelled in architectures/ only.

Everywhere else a role is a `Role` member and a canonical name comes from `key_name` (or
`CanonicalKey(...).name`, `expert_role_name`): a copy of a role string or a name built by hand drifts from
the table the first time a role is renamed or a key's layout changes. Read as syntax, so docstrings and
comments may still speak of `layers.3.mlp.up.weight`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from provenance.architectures.roles import ALL_ROLES, CanonicalKey, Role, key_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "provenance"
ROLE_TABLE = PACKAGE / "architectures"  # the one folder that spells roles and canonical names
KEY_PREFIXES = ("layers.", "experts.")


def role_spellings(source: str) -> list[tuple[int, str]]:
    """(line, what) for each string constant that is a role name or a canonical tensor name, and each
    f-string that starts a canonical name by hand (`f"layers.{i}...."`, `f"experts.{e}...."`)."""
    tree = ast.parse(source)
    in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            if isinstance(first, ast.Constant) and str(first.value).startswith(KEY_PREFIXES):
                found.append((node.lineno, f"a canonical name built by hand: {ast.unparse(node)}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstrings:
            if node.value in ALL_ROLES:
                found.append((node.lineno, f"the role {node.value!r}"))
            elif CanonicalKey.parse(node.value) is not None:
                found.append((node.lineno, f"the canonical name {node.value!r}"))
    return sorted(set(found))


def test_the_role_checker_finds_spellings_and_leaves_other_strings_alone():
    source = ('ROLES = ("attn.q", "mlp.up")\n'
              'name = f"layers.{i}.{role}.weight"\n'
              'head = fp.tensors.get("lm_head.weight")\n'
              'units = f"experts.{e}.mlp.up"\n'
              'label = f"layer {i}"\n'
              'kind = "weight"\n'
              '"""Docstring: layers.3.mlp.up.weight and attn.q."""\n')
    assert role_spellings(source) == [(1, "the role 'attn.q'"), (1, "the role 'mlp.up'"),
                                      (2, "a canonical name built by hand: f'layers.{i}.{role}.weight'"),
                                      (3, "the canonical name 'lm_head.weight'"),
                                      (4, "a canonical name built by hand: f'experts.{e}.mlp.up'")]


def test_roles_and_canonical_names_are_spelled_in_architectures_only():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ROLE_TABLE not in path.parents:
            found += [f"{path.relative_to(ROOT).as_posix()}:{line}: {what}"
                      for line, what in role_spellings(path.read_text(encoding="utf-8"))]
    assert not found, ("roles or canonical names spelled outside provenance/architectures/ (use Role and key_name): "
                       + "; ".join(found))


def test_a_role_is_its_spelling():
    """Role members equal, hash and format as their strings: stored fingerprints and JSON are unchanged."""
    assert Role.MLP_UP == "mlp.up" and {"mlp.up": 1}[Role.MLP_UP] == 1
    assert f"{Role.ATTN_Q}" == str(Role.ATTN_Q) == "attn.q"
    assert set(ALL_ROLES) == set(Role)
    assert CanonicalKey("attn.q", 3).role is Role.ATTN_Q
    assert key_name(Role.MLP_UP, 3, 1) == "layers.3.experts.1.mlp.up.weight"
    assert key_name(Role.FINAL_NORM, param="bias") == "final_norm.bias"
