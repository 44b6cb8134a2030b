"""The client side of ``benchmarks.regimes``: one process per run, figures as one JSON line.

Run: ``python -m benchmarks._regime_cells '{"kind": "sequential", "base_url": ..., ...}'``

Kinds:

* ``sequential``: runcomfy-async at its defaults, ``jobs`` jobs one after another
  (``client.run``), in a fresh process: what a script or ``runcomfy-async run`` does.
* ``batch``: runcomfy-async, ``jobs`` jobs submitted at once (``gather``) or one after
  another (``submit_mode`` ``loop``), then all awaited; ``models`` are interleaved.
* ``map``: ``client.map()`` at its defaults over ``prompts`` (the CLI demo's file).
* ``loop2s``: the fixed 2 s loop RunComfy's CLI uses, over aiohttp: submit, ``GET status``
  every ``interval`` seconds until terminal, then ``GET result``; ``streams`` such loops
  side by side, each running ``jobs`` jobs one after another.

Every kind reports, per job, the model, the requests it cost (its submit, its checks and
its result) and its detection delay: ``time.time()`` when the result is in hand minus the
server's ``finished_at`` (for a batch, the moment each job's future resolved, noted by a
done-callback, not when the gather returned). runcomfy-async's requests per job are counted
by wrapping the two fetch functions its poller is given (instrumentation only).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from datetime import datetime
from typing import Any

from ._harness import TOKEN

TERMINAL = ("completed", "failed", "cancelled")


def _delay(finished: str | datetime | None) -> float | None:
    if finished is None:
        return None
    at = datetime.fromisoformat(finished) if isinstance(finished, str) else finished
    return time.time() - at.timestamp()


def _counting_client(spec: dict[str, Any]) -> tuple[Any, collections.Counter[str]]:
    """An AsyncClient whose poller's checks are counted per request id."""
    from runcomfy_async import AsyncClient

    client = AsyncClient(TOKEN, spec["base_url"], cache=spec.get("cache_dir") or False)
    checks: collections.Counter[str] = collections.Counter()
    poll_result, status_once = client._poll_result, client.status_once

    async def counted_result(request_id: str) -> Any:
        checks[request_id] += 1
        return await poll_result(request_id)

    async def counted_status(request_id: str) -> Any:
        checks[request_id] += 1
        return await status_once(request_id)

    client._poll_result = counted_result  # type: ignore[method-assign]
    client.status_once = counted_status  # type: ignore[method-assign]
    return client, checks


async def run_sequential(spec: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` jobs one after another through one fresh client."""
    client, checks = _counting_client(spec)
    jobs = []
    async with client:
        for i in range(spec["jobs"]):
            job = await client.submit(spec["model"], {"prompt": f"lone job {i}"})
            res = await job
            jobs.append(
                {
                    "model": spec["model"],
                    "delay": _delay(res.finished_at),
                    "requests": 1 + checks[job.request_id],
                }
            )
    return {"jobs": jobs, "requests": sum(client.requests.values()), "rate_limited": 0}


async def run_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` jobs over ``models`` (interleaved), submitted at once or in a loop."""
    client, checks = _counting_client(spec)
    models = spec["models"]
    out: list[dict[str, Any]] = []
    async with client:
        t0 = time.monotonic()

        seen: dict[str, float] = {}  # when each result was in hand (time.time())

        async def submit(i: int) -> Any:
            job = await client.submit(models[i % len(models)], {"prompt": f"batch job {i}"})
            rid = job.request_id
            job._future.add_done_callback(lambda _: seen.setdefault(rid, time.time()))
            return job

        if spec.get("submit_mode") == "loop":
            handles = [await submit(i) for i in range(spec["jobs"])]
        else:
            handles = await asyncio.gather(*(submit(i) for i in range(spec["jobs"])))
        results = await asyncio.gather(*handles, return_exceptions=True)
        wall = time.monotonic() - t0
        for job, res in zip(handles, results, strict=True):
            finished = None if isinstance(res, BaseException) else res.finished_at
            delay = None
            if finished is not None:
                delay = seen.get(job.request_id, time.time()) - finished.timestamp()
            out.append(
                {"model": job.model_id, "delay": delay, "requests": 1 + checks[job.request_id]}
            )
        adaptive = client.budget.adaptive
        learned = None if adaptive is None else adaptive.limit
    return {
        "jobs": out,
        "wall_s": wall,
        "requests": sum(client.requests.values()),
        "rate_limited": client.rate_limited,
        "learned_limit": learned,
    }


async def run_map(spec: dict[str, Any]) -> dict[str, Any]:
    """``client.map()`` at its defaults over a file of prompts, as the CLI's batch does."""
    client, _ = _counting_client(spec)
    prompts = [{"prompt": line} for line in spec["prompts"]]
    out = []
    async with client:
        async with client.map(spec["model"], prompts) as batch:
            async for res in batch:
                out.append({"model": spec["model"], "delay": None, "status": res.status})
        per_job = sum(client.requests.values()) / max(1, len(prompts))
    return {"jobs": out, "requests": sum(client.requests.values()), "requests_per_job": per_job}


async def run_loop2s(spec: dict[str, Any]) -> dict[str, Any]:
    """``streams`` fixed-interval loops side by side, ``jobs`` jobs one after another each."""
    import aiohttp

    base = spec["base_url"]
    interval = spec.get("interval", 2.0)
    out: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(tag: str) -> None:
            url = f"{base}/v1/models/{spec['model']}"
            async with http.post(url, json={"prompt": f"loop job {tag}"}) as resp:
                rid = (await resp.json())["request_id"]
            requests = 1
            while True:
                await asyncio.sleep(interval)
                async with http.get(f"{base}/v1/requests/{rid}/status") as resp:
                    status = (await resp.json())["status"]
                requests += 1
                if status in TERMINAL:
                    break
            async with http.get(f"{base}/v1/requests/{rid}/result") as resp:
                body = await resp.json()
            requests += 1
            out.append(
                {
                    "model": spec["model"],
                    "delay": _delay(body.get("finished_at")),
                    "requests": requests,
                }
            )

        async def stream(s: int) -> None:
            for i in range(spec["jobs"]):
                await one(f"{s}-{i}")

        await asyncio.gather(*(stream(s) for s in range(spec.get("streams", 1))))
    return {"jobs": out, "requests": sum(j["requests"] for j in out), "rate_limited": 0}


KINDS = {
    "sequential": run_sequential,
    "batch": run_batch,
    "map": run_map,
    "loop2s": run_loop2s,
}


def main(argv: list[str]) -> int:
    """Run the cell described by ``argv[0]``; print its figures as one JSON line."""
    spec = json.loads(argv[0])
    out = asyncio.run(KINDS[spec["kind"]](spec))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
