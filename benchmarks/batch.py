"""Issue 4's number: peak RSS of a 100,000-line batch with --max-in-flight 1000.

Run: ``python -m benchmarks.batch [--lines 100000] [--no-download]``

The emulator runs in its own process; the batch is the real ``runcomfy-async batch``
command in another, whose resident memory is sampled every 50 ms with psutil. The figure
is reported next to the RSS of the same command on a 1,000-line input, measured in the same
run, so what grows with the input is visible.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from ._harness import TOKEN, emulator, write_json

MODEL = "google/nano-banana-2/text-to-image"


def peak_rss_of(cmd: list[str], env: dict[str, str]) -> int:
    """Run a batch command to its end, sampling its RSS every 50 ms; the peak, in bytes."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"batch failed ({proc.returncode}): {err[-2000:]}")
    return peak


def run_batch(base_url: str, lines: int, workdir: Path, *, download: bool) -> dict[str, Any]:
    """Run the CLI batch over ``lines`` prompts; sample its peak RSS; return the figures."""
    inp = workdir / f"prompts-{lines}.txt"
    with open(inp, "w") as fh:
        for i in range(lines):
            fh.write(f"a watercolor of lighthouse number {i} at dusk\n")
    out = workdir / f"out-{lines}"
    cmd = [
        sys.executable, "-m", "runcomfy_async", "batch", str(inp), "--model", MODEL,
        "--out", str(out), "--base-url", base_url, "--max-in-flight", "1000",
        "--progress", "none",
    ]  # fmt: skip
    if not download:
        cmd.append("--no-download")
    env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN}
    start = time.monotonic()
    peak = peak_rss_of(cmd, env)
    with open(out / "results.jsonl", "rb") as fh:
        results = sum(1 for _ in fh)
    return {
        "lines": lines,
        "results": results,
        "peak_rss_mb": round(peak / 2**20, 1),
        "wall_s": round(time.monotonic() - start, 1),
        "download": download,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print; write JSON to benchmarks/results/batch.json."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/batch.json")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {}
    knobs = ["--duration-mean", "0.5", "--duration-sigma", "0.3"]
    if _has_uvloop():  # a faster emulator; the client under test is unchanged
        knobs += ["--loop", "uvloop"]
    with emulator(*knobs) as emu, tempfile.TemporaryDirectory() as tmp:
        for n in (1000, args.lines):
            r = run_batch(emu.base_url, n, Path(tmp), download=not args.no_download)
            report[str(n)] = r
            print(
                f"{n} lines: peak RSS {r['peak_rss_mb']} MB, wall {r['wall_s']} s, "
                f"{r['results']} results",
                flush=True,
            )
    write_json(args.out, report)
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
