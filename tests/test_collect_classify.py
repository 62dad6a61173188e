"""Classification of real and hand-written messages, without a server: flufl.bounce's bounce samples (hard and
soft), ARF complaints, auto-replies, mailto unsubscribes, replies in Chinese and English, hostile HTML."""

from __future__ import annotations

from pathlib import Path

import pytest
from collect_support import BOUNCE_SAMPLES

from flows.collect.bounces import parse_bounce
from flows.collect.classify import AUTO_REPLY, BOUNCE, OTHER, UNSUBSCRIBE, classify
from flows.collect.message import UnreadableMessageError, parse
from flows.collect.replies import extract_reply, strip_quotes
from flows.core.discussion import initials
from flows.core.settings import Settings
from flows.core.store import Store

# file → (address, severity) per bounced address, as RFC 3464 Status or flufl.bounce's split says
SAMPLES = {
    "dsn_01.txt": {("userx@example.com", "hard")},
    "dsn_02.txt": {("zzzzz@example.uk", "soft")},  # Action: failed, but Status 4.4.7: a temporary cause
    "dsn_05.txt": {("userx@example.cz", "soft")},  # Action: delayed
    "dsn_11.txt": {("joem@example.com", "hard")},
    "postfix_01.txt": {("xxxxx@local.ie", "hard")},
    "exim_01.txt": {("userx@its.example.nl", "hard")},
    "qmail_01.txt": {("userx@example.de", "hard")},
    "yahoo_01.txt": {("userx@example.com", "soft")},
    "microsoft_01.txt": {("userx@example.com", "hard")},
    "simple_03.txt": {("userx@example.za", "soft")},
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_flufl_bounce_samples_are_bounces_with_the_right_severity(name: str) -> None:
    message = parse((BOUNCE_SAMPLES / name).read_bytes())
    bounce = parse_bounce(message)
    assert bounce is not None
    assert {(a.email, a.severity) for a in bounce.addresses} == SAMPLES[name]


@pytest.mark.parametrize(("name", "kind"), [("groupwise_03.txt", OTHER), ("qmail_08.txt", AUTO_REPLY)])
def test_messages_that_are_not_bounces_are_not_taken_for_one(
    name: str, kind: str, settings: Settings, store: Store
) -> None:
    assert classify(parse((BOUNCE_SAMPLES / name).read_bytes()), store, settings, None).kind == kind


def test_a_reader_quoting_an_error_message_is_not_a_bounce(settings: Settings, store: Store) -> None:
    raw = (
        b"From: Reader <reader@example.net>\r\nTo: briefing@example.org\r\nSubject: question\r\n\r\n"
        b"My colleague got 550 5.1.1 user unknown from your list, is userx@example.com right?\r\n"
    )
    classified = classify(parse(raw), store, settings, None)
    assert classified.kind == OTHER and classified.bounce is None


def test_unsubscribe_words_in_subject_or_a_one_line_body(settings: Settings, store: Store) -> None:
    for subject, body in (("退订", "x"), ("Unsubscribe neta", ""), ("Re: 你好", "unsubscribe")):
        raw = f"From: r@example.net\r\nTo: briefing@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
        assert classify(parse(raw), store, settings, None).kind == UNSUBSCRIBE, subject


def test_bounce_comes_before_auto_submitted(settings: Settings, store: Store) -> None:
    raw = (BOUNCE_SAMPLES / "dsn_01.txt").read_bytes()
    assert classify(parse(b"Auto-Submitted: auto-replied\r\n" + raw), store, settings, None).kind == BOUNCE


def test_unparseable_bytes_are_unreadable() -> None:
    with pytest.raises(UnreadableMessageError):
        parse(b"   \r\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("说得对。\n\n在 2026年6月5日 09:00，Briefing <b@example.org> 写道：\n> 原文\n", "说得对。"),
        ("好文章！\n\n------------------ 原始邮件 ------------------\n发件人: x\n发送时间: y\n\n原文", "好文章！"),
        ("同意\n\n发件人: Briefing <b@example.org>\n发送时间: 2026年6月5日\n收件人: me\n主题: x\n\n原文", "同意"),
        ("Agreed.\n\nOn Fri, Jun 5, 2026 at 9:00 AM Briefing <b@example.org> wrote:\n> quoted", "Agreed."),
        ("Agreed.\n\n-----Original Message-----\nFrom: x\nSent: y\n\nold", "Agreed."),
        ("Agreed.\n--\nJane\nSent from my iPhone", "Agreed."),
        ("First.\n\nSecond paragraph.\n> trailing quote\n> more", "First.\n\nSecond paragraph."),
    ],
)
def test_quotes_and_signatures_are_stripped(text: str, expected: str) -> None:
    assert strip_quotes(text) == expected


def test_html_reply_is_sanitised_and_its_quote_removed() -> None:
    html = (
        '<div dir="ltr">Nice <a href="javascript:alert(1)">x</a> <a href="https://example.org">y</a>'
        '<img src="https://tracker.example/p.gif" onerror="alert(1)"></div>'
        '<div class="gmail_quote">On Fri wrote:<blockquote>the whole briefing</blockquote></div>'
    )
    reply = extract_reply("", html, 4000)
    assert reply.text == "Nice x y"
    assert "javascript" not in reply.html and "<img" not in reply.html and "onerror" not in reply.html
    assert 'href="https://example.org"' in reply.html and "whole briefing" not in reply.html


def test_long_replies_are_cut() -> None:
    assert len(extract_reply("字" * 5000, "", 300).text) == 300


@pytest.mark.parametrize(("name", "shown"), [("Jane van Doe", "J. v. D."), ("林薇", "林某"), ("", "")])
def test_initials(name: str, shown: str) -> None:
    assert initials(name) == shown


def test_sample_data_is_attributed() -> None:
    readme = (BOUNCE_SAMPLES / "README.md").read_text()
    assert "Apache License" in readme and (BOUNCE_SAMPLES / "LICENSE").is_file()
    assert all((BOUNCE_SAMPLES / name).is_file() for name in SAMPLES)
    assert Path(BOUNCE_SAMPLES).name == "flufl"


def test_a_lifted_suppression_is_suppressed_again_with_the_new_reason(store: Store) -> None:
    from flows.core.store import suppressions as suppression

    assert suppression.add_manual(store, "X@example.org", "first") is True
    assert suppression.add_manual(store, "x@example.org", "again") is False  # already suppressed: unchanged
    assert suppression.lift(store, "x@example.org") is not None
    assert suppression.list_suppressions(store) == []
    assert suppression.add_manual(store, "x@example.org", "second time") is True
    [row] = suppression.list_suppressions(store)
    assert (row.email, row.reason, row.source, row.lifted_at) == ("x@example.org", "second time", "manual", None)


def test_the_fast_address_reading_agrees_with_the_email_package() -> None:
    """split_address reads the usual shapes of From/To itself; wherever it does, it must give what
    email.utils.parseaddr gives (display names compared with their whitespace collapsed, as `sender` does)."""
    import random
    from email.utils import getaddresses, parseaddr

    from flows.collect.message import _PLAIN_ADDRESS, split_address

    rng = random.Random(21)
    chars = [*"abcXYZ019.-+_!#$%&'*/=?^`{|}~", "林", "é"]
    specials = list(' \t.,;:"<>@()[]\\')

    def word(longest: int, odd: bool = False) -> str:
        return "".join(rng.choice(chars + (specials if odd else [])) for _ in range(rng.randint(1, longest)))

    fast = 0
    for _ in range(20_000):
        address = f"{word(8, rng.random() < 0.1)}@" + ".".join(word(5) for _ in range(rng.randint(1, 3)))
        display = " ".join(word(6, rng.random() < 0.15) for _ in range(rng.randint(1, 3)))
        pad = rng.choice(["", " ", "\t"])
        shapes = [f"{display}{pad}<{address}>", f'"{display}"{pad}<{address}>', f"{display} {address}"]
        value = rng.choice([address, f"<{address}>", *shapes])
        if _PLAIN_ADDRESS.fullmatch(value) is None:
            continue
        fast += 1
        mine, theirs = split_address(value), parseaddr(value)
        assert (" ".join(mine[0].split()), mine[1]) == (" ".join(theirs[0].split()), theirs[1]), value
        assert [a for _n, a in getaddresses([value])] == [mine[1]], value
    assert fast > 5_000  # the shapes real mail uses take the fast path
