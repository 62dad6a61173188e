"""The `internet` fixture itself (tests/netns_support.py): what the namespace holds, that nothing of it leaks
out, a server other than HTTP on a public address, and what happens where namespaces cannot be made."""

from __future__ import annotations

import mailbox
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns_support import NetworkNamespace, namespace_unavailable, open_namespace

MAIL_IP, MAIL_IP6 = "93.184.216.40", "2606:4700:10::40"

SEND = """
import smtplib, sys
from email.message import EmailMessage
message = EmailMessage()
message["From"], message["To"], message["Subject"] = "briefing@frontier-news.com", "reader@example.org", "Hello"
message.set_content("Sent across the simulated internet.")
with smtplib.SMTP(sys.argv[1], 25, timeout=10) as smtp:
    smtp.send_message(message)
"""


def test_the_namespace_holds_only_loopback_and_the_addresses_given(internet: NetworkNamespace) -> None:
    internet.add_host("mail.frontier-news.com", MAIL_IP, MAIL_IP6)
    links = internet.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    route = internet.run(["ip", "route", "get", "1.1.1.1"])
    assert route.returncode != 0 and "unreachable" in route.stderr  # no packet can leave
    resolved = internet.run(["getent", "ahosts", "mail.frontier-news.com"]).stdout
    assert {line.split()[0] for line in resolved.splitlines()} == {MAIL_IP, MAIL_IP6}
    # outside, the test process's namespace has neither the addresses nor the names
    outside = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    assert MAIL_IP not in outside and MAIL_IP6 not in outside
    assert "frontier-news" not in Path("/etc/hosts").read_text(encoding="utf-8")


def test_an_smtp_server_on_a_public_address(internet: NetworkNamespace, tmp_path: Path) -> None:
    """The pattern a delivery test follows: aiosmtpd on a global address inside, a client inside."""
    internet.add_host("mail.frontier-news.com", MAIL_IP, MAIL_IP6)
    maildir = tmp_path / "maildir"
    server = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{MAIL_IP}:25", "-c", "aiosmtpd.handlers.Mailbox"]
    with internet.start([*server, str(maildir)], wait_for=[(MAIL_IP, 25)]):
        sent = internet.run([sys.executable, "-c", SEND, "mail.frontier-news.com"], timeout=60)
        assert sent.returncode == 0, sent.stderr
    [message] = list(mailbox.Maildir(maildir))
    assert (message["Subject"], message["To"]) == ("Hello", "reader@example.org")
    assert message["X-Peer"].startswith(f"('{MAIL_IP}'")  # the client's address: it connected from inside


def test_a_server_that_does_not_start_is_reported_with_its_output(internet: NetworkNamespace) -> None:
    with pytest.raises(RuntimeError, match=r"did not start: nothing listens on 93\.184\.216\.41 port 25(.|\n)*boom"):
        internet.start(
            [sys.executable, "-c", "import sys; sys.exit('boom')"], wait_for=[("93.184.216.41", 25)], timeout=2
        )


def test_without_the_tools_the_tests_fail_under_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare, nsenter, mount or ip
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not found on PATH: unshare, nsenter, mount, ip"):
        next(open_namespace())
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="network-namespace tests cannot run: no rights"):
        namespace_unavailable("no rights")


def test_a_namespace_that_may_not_be_made_fails_under_ci_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As an unprivileged user: the tools exist, `unshare` is refused."""
    for tool in ("nsenter", "mount", "ip"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 0\n")
    refusal = "echo 'unshare: unshare failed: Operation not permitted' >&2"
    (tmp_path / "unshare").write_text(f"#!/bin/sh\n{refusal}\nexit 1\n")
    for script in tmp_path.iterdir():
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"`unshare --net --mount` failed \(1\): .*Operation not permitted"):
        next(open_namespace())
