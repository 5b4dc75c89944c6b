"""The commands of the `provenance` command line, one module each (huggingface_hub's `cli/` is the model).

Each module holds its parser setup (`register(subparsers)`), its handler
(`run(args) -> exit code`, set as the parser's `handler`) and the JSON
builder of an output only it prints; outputs the Python API or scan share
are built in report/ and audit/. Shared argument pieces are in options.py,
what handlers read first (a PATH, a fingerprint, the database) in inputs.py,
and the exception-to-exit-code table in failures.py. cli.py wires them.
Importing a command module is light: heavy libraries load inside `run`.
"""

from . import audit, compare, env, fingerprint, inspect, refs, scan, verify

COMMANDS = (inspect, fingerprint, compare, audit, verify, refs, scan, env)  # in the order `--help` lists them

__all__ = ["COMMANDS"]
