"""Cost: results read with include_cost; BatchResult.cost, results.jsonl and the CLI total."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from runcomfy_async import AsyncClient
from runcomfy_async.testing import FakeRunComfy

from .conftest import TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"
OUT = {"image": "https://playgrounds-storage-public.runcomfy.net/a.png"}


async def test_batch_results_carry_the_reported_cost(
    fake: FakeRunComfy, client: AsyncClient
) -> None:
    """Each BatchResult has the cost the API reported with its result."""
    fake.inject("result", body={"status": "succeeded", "output": OUT, "cost": 0.04}, times=200)
    async with client.map(T2I, [{"prompt": f"p{i}"} for i in range(3)]) as batch:
        results = [res async for res in batch]
    assert [r.status for r in results] == ["succeeded"] * 3
    assert [r.cost for r in results] == [pytest.approx(0.04)] * 3


async def test_cli_writes_cost_and_prints_the_total(tmp_path: Path) -> None:
    """results.jsonl has each job's cost and the summary says the total."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    out = tmp_path / "out"
    async with FakeRunComfy(token=TOKEN, duration_mean=0.02, seed=3) as fake:
        fake.inject("result", body={"status": "succeeded", "output": OUT, "cost": 0.08}, times=200)
        env = {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_CACHE": "off"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runcomfy_async", "batch", str(prompts), "--model", T2I,
            "--out", str(out), "--base-url", fake.base_url, "--progress", "none",
            "--no-download", env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["cost"] for r in records] == [0.08, 0.08]
    assert "cost: $0.1600 as reported by the API for 2 job(s)" in err.decode()
    assert "cost usd" in (out / "index.html").read_text().lower()


def test_dry_run_counts_jobs_and_estimates_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run checks every input, prints the job count and the price-based estimate."""
    from runcomfy_async._cli._main import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b", "num_images": 3}\n')
    out = tmp_path / "out"
    code = main(
        ["batch", str(prompts), "--model", T2I, "--out", str(out), "--sandbox", "--dry-run"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "dry run: 2 job(s) would be submitted" in printed
    assert "estimated cost: $0.3200 (catalog price: $0.08 per output)" in printed
    assert not (out / "journal.jsonl").exists()


def test_max_cost_stops_new_submits_and_leaves_the_rest_pending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --max-cost, no job starts once spend would pass it; the rest stay pending."""
    from runcomfy_async._cli._main import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(6)))
    out = tmp_path / "out"
    args = ["batch", str(prompts), "--model", T2I, "--out", str(out), "--sandbox"]
    code = main([*args, "--max-cost", "0.2", "--progress", "none", "--no-download"])
    assert code == 1
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    statuses = sorted(r["status"] for r in records)
    assert statuses == ["pending"] * 4 + ["succeeded"] * 2
    assert sum(r["cost"] or 0 for r in records) <= 0.2
    err = capsys.readouterr().err
    assert "stopped submitting: the next job would have passed --max-cost $0.2" in err
    assert "--max-cost 0.2" in err.split("Resume with:")[1]  # the resume keeps the cap
