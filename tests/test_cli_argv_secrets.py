"""A mistyped option never makes the command line print the value that followed it."""

from __future__ import annotations

import pytest

from runcomfy_async._cli._main import main

SECRET = "tok-SECRET-0123456789"


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "req-1", "--tok", SECRET],
        ["status", "req-1", "--tokn", SECRET],
        ["status", "req-1", f"--tokn={SECRET}"],
        ["batch", "in.txt", "--model", "m", "--out", "o", "--tok", SECRET],
        ["models", "--tok", SECRET],
    ],
)
def test_unrecognized_options_are_named_without_their_values(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's 'unrecognized arguments' names the options and hides the values (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err and SECRET not in captured.out
    assert "unrecognized arguments: --tok" in captured.err
