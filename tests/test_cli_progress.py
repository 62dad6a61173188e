"""`flows.app.output.progress`: a bar with counts and ETA on stderr for humans, nothing at all for --json/--quiet."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flows.app import output


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Console:
    console = Console(record=True, force_terminal=True, width=100, file=io.StringIO())
    monkeypatch.setattr(output, "err_console", console)
    monkeypatch.setattr(output.Output, "json", False)
    monkeypatch.setattr(output.Output, "quiet", False)
    return console


def test_progress_shows_counts(recorded: Console) -> None:
    with output.progress("sending", total=3) as advance:
        for _ in range(3):
            advance()
    shown = recorded.export_text()
    assert "sending" in shown and "3/3" in shown


@pytest.mark.parametrize("mode", ["json", "quiet"])
def test_progress_is_silent_for_scripts(recorded: Console, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(output.Output, mode, True)
    with output.progress("sending", total=3) as advance:
        advance(3)
    assert recorded.export_text() == ""
