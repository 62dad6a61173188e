"""The preview's defences, over real HTTP against uvicorn: it answers only to its loopback names (DNS rebinding
cannot read drafts or send mail), emails are served without script in a sandbox and shown in sandboxed frames, and
its own pages run only their own scripts (a Content-Security-Policy nonce)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.app.preview import create_app
from flows.core.settings import Settings
from flows.core.store import Store
from tests.asgi_support import serve_asgi
from tests.xss_support import Allowed, bare, findings, visible_text

SLUG = "github-commit-flood"
FORM = {"slug": SLUG, "audience": "atou", "address": "victim@example.org"}
VERDICT = "agent 写代码的洪峰已经压到基础设施上，接下来变贵、变慢的是审查和平台配额，而不是算力。"


@pytest.fixture
def sqlite_store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.store_url)
    yield store
    store.close()


@pytest.fixture
def served(settings: Settings, sqlite_store: Store) -> Iterator[tuple[httpx.Client, int]]:
    """The preview as `briefing preview` starts it: told its host and port."""
    ports: list[int] = []

    def app_for(port: int) -> object:
        ports.append(port)
        return create_app(settings, sqlite_store, host="127.0.0.1", port=port)

    with serve_asgi(None, app_for_port=app_for) as client:
        yield client, ports[0]


def outbox_messages(settings: Settings) -> list[Path]:
    return list(settings.outbox_path.rglob("*.eml")) if settings.outbox_path.exists() else []


def test_dns_rebinding_post_with_a_foreign_host_sends_nothing(
    settings: Settings, served: tuple[httpx.Client, int]
) -> None:
    client, port = served
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    refused = client.post("/send-test", data=FORM, headers=rebound, follow_redirects=False)
    assert refused.status_code == 403 and "evil.example" in refused.text
    assert outbox_messages(settings) == []
    own = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    sent = client.post("/send-test", data=FORM, headers=own, follow_redirects=False)
    assert sent.status_code == 303 and "sent=" in sent.headers["location"]
    assert len(outbox_messages(settings)) == 1


@pytest.mark.parametrize(
    "path",
    ["/", f"/b/{SLUG}", f"/email/{SLUG}/atou.html", f"/email/{SLUG}/atou.txt", f"/archive/{SLUG}", "/events"],
)
def test_dns_rebinding_cannot_read_drafts(served: tuple[httpx.Client, int], path: str) -> None:
    client, port = served
    for host in (f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "evil.example", f"localhost:{port}@x"):
        with client.stream("GET", path, headers={"Host": host}) as refused:  # /events would stream forever
            assert refused.status_code == 403, (host, refused.status_code)
            text = refused.read().decode()
        assert VERDICT not in text and "github" not in text.lower()


def test_the_loopback_names_and_the_own_port_are_answered(served: tuple[httpx.Client, int]) -> None:
    client, port = served
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert client.get(f"/b/{SLUG}", headers={"Host": host}).status_code == 200, host
    assert client.get("/", headers={"Host": f"127.0.0.1:{port + 1 if port < 65535 else port - 1}"}).status_code == 403
    assert client.get("/", headers={"Host": "127.0.0.1"}).status_code == 403  # port 80 is not this server's


def test_a_wildcard_listener_answers_ip_literals_but_no_dns_name(settings: Settings, sqlite_store: Store) -> None:
    def app_for(port: int) -> object:
        return create_app(settings, sqlite_store, host="0.0.0.0", port=port)

    with serve_asgi(None, app_for_port=app_for) as client:
        port = client.base_url.port
        assert client.get("/", headers={"Host": f"192.0.2.7:{port}"}).status_code == 200
        assert client.get("/", headers={"Host": f"[2001:db8::7]:{port}"}).status_code == 200
        assert client.get("/", headers={"Host": f"preview.example:{port}"}).status_code == 403


def test_emails_are_served_without_script_in_a_sandbox_and_framed_sandboxed(
    served: tuple[httpx.Client, int],
) -> None:
    client, _port = served
    page = client.get(f"/b/{SLUG}")
    frames = re.findall(r"<iframe\b[^>]*>", page.text)
    assert len(frames) == 4
    for frame in frames:
        assert 'sandbox=""' in frame, frame  # no allow-scripts, no allow-same-origin
    for kind in ("html", "txt", "md"):
        part = client.get(f"/email/{SLUG}/atou.{kind}")
        policy = part.headers["content-security-policy"]
        directives = {d.strip().partition(" ")[0]: d.strip().partition(" ")[2] for d in policy.split(";")}
        assert directives["default-src"] == "'none'" and "script-src" not in directives
        assert directives["sandbox"] == "" and directives["form-action"] == "'none'"
        assert part.headers["x-content-type-options"] == "nosniff"


def test_preview_pages_run_only_their_own_scripts(served: tuple[httpx.Client, int]) -> None:
    client, _port = served
    seen = set()
    for path in ("/", f"/b/{SLUG}", f"/archive/{SLUG}", "/b/no-such-briefing"):
        page = client.get(path)
        policy = page.headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([\w-]+)'(;|$)", policy)
        assert nonce and "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0], policy
        assert "connect-src 'self'" in policy and "frame-src 'self'" in policy  # live reload (SSE), email frames
        scripts = re.findall(r"<script\b([^>]*)>", page.text)
        assert scripts and all(f'nonce="{nonce.group(1)}"' in attributes for attributes in scripts)
        seen.add(nonce.group(1))
    assert len(seen) == 4, "a new nonce for every response"


def test_a_hostile_verdict_reaches_the_preview_as_text(
    project: Path, served: tuple[httpx.Client, int]
) -> None:
    """The probe of issue 18: a verdict `<img src=x onerror=…>` was written into the email's aria-label, where the
    post-processing broke the attribute open and gave the image a live onerror, on the preview's origin."""
    client, _port = served
    path = project / "content" / "briefings" / f"{SLUG}.md"
    payload = "<img src=x onerror=alert(document.domain)>"
    path.write_text(path.read_text("utf-8").replace(VERDICT, payload), "utf-8")
    problems: list[str] = []
    for audience in ("atou", "neta", "uota", "investors"):
        email = client.get(f"/email/{SLUG}/{audience}.html")
        assert email.status_code == 200
        problems += findings(email.text, f"/email/{SLUG}/{audience}.html")
        assert bare(payload) in visible_text(email.text), "the verdict is shown as text"
    page = client.get(f"/b/{SLUG}")
    nonce = re.search(r"'nonce-([\w-]+)'", page.headers["content-security-policy"])
    assert nonce
    own_scripts = Allowed(nonce.group(1), ("// Live reload", "// Width toggle"), frames=True)
    problems += findings(page.text, f"/b/{SLUG}", own_scripts)
    assert not problems, problems
    assert bare(payload) in visible_text(page.text)
