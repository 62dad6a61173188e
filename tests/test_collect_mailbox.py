"""The inbound mailbox against a real Dovecot: replies sent through SMTP to the briefing the product sent, bounces
and complaints about it, mailto unsubscribes; every message filed by class and acted on exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from collect_support import arf, dsn, plain_message, reply_to, send_briefing
from imapclient import IMAPClient
from mailbox_support import Dovecot, SmtpToMailbox
from sqlalchemy import func, select
from typer.testing import CliRunner

from flows.app.cli import app
from flows.collect import collect_mailbox
from flows.collect.imap import Fetched
from flows.core.content import load_content
from flows.core.pages import assign_paths
from flows.core.settings import Settings, load_settings
from flows.core.store import Store, ledger
from flows.core.store.discussion import APPROVED, PENDING, decide, list_entries
from flows.core.store.schema import discussion_entries, mail_messages, unsubscribes
from flows.core.store.suppressions import list_suppressions
from flows.deliver import deliver_briefing
from flows.deliver.transports import OutboxTransport
from flows.edition import render_for_archive
from flows.publish.archive import publish_archive

pytestmark = pytest.mark.slow
PREFIX = "Briefing"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def smtp(dovecot: Dovecot) -> Iterator[SmtpToMailbox]:
    with SmtpToMailbox(dovecot) as server:
        yield server


@pytest.fixture
def mail_settings(settings: Settings, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BRIEFING_IMAP_URL", dovecot.url())
    settings.imap_url = dovecot.url()
    return settings


def folder(name: str) -> str:
    return f"{PREFIX}.{name}"  # Dovecot's Maildir++ hierarchy separator is "."


def _count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)  # type: ignore[arg-type]


def test_reply_in_chinese_quoting_the_briefing_becomes_a_pending_entry_then_an_archive_entry(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    original = next(s for s in sent if s.audience == "atou")
    text = "提交数确实说明不了产出。我们团队改看合并后一周内的回滚率，这个数字更诚实。"
    reply = reply_to(original, sender=original.recipient, name="林薇", text=text)
    smtp.send(reply, original.recipient, "briefing@example.org")

    result = CliRunner().invoke(app, ["--json", "collect"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["processed"] == {"reply": 1}
    assert dovecot.folder_counts() == {"INBOX": 0, folder("Replies"): 1}

    [entry] = list_entries(store, status=PENDING)
    assert (entry.slug, entry.audience, entry.recipient) == (original.slug, "atou", original.recipient)
    assert entry.text == text  # the quoted briefing and the 写道 header are gone
    assert entry.sender_name == "林薇"

    content = load_content(mail_settings.content_dir).content
    publish_archive(content, store, mail_settings)
    page = next(mail_settings.archive_path.rglob(f"{original.slug}.html")).read_text()
    assert text not in page  # pending: not published

    decide(store, [entry.id], APPROVED)
    report_after = publish_archive(content, store, mail_settings)
    page = next(mail_settings.archive_path.rglob(f"{original.slug}.html")).read_text()
    discussion = page[page.index('id="discussion"') :]
    assert text in discussion and "林某" in discussion  # initials by default: the given name withheld
    assert report_after.written
    again = publish_archive(content, store, mail_settings)
    assert again.written == []  # publishing stays idempotent

    decide(store, [entry.id], "rejected")
    publish_archive(content, store, mail_settings)
    page = next(mail_settings.archive_path.rglob(f"{original.slug}.html")).read_text()
    assert text not in page


def test_english_html_only_and_attachment_replies_keep_only_the_new_text(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    by_audience = {s.audience: s for s in sent}
    said = "Great read. We now track review latency per agent-authored PR instead of commit counts."
    english = f"{said}\n\n-- \nJohn Doe\nSent from my phone"
    smtp.send(
        reply_to(by_audience["neta"], sender="john@example.net", name="John Doe", text=english, language="en"),
        "john@example.net",
        "briefing@example.org",
    )
    html = "<p>HTML only: 评审队列才是瓶颈，<b>同意</b>。<script>alert(1)</script></p>"
    smtp.send(
        reply_to(by_audience["uota"], sender="ann@example.net", name="Ann Lee", text="", html=html, html_only=True),
        "ann@example.net",
        "briefing@example.org",
    )
    smtp.send(
        reply_to(
            by_audience["investors"],
            sender="vc@example.net",
            name="",
            text="附件是我们的测算表，结论：计费会向自动化流量倾斜。",
            attachments=(("model.xlsx", b"PK\x03\x04 fake spreadsheet", "application/vnd.ms-excel"),),
        ),
        "vc@example.net",
        "briefing@example.org",
    )

    report = collect_mailbox(mail_settings, store)
    assert report.processed == {"reply": 3}
    entries = {e.audience: e for e in list_entries(store, status=PENDING)}
    assert entries["neta"].text == said
    assert "HTML only: 评审队列才是瓶颈，同意。" in entries["uota"].text
    assert "<script>" not in entries["uota"].html and "<b>同意</b>" in entries["uota"].html
    assert "briefing@example.org" not in entries["uota"].text  # the quoted briefing is not part of the entry
    assert entries["investors"].text == "附件是我们的测算表，结论：计费会向自动化流量倾斜。"
    details = {h.detail for h in report.handled}
    assert any("1 attachment not kept" in d for d in details)
    assert dovecot.folder_counts()[folder("Replies")] == 3


def test_hard_bounce_suppresses_and_the_next_send_skips_the_address(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    content = load_content(mail_settings.content_dir).content
    first, second = content.ready[0], content.ready[1]
    sent = send_briefing(mail_settings, store, slug=first.slug)
    dead = next(s for s in sent if s.audience == "atou")
    smtp.send(dsn(dead, status="5.1.1"), "", "briefing@example.org")

    result = CliRunner().invoke(app, ["collect"])
    assert result.exit_code == 0, result.output
    assert [s.email for s in list_suppressions(store)] == [dead.recipient]
    assert dovecot.folder_counts()[folder("Bounces")] == 1

    paths = assign_paths(store, content.ready)
    rendered = render_for_archive(mail_settings, content, second, paths[second.slug])
    outbox = OutboxTransport(mail_settings.outbox_path)
    deliver_briefing(rendered, content, store, mail_settings, transport=outbox)
    rows = {r.recipient: r for r in ledger.rows_in_state(store, ledger.STATES, slug=second.slug, audience="atou")}
    assert rows[dead.recipient].state == ledger.SUPPRESSED
    assert "hard bounce 5.1.1" in rows[dead.recipient].last_reply
    assert not outbox.path_for(dead, f"{second.slug}/atou").exists()  # type: ignore[arg-type]
    others = [r for r in rows.values() if r.recipient != dead.recipient]
    assert others and all(r.state == ledger.SENT for r in others)

    status = CliRunner().invoke(app, ["--json", "status"])
    assert [s["email"] for s in json.loads(status.output)["suppressed"]] == [dead.recipient]
    check = CliRunner().invoke(app, ["check"])
    assert f"{dead.recipient} is suppressed (hard bounce 5.1.1" in check.output

    lifted = CliRunner().invoke(app, ["suppression", "lift", dead.recipient])
    assert lifted.exit_code == 0, lifted.output
    assert list_suppressions(store) == []


def test_soft_bounces_suppress_only_at_the_limit(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox
) -> None:
    mail_settings.soft_bounce_limit = 2
    sent = send_briefing(mail_settings, store)
    target = next(s for s in sent if s.audience == "neta")
    smtp.send(dsn(target, status="4.2.2", action="delayed"), "", "briefing@example.org")
    collect_mailbox(mail_settings, store)
    assert list_suppressions(store) == []
    smtp.send(dsn(target, status="4.4.7", action="failed", reporting="mx2.example.org"), "", "briefing@example.org")
    report = collect_mailbox(mail_settings, store)
    [suppressed] = list_suppressions(store)
    assert suppressed.email == target.recipient and suppressed.source == "soft-bounce"
    assert "2 soft bounces within 14 days" in suppressed.reason
    assert report.suppressed == [target.recipient]


def test_complaint_with_a_redacted_address_suppresses_and_unsubscribes(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    target = next(s for s in sent if s.audience == "uota")
    smtp.send(arf(target), "fbl@isp.example", "abuse@example.org")
    report = collect_mailbox(mail_settings, store)
    assert report.processed == {"complaint": 1}
    [suppressed] = list_suppressions(store)
    assert (suppressed.email, suppressed.source) == (target.recipient.lower(), "complaint")
    assert store.unsubscribed("uota") == {target.recipient.lower()}
    assert dovecot.folder_counts()[folder("Complaints")] == 1


def test_mailto_unsubscribe_records_an_unsubscribe_that_the_next_send_honours(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    leaving = next(s for s in sent if s.audience == "atou")
    request = plain_message(sender=leaving.recipient, to="unsubscribe@example.org", subject="unsubscribe atou", body="")
    smtp.send(request, leaving.recipient, "unsubscribe@example.org")
    report = collect_mailbox(mail_settings, store)
    assert report.processed == {"unsubscribe": 1}
    assert store.unsubscribed("atou") == {leaving.recipient.lower()}
    assert store.unsubscribed("neta") == set()
    with store.engine.connect() as conn:
        method = conn.execute(select(unsubscribes.c.method)).scalar()
    assert method == "mailto"
    assert dovecot.folder_counts()[folder("Unsubscribes")] == 1


def test_auto_replies_and_strangers_are_filed_and_nothing_else_happens(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    original = sent[0]
    vacation = reply_to(original, sender=original.recipient, name="阿头", text="我在休假，6 月 10 日回来。")
    vacation = b"Auto-Submitted: auto-replied\r\n" + vacation
    smtp.send(vacation, original.recipient, "briefing@example.org")
    smtp.send(
        plain_message(sender="someone@example.net", to="briefing@example.org", subject="合作", body="想聊聊合作。"),
        "someone@example.net",
        "briefing@example.org",
    )
    report = collect_mailbox(mail_settings, store)
    assert report.processed == {"auto-reply": 1, "other": 1}
    assert _count(store, discussion_entries) == 0
    counts = dovecot.folder_counts()
    assert counts[folder("AutoReplies")] == 1 and counts[folder("Other")] == 1 and counts["INBOX"] == 0


def test_malformed_messages_are_recorded_and_never_block_the_others(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    sent = send_briefing(mail_settings, store)
    original = sent[0]
    broken_mime = (
        b"From: =?utf-8?b?5p6X6JaH?= <broken@example.net>\r\nTo: briefing@example.org\r\n"
        b"Subject: =?x-unknown?q?broken?=\r\nMIME-Version: 1.0\r\n"
        b"In-Reply-To: " + original.message_id.encode() + b"\r\n"
        b'Content-Type: multipart/alternative; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all\xff\xfe\r\n"
    )
    dovecot.deliver(broken_mime)
    dovecot.deliver(b"\x00\x01\x02 not a message at all\r\n")
    fine = reply_to(original, sender="ok@example.net", name="OK", text="这条是正常的回复。")
    smtp.send(fine, "ok@example.net", "briefing@example.org")

    report = collect_mailbox(mail_settings, store)
    assert report.seen == 3
    assert report.processed["reply"] == 1
    assert sum(report.processed.values()) == 3
    assert [e.text for e in list_entries(store)] == ["这条是正常的回复。"]
    assert dovecot.folder_counts()["INBOX"] == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mail_messages)).scalar() == 3
    again = collect_mailbox(mail_settings, store)
    assert again.seen == 0 and not again.processed


def test_batches_are_bounded_in_octets_and_interleaved_classes_are_moved_exactly(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.collect import run
    from flows.collect.imap import Mailbox

    sent = send_briefing(mail_settings, store)
    attachment = (("scan.pdf", b"%PDF-1.4 " + bytes(range(256)) * 600, "application/pdf"),)  # ~200 KB encoded
    for i in range(8):  # reply, stranger, reply, stranger, …: each class's UIDs have gaps
        if i % 2:
            data = plain_message(sender=f"s{i}@example.net", to="briefing@example.org", subject=f"hi {i}", body="x")
        else:
            data = reply_to(sent[i % len(sent)], sender=f"r{i}@example.net", name="R", text=f"回复 {i}",
                            attachments=attachment if i == 4 else ())
        dovecot.deliver(data)
    budget = 120_000
    monkeypatch.setattr(run, "FETCH_BYTES", budget)
    fetched: list[list[int]] = []
    real_fetch = Mailbox.fetch

    def recording_fetch(self: Mailbox, uids: list[int]) -> list[Fetched]:
        got = real_fetch(self, uids)
        fetched.append([len(f.raw) for f in got])
        return got

    monkeypatch.setattr(Mailbox, "fetch", recording_fetch)
    report = collect_mailbox(mail_settings, store)

    assert report.processed == {"reply": 4, "other": 4}
    assert sorted(len(b) for b in fetched) != [8] and sum(len(b) for b in fetched) == 8  # not one batch of 8
    assert all(sum(sizes) <= budget or len(sizes) == 1 for sizes in fetched)
    assert [len(b) for b in fetched if max(b) > budget] == [1]  # the reply with the attachment came alone
    assert dovecot.folder_counts() == {"INBOX": 0, folder("Replies"): 4, folder("Other"): 4}


def test_a_server_without_move_gets_copy_and_an_expunge_of_exactly_the_processed_uids(
    settings: Settings, store: Store
) -> None:
    server = Dovecot().start()
    try:
        with IMAPClient("127.0.0.1", port=server.port, ssl=False) as probe:  # what it offers after login
            probe.login("editor", "mailbox-test-password")
            offered = [c.decode() for c in probe.capabilities() if c != b"MOVE"]
        server.stop()
        server.extra["imap_capability"] = " ".join(offered)  # the same server, minus MOVE
        server.start()
        with IMAPClient("127.0.0.1", port=server.port, ssl=False) as probe:
            probe.login("editor", "mailbox-test-password")
            assert b"MOVE" not in probe.capabilities() and b"UIDPLUS" in probe.capabilities()
        for i in range(6):  # 2 strangers, 2 auto-replies, 2 strangers: each folder's UIDs are ranges with gaps
            extra = {"Auto-Submitted": "auto-replied"} if i // 2 % 2 else {}
            server.deliver(plain_message(sender=f"s{i}@example.net", to="b@example.org", subject=f"m{i}", body="x",
                                         headers=extra))
        settings.imap_url = server.url()
        report = collect_mailbox(settings, store)
        assert report.processed == {"other": 4, "auto-reply": 2} and report.moved == 6 and not report.move_errors
        assert server.folder_counts() == {"INBOX": 0, folder("Other"): 4, folder("AutoReplies"): 2}
    finally:
        server.remove()


def test_tls_path_with_the_test_ca(settings: Settings, store: Store) -> None:
    from tls_support import tls_certificate

    from flows.collect import CollectError

    server = Dovecot()  # its folder is readable by Dovecot's users (pytest's tmp_path is not)
    server.tls_cert, server.tls_key = tls_certificate(server.folder, ["localhost", "127.0.0.1"])
    server.start()
    try:
        server.deliver(plain_message(sender="a@example.net", to="briefing@example.org", subject="hi", body="hello"))
        settings.imap_url = server.url(tls=True)
        with pytest.raises(CollectError, match="certificate"):
            collect_mailbox(settings, store)  # the test CA is not trusted by default
        settings.imap_ca_file = server.tls_cert
        report = collect_mailbox(settings, store)
        assert report.processed == {"other": 1}
        settings.imap_url = server.url(tls=True, password="wrong")
        with pytest.raises(CollectError, match="login refused"):
            collect_mailbox(settings, store)
    finally:
        server.remove()


def test_settings_refuse_a_non_imap_url(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.core.errors import SettingsError

    monkeypatch.setenv("BRIEFING_IMAP_URL", "https://imap.example.org")
    with pytest.raises(SettingsError, match="BRIEFING_IMAP_URL"):
        load_settings()


CRASHING_COLLECT = """
import os, signal, sys
from flows.collect import run

# KILL_AT=commit: right after a batch's transaction is committed, before its messages are moved;
# KILL_AT=transaction: inside a batch's transaction, its records and effects written but not committed.
method = {"commit": "_record_batch", "transaction": "_record"}[os.environ["KILL_AT"]]
kill_after = int(os.environ["KILL_AFTER_BATCHES"])
if os.environ.get("MOVE_SET_CHARS"):
    run.MOVE_SET_CHARS = int(os.environ["MOVE_SET_CHARS"])  # 1: every batch's messages are moved at once
original = getattr(run.Collector, method)
calls = 0


def then_die(self, *args):
    global calls
    result = original(self, *args)
    calls += 1
    if calls == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return result


setattr(run.Collector, method, then_die)
from flows.app.cli import main

sys.argv = ["briefing", "collect"]
main()
"""


def _send_replies(smtp: SmtpToMailbox, settings: Settings, store: Store, n: int) -> list[str]:
    sent = send_briefing(settings, store)
    texts = []
    for i in range(n):
        original = sent[i % len(sent)]
        text = f"第 {i} 条回复：评审比提交更能说明问题。"
        reply = reply_to(original, sender=f"r{i}@example.net", name=f"读者{i}", text=text)
        smtp.send(reply, f"r{i}@example.net", "briefing@example.org")
        texts.append(text)
    return texts


def _crash_collect(
    project: Path, *, kill_at: str, after_batches: int, batch: int, move_each_batch: bool = False
) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "KILL_AT": kill_at,
        "KILL_AFTER_BATCHES": str(after_batches),
        "MOVE_SET_CHARS": "1" if move_each_batch else "",
        "BRIEFING_COLLECT_BATCH_SIZE": str(batch),
    }
    command = [sys.executable, "-c", CRASHING_COLLECT]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, timeout=120, check=False)
    assert result.returncode == -9, result.stderr.decode(errors="replace")


def test_a_collect_killed_mid_run_is_rerun_with_no_duplicate_and_no_lost_message(
    project: Path, mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    texts = _send_replies(smtp, mail_settings, store, 6)
    _crash_collect(project, kill_at="commit", after_batches=2, batch=2, move_each_batch=True)
    # batch 1 (messages 1-2): recorded and moved; batch 2: committed, killed before its MOVE; 5-6: untouched
    counts = dovecot.folder_counts()
    assert counts["INBOX"] == 4 and counts[folder("Replies")] == 2
    assert _count(store, discussion_entries) == 4

    report = collect_mailbox(mail_settings, store)
    assert report.repeats == 2 and report.processed == {"reply": 2}
    assert sorted(e.text for e in list_entries(store)) == sorted(texts)  # each reply once, none lost
    assert dovecot.folder_counts() == {"INBOX": 0, folder("Replies"): 6}
    assert collect_mailbox(mail_settings, store).seen == 0


def test_a_collect_killed_inside_a_batch_transaction_leaves_nothing_of_that_batch(
    project: Path, mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    texts = _send_replies(smtp, mail_settings, store, 6)
    _crash_collect(project, kill_at="transaction", after_batches=2, batch=3)
    # batch 1 committed (its MOVE waits for the end of the run, which never came); batch 2's records and entries
    # were written in its transaction, which died uncommitted: none of them is left
    assert dovecot.folder_counts()["INBOX"] == 6
    assert _count(store, mail_messages) == 3 and _count(store, discussion_entries) == 3

    report = collect_mailbox(mail_settings, store)
    assert report.repeats == 3 and report.processed == {"reply": 3}
    assert sorted(e.text for e in list_entries(store)) == sorted(texts)
    assert dovecot.folder_counts() == {"INBOX": 0, folder("Replies"): 6}
    assert _count(store, mail_messages) == 6


def test_uidvalidity_change_after_a_crash_renumbers_nothing_twice(
    project: Path, mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    texts = _send_replies(smtp, mail_settings, store, 5)
    _crash_collect(project, kill_at="commit", after_batches=1, batch=2)  # two recorded, none moved
    assert dovecot.folder_counts()["INBOX"] == 5
    dovecot.set_uidvalidity(4242)  # as after a server migration: every UID is new

    report = collect_mailbox(mail_settings, store)
    assert report.uidvalidity_changed and report.uidvalidity == 4242
    assert report.repeats == 2 and report.processed == {"reply": 3}
    assert sorted(e.text for e in list_entries(store)) == sorted(texts)
    assert dovecot.folder_counts() == {"INBOX": 0, folder("Replies"): 5}


def test_a_message_the_store_refuses_does_not_hold_back_its_batch(
    mail_settings: Settings, store: Store, smtp: SmtpToMailbox, dovecot: Dovecot
) -> None:
    """A DSN naming a 400-character address: PostgreSQL refuses it (the address columns hold 320), SQLite does
    not. Either way the replies recorded in the same batch transaction are kept, and the run completes."""
    sent = send_briefing(mail_settings, store)
    texts = ["before the bounce: 同意评审才是瓶颈。", "after the bounce: we measure rollback rates now."]
    smtp.send(reply_to(sent[0], sender="a@example.net", name="A", text=texts[0]), "a@example.net", "b@example.org")
    bogus = replace(sent[0], recipient="x" * 388 + "@example.org")
    dovecot.deliver(dsn(bogus, status="5.1.1"), sender="")
    smtp.send(reply_to(sent[1], sender="b@example.net", name="B", text=texts[1]), "b@example.net", "b@example.org")

    report = collect_mailbox(mail_settings, store)
    assert sorted(e.text for e in list_entries(store)) == sorted(texts)
    assert dovecot.folder_counts()["INBOX"] == 0
    if store.is_sqlite:
        assert report.processed == {"reply": 2, "bounce": 1}
    else:
        assert report.processed == {"reply": 2, "unreadable": 1} and report.needs_attention
        [refused] = [h for h in report.handled if h.kind == "unreadable"]
        assert refused.detail.startswith("bounce that cannot be recorded: StringDataRightTruncation")
        assert dovecot.folder_counts()[folder("Unreadable")] == 1
    assert collect_mailbox(mail_settings, store).seen == 0
