"""JSON Schemas (draft 2020-12) of every JSON object the command line prints or writes.

| file | output | schema field |
| --- | --- | --- |
| compare.schema.json | `compare --json` | provenance.compare/1 |
| audit.schema.json | `audit --json` | provenance.audit/1 |
| scan-line.schema.json | each line of `scan -o OUT.jsonl` | (status ok/error) |
| refs-list.schema.json | `refs list --json` | provenance.refs-list/1 |
| refs-bundle.schema.json | `manifest.json` of `refs export` | provenance.refs-bundle/1 |
| inspect.schema.json | `inspect --json` | provenance.inspect/1 |
| tokenizer-compare.schema.json | `compare --json` of two tokenizer folders | provenance.tokenizer-compare/1 |
| attestation.schema.json | `audit --attest OUT.json` (an in-toto Statement v1) | predicate.schema provenance.attestation/1 |
| env.schema.json | `env --json` | provenance.env/1 |

Each has an `$id` of the form `urn:provenance:schema:NAME/1`; the scan line
refers to the audit schema by that id. `validate` checks an object with the
`jsonschema` package (the `test` extra), resolving those references.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

NAMES = ("compare", "audit", "scan-line", "refs-list", "refs-bundle", "inspect", "tokenizer-compare", "attestation", "env")


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """The schema `NAME.schema.json` as a dictionary."""
    if name not in NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(NAMES)}")
    return json.loads((resources.files(__name__) / f"{name}.schema.json").read_text(encoding="utf-8"))


def validate(instance: Any, name: str) -> None:
    """Raise jsonschema.ValidationError when `instance` does not follow schema NAME."""
    # lazy: jsonschema and referencing are optional (the `test` extra); only validation needs them
    import jsonschema
    from referencing import Registry, Resource

    registry = Registry().with_resources((load(n)["$id"], Resource.from_contents(load(n))) for n in NAMES)
    jsonschema.Draft202012Validator(load(name), registry=registry).validate(instance)
