"""One rule for tests that need something from outside the Python dependencies (Chromium, Playwright,
PostgreSQL, …): under CI (`CI=true`) a missing tool FAILS the test, because scripts/test.sh installs every
tool and a skip there would hide a broken set-up; on a developer's machine the test is skipped with the
reason and how to get the tool (`pytest -rs` lists them)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

CHROMIUM = "/usr/bin/chromium"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tool_missing(what: str, how_to_get_it: str, *, module_level: bool = False) -> NoReturn:
    """Fail under CI, skip elsewhere; the message says what is missing and how to get it.

    `module_level=True` when called while a test module is imported (it then fails or skips the module)."""
    message = f"{what} — {how_to_get_it}"
    if in_ci():
        pytest.fail(f"required under CI: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=module_level)


def require_module(name: str, how_to_get_it: str, *, module_level: bool = False) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        tool_missing(f"Python module {name} cannot be imported ({exc})", how_to_get_it, module_level=module_level)


def require_executable(name_or_path: str, how_to_get_it: str, *, module_level: bool = False) -> str:
    """The executable's path (an absolute path is checked as is, a bare name looked up on PATH)."""
    found = name_or_path if Path(name_or_path).is_absolute() else shutil.which(name_or_path)
    if not found or not os.access(found, os.X_OK):
        tool_missing(f"{name_or_path} is not installed", how_to_get_it, module_level=module_level)
    return found


def require_chromium(*, module_level: bool = False) -> str:
    """Debian's Chromium, which the browser tests drive through Playwright (never a downloaded browser)."""
    how = "install Debian's `chromium` package (scripts/test.sh does, as root)"
    return require_executable(CHROMIUM, how, module_level=module_level)


def require_playwright(*, module_level: bool = False) -> ModuleType:
    """playwright.sync_api (the dev extra), and the Chromium it drives."""
    require_chromium(module_level=module_level)
    return require_module("playwright.sync_api", "pip install -e '.[dev]'", module_level=module_level)
