"""Issue 15's figure: peak RSS of a batch whose every line names a local 1 MiB image.

Run: ``python -m benchmarks.media [--lines 10000] [--max-in-flight 200]``

Each line of the JSONL input names one of 100 local 1 MiB PNG files (the client reads and
inlines each at its submit, so how many distinct files there are does not change what it
holds). The emulator runs in its own process and keeps only a digest of each submitted image
(it would otherwise hold every 1.4 MB data: URI it was sent). The batch is the real
``runcomfy-async batch`` command, whose resident memory is sampled every 50 ms; the same
command on a 200-line input is measured in the same run, so what grows with the input shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._harness import TOKEN, write_json
from .batch import peak_rss_of

MODEL = "google/nano-banana-2/edit"

# The emulator, with each submitted data: URI replaced by its digest before it is stored.
_EMULATOR = """
import hashlib, sys
from runcomfy_async._emulator import _api
create = _api.ModelApi.create_job
def slim(value):
    if isinstance(value, str) and len(value) > 4096:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    if isinstance(value, list):
        return [slim(v) for v in value]
    return value
def create_job(self, model_id, inputs):
    return create(self, model_id, {k: slim(v) for k, v in inputs.items()})
_api.ModelApi.create_job = create_job
from runcomfy_async._cli._main import main
sys.exit(main(["emulator", "--port", "0", "--duration-mean", "0.5", "--duration-sigma", "0.3"]))
"""


def _images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 1 MiB files that sniff as PNG (header, then random bytes)."""
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (1024).to_bytes(4, "big") * 2
        path.write_bytes(head + os.urandom(2**20 - len(head)))
        paths.append(path)
    return paths


def run_batch(
    base_url: str, lines: int, workdir: Path, images: list[Path], max_in_flight: int
) -> dict[str, Any]:
    """Run the CLI batch over ``lines`` edits; sample its peak RSS; return the figures."""
    inp = workdir / f"edits-{lines}.jsonl"
    with open(inp, "w") as fh:
        for i in range(lines):
            name = images[i % len(images)].name
            fh.write(json.dumps({"prompt": f"edit {i}", "image_urls": [name]}) + "\n")
    out = workdir / f"out-{lines}"
    cmd = [
        sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", MODEL,
        "--out", str(out), "--base-url", base_url, "--max-in-flight", str(max_in_flight),
        "--progress", "none", "--no-download",
    ]  # fmt: skip
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_CACHE": "off"}
    start = time.monotonic()
    peak = peak_rss_of(cmd, env)
    with open(out / "results.jsonl", "rb") as fh:
        statuses = [json.loads(line)["status"] for line in fh]
    return {
        "lines": lines,
        "succeeded": statuses.count("succeeded"),
        "peak_rss_mb": round(peak / 2**20, 1),
        "wall_s": round(time.monotonic() - start, 1),
        "max_in_flight": max_in_flight,
        "image_bytes": 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print; write JSON to benchmarks/results/media.json."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.media")
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--max-in-flight", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/media.json")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {}
    emu = subprocess.Popen([sys.executable, "-c", _EMULATOR], stdout=subprocess.PIPE, text=True)
    try:
        assert emu.stdout is not None
        line = emu.stdout.readline()
        if not line.startswith("emulator: API "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        base_url = line.split()[2]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            images = _images(work, 100)
            for n in (200, args.lines):
                r = run_batch(base_url, n, work, images, args.max_in_flight)
                report[str(n)] = r
                print(
                    f"{n} lines: peak RSS {r['peak_rss_mb']} MB, wall {r['wall_s']} s, "
                    f"{r['succeeded']} succeeded",
                    flush=True,
                )
    finally:
        emu.terminate()
        try:
            emu.wait(10)
        except subprocess.TimeoutExpired:
            emu.kill()
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
