"""The one rule for missing tools (tests/tool_support.py): a failure under CI, a skip with the reason elsewhere,
and no test module bypassing it with a skip of its own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.tool_support import require_executable, require_module

TESTS = Path(__file__).resolve().parent


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"required under CI: /nonexistent/tool is not installed"):
        require_executable("/nonexistent/tool", "apt-get install tool")
    with pytest.raises(pytest.fail.Exception, match=r"no_such_module_for_briefing.*pip install it"):
        require_module("no_such_module_for_briefing", "pip install it")


def test_a_missing_tool_skips_with_the_reason_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"/nonexistent/tool is not installed — apt-get install tool"):
        require_executable("/nonexistent/tool", "apt-get install tool")


def test_a_present_tool_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_executable("sh", "it is always there") == shutil.which("sh")
    assert require_module("json", "stdlib").dumps([]) == "[]"


def test_no_test_module_skips_on_its_own() -> None:
    """Skips go through tool_support, so that CI turns every one of them into a failure."""
    pattern = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skip(if)?\b")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in {"tool_support.py", Path(__file__).name}
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, f"skip through tests/tool_support.py instead: {offenders}"
