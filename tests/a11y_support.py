"""Accessibility and layout measurements in real headless Chromium: axe-core and element positions.

`Chromium` opens a document — an HTML file (`Path`), a URL (`http(s)://…` on loopback, `file://…`) or markup
(`open_markup`) — at a width (375 or 600 px) in a light or dark colour scheme (`emulate_media`, which is what
`@media (prefers-color-scheme: dark)` reads: Apple Mail and the Outlook apps follow the system setting the same
way). Nothing leaves the machine: every request other than `file:`, `data:`, `about:` and loopback is aborted and
listed in `OpenPage.blocked`.

axe-core is the npm package pinned in tests/package.json. scripts/test.sh installs it with `npm ci --prefix tests`
into tests/node_modules; `BRIEFING_AXE_JS=/path/to/axe.min.js` points at another copy. Without it a test fails under
CI and is skipped elsewhere (tests/tool_support.py).

    with Chromium() as chromium:
        report = chromium.audit(Path("email.html"), width=375, scheme="dark")
        report.serious            # violations of impact serious or critical
        report.contrast           # every colour-contrast check axe made: ratio, colours, target, outcome
        chromium.element_top(Path("email.html"), ".for-you", width=375)   # px from the top of the document
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from tests.tool_support import CHROMIUM, require_playwright, tool_missing

TESTS = Path(__file__).resolve().parent
AXE_ENV = "BRIEFING_AXE_JS"
AXE_DEFAULT = TESTS / "node_modules" / "axe-core" / "axe.min.js"
AXE_HOW = "run `npm ci --prefix tests` (scripts/test.sh does), or set BRIEFING_AXE_JS to an axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
# The first screen of a phone (iPhone SE / 8 class) and of a desktop mail client's reading pane.
SCREEN_HEIGHTS = {375: 667, 600: 900}
SERIOUS = frozenset({"serious", "critical"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOCAL_SCHEMES = frozenset({"file", "data", "about", "blob"})
Scheme = Literal["light", "dark"]
RGB = re.compile(r"^#?([0-9a-f]{6})$", re.IGNORECASE)


def axe_source() -> str:
    """The text of axe.min.js (BRIEFING_AXE_JS, else tests/node_modules); a missing copy fails under CI."""
    configured = os.environ.get(AXE_ENV, "").strip()
    path = Path(configured).expanduser() if configured else AXE_DEFAULT
    if not path.is_file():
        tool_missing(f"axe-core is not installed ({path} is missing)", AXE_HOW)
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class ContrastCheck:
    """One text element axe checked for colour contrast (rule `color-contrast`, WCAG 1.4.3).

    outcome: "violation", "pass" or "incomplete" (axe could not tell, e.g. text over an image); ratio is None when
    axe gave none. expected: what axe requires for this text (4.5, or 3 for large text)."""

    target: str
    outcome: str
    ratio: float | None
    expected: float | None
    foreground: str
    background: str
    font_size: str
    font_weight: str
    html: str

    def describe(self) -> str:
        ratio = f"{self.ratio:.2f}:1" if self.ratio is not None else "?"
        return f"{ratio} {self.foreground} on {self.background} ({self.outcome}) {self.target}"


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.targets[:3]) + (f" and {len(self.targets) - 3} more" if len(self.targets) > 3 else "")
        return f"{self.impact} {self.rule} ({self.help}): {shown}"


@dataclass(frozen=True)
class AxeReport:
    """What axe-core found on one document at one width and colour scheme."""

    location: str
    width: int
    scheme: str
    axe_version: str
    violations: tuple[Violation, ...]
    incomplete: tuple[str, ...]  # rule ids axe could not decide somewhere
    contrast: tuple[ContrastCheck, ...]
    blocked: tuple[str, ...] = ()  # requests the page tried to make and that were aborted

    @property
    def serious(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.impact in SERIOUS)

    def contrast_below(self, minimum: float = 4.5) -> tuple[ContrastCheck, ...]:
        """Checks whose measured ratio is under `minimum` (whatever axe's own threshold for the text size)."""
        return tuple(c for c in self.contrast if c.ratio is not None and c.ratio < minimum)

    def contrast_at(self, fragment: str) -> tuple[ContrastCheck, ...]:
        """Checks whose target selector or element markup contains `fragment` (e.g. "for-you", "footer")."""
        return tuple(c for c in self.contrast if fragment in c.target or fragment in c.html)


@dataclass
class OpenPage:
    page: Any  # playwright.sync_api.Page
    location: str
    width: int
    scheme: str
    blocked: list[str] = field(default_factory=list)


def _target(node: dict[str, Any]) -> str:
    parts = node.get("target") or []
    return " >>> ".join(p if isinstance(p, str) else " ".join(p) for p in parts)


def _contrast_checks(results: dict[str, Any]) -> list[ContrastCheck]:
    checks: list[ContrastCheck] = []
    for outcome, key in (("violation", "violations"), ("pass", "passes"), ("incomplete", "incomplete")):
        for rule in results.get(key, []):
            if rule.get("id") != "color-contrast":
                continue
            for node in rule.get("nodes", []):
                data = next((c.get("data") for c in (node.get("any") or []) if c.get("id") == "color-contrast"), None)
                data = data if isinstance(data, dict) else {}
                ratio, expected = data.get("contrastRatio"), data.get("expectedContrastRatio")
                checks.append(
                    ContrastCheck(
                        target=_target(node),
                        outcome=outcome,
                        ratio=float(ratio) if ratio else None,
                        expected=float(str(expected).rstrip(":1")) if expected else None,
                        foreground=str(data.get("fgColor") or ""),
                        background=str(data.get("bgColor") or ""),
                        font_size=str(data.get("fontSize") or ""),
                        font_weight=str(data.get("fontWeight") or ""),
                        html=str(node.get("html") or "")[:200],
                    )
                )
    return checks


def report_from_results(results: dict[str, Any], opened: OpenPage) -> AxeReport:
    """An AxeReport from the JSON `axe.run` returns."""
    violations = tuple(
        Violation(
            rule=str(rule.get("id")),
            impact=str(rule.get("impact") or ""),
            help=str(rule.get("help") or ""),
            targets=tuple(_target(node) for node in rule.get("nodes", [])),
        )
        for rule in results.get("violations", [])
    )
    return AxeReport(
        location=opened.location,
        width=opened.width,
        scheme=opened.scheme,
        axe_version=str((results.get("testEngine") or {}).get("version") or ""),
        violations=violations,
        incomplete=tuple(str(rule.get("id")) for rule in results.get("incomplete", [])),
        contrast=tuple(_contrast_checks(results)),
        blocked=tuple(opened.blocked),
    )


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.hostname or "") in LOOPBACK_HOSTS


class Chromium:
    """Debian's Chromium driven by Playwright, launched once for many documents (a context manager)."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self.browser: Any = None
        self._axe: str | None = None

    def __enter__(self) -> Chromium:
        sync_api = require_playwright()
        self._playwright = sync_api.sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.browser is not None:
            self.browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    @contextmanager
    def open(self, document: Path | str, *, width: int, scheme: Scheme = "light") -> Iterator[OpenPage]:
        """A page showing `document` (a file, or a loopback/file URL) at `width` px in `scheme`, closed afterwards."""
        if isinstance(document, Path):
            url, location = document.resolve().as_uri(), str(document)
        elif re.match(r"^(https?|file)://", document):
            url = location = document
        else:
            raise ValueError(f"{document[:80]!r} is neither a Path nor an http(s)/file URL: use open_markup for HTML")
        with self._page(location, width, scheme) as opened:
            opened.page.goto(url, wait_until="load")
            yield opened

    @contextmanager
    def open_markup(
        self, html: str, *, width: int, scheme: Scheme = "light", name: str = "markup"
    ) -> Iterator[OpenPage]:
        """A page showing the HTML `html` (set_content: relative links resolve against about:blank)."""
        with self._page(name, width, scheme) as opened:
            opened.page.set_content(html, wait_until="load")
            yield opened

    @contextmanager
    def _page(self, location: str, width: int, scheme: Scheme) -> Iterator[OpenPage]:
        height = SCREEN_HEIGHTS.get(width, round(width * 1.5))
        page = self.browser.new_page(viewport={"width": width, "height": height})
        opened = OpenPage(page=page, location=location, width=width, scheme=scheme)

        def guard(route: Any) -> None:
            if _is_local(route.request.url):
                route.continue_()
            else:
                opened.blocked.append(route.request.url)
                route.abort()

        try:
            page.route("**/*", guard)
            page.emulate_media(color_scheme=scheme)
            yield opened
        finally:
            page.close()

    def run_axe(self, opened: OpenPage, options: dict[str, Any] | None = None) -> AxeReport:
        """Inject axe-core into the open page and run it on the whole document (all rules axe runs by default)."""
        if self._axe is None:
            self._axe = axe_source()
        opened.page.add_script_tag(content=self._axe)
        results = opened.page.evaluate(
            "async (options) => JSON.stringify(await axe.run(document, options))", options or {}
        )
        return report_from_results(json.loads(results), opened)

    def audit(self, document: Path | str, *, width: int, scheme: Scheme = "light") -> AxeReport:
        with self.open(document, width=width, scheme=scheme) as opened:
            return self.run_axe(opened)

    def element_top(self, document: Path | str, selector: str, *, width: int, scheme: Scheme = "light") -> float:
        """Where the first element matching `selector` starts, in CSS px from the top of the document."""
        with self.open(document, width=width, scheme=scheme) as opened:
            return element_top(opened, selector)


def element_top(opened: OpenPage, selector: str) -> float:
    top = opened.page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            return element ? element.getBoundingClientRect().top + window.scrollY : null;
        }""",
        selector,
    )
    if top is None:
        raise AssertionError(f"{opened.location}: no element matches {selector!r}")
    return float(top)


def _luminance(colour: str) -> float:
    match = RGB.match(colour.strip())
    if not match:
        raise ValueError(f"{colour!r} is not a #rrggbb colour")
    value = match.group(1)
    channels = [int(value[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (for text axe does not check, such as a hidden preheader)."""
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
