"""One (client, workload) cell of ``python -m benchmarks``, run in a process of its own.

Run: ``python -m benchmarks._cell '{"client": "runcomfy-async", "base_url": "...", ...}'``

The argument is a JSON object: ``client`` (``runcomfy-async``, ``runcomfy-async-map``,
``httpx``, ``aiohttp`` or ``floor``), ``base_url``, and for the clients ``jobs``, ``mean``
(mean job seconds, to scale delays), ``rate`` (runcomfy-async's ``max_requests_per_second``,
or null), ``interval`` and ``cap`` (the baseline's polling interval and jobs in flight, null
for every job at once; ``map()``'s ``max_in_flight``) and ``loop`` (``asyncio`` or
``uvloop``). The cell prints one JSON line with its figures: CPU and peak RSS are this
process's alone. After a client's work it measures the same-rate
floor (:func:`benchmarks._clients.same_rate_floor`) on the same loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any

from ._clients import (
    run_fixed_baseline,
    run_floor,
    run_runcomfy_async,
    run_runcomfy_map,
    same_rate_floor,
)


def _run(spec: dict[str, Any]) -> Coroutine[Any, Any, dict[str, Any]]:
    client = spec["client"]
    url = spec["base_url"]
    if client == "runcomfy-async":
        return run_runcomfy_async(
            url, spec["jobs"], spec["mean"], rate=spec.get("rate"), arrivals=spec.get("arrivals")
        )
    if client == "runcomfy-async-map":
        return run_runcomfy_map(url, spec["jobs"], spec["mean"], cap=spec["cap"])
    if client in ("httpx", "aiohttp"):
        return run_fixed_baseline(
            url,
            spec["jobs"],
            spec["mean"],
            interval=spec["interval"],
            transport=client,
            cap=spec.get("cap"),
        )
    raise SystemExit(f"unknown client {client!r}")


async def _work(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["client"] == "floor":
        return await run_floor(spec["base_url"])
    out = await _run(spec)
    await same_rate_floor(spec["base_url"], out)
    return out


def main(argv: list[str]) -> int:
    """Run the cell described by ``argv[0]`` and print its figures as one JSON line."""
    spec = json.loads(argv[0])
    if spec.get("loop") == "uvloop":
        import uvloop

        out = uvloop.run(_work(spec))
    else:
        out = asyncio.run(_work(spec))
    out["loop"] = spec.get("loop", "asyncio")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
