"""How long a stalling server holds a command under the default limits (issue 23's "done when").

Serves a tiny LLaMA checkpoint from 127.0.0.1 through a hostile server and
runs `provenance compare URL URL` in a fresh process with no limit set
(no --deadline, no PROVENANCE_REMOTE_* variables), timing it:
- `drip`: every answer sends one byte every 2 seconds (the issue's case);
- `one-byte`: every 206 answer sends one byte of the range and closes.
The command must end with exit code 1 and one line naming the host, within
two minutes. It costs almost no CPU (the server sleeps), so it can run
beside other work:

    python bench/drip.py            # both servers; about a minute in all
    python bench/drip.py --only drip
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from safetensors.torch import save_file  # noqa: E402

from tests.builders import tiny_llama_config, tiny_llama_state  # noqa: E402

LIMIT = 120.0  # seconds: the bound under the defaults


def _handler(body: bytes, config: bytes, mode: str) -> type:
    class Hostile(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def do_GET(self):
            data = body if self.path.endswith("model.safetensors") else config if self.path.endswith("config.json") else None
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, _, last = self.headers.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
            start, end = int(first), min(len(data), int(last) + 1 if last else len(data))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            self.send_header("Content-Length", str(end - start))
            self.end_headers()
            try:
                if mode == "drip":
                    for i in range(start, end):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(2.0)
                else:
                    self.wfile.write(data[start:start + 1])
                    self.wfile.flush()
                    self.close_connection = True
            except OSError:
                pass

    return Hostile


def run(mode: str, folder: Path) -> dict:
    body = (folder / "model.safetensors").read_bytes()
    config = (folder / "config.json").read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(body, config, mode))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/model.safetensors"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENANCE_REMOTE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PROVENANCE_DEBUG", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "provenance.cli", "compare", url, url, "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=LIMIT + 60)
    seconds = time.monotonic() - started
    httpd.shutdown()
    lines = done.stderr.strip().splitlines()
    return {"server": mode, "exit": done.returncode, "seconds": round(seconds, 1), "stderr_lines": len(lines),
            "error": lines[-1] if lines else "", "within_limit": seconds < LIMIT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("drip", "one-byte"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_file({k: v.contiguous() for k, v in tiny_llama_state(0).items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(tiny_llama_config()))
        results = [run(mode, folder) for mode in ("drip", "one-byte") if args.only in (None, mode)]
    for result in results:
        print(json.dumps(result))
    return 0 if all(r["within_limit"] and r["exit"] == 1 and r["stderr_lines"] == 1 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
