"""What `--help` shows beyond the options: a one-line description and worked examples for every command.

The examples of every command are kept together here, so that the command
line's wording reads in one place; each command module (provenance/commands/)
makes its parser with `command`. The examples are real commands:
tests/test_gate.py checks that every command's help has some.
"""

from __future__ import annotations

import argparse

EXAMPLES = {
    "inspect": ["provenance inspect ./my-model", "provenance inspect model.gguf --json"],
    "fingerprint": ["provenance fingerprint ./my-model -o my-model.fp.safetensors"],
    "compare": ["provenance compare ./suspect ./llama-2-7b",
                "provenance compare suspect.fp.safetensors hf://meta-llama/Llama-2-7b-hf --json"],
    "audit": ["provenance audit ./suspect",
              "provenance audit ./suspect --fail-on identical,derived,assembled --report report.md",
              "provenance audit ./suspect --format sarif > provenance.sarif"],
    "refs": ["provenance refs add ./llama-2-7b --name Llama-2-7B", "provenance refs list"],
    "refs add": ["provenance refs add ./llama-2-7b --name Llama-2-7B", "provenance refs --refs team.sqlite add m.gguf --name m"],
    "refs list": ["provenance refs list", "provenance refs list --json"],
    "refs remove": ["provenance refs remove Llama-2-7B"],
    "refs export": ["provenance refs export references.zip --name Llama-2-7B"],
    "refs import": ["provenance refs import references.zip"],
    "refs sync": ["provenance refs sync --list", "provenance refs sync --only Llama-2-7B Qwen/Qwen2.5-7B"],
    "scan": ["provenance scan submissions/ -o scan.jsonl --fail-on derived,identical,error",
             "provenance scan --from candidates.txt -o scan.jsonl --workers 2"],
    "verify": ["provenance audit ./suspect --attest suspect.intoto.json && provenance verify suspect.intoto.json ./suspect"],
    "env": ["provenance env", "provenance env --json"],
}


def examples(name: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES.get(name, []))


def command(group, name: str, help: str, full_name: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """`group.add_parser(name)` with its one-line help as the description and its examples as the epilog."""
    parser = group.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                              epilog=examples(full_name or name), formatter_class=argparse.RawDescriptionHelpFormatter,
                              **kwargs)
    add_verbosity(parser, default=argparse.SUPPRESS)  # `provenance audit X -q` as well as `provenance -q audit X`
    return parser


def add_verbosity(parser: argparse.ArgumentParser, default=0) -> None:
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="only errors and the --fail-on outcome on stderr (no progress, no notes)")
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="a traceback with an error (as PROVENANCE_DEBUG=1)")


__all__ = ["EXAMPLES", "command", "examples"]
