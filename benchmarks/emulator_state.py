"""``python -m benchmarks.emulator_state``: what the emulator's state file costs at 100k jobs.

Creates the same jobs in two emulators, one in memory and one with ``state_path`` (appending
a line per job), then times the snapshot written on ``stop()`` and the load of a new emulator
from that file. Every figure is printed as a ratio to the in-memory creation of the same jobs
in the same run, so it holds across machines; absolute times are printed beside for context.
Jobs are created through the emulator's model API directly, not over HTTP, so the figure is
the state file's own cost, not the network's.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from runcomfy_async.testing import FakeRunComfy

MODEL = "google/nano-banana-2/text-to-image"


async def _create(fake: FakeRunComfy, jobs: int) -> float:
    api = fake._api  # the emulator's own model API: the HTTP layer is not what is measured
    start = time.perf_counter()
    for i in range(jobs):
        api.create_job(MODEL, {"prompt": f"a cat, take {i}"})
    return time.perf_counter() - start


async def measure(jobs: int, path: Path) -> tuple[float, float, float, float]:
    """Time in-memory creation, creation with ``path``, the snapshot and the load."""
    async with FakeRunComfy(concurrency=16, duration_mean=1.0) as memory:
        base = await _create(memory, jobs)
    kept = FakeRunComfy(concurrency=16, duration_mean=1.0, state_path=path)
    await kept.start()
    with_state = await _create(kept, jobs)
    start = time.perf_counter()
    await kept.stop()
    snapshot = time.perf_counter() - start
    start = time.perf_counter()
    again = FakeRunComfy(concurrency=16, duration_mean=1.0, state_path=path)
    await again.start()
    load = time.perf_counter() - start
    assert again.jobs_created == jobs
    await again.stop()
    return base, with_state, snapshot, load


def main() -> None:
    """Parse ``--jobs`` and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    jobs = parser.parse_args().jobs
    with tempfile.TemporaryDirectory(prefix="emulator-state-") as folder:
        path = Path(folder) / "state.jsonl"
        base, with_state, snapshot, load = asyncio.run(measure(jobs, path))
        size = path.stat().st_size
    print(f"{jobs:,} jobs; in-memory creation {base:.2f} s ({base / jobs * 1e6:.0f} us/job)")
    print(f"creation with state file: {with_state / base:.2f}x in-memory ({with_state:.2f} s)")
    print(f"snapshot on stop:         {snapshot / base:.2f}x in-memory creation ({snapshot:.2f} s)")
    print(f"load by a new emulator:   {load / base:.2f}x in-memory creation ({load:.2f} s)")
    print(f"file size: {size / jobs:.0f} bytes/job ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
