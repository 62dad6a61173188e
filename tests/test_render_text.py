"""The plain-text part and the CJK-aware wrapper behind it."""

from __future__ import annotations

import random
import re

import pytest

from flows.render.email import UNSUBSCRIBE_PLACEHOLDER, labels_for
from flows.render.text_wrap import _fill, _wrap_units, display_width, wrap
from tests.render_support import (
    HOSTILE,
    LONG_TOKEN,
    TEMPLATES,
    archive_url,
    hostile_briefing,
    huge_briefing,
    render,
    sample_content,
    unwrapped,
)

READY = sample_content().ready
URL = re.compile(r"https?://\S+")


def _texts(briefing):
    return render(briefing).emails.items()


@pytest.mark.parametrize("briefing", READY, ids=lambda b: b.slug)
def test_text_part_rules(briefing) -> None:
    for audience_id, email in _texts(briefing):
        audience = sample_content().audience(audience_id)
        labels = labels_for(TEMPLATES, audience.locale)
        lines = email.text.splitlines()
        assert all(len(line.encode("utf-8")) <= 998 for line in lines)
        prose = [line for line in lines if not URL.search(line)]
        assert all(display_width(line) <= 78 for line in prose), max(prose, key=display_width)
        for url in (briefing.source.url, archive_url(briefing.slug), UNSUBSCRIBE_PLACEHOLDER):
            assert url in URL.findall(email.text)
        assert "<" not in email.text.replace("<=", "")  # no HTML leaked into the text part
        flat = unwrapped(email.text)
        order = [
            unwrapped(briefing.verdict),
            unwrapped(f"{labels['for_you']} · {audience.name}"),
            unwrapped(briefing.note_for(audience_id).meaning),
            unwrapped(labels["core_points"]),
            unwrapped(briefing.core_points[-1].explanation),
            unwrapped(labels["prompts"]),
            unwrapped(briefing.prompts[-1]),
            unwrapped(labels["read_online"]),
            unwrapped(labels["unsubscribe"]),
        ]
        positions = [flat.index(part) for part in order]
        assert positions == sorted(positions)
        assert "\n-- \n" in email.text  # signature delimiter with its space


def test_text_part_keeps_hostile_text_literally_and_splits_only_overlong_tokens() -> None:
    email = render(hostile_briefing(READY[0]), audiences=["uota"]).emails["uota"]
    assert unwrapped(HOSTILE) in unwrapped(email.text)
    assert "&lt;" not in email.text and "49" not in email.text
    lines = email.text.splitlines()
    assert all(len(line.encode("utf-8")) <= 998 for line in lines)
    assert any(line.startswith("https://example.org/xxxx") for line in lines)
    assert unwrapped(LONG_TOKEN) in unwrapped(email.text)


def test_shortened_text_links_to_the_archive() -> None:
    email = render(huge_briefing(READY[0]), audiences=["neta"]).emails["neta"]
    assert f"{archive_url(READY[0].slug)}#briefing" in email.text
    assert labels_for(TEMPLATES, "zh-CN")["continue_reading"] in email.text


# --- wrap ---------------------------------------------------------------------------------------------------


def test_latin_wraps_near_78_columns_at_spaces() -> None:
    text = " ".join(["briefing"] * 40)
    lines = wrap(text).splitlines()
    assert all(68 <= len(line) <= 78 for line in lines[:-1])
    assert all(set(line.split()) == {"briefing"} for line in lines)


def test_cjk_counts_double_width_and_keeps_latin_words_whole() -> None:
    text = "我们今天讨论Anthropic的报告以及Claude Code在工程团队里的真实用量，" * 6
    lines = wrap(text, width=40).splitlines()
    assert all(display_width(line) <= 40 for line in lines)
    assert unwrapped("".join(lines)) == unwrapped(text)  # a line break replaces at most a space
    joined = "|".join(lines)
    for word in ("Anthropic", "Claude", "Code"):
        assert not re.search("|".join(f"{word[:i]}\\|{word[i:]}" for i in range(1, len(word))), joined)


def test_closing_punctuation_never_starts_and_opening_never_ends_a_line() -> None:
    text = "（测试）「引号」，句号。" * 30
    for width in range(8, 30):
        for line in wrap(text, width=width).splitlines():
            assert line[0] not in "，。）」" and line[-1] not in "（「"


def test_emoji_sequences_stay_whole() -> None:
    family = "👩\u200d💻"
    text = ("团队" + family + "🇨🇳" + "👍🏽") * 20
    for width in range(6, 20):
        for line in wrap(text, width=width).splitlines():
            assert not line.startswith("\u200d") and not line.endswith("\u200d")
            assert not line.startswith(("💻", "🏽")) and line.count("🇨") == line.count("🇳")
    assert display_width(family) == 2 and display_width("👍🏽") == 2 and display_width("é") == 1


def test_overlong_tokens_split_at_998_octets_without_breaking_characters() -> None:
    for token in ("x" * 3000, "é" * 700, "中" * 700, "🎉" * 600):
        lines = wrap(token).splitlines()
        assert "".join(lines) == token
        assert all(len(line.encode("utf-8")) <= 998 for line in lines)
        assert len(lines) > 1


def test_indent_applies_to_continuation_lines_and_blank_lines_are_kept() -> None:
    out = wrap("* " + "word " * 30 + "\n\nsecond", width=30, indent="  ")
    lines = out.splitlines()
    assert lines[0].startswith("* ") and all(line.startswith("  ") for line in lines[1:-2])
    assert lines[-2:] == ["", "second"]


def test_straight_quotes_stay_with_the_words_they_enclose() -> None:
    text = '把社群讨论从"AI 会取代谁"换成"哪些人类能力会因为 AI 普及而更稀缺"，收集成员的真实案例。' * 3
    for width in range(12, 60):
        consumed = 0
        for line in wrap(text, width=width).splitlines():
            before = text[:consumed].count('"')
            opening_at_end = line.endswith('"') and (before + line.count('"')) % 2 == 1
            closing_at_start = line.startswith('"') and before % 2 == 1
            assert not opening_at_end and not closing_at_start, (width, line)
            consumed = text.index(line.lstrip(), consumed) + len(line.lstrip())


def test_per_line_fill_makes_the_same_lines_as_the_token_by_token_wrapper() -> None:
    # wrap() takes the fast per-line path for text without straight quotes, grapheme extenders or flags.
    pieces = [
        "中文",
        "字",
        "Claude Code",
        "，",
        "。",
        "（",
        "）",
        "「",
        "」",
        "“",
        "”",
        "’",
        ",",
        ".",
        "(",
        ")",
        " ",
        "  ",
    ]
    pieces += ["AI", "e.g.", "https://example.org/a?b=c&d=e", "é", "Жλ", "🎉", "\u200b", "\u3000", "x" * 90, "中" * 45]
    rng = random.Random(7)
    for _ in range(3000):
        text = " ".join("".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))).split())
        width, indent = rng.choice([6, 12, 40, 78]), rng.choice(["", "   "])
        assert _fill(text, width, indent) == _wrap_units(text, width, indent, 998), (text, width, indent)


def test_wrap_always_shortens_overlong_tokens_and_refuses_an_indent_without_room() -> None:
    """A grapheme longer than a mail line, or a continuation indent near the limit, once made the splitter loop."""
    from flows.render.text_wrap import wrap

    accented = wrap("x" + "\u0301" * 2000 + " tail", indent="    ")
    assert all(len(line.encode("utf-8")) <= 998 for line in accented.split("\n"))
    assert accented.replace("\n", "").replace("    ", "") == "x" + "\u0301" * 2000 + " tail"
    wide_indent = wrap("A" * 3000, indent=" " * 990)
    assert all(len(line.encode("utf-8")) <= 998 for line in wide_indent.split("\n"))
    assert wide_indent.count("A") == 3000
    with pytest.raises(ValueError, match="indent"):
        wrap("abc", indent=" " * 996)
