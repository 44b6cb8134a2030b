"""What a batch costs: ``batch --dry-run`` estimates it, ``batch --max-cost`` caps it.

Both read the model's price from the live catalog (``base_price_usd`` per ``price_unit``:
one output, or one second of the ``duration`` input). Without a price there is no estimate:
``--dry-run`` says so, and ``--max-cost`` refuses to start rather than guess.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .._batch_types import BatchItem, BatchResult
from .._exceptions import RunComfyError
from ..models._live import ModelInfo
from ._args import EXIT_OK, UsageError
from ._inputs import InputLine, ScanReport

__all__ = ["CostGuard", "dry_run", "model_price"]


async def model_price(client: Any, model_id: str) -> ModelInfo:
    """The model's catalog entry, checked to carry a usable price.

    Raises:
        UsageError: the catalog did not answer, or gives no price for the model.
    """
    try:
        info: ModelInfo = await client.get_model(model_id)
    except RunComfyError as exc:
        raise UsageError(
            f"--max-cost needs the model's price, but the catalog said: {exc}"
        ) from None
    if info.estimate_cost({}) is None:
        raise UsageError(
            f"--max-cost needs the model's price; the catalog gives {model_id} none "
            f"(base_price_usd={info.base_price_usd!r}, price_unit={info.price_unit!r})"
        )
    return info


async def dry_run(
    args: argparse.Namespace,
    open_client: Any,
    read: Callable[[], Iterator[InputLine]],
    report: ScanReport,
) -> int:
    """Print the number of jobs and their estimated cost; submit nothing."""
    jobs = report.total - report.invalid
    print(f"dry run: {jobs} job(s) would be submitted ({report.invalid} invalid input(s))")
    try:
        async with open_client(args) as client:
            info: ModelInfo = await client.get_model(args.model)
    except RunComfyError as exc:
        print(f"estimated cost: unknown (the model catalog said: {exc})")
        return EXIT_OK
    total, unpriced = 0.0, 0
    for line in read():
        if line.error is None:
            estimate = info.estimate_cost(line.inputs)
            if estimate is None:
                unpriced += 1
            else:
                total += estimate
    price = f"${info.base_price_usd:g} per {info.price_unit}" if info.base_price_usd else "none"
    if unpriced == jobs:
        print(f"estimated cost: unknown (catalog price: {price})")
    else:
        extra = f"; {unpriced} job(s) without an estimate" if unpriced else ""
        print(f"estimated cost: ${total:.4f} (catalog price: {price}{extra})")
    return EXIT_OK


class CostGuard:
    """Lets inputs through to be submitted while reported plus estimated spend stays in budget.

    Spend is what finished jobs reported (their ``cost``; a succeeded job that reported none
    counts its estimate) plus the estimate of every job submitted and not yet finished. An
    input whose estimate would take the total past ``limit`` is not let through, nor is any
    after it: they stay pending, for ``--resume``.

    Args:
        limit: the most to spend, in USD.
        info: the model's catalog entry, with its price.
    """

    def __init__(self, limit: float, info: ModelInfo):
        self.limit = limit
        self.info = info
        self.spent = 0.0
        self.outstanding = 0.0
        self.stopped = False
        self._estimates: dict[int, float] = {}

    def items(self, items: Iterator[BatchItem]) -> Iterator[BatchItem]:
        """Yield ``items`` until the next one would pass the budget."""
        for item in items:
            estimate = 0.0 if item.error else self.info.estimate_cost(item.inputs) or 0.0
            if self.spent + self.outstanding + estimate > self.limit + 1e-9:
                self.stopped = True
                return
            self._estimates[item.index] = estimate
            self.outstanding += estimate
            yield item

    def observe(self, res: BatchResult) -> None:
        """Count a finished input's cost in place of its estimate."""
        estimate = self._estimates.pop(res.index, 0.0)
        self.outstanding -= estimate
        if res.cost is not None:
            self.spent += res.cost
        elif res.status in ("succeeded", "download_failed", "submitted"):
            self.spent += estimate

    def note(self) -> None:
        """Say, on stderr, that the budget stopped the batch (when it did)."""
        if self.stopped:
            print(
                f"stopped submitting: the next job would have passed --max-cost "
                f"${self.limit:g} (spent: ${self.spent:.4f}); the rest stays pending: "
                "--resume with a higher --max-cost",
                file=sys.stderr,
            )
