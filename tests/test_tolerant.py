"""Tolerant decoding: odd optional fields are dropped; a failed body is the job's failure."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from runcomfy_async import AsyncClient, JobFailedError
from runcomfy_async._wire import RESULT_DECODER, STATUS_DECODER, SUBMIT_DECODER, error_envelope
from runcomfy_async.testing import FakeRunComfy

pytestmark = pytest.mark.anyio

OUT = {"image": "https://playgrounds-storage-public.runcomfy.net/a.png"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost", "0.04"),
        ("cost", -1),
        ("cost", True),
        ("created_at", 1756728000),
        ("finished_at", {"t": 1}),
        ("model_id", 7),
        ("request_id", 12),
    ],
)
def test_result_drops_an_odd_optional_field(field: str, value: Any) -> None:
    """An optional result field of an unexpected type is dropped; status and output survive."""
    body = msgspec.json.encode({"status": "succeeded", "output": OUT, field: value})
    res = RESULT_DECODER.decode(body)
    assert res.status == "succeeded"
    assert res.output is not None and res.urls == (OUT["image"],)
    wire_to_attr = {"created_at": "created_at_raw", "finished_at": "finished_at_raw"}
    assert getattr(res, wire_to_attr.get(field, field)) in (None, "")


def test_result_keeps_good_optional_fields() -> None:
    """A numeric cost, an ISO timestamp and a model id are kept as sent."""
    body = msgspec.json.encode(
        {
            "status": "succeeded",
            "output": OUT,
            "cost": 3,
            "created_at": "2025-09-01T12:00:00+00:00",
            "model_id": "google/nano-banana-2/edit",
        }
    )
    res = RESULT_DECODER.decode(body)
    assert res.cost == 3.0 and isinstance(res.cost, float)
    assert res.created_at is not None and res.created_at.year == 2025
    assert res.model_id == "google/nano-banana-2/edit"


@pytest.mark.parametrize(
    "body",
    [
        {"output": OUT},
        {"status": 3, "output": OUT},
        {"status": "succeeded", "output": ["https://x/a.png"]},
    ],
)
def test_result_status_and_output_stay_strict(body: dict[str, Any]) -> None:
    """A missing or mistyped status, or an output that is not an object, is undecodable."""
    with pytest.raises(msgspec.ValidationError):
        RESULT_DECODER.decode(msgspec.json.encode(body))


def test_status_drops_a_string_queue_position() -> None:
    """A queue_position of "3" is dropped; the status still decodes."""
    status = STATUS_DECODER.decode(b'{"status": "in_queue", "queue_position": "3"}')
    assert status.status == "in_queue" and status.queue_position is None


def test_submit_needs_its_request_id_but_not_its_urls() -> None:
    """A submit answer needs a string request_id; odd URLs are dropped."""
    answer = SUBMIT_DECODER.decode(b'{"request_id": "r1", "status_url": 5}')
    assert answer.request_id == "r1" and answer.status_url is None
    with pytest.raises(msgspec.ValidationError):
        SUBMIT_DECODER.decode(b'{"request_id": 5}')


def test_dropped_field_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """The first odd value of a field is logged; later ones of the same field are not."""
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    for _ in range(3):
        STATUS_DECODER.decode(b'{"status": "in_queue", "status_url": ["odd"]}')
    hits = [r for r in caplog.records if "'status_url'" in r.getMessage()]
    assert len(hits) <= 1  # another test may have logged it first: never more than once


def test_failed_body_with_error_code_is_the_jobs_failure() -> None:
    """A read's failed body with error_code is not an API error; its code becomes the error."""
    body = b'{"status": "failed", "error_code": 500001, "error_message": "model crashed"}'
    assert error_envelope(body, job_read=True) is None
    assert error_envelope(body) is not None
    res = RESULT_DECODER.decode(body)
    assert res.phase == "failed"
    assert res.error == {"error_code": 500001, "error_message": "model crashed"}


async def test_odd_fields_never_fail_a_succeeded_job(
    fake: FakeRunComfy, client: AsyncClient
) -> None:
    """A result with a string cost, an epoch created_at and a string queue_position succeeds."""
    job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
    fake.inject(
        "status",
        body={"request_id": job.request_id, "status": "in_queue", "queue_position": "3"},
    )
    fake.inject(
        "result",
        body={
            "request_id": job.request_id,
            "status": "succeeded",
            "output": OUT,
            "cost": "0.04",
            "created_at": 1756728000,
        },
        times=20,
    )
    result = await job.wait(10)
    assert result.urls == (OUT["image"],)
    assert result.cost is None


async def test_failed_result_with_error_code_raises_job_failed(
    fake: FakeRunComfy, client: AsyncClient
) -> None:
    """HTTP 200 {"status": "failed", "error_code": ...} fails the job with the server's error."""
    job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
    fake.inject(
        "result",
        body={"request_id": job.request_id, "status": "failed", "error_code": 500001},
        times=20,
    )
    with pytest.raises(JobFailedError) as info:
        await job.wait(10)
    assert info.value.error == {"error_code": 500001}


async def test_result_asks_for_the_cost(fake: FakeRunComfy, client: AsyncClient) -> None:
    """Results are read with include_cost=true and a numeric cost lands in Result.cost."""
    job = await client.submit("google/nano-banana-2/text-to-image", {"prompt": "a fox"})
    fake.inject(
        "result",
        body={"request_id": job.request_id, "status": "succeeded", "output": OUT, "cost": 0.04},
        times=20,
    )
    result = await job.wait(10)
    assert result.cost == pytest.approx(0.04)
    direct = await client.result(job.request_id)
    assert direct.cost == pytest.approx(0.04)
