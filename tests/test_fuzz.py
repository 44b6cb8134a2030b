"""Issue 6, fuzzing: the wire decoders, the error mapping and the input readers.

Property: whatever bytes an API answer or an input file holds, the library raises only its own
errors (``RunComfyError`` subclasses; ``UsageError`` for the command line's input readers),
with one-line messages that never show the token. The msgspec decoders called directly may
raise msgspec's own errors, and nothing else.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runcomfy_async import APIStatusError, ResponseValidationError, RunComfyError
from runcomfy_async._batch_types import Identities
from runcomfy_async._cli._args import UsageError, parse_sets
from runcomfy_async._cli._inputs import read_inputs, scan
from runcomfy_async._cli._inputs_common import InputError
from runcomfy_async._http import ApiTransport, Reply
from runcomfy_async._journal import (
    FORMAT_VERSION,
    Journal,
    JournalError,
    ResumeState,
    Run,
    Submitting,
)
from runcomfy_async._wire import (
    CANCEL_DECODER,
    ERROR_DECODER,
    RESULT_DECODER,
    STATUS_DECODER,
    SUBMIT_DECODER,
    ErrorBody,
)
from runcomfy_async.models import MODELS, validate_inputs

from .conftest import TOKEN

pytestmark = pytest.mark.reliability

T2I = "google/nano-banana-2/text-to-image"
EDIT = "google/nano-banana-2/edit"
UNTYPED = "someone/untyped-model"

TRANSPORT = ApiTransport(
    base_url="http://127.0.0.1:1",
    token=TOKEN,
    connect_timeout=1,
    read_timeout=1,
    max_connections=1,
    max_body_bytes=1 << 20,
)
"""Never opened: decode and status_error need no session."""

DECODERS = {
    "submit": SUBMIT_DECODER.decode,
    "status": STATUS_DECODER.decode,
    "result": RESULT_DECODER.decode,
    "cancel": CANCEL_DECODER.decode,
    "error": ERROR_DECODER.decode,
}

FUZZ = settings(max_examples=200, deadline=None)

# -- strategies -------------------------------------------------------------------------------

_WIRE_KEYS = [
    "request_id", "status", "queue_position", "output", "error", "created_at", "finished_at",
    "cost", "model_id", "outcome", "error_code", "error_message", "detail", "code", "message",
    "status_url", "result_url", "cancel_url", "image", "images", "video", "loc", "msg",
]  # fmt: skip
_STATUS_WORDS = [
    "in_queue", "in_progress", "completed", "succeeded", "failed", "cancelled", "canceled",
    "pending", "error", "COMPLETED", "", "weird",
]  # fmt: skip

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(_STATUS_WORDS),
    st.sampled_from(["https://x.test/a.png", "http://127.0.0.1/b.png", "2025-09-01T12:00:00Z"]),
    st.sampled_from(["2025-13-45T99:99:99", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z"]),
    st.sampled_from(["400005", "429001", "401001", "-1", "1e3", " 12", "007", TOKEN]),
    st.just(f"Bearer {TOKEN}"),
)
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_WIRE_KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
_objects = st.dictionaries(st.sampled_from(_WIRE_KEYS), _json, max_size=8)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    """Answer bodies: raw bytes, JSON objects in the API's vocabulary, or cut-off JSON."""
    kind = draw(st.sampled_from(["bytes", "object", "object", "cut", "value", "html"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "html":
        title = draw(st.text(max_size=40))
        return f"<html><head><title>{title}</title></head></html>".encode()
    value: Any = draw(_objects) if kind != "value" else draw(_json)
    raw = msgspec.json.encode(value)
    if kind == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


_statuses = st.one_of(
    st.sampled_from([200, 201, 202, 204, 301, 302, 400, 401, 403, 404, 408, 422, 429, 500, 503]),
    st.integers(min_value=100, max_value=599),
)
_replies = st.builds(
    Reply,
    status=_statuses,
    body=_bodies(),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", "", "x/y; a=b"]),
)


def _touch_properties(value: Any) -> None:
    """Read every derived property the client and the poller read from a decoded answer."""
    for name in ("phase", "urls", "created_at", "finished_at", "cancelled", "numeric_code", "text"):
        if hasattr(type(value), name):
            getattr(value, name)
    if getattr(value, "output", None) is not None:
        value.output.to_dict()
        repr(value.output)


# -- the transport's decode -------------------------------------------------------------------


@pytest.mark.slow
@FUZZ
@given(reply=_replies, endpoint=st.sampled_from(sorted(DECODERS)))
@example(
    reply=Reply(200, b'{"error_code": 400005, "error": "pending"}', None, ""), endpoint="result"
)
@example(reply=Reply(200, b'{"code": "429001", "error": "slow"}', 3.0, ""), endpoint="status")
@example(reply=Reply(500, f"<title>{TOKEN}</title>".encode(), None, "text/html"), endpoint="submit")
def test_transport_decode_raises_only_library_errors(reply: Reply, endpoint: str) -> None:
    """ApiTransport.decode returns a decoded answer or raises a one-line, token-free API error."""
    try:
        value = TRANSPORT.decode(reply, DECODERS[endpoint], "GET", "/v1/requests/r/status")
    except RunComfyError as exc:
        assert isinstance(exc, (APIStatusError, ResponseValidationError)), type(exc)
        if not 200 <= reply.status < 300:
            assert isinstance(exc, APIStatusError)
            assert 100 <= exc.status_code <= 599
        text = str(exc)
        assert text and "\n" not in text and "\r" not in text
        assert TOKEN not in text and TOKEN not in repr(exc)
        assert TOKEN not in getattr(exc, "body", "")
    else:
        assert 200 <= reply.status < 300
        _touch_properties(value)


@FUZZ
@given(reply=_replies)
def test_status_error_always_builds_an_api_status_error(reply: Reply) -> None:
    """status_error maps any answer to an APIStatusError subclass; it never raises."""
    exc = TRANSPORT.status_error(reply, "POST", "http://127.0.0.1:1/v1/models/a/b")
    assert isinstance(exc, APIStatusError)
    assert 100 <= exc.status_code <= 599
    assert exc.error_code is None or isinstance(exc.error_code, int)
    text = str(exc)
    assert "\n" not in text and TOKEN not in text and TOKEN not in exc.body
    if exc.status_code == 429:
        assert exc.retry_after == reply.retry_after  # type: ignore[attr-defined]


@pytest.mark.slow
@FUZZ
@given(body=_bodies(), endpoint=st.sampled_from(sorted(DECODERS)))
def test_decoders_raise_only_msgspec_errors(body: bytes, endpoint: str) -> None:
    """The decoders called directly raise msgspec's errors only; what they return is usable."""
    try:
        value = DECODERS[endpoint](body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    _touch_properties(value)


@pytest.mark.parametrize("code", ["²", "³", "①", "1²"])
@pytest.mark.parametrize("status", [200, 500])
def test_unicode_digit_error_code_is_a_library_error(code: str, status: int) -> None:
    """An error_code of non-decimal Unicode digits yields an API error, not a ValueError."""
    body = msgspec.json.encode({"error_code": code, "error_message": "odd"})
    with contextlib.suppress(RunComfyError):
        TRANSPORT.decode(Reply(status, body, None, ""), STATUS_DECODER.decode, "GET", "/x")
    assert ErrorBody(error_code=code).numeric_code is None


def _nested_answers(depth: int) -> list[Any]:
    """The four places a server could nest JSON ``depth`` levels deep."""
    deep = b"[" * depth + b"]" * depth
    return [
        pytest.param(
            200,
            b'{"status": "succeeded", "output": {"image": ' + deep + b"}}",
            "result",
            id="result-output",
        ),
        pytest.param(
            200, b'{"status": "in_queue", "error": ' + deep + b"}", "status", id="status-error"
        ),
        pytest.param(
            500, b'{"error_code": 500001, "detail": ' + deep + b"}", "status", id="5xx-detail"
        ),
        pytest.param(
            200,
            b'{"error_code": 403001, "detail": ' + deep + b"}",
            "cancel",
            id="200-error-code-detail",
        ),
    ]


@pytest.mark.parametrize(("status", "body", "endpoint"), _nested_answers(100_000))
def test_deeply_nested_answer_is_a_library_error(status: int, body: bytes, endpoint: str) -> None:
    """An answer nested past msgspec's depth limit becomes an API error, not a RecursionError."""
    with pytest.raises(RunComfyError):
        TRANSPORT.decode(Reply(status, body, None, ""), DECODERS[endpoint], "GET", "/x")


@pytest.mark.parametrize(("status", "body", "endpoint"), _nested_answers(1_500))
def test_nesting_past_the_recursion_limit_is_walked_without_recursion(
    status: int, body: bytes, endpoint: str
) -> None:
    """Nesting the decoder accepts (3.12+) but Python's recursion limit does not: no crash."""
    try:
        answer = TRANSPORT.decode(Reply(status, body, None, ""), DECODERS[endpoint], "GET", "/x")
    except RunComfyError as exc:  # the decoder's limit (3.10, 3.11), or the error envelope
        assert str(exc)
        return
    assert getattr(answer, "urls", ()) == ()
    error = getattr(answer, "error", None)
    assert msgspec.json.encode(TRANSPORT.redact_value(error)) == msgspec.json.encode(error)


# -- input readers ----------------------------------------------------------------------------

_field_values = st.one_of(
    _json,
    st.sampled_from(["1:1", "16:9", "7:7", "auto", "2K", "0.5K", "png", "webp", "bmp"]),
    st.integers(min_value=-3, max_value=8),
    st.lists(st.sampled_from(["https://x.test/a.png", "http://x.test/b.png", "", "https://"])),
)
_field_names = st.sampled_from(
    [
        *sorted({name for cls in MODELS.values() for name in cls.__struct_fields__}),
        *["_key", "num_image", "Prompt", ""],
    ]
)
_line_objects = st.dictionaries(_field_names, _field_values, max_size=6)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(_line_objects, min_size=1, max_size=6),
    model_id=st.sampled_from([*sorted(MODELS), UNTYPED]),
    shared=st.dictionaries(_field_names.filter(lambda n: n != "_key"), _field_values, max_size=2),
)
def test_jsonl_items_valid_by_reader_are_submittable_and_journaled(
    tmp_path: Path, lines: list[dict[str, Any]], model_id: str, shared: dict[str, Any]
) -> None:
    """An item the reader calls valid passes the schema, encodes and round-trips the journal."""
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(msgspec.json.encode(line) for line in lines) + b"\n")
    items = list(read_inputs(path, model_id=model_id, shared=shared))
    assert [i.index for i in items] == list(range(len(lines)))
    journal = tmp_path / "journal.jsonl"
    journal.unlink(missing_ok=True)
    ids = Identities()
    with Journal(journal) as j:
        j.write(Run(version=FORMAT_VERSION, model=model_id))
        for item in items:
            assert item.error is None or ("\n" not in item.error and item.error)
            if item.error is not None:
                continue
            validate_inputs(model_id, item.inputs)  # the reader's verdict holds at submit
            assert msgspec.json.encode(item.inputs)
            ident = ids.of(model_id, item.inputs, item.key)
            j.write(Submitting(id=ident, index=item.index, model=model_id, input=item.inputs))
    state = Journal.replay(journal)
    assert state.records == 1 + sum(1 for i in items if i.ok)
    replayed = [r.input for r in Journal.records(journal) if isinstance(r, Submitting)]
    assert replayed == [i.inputs for i in items if i.ok]


_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["1", "9", "-1", "true", "TRUE", "no", "[1,2]", "[", "1e999", "null", '"q"']),
    st.sampled_from(["https://x.test/a.png", "https://a.png,http://b.png", "16:9", "2K"]),
)


_NUL_WRITABLE: dict[str, Any] = {"escapechar": "\\"} if sys.version_info < (3, 11) else {}
"""Python 3.10's CSV writer refuses a NUL cell without an escape character; 3.11 writes it."""


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(_field_names, min_size=1, max_size=5),
    rows=st.lists(st.lists(_cells, max_size=6), max_size=5),
    model_id=st.sampled_from([T2I, EDIT, UNTYPED]),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_csv_cells_typed_by_schema_never_raise(
    tmp_path: Path, header: list[str], rows: list[list[str]], model_id: str, delimiter: str
) -> None:
    """Any CSV cell for any field: items with one-line errors, valid ones pass the schema."""
    path = tmp_path / "fuzz.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh, delimiter=delimiter, **_NUL_WRITABLE)
        writer.writerow(header)
        writer.writerows(rows)
    try:
        items = list(read_inputs(path, model_id=model_id))
    except (UsageError, InputError):
        return  # e.g. a header the reader refuses as a whole is a usage error, not a crash
    for item in items:
        assert item.error is None or ("\n" not in item.error and item.error)
        if item.error is None:
            validate_inputs(model_id, item.inputs)
            msgspec.json.encode(item.inputs)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400), fmt=st.sampled_from(["txt", "jsonl", "csv"]))
def test_stdin_reads_like_a_file(tmp_path: Path, data: bytes, fmt: str) -> None:
    """Arbitrary bytes on stdin give the same items as the same bytes in a file, never a crash."""
    from_stdin = list(read_inputs("-", model_id=T2I, fmt=fmt, stdin=io.BytesIO(data)))
    path = tmp_path / f"same.{fmt}"
    path.write_bytes(data)
    from_file = list(read_inputs(path, model_id=T2I))

    def shape(items: list[Any]) -> list[tuple[Any, ...]]:
        return [(i.index, i.line, i.key, i.inputs, i.error) for i in items]

    assert shape(from_stdin) == shape(from_file)
    assert all(i.source.startswith("<stdin>:") for i in from_stdin)
    report = scan("-", model_id=T2I, fmt=fmt, stdin=io.BytesIO(data))
    assert report.total == len(from_stdin)
    assert report.invalid == sum(1 for i in from_stdin if not i.ok)


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.one_of(
            st.text(max_size=20), st.builds("{}={}".format, _field_names, st.text(max_size=20))
        ),
        max_size=5,
    ),
    model_id=st.sampled_from([T2I, EDIT, UNTYPED]),
)
def test_set_values_raise_only_usage_errors(pairs: list[str], model_id: str) -> None:
    """--set key=value pairs of any text parse or raise UsageError, nothing else."""
    try:
        parsed = parse_sets(model_id, pairs)
    except UsageError as exc:
        assert "\n" not in str(exc) or "\n" in "".join(pairs)
        return
    assert set(parsed) <= {p.partition("=")[0].strip() for p in pairs}


@pytest.mark.slow
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.one_of(st.binary(max_size=80), _objects.map(msgspec.json.encode)), max_size=8)
)
def test_journal_replay_survives_any_bytes(tmp_path: Path, lines: list[bytes]) -> None:
    """A journal holding any bytes replays to a state or is refused whole; never a crash."""
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        state = Journal.replay(path)
    except JournalError:
        return  # records of another format: refused with a message
    assert isinstance(state, ResumeState)
    assert state.records <= len(lines)
    assert not (set(state.done) & set(state.submitted))


def _at_depth(frames: int, func: Any) -> Any:
    return func() if frames <= 0 else _at_depth(frames - 1, func)


def test_nesting_limit_is_fixed_and_accepted_inputs_replay(tmp_path: Path) -> None:
    """A line's validity never depends on the stack; accepted inputs replay from the journal."""
    path = tmp_path / "deep.jsonl"
    for depth in range(1000, 0, -1):  # the deepest line the reader accepts from here
        path.write_text('{"x": ' + "[" * depth + "]" * depth + "}\n")
        (top,) = read_inputs(path, model_id=UNTYPED)
        if top.ok:
            break
    (deeper,) = _at_depth(60, lambda: list(read_inputs(path, model_id=UNTYPED)))
    assert top.ok == deeper.ok, (top.error, deeper.error)
    if top.ok:
        journal = tmp_path / "journal.jsonl"
        with Journal(journal) as j:
            j.write(Run(version=FORMAT_VERSION, model=UNTYPED))
            j.write(Submitting(id="c:deep", index=0, model=UNTYPED, input=top.inputs))
        assert Journal.replay(journal).uncertain == {"c:deep"}
