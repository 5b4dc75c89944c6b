"""Running the corpus: every command line through `provenance.cli.main` in one fresh interpreter, and checking it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from .corpus import Case, Run


# Runs many command lines through `provenance.cli.main` in one fresh interpreter (torch is
# imported once), each with file descriptors 1 and 2 captured, so that anything written to the
# real stderr (a warning, a C library message) counts as it would in a fresh process. Each run
# has an alarm; peak RSS is reset before and read after each run (Linux /proc).
DRIVER = r"""
import json, os, sys, tempfile, time, warnings, signal
from provenance.cli import main

class RunTimeout(BaseException):
    pass

def on_alarm(signum, frame):
    raise RunTimeout()

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

signal.signal(signal.SIGALRM, on_alarm)
timeout = int(sys.argv[1])
warnings.simplefilter("always")  # stricter than a fresh process: every warning is shown every time
for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
    warnings.simplefilter("ignore", category)
runs = json.loads(sys.stdin.read())
results = []
real_out, real_err = os.dup(1), os.dup(2)
for argv in runs:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass
        base = status("VmRSS")
        start = time.perf_counter()
        signal.alarm(timeout)
        try:
            code = main(argv)
        except BaseException as exc:
            code = f"main raised {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(real_out, 1); os.dup2(real_err, 2)
        out.seek(0); err.seek(0)
        results.append({"code": code, "stdout": out.read(), "stderr": err.read(), "seconds": seconds,
                        "peak_rss_growth": status("VmHWM") - base})
print(json.dumps(results))
"""


def limit_address_space(limit: int) -> Callable[[], None]:
    """A preexec_fn for subprocess: cap the child's address space (a huge allocation then fails, not the machine)."""
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_batch(argvs: list[list[str]], memory_limit: int | None = 4 << 30, per_run_timeout: int = 60,
              cwd: str | Path | None = None, silent: bool = False) -> list[dict]:
    """Each command line through `provenance.cli.main` in one fresh interpreter under RLIMIT_AS and a per-run alarm.

    Returns, per run: code, stdout, stderr, seconds, peak_rss_growth (bytes over the RSS before the run).
    `silent`: the interpreter itself must write nothing to stderr outside the captured runs.
    """
    import os
    import subprocess

    import provenance

    env = {k: v for k, v in os.environ.items() if k != "PROVENANCE_DEBUG"}
    # The driver runs in `cwd`, not the checkout: import the package this process imported, not an installed one.
    package_root = str(Path(provenance.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-c", DRIVER, str(per_run_timeout)], input=json.dumps(argvs),
                            capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=per_run_timeout * len(argvs) + 120,
                            preexec_fn=limit_address_space(memory_limit) if memory_limit else None)
    if result.returncode != 0:
        raise RuntimeError(f"the batch driver died (exit {result.returncode}): {result.stderr[-3000:]}")
    if silent and result.stderr:
        raise RuntimeError(f"the batch driver wrote outside the captured runs: {result.stderr[-3000:]}")
    return json.loads(result.stdout)


def check_run(run: Run, result: dict) -> str | None:
    """What is wrong with one run's outcome, or None."""
    code, err, out = result["code"], result["stderr"], result["stdout"]
    lines = err.strip().splitlines()
    if run.expect == "ok":
        if code != 0:
            return f"exit {code}, expected 0: {err.strip()[:300]}"
        if any("Warning" in line or "Traceback" in line for line in lines):
            return f"succeeded but printed warnings: {err.strip()[:300]}"
        return None
    if code != 1:
        return f"exit {code}, expected 1: {err.strip()[:300]}"
    if len(lines) != 1:
        return f"{len(lines)} stderr lines, expected 1: {err.strip()[:500]}"
    line = lines[0]
    if not line.startswith("provenance: error: ") or "unexpected" in line or "Traceback" in err:
        return f"not a clean one-line error: {line[:300]}"
    if run.names not in line:
        return f"does not name {run.names}: {line[:300]}"
    if run.fragment not in line:
        return f"does not say {run.fragment!r}: {line[:300]}"
    if out:
        return f"printed to stdout on error: {out[:200]}"
    return None


def check_cases(cases: list[Case], results: list[dict]) -> dict[str, list[str]]:
    """Problems per case name (empty when every run behaved and no forbidden path exists)."""
    problems: dict[str, list[str]] = {}
    index = 0
    for case in cases:
        for run in case.runs:
            problem = check_run(run, results[index])
            index += 1
            if problem:
                problems.setdefault(case.name, []).append(f"{run.argv[0]}: {problem}")
        for path in case.forbidden:
            if Path(path).exists():
                problems.setdefault(case.name, []).append(f"{path} exists")
    return problems
