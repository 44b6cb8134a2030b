"""Streaming batch input readers: txt, jsonl and csv, every problem reported per item."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runcomfy_async._cli._inputs import (
    MAX_LINE_BYTES,
    InputLine,
    ScanReport,
    detect_format,
    read_inputs,
    scan,
)
from runcomfy_async._cli._inputs_common import InputError

T2I = "google/nano-banana-2/text-to-image"
EDIT = "google/nano-banana-2/edit"
UNTYPED = "someone/untyped-model"


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def read(path: Path, model_id: str = T2I, **kw: Any) -> list[InputLine]:
    return list(read_inputs(str(path), model_id=model_id, **kw))


# -- txt --------------------------------------------------------------------------------------


def test_txt_skips_blank_lines_and_strips_crlf(tmp_path: Path) -> None:
    """Blank and whitespace-only lines take no index; CRLF and surrounding spaces are removed."""
    path = write(tmp_path, "p.txt", "a fox\r\n\r\n   \r\n  a cat \t\r\n\nlast line")
    items = read(path)
    assert [(i.index, i.line, i.inputs["prompt"]) for i in items] == [
        (0, 1, "a fox"),
        (1, 4, "a cat"),
        (2, 6, "last line"),
    ]
    assert all(i.error is None and i.ok and i.key is None for i in items)
    assert items[1].source == f"{path}:4"


def test_txt_drops_a_leading_byte_order_mark(tmp_path: Path) -> None:
    """A UTF-8 BOM written by some editors is not part of the first prompt."""
    items = read(write(tmp_path, "p.txt", b"\xef\xbb\xbfa fox\n"))
    assert items[0].inputs == {"prompt": "a fox"}


def test_stdin_is_read_with_its_own_source_name() -> None:
    """``-`` reads the given binary stream as txt, and sources say ``<stdin>``."""
    stream = io.BytesIO(b"one\n\ntwo\n")
    items = list(read_inputs("-", model_id=T2I, stdin=stream))
    assert [(i.inputs["prompt"], i.source) for i in items] == [
        ("one", "<stdin>:1"),
        ("two", "<stdin>:3"),
    ]


def test_source_name_replaces_the_path(tmp_path: Path) -> None:
    """A spooled stdin file can still report its items as ``<stdin>``."""
    path = write(tmp_path, "spool.txt", "a\n\nb\n")
    items = read(path, source_name="<stdin>")
    assert [i.source for i in items] == ["<stdin>:1", "<stdin>:3"]


def test_stdin_can_be_read_as_jsonl() -> None:
    """An explicit format applies to stdin."""
    stream = io.BytesIO(b'{"prompt": "a fox", "_key": "k"}\n')
    (item,) = read_inputs("-", model_id=T2I, fmt="jsonl", stdin=stream)
    assert item.key == "k" and item.inputs == {"prompt": "a fox"}


# -- jsonl ------------------------------------------------------------------------------------


def test_jsonl_malformed_and_non_object_lines_are_errors(tmp_path: Path) -> None:
    """Bad JSON and JSON that is not an object become item errors; later lines still read."""
    path = write(
        tmp_path, "p.jsonl", '{"prompt": "a"}\n{"prompt": \n\n[1, 2]\n"text"\n{"prompt": "b"}\n'
    )
    items = read(path)
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert [i.line for i in items] == [1, 2, 4, 5, 6]
    assert items[0].ok and items[4].ok
    assert items[1].error is not None and items[1].error.startswith("not valid JSON")
    assert items[2].error == "not a JSON object of inputs: got a list of 2 items"
    assert items[3].error is not None and "not a JSON object" in items[3].error


def test_jsonl_key_is_pulled_out(tmp_path: Path) -> None:
    """``_key`` (a string or an integer) becomes ``key`` and leaves the inputs."""
    lines = [
        '{"prompt": "a", "_key": "cat-01"}',
        '{"prompt": "b", "_key": 7}',
        '{"prompt": "c", "_key": null}',
        '{"prompt": "d", "_key": true}',
        '{"prompt": "e", "_key": ""}',
    ]
    items = read(write(tmp_path, "p.jsonl", "\n".join(lines)))
    assert [i.key for i in items] == ["cat-01", "7", None, None, None]
    assert all("_key" not in i.inputs for i in items)
    assert items[2].ok
    assert items[3].error == "_key must be a non-empty string or an integer; got true (a boolean)"
    assert items[4].error is not None and items[4].error.startswith("_key must be")


def test_jsonl_unknown_field_of_a_typed_model(tmp_path: Path) -> None:
    """A field the model does not have is named, with a suggestion."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"prompt": "a", "num_image": 2}\n'))
    assert item.error is not None
    assert item.error.startswith(f"num_image is not an input of {T2I}")
    assert "did you mean 'num_images'?" in item.error


def test_jsonl_out_of_range_value(tmp_path: Path) -> None:
    """``num_images: 9`` is rejected with the allowed range."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"prompt": "a", "num_images": 9}\n'))
    assert item.error == "num_images must be an integer from 1 to 4 (default 1); got the integer 9"
    assert item.inputs == {"prompt": "a", "num_images": 9}


def test_jsonl_bad_enum_value(tmp_path: Path) -> None:
    """An aspect ratio outside the model's list says what is allowed."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"prompt": "a", "aspect_ratio": "7:3"}\n'))
    assert item.error is not None and item.error.startswith("aspect_ratio must be one of: 'auto'")


def test_jsonl_empty_prompt(tmp_path: Path) -> None:
    """An empty prompt is an item error for a typed model."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"prompt": ""}\n'))
    assert item.error is not None and item.error.startswith("prompt must be a non-empty string")


def test_jsonl_missing_prompt(tmp_path: Path) -> None:
    """A typed model's required field is asked for."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"num_images": 2}\n'))
    assert item.error is not None and item.error.startswith("prompt is required")


def test_jsonl_non_https_image_url(tmp_path: Path) -> None:
    """The edit model rejects an ``http://`` image URL."""
    line = '{"prompt": "rain", "image_urls": ["https://x.test/a.png", "http://x.test/b.png"]}\n'
    (item,) = read(write(tmp_path, "p.jsonl", line), EDIT)
    assert item.error is not None
    assert item.error.startswith("image_urls must be a list of 1 to 20 https:// URLs")
    assert "item 1" in item.error


def test_untyped_model_takes_any_object(tmp_path: Path) -> None:
    """A model without a schema gets the object as written."""
    (item,) = read(write(tmp_path, "p.jsonl", '{"anything": [1, {"b": null}]}\n'), UNTYPED)
    assert item.ok and item.inputs == {"anything": [1, {"b": None}]}


def test_deeply_nested_json_is_an_error(tmp_path: Path) -> None:
    """JSON nested past the decoder's depth limit is an item error, not a RecursionError."""
    (item,) = read(write(tmp_path, "p.jsonl", "[" * 100_000 + "\n"), UNTYPED)
    assert item.error is not None and item.error.startswith("not valid JSON")


# -- invalid UTF-8 and huge lines -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head"),
    [("p.txt", b""), ("p.jsonl", b""), ("p.csv", b"prompt\n")],
)
def test_invalid_utf8_is_an_item_error(tmp_path: Path, name: str, head: bytes) -> None:
    """A line of invalid UTF-8 is reported on its own; its neighbours read fine."""
    body = {
        "p.txt": b"good\nbad \xff\xfe here\nalso good\n",
        "p.jsonl": b'{"prompt": "good"}\n{"prompt": "bad \xc3("}\n{"prompt": "also good"}\n',
        "p.csv": b"good\nbad \xe2\x82\nalso good\n",
    }[name]
    items = read(write(tmp_path, name, head + body))
    assert [i.index for i in items] == [0, 1, 2]
    assert items[0].ok and items[2].ok
    assert items[1].error is not None and items[1].error.startswith("invalid UTF-8 at byte")
    assert items[2].inputs["prompt"] == "also good"


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl"])
def test_ten_megabyte_prompt_is_rejected_clearly(tmp_path: Path, name: str) -> None:
    """A 10 MB prompt line gets the model's prompt cap as its reason; the next line reads."""
    prompt = "x" * 10_000_000
    line = prompt if name == "p.txt" else f'{{"prompt": "{prompt}"}}'
    nxt = "a fox" if name == "p.txt" else '{"prompt": "a fox"}'
    items = read(write(tmp_path, name, f"{line}\n{nxt}\n"))
    assert len(items) == 2
    assert items[0].error == (
        "prompt must be a non-empty string of at most 100,000 characters; "
        "got a string of 10,000,000 characters"
    )
    assert items[1].ok and items[1].line == 2


def test_line_over_the_cap_is_rejected_for_an_untyped_model(tmp_path: Path) -> None:
    """A 20 MB line passes the 16 MiB cap: an item error, and reading goes on."""
    path = tmp_path / "p.txt"
    with path.open("wb") as f:
        f.write(b"first\n")
        f.write(b"y" * 20_000_000 + b"\r\n")
        f.write(b"third\n")
    items = read(path, UNTYPED)
    assert [(i.index, i.line) for i in items] == [(0, 1), (1, 2), (2, 3)]
    assert items[1].error == f"line longer than the limit of {MAX_LINE_BYTES:,} bytes"
    assert items[0].ok and items[2].inputs == {"prompt": "third"}


@pytest.mark.parametrize("name", ["p.txt", "p.jsonl", "p.csv"])
def test_memory_stays_bounded_by_the_line_cap(tmp_path: Path, name: str) -> None:
    """Skipping a 20 MB line holds at most the cap (here 1 MiB), never the whole line."""
    path = tmp_path / name
    with path.open("wb") as f:
        if name == "p.csv":
            f.write(b"prompt\n")
        f.write(b"z" * 20_000_000 + b"\n")
        f.write(b"after\n" if name != "p.jsonl" else b'{"prompt": "after"}\n')
    tracemalloc.start()
    try:
        items = read(path, UNTYPED, max_line_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert items[0].error == f"line longer than the limit of {1 << 20:,} bytes"
    assert items[1].inputs == {"prompt": "after"}


def test_line_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    """The cap counts the line without its line break, CRLF or LF."""
    path = write(tmp_path, "p.txt", b"a" * 64 + b"\r\n" + b"b" * 64 + b"\n" + b"c" * 65 + b"\n")
    items = read(path, UNTYPED, max_line_bytes=64)
    assert [i.ok for i in items] == [True, True, False]


# -- csv --------------------------------------------------------------------------------------


def test_csv_values_are_typed_by_the_schema(tmp_path: Path) -> None:
    """Integers, booleans and lists (comma-separated or JSON) get their schema types."""
    text = (
        "prompt,num_images,enable_web_search,image_urls,seed\n"
        '"rain, heavy",2,true,"https://x.test/a.png,https://x.test/b.png",\n'
        'snow,1,no,"[""https://x.test/c.png""]",42\n'
    )
    items = read(write(tmp_path, "p.csv", text), EDIT)
    assert items[0].ok, items[0].error
    assert items[0].inputs == {
        "prompt": "rain, heavy",
        "num_images": 2,
        "enable_web_search": True,
        "image_urls": ["https://x.test/a.png", "https://x.test/b.png"],
    }
    assert items[1].ok, items[1].error
    assert items[1].inputs["enable_web_search"] is False
    assert items[1].inputs["image_urls"] == ["https://x.test/c.png"]
    assert items[1].inputs["seed"] == 42


def test_csv_value_of_the_wrong_type_is_explained(tmp_path: Path) -> None:
    """A cell that does not fit its field stays text, and the schema says what is allowed."""
    text = "prompt,num_images,limit_generations\na,two,\nb,,maybe\n"
    items = read(write(tmp_path, "p.csv", text))
    assert items[0].error == (
        "num_images must be an integer from 1 to 4 (default 1); got the string 'two'"
    )
    assert items[1].error is not None
    assert items[1].error.startswith("limit_generations must be true or false")


def test_csv_untyped_model_guesses_json_scalars(tmp_path: Path) -> None:
    """Without a schema, numbers and booleans look like JSON; the rest stays text."""
    text = "prompt,steps,cfg,flag,tags\nhello,20,7.5,false,[1]\n"
    (item,) = read(write(tmp_path, "p.csv", text), UNTYPED)
    assert item.inputs == {"prompt": "hello", "steps": 20, "cfg": 7.5, "flag": False, "tags": [1]}


def test_csv_key_blank_rows_and_empty_cells(tmp_path: Path) -> None:
    """``_key`` names the row, empty cells are omitted, blank rows take no index."""
    text = "\n_key, prompt ,num_images\ncat-1,a cat,\n\n,,\n,a dog,3\n"
    items = read(write(tmp_path, "p.csv", text))
    assert [(i.index, i.line, i.key) for i in items] == [(0, 3, "cat-1"), (1, 6, None)]
    assert items[0].inputs == {"prompt": "a cat"}
    assert items[1].inputs == {"prompt": "a dog", "num_images": 3}


def test_csv_multiline_cell_reports_its_first_line(tmp_path: Path) -> None:
    """A quoted cell across lines is one item; the next item's line number is still right."""
    text = 'prompt\n"a fox\nin the snow"\nnext\n'
    items = read(write(tmp_path, "p.csv", text))
    assert [(i.line, i.inputs["prompt"]) for i in items] == [(2, "a fox\nin the snow"), (4, "next")]


def test_csv_semicolon_and_tab_delimiters(tmp_path: Path) -> None:
    """A header without commas but with semicolons or tabs picks that delimiter."""
    for name, sep in (("s.csv", ";"), ("t.csv", "\t")):
        text = f"prompt{sep}num_images\na fox{sep}2\n"
        (item,) = read(write(tmp_path, name, text))
        assert item.inputs == {"prompt": "a fox", "num_images": 2}, name


def test_csv_row_problems(tmp_path: Path) -> None:
    """Extra cells, a value under an unnamed column and a bad cell are item errors."""
    text = "prompt,,num_images\na,,1\nb,,1,extra\nc,oops,1\nd,,1\n"
    items = read(write(tmp_path, "p.csv", text))
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert items[0].ok and items[3].ok
    assert items[1].error == "the row has 4 cells but the header names 3"
    assert items[2].error == "column 2 has a value but no name in the header"


def test_csv_quoting_errors_are_item_errors(tmp_path: Path) -> None:
    """A stray quote, a bare carriage return or an oversized cell spoils only its own row."""
    text = (
        'prompt,num_images\na "b" c,1\n"x"y,1\nok,1\nbare\rcr,1\n'
        + "w" * 200_000
        + ',1\n"open,1\nswallowed,1\n'
    )
    items = read(write(tmp_path, "p.csv", text))
    assert [(i.line, i.error) for i in items] == [
        (2, None),
        (3, "not valid CSV: ',' expected after '\"'"),
        (4, None),
        (5, "not valid CSV: a carriage return inside an unquoted cell (quote the cell)"),
        (6, f"not valid CSV: a cell longer than {csv.field_size_limit():,} characters"),
        (
            7,
            "not valid CSV: unexpected end of data "
            "(in a record from line 7 to line 8: is a quote left open?)",
        ),
    ]
    assert items[0].inputs["prompt"] == 'a "b" c'


def test_csv_duplicate_header_makes_every_row_an_error(tmp_path: Path) -> None:
    """A header that names a column twice cannot be used; every row says so, keeping indexes."""
    items = read(write(tmp_path, "p.csv", "prompt,prompt\na,b\nc,d\n"))
    assert [i.index for i in items] == [0, 1]
    assert all(
        i.error == "the header row is unusable: column 'prompt' appears more than once"
        for i in items
    )


def test_csv_header_only_is_empty(tmp_path: Path) -> None:
    """A header and no rows is an empty input."""
    assert scan(write(tmp_path, "p.csv", "prompt,num_images\n"), model_id=T2I).total == 0


# -- shared fields, indexes, scan -------------------------------------------------------------


def test_shared_fields_merge_under_the_line(tmp_path: Path) -> None:
    """``--set`` fields reach every item, and a line's own value wins."""
    shared = {"aspect_ratio": "1:1", "num_images": 2}
    jsonl = write(tmp_path, "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "num_images": 4}\n')
    assert [i.inputs for i in read(jsonl, shared=shared)] == [
        {"aspect_ratio": "1:1", "num_images": 2, "prompt": "a"},
        {"aspect_ratio": "1:1", "num_images": 4, "prompt": "b"},
    ]
    csv_path = write(tmp_path, "p.csv", "prompt,num_images\na,\nb,3\n")
    assert [i.inputs["num_images"] for i in read(csv_path, shared=shared)] == [2, 3]
    txt = write(tmp_path, "p.txt", "a fox\n")
    (item,) = read(txt, shared={"prompt": "ignored", "seed": 5})
    assert item.inputs == {"prompt": "a fox", "seed": 5}


def test_shared_field_errors_show_on_every_item(tmp_path: Path) -> None:
    """A bad shared value is reported per item, like a line's own."""
    items = read(write(tmp_path, "p.txt", "a\nb\n"), shared={"num_images": 7})
    assert all(i.error is not None and i.error.startswith("num_images") for i in items)


def test_shared_key_is_refused() -> None:
    """``_key`` names one item, so it cannot be shared."""
    with pytest.raises(InputError, match="_key"):
        read_inputs("p.txt", model_id=T2I, shared={"_key": "x"})


def test_indexes_are_stable_when_a_line_is_fixed(tmp_path: Path) -> None:
    """Items with errors keep their index, so fixing one changes no other index."""
    broken = write(tmp_path, "a.jsonl", '{"prompt": "a"}\n{oops\n\n{"prompt": "c"}\n')
    fixed = write(tmp_path, "b.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n\n{"prompt": "c"}\n')
    before = [(i.index, i.line, i.ok) for i in read(broken)]
    after = [(i.index, i.line, i.ok) for i in read(fixed)]
    assert before == [(0, 1, True), (1, 2, False), (2, 4, True)]
    assert after == [(0, 1, True), (1, 2, True), (2, 4, True)]


def test_scan_counts_and_caps_errors(tmp_path: Path) -> None:
    """Scan counts every item and keeps the first 50 errors in file order."""
    lines = ['{"prompt": "ok"}'] * 10 + ["not json"] * 60
    report = scan(write(tmp_path, "p.jsonl", "\n".join(lines)), model_id=T2I)
    assert (report.total, report.valid, report.invalid) == (70, 10, 60)
    assert len(report.errors) == 50
    assert report.errors[0][0].endswith("p.jsonl:11")
    assert report.errors[0][1].startswith("not valid JSON")


@pytest.mark.parametrize(
    ("name", "data"),
    [("e.txt", b""), ("e.jsonl", b"\n  \n\r\n"), ("e.csv", b""), ("e.txt", b"\xef\xbb\xbf\n")],
)
def test_empty_file_scans_as_zero_items(tmp_path: Path, name: str, data: bytes) -> None:
    """A file without items is reported as total 0."""
    assert scan(write(tmp_path, name, data), model_id=T2I) == ScanReport(0, 0, 0, [])


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that cannot be opened is a usage error naming it."""
    with pytest.raises(InputError, match="cannot read"):
        scan(tmp_path / "nope.txt", model_id=T2I)


# -- formats ----------------------------------------------------------------------------------


def test_detect_format() -> None:
    """Extensions (any case), stdin and explicit names map to the three formats."""
    assert detect_format("a/b.txt") == "txt"
    assert detect_format("b.JSONL") == "jsonl"
    assert detect_format("b.ndjson") == "jsonl"
    assert detect_format(Path("b.csv")) == "csv"
    assert detect_format("-") == "txt"
    assert detect_format("-", "csv") == "csv"
    assert detect_format("data.tsv", "NDJSON") == "jsonl"


def test_unknown_extension_names_the_allowed_ones() -> None:
    """An unknown extension or format name is a usage error listing what works."""
    with pytest.raises(InputError, match=r"\.txt.*\.jsonl.*\.csv"):
        detect_format("prompts.yaml")
    with pytest.raises(InputError, match="one JSON object a line"):
        detect_format("prompts.json")
    with pytest.raises(InputError, match="txt, jsonl or csv"):
        detect_format("p.txt", "xml")
    with pytest.raises(InputError):
        read_inputs("prompts", model_id=T2I)


# -- robustness -------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\r",
        b",",
        b";",
        b'"',
        b"{",
        b"}",
        b"[",
        b'"prompt"',
        b'"_key"',
        b":",
        b"prompt",
        b"_key",
        b"num_images",
        b"true",
        b"2",
        b"-",
        b"\xff",
        b"\xc3",
        b"\xef\xbb\xbf",
        b"\x00",
        b" ",
        b"a fox",
        b"\\ud800",
    ]
)
_CONTENT = st.one_of(st.binary(max_size=300), st.lists(_FRAGMENTS, max_size=60).map(b"".join))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=_CONTENT,
    ext=st.sampled_from(["txt", "jsonl", "csv"]),
    model_id=st.sampled_from([T2I, EDIT, UNTYPED]),
    max_line_bytes=st.sampled_from([4, 16, MAX_LINE_BYTES]),
)
def test_arbitrary_bytes_never_raise(
    tmp_path: Path, data: bytes, ext: str, model_id: str, max_line_bytes: int
) -> None:
    """Whatever the file holds, reading it yields items with one-line errors and never raises."""
    path = write(tmp_path, f"fuzz.{ext}", data)
    items = read(path, model_id, shared={"seed": 1}, max_line_bytes=max_line_bytes)
    assert [i.index for i in items] == list(range(len(items)))
    lines = [i.line for i in items]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    for item in items:
        assert item.error is None or (item.error and "\n" not in item.error)
        assert "_key" not in item.inputs
    report = scan(path, model_id=model_id, shared={"seed": 1}, max_line_bytes=max_line_bytes)
    assert report.total == len(items)
    assert report.invalid == sum(1 for i in items if i.error is not None)
