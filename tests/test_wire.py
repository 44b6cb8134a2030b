"""Wire types: outputs, timestamps, state names and error envelopes decode as PROTOCOL.md says."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from runcomfy_async import Output
from runcomfy_async._wire import (
    ERROR_DECODER,
    RESULT_DECODER,
    STATUS_DECODER,
    classify,
)


def test_output_urls_in_order() -> None:
    """image, images, video, videos, then any other key; non-URLs skipped."""
    out = Output(
        {
            "extra": {"nested": ["https://x/e.png"]},
            "videos": ["https://x/v1.mp4", "https://x/v2.mp4"],
            "image": "https://x/a.png",
            "images": ["https://x/b.png", "not a url"],
            "video": "https://x/v.mp4",
        }
    )
    assert out.urls == (
        "https://x/a.png",
        "https://x/b.png",
        "https://x/v.mp4",
        "https://x/v1.mp4",
        "https://x/v2.mp4",
        "https://x/e.png",
    )
    assert out["image"] == "https://x/a.png"
    assert len(out) == 5


def test_result_decodes_documented_example() -> None:
    """The documented result body decodes, with aware timestamps and unknown fields ignored."""
    body = (
        b'{"request_id":"r1","status":"succeeded","output":{"image":"https://s/a.png",'
        b'"videos":["https://s/a.mp4","https://s/b.mp4"]},'
        b'"created_at":"2025-09-01T12:00:00.123456+00:00",'
        b'"finished_at":"2025-09-01T12:00:42.654321+02:00","brand_new_field":{"x":1}}'
    )
    res = RESULT_DECODER.decode(body)
    assert res.output is not None
    assert res.output.urls == ("https://s/a.png", "https://s/a.mp4", "https://s/b.mp4")
    assert res.created_at is not None and res.created_at.microsecond == 123456
    assert res.created_at.utcoffset() == timedelta(0)
    assert res.finished_at is not None and res.finished_at.utcoffset() == timedelta(hours=2)
    assert res.urls == res.output.urls


@pytest.mark.parametrize(
    "raw",
    ["2025-09-01T12:00:00", "2025-09-01 12:00:00Z", "2025-09-01T12:00:00.5+05:30"],
)
def test_timestamps_always_aware(raw: str) -> None:
    """Timestamps without an offset are taken as UTC; all decode to aware datetimes."""
    res = RESULT_DECODER.decode(f'{{"status":"succeeded","created_at":"{raw}"}}'.encode())
    assert res.created_at is not None and res.created_at.tzinfo is not None


def test_bad_timestamp_is_none_not_an_error() -> None:
    """An unparseable timestamp never costs the user a finished result."""
    res = RESULT_DECODER.decode(b'{"status":"succeeded","created_at":"yesterday"}')
    assert res.created_at is None


@pytest.mark.parametrize(
    "error",
    ['"boom"', '{"type":"x","message":"boom"}', '[{"errorCode":1,"error":"boom"}]'],
)
def test_failed_result_error_any_shape(error: str) -> None:
    """error on a failed result may be a string, an object or a list; kept as sent."""
    res = RESULT_DECODER.decode(f'{{"status":"failed","error":{error}}}'.encode())
    assert res.phase == "failed"
    assert "boom" in str(res.error)


def test_status_names_map_to_phases() -> None:
    """Status and result vocabularies share phases; 'canceled' is 'cancelled'."""
    assert classify("in_queue") == "queued"
    assert classify("in_progress") == "running"
    assert classify("completed") == "succeeded"
    assert classify("succeeded") == "succeeded"
    assert classify("failed") == "failed"
    assert classify("canceled") == "cancelled"
    assert classify("cancelled") == "cancelled"


def test_unknown_status_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown status is in flight (None) and logged once, not on every poll."""
    caplog.set_level(logging.WARNING, logger="runcomfy_async")
    for _ in range(3):
        assert STATUS_DECODER.decode(b'{"status":"warming_up_v9"}').phase is None
    assert sum("warming_up_v9" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (b'{"error_code":401001,"error_message":"bad token","detail":null}', 401001, "bad token"),
        (b'{"code":400004,"error":"UserAccountError"}', 400004, "UserAccountError"),
        (b'{"message":"Forbidden"}', None, "Forbidden"),
        (
            b'{"error_code":"422001","detail":[{"loc":["body","seed"],"msg":"bad"}]}',
            422001,
            "seed: bad",
        ),
    ],
)
def test_error_envelopes(body: bytes, code: int | None, text: str) -> None:
    """Every error envelope yields a numeric code and a human message."""
    env = ERROR_DECODER.decode(body)
    assert env.numeric_code == code
    assert env.text == text
