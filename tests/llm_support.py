"""A loopback server that speaks the OpenAI chat-completions protocol and answers deterministically.

No model runs on these machines, so the drafting tests (and benchmarks/bench_draft.py) talk HTTP to this
server instead. It reads each request the way a model would — the blocks to translate, the article, the
audiences — and answers from it:

- a translation: each block's text behind a "【译】" prefix (footnote markers stay where they are);
- the curated sections: a verdict, judgement, core points and prompts built from the article's title and text;
- the audience notes: one per requested audience, naming it.

Faults are switched on per kind of request (`translation`, `summary`, `notes`): `faults[kind]` is a queue, one
fault per request, and `always[kind]` applies to every request of that kind. A fault is one of FAULTS.

    python -m tests.llm_support --delay 0.2      # a standalone server; prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = (
    "ok",
    "malformed",  # not JSON
    "truncated",  # half the JSON, finish_reason "length"
    "wrong_ids",  # the first id replaced by one that was not asked for
    "missing_ids",  # the last block (or note) left out
    "reordered",  # the first two blocks swapped
    "drop_markers",  # footnote markers removed from the translation
    "fenced",  # valid JSON inside <think>…</think> and a ```json fence (a reasoning model's habits)
    "no_usage",  # no `usage` in the answer
    "rate_limited",  # 429 with Retry-After: 1
    "server_error",  # 500
    "hang",  # no answer until `hang_seconds` have passed
    "no_schema",  # 400 to a request with response_format json_schema (a server without structured output)
    "unauthorized",  # 401
)
PREFIX = "【译】"


@dataclass
class Seen:
    """One request as the server received it."""

    at: float
    kind: str
    body: dict[str, Any]
    headers: dict[str, str]  # names in lower case
    fault: str


def request_kind(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name") if isinstance(fmt, dict) else None
    if name in ("translation", "notes"):
        return name
    if name == "briefing":
        return "summary"
    payload = user_payload(body)
    if "blocks" in payload:
        return "translation"
    return "notes" if "audiences" in payload else "summary"


def user_payload(body: dict[str, Any]) -> dict[str, Any]:
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "{}")
    try:
        data = json.loads(user)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def answer_for(kind: str, payload: dict[str, Any], prefix: str = PREFIX) -> dict[str, Any]:
    """The deterministic 'model' answer."""
    if kind == "translation":
        return {"blocks": [{"id": b["id"], "text": prefix + b["text"]} for b in payload.get("blocks", [])]}
    article = payload.get("article", {})
    title = article.get("title", "")
    first = (article.get("text", "").split("\n\n") or [""])[0]
    if kind == "notes":
        return {
            "notes": [
                {"audience": a["id"], "means": f"对{a['name']}：{title}", "next": f"{a['name']}的下一步：读「{title}」"}
                for a in payload.get("audiences", [])
            ]
        }
    values: dict[str, Any] = {
        "verdict": f"判断：{title}",
        "judgement": f"评估：{first[:120]}",
        "core_points": [
            {"lead": "要点一", "explanation": f"文章说：{first[:60]}"},
            {"lead": "要点二", "explanation": f"标题是：{title}"},
        ],
        "prompts": [f"「{title}」对我们意味着什么？", "我们下一步该做什么？"],
    }
    return {name: values[name] for name in payload.get("draft", values)}


def apply_fault(fault: str, kind: str, answer: dict[str, Any]) -> tuple[str, str, bool]:
    """(content, finish_reason, include usage) for a 200 answer under a content fault."""
    items_key = "blocks" if kind == "translation" else "notes"
    items = answer.get(items_key)
    if fault == "wrong_ids" and items:
        items[0]["id" if kind == "translation" else "audience"] = "p99-deadbeef" if kind == "translation" else "nobody"
    elif fault == "missing_ids" and items:
        items.pop()
    elif fault == "reordered" and items and len(items) > 1:
        items[0], items[1] = items[1], items[0]
    elif fault == "drop_markers" and kind == "translation":
        import re

        for item in items or []:
            item["text"] = re.sub(r"\[\d+\]", "", item["text"])
    content = json.dumps(answer, ensure_ascii=False)
    if fault == "malformed":
        return content[: len(content) // 3].replace('"', "'") + " …", "stop", True
    if fault == "truncated":
        return content[: len(content) // 2], "length", True
    if fault == "fenced":
        return f"<think>the user wants JSON</think>\n```json\n{content}\n```", "stop", True
    return content, "stop", fault != "no_usage"


class ChatServer:
    """The server in a thread: `with ChatServer() as server: … server.url …`."""

    def __init__(self, delay: float = 0.0, per_block_delay: float = 0.0, hang_seconds: float = 30.0) -> None:
        self.delay = delay
        self.per_block_delay = per_block_delay
        self.hang_seconds = hang_seconds
        self.prefix = PREFIX  # what the "translation" puts before each block's text
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.always: dict[str, str] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a hung handler must not hold up the test's end
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def requests(self, kind: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if kind is None or s.kind == kind]

    def fault_for(self, kind: str) -> str:
        with self._lock:
            queue = self.faults[kind]
            return queue.popleft() if queue else self.always.get(kind, self.always.get("*", "ok"))

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # headers and body leave in one segment: no delayed-ACK stall between two writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": "loopback-model", "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "the request body is not JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            kind = request_kind(body)
            fault = server.fault_for(kind)
            headers = {name.lower(): value for name, value in self.headers.items()}
            server.record(Seen(time.monotonic(), kind, body, headers, fault))
            self._answer(kind, fault, body)

        def _answer(self, kind: str, fault: str, body: dict[str, Any]) -> None:
            payload = user_payload(body)
            if fault == "hang":
                time.sleep(server.hang_seconds)
                self.close_connection = True
                return
            if fault == "rate_limited":
                self._json(429, {"error": {"message": "rate limit reached"}}, {"Retry-After": "1"})
                return
            if fault == "server_error":
                self._json(500, {"error": {"message": "the model crashed"}})
                return
            if fault == "unauthorized":
                self._json(401, {"error": {"message": "invalid api key"}})
                return
            if fault == "no_schema" and (body.get("response_format") or {}).get("type") == "json_schema":
                self._json(400, {"error": {"message": "response_format json_schema is not supported by this server"}})
                return
            time.sleep(server.delay + server.per_block_delay * len(payload.get("blocks", [])))
            content, finish, usage = apply_fault(fault, kind, answer_for(kind, payload, server.prefix))
            data: dict[str, Any] = {
                "id": f"chatcmpl-{len(server.seen)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
                ],
            }
            if usage:
                prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
                data["usage"] = {"prompt_tokens": prompt, "completion_tokens": len(content) // 4, "total_tokens": 0}
                data["usage"]["total_tokens"] = data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
            self._json(200, data)

        def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--per-block-delay", type=float, default=0.0, help="extra seconds per translated block")
    args = parser.parse_args(argv)
    server = ChatServer(delay=args.delay, per_block_delay=args.per_block_delay).start()
    sys.stdout.write(f"PORT {server.url.split(':')[2].split('/')[0]}\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --- stubs to draft ----------------------------------------------------------------------------------------

ARTICLE_ITEMS = [
    ("h", "Why the horizon keeps growing", ""),
    ("p", "METR measured the length of tasks that agents finish half the time.[1] The figure doubled again.", ""),
    ("p", "Its latest test found a horizon of at least sixteen hours[2], near the top of its task suite.", ""),
    ("img", "Figure 1: task length against model release date.", "https://example.org/fig1.png", "Chart of horizons"),
    ("p", "At 80 percent reliability the horizons are several times shorter, though they grow on the same curve.", ""),
    ("fn", "[1] METR, Measuring AI ability to complete long tasks, 2025.", ""),
    ("fn", "[2] The suite's longest tasks take a skilled person about a day.", ""),
]


def write_article_stub(content_dir: Any, slug: str, items: list[tuple[str, ...]] | None = None) -> Any:
    """A real stub (as ingest writes it) for an article made of `items` (kind, text, image src[, alt])."""
    import hashlib
    from datetime import date
    from pathlib import Path

    from flows.core.content import load_audiences
    from flows.core.models import Article, ParagraphKind, make_paragraphs
    from flows.ingest.stubs import render_stub

    rows = [(ParagraphKind(kind), *rest) for kind, *rest in (items or ARTICLE_ITEMS)]
    article = Article(
        id=hashlib.sha1(slug.encode()).hexdigest()[:16],
        url=f"https://frontier-notes.example.org/2026/06/{slug}",
        title=f"Article {slug}",
        site="Frontier Notes",
        paragraphs=make_paragraphs(rows),  # type: ignore[arg-type]
    )
    audiences = load_audiences(Path(content_dir), [])
    path = Path(content_dir) / "briefings" / f"{slug}.md"
    path.write_text(render_stub(article, slug, audiences, date(2026, 6, 5)), encoding="utf-8")
    return path


def long_article_items(blocks: int) -> list[tuple[str, ...]]:
    """`blocks` blocks: headings, paragraphs of ~60 words with footnote markers, and footnotes at the end."""
    words = ["agents", "models", "compute", "data", "evaluation", "horizon", "reliability", "benchmark"]
    footnotes = max(1, blocks // 10)
    items: list[tuple[str, ...]] = []
    for number in range(blocks - footnotes):
        if number % 12 == 0:
            items.append(("h", f"Section {number // 12 + 1}: what changed", ""))
            continue
        text = " ".join(words[(number + i) % len(words)] for i in range(60))
        items.append(("p", f"Paragraph {number}: {text}.[{number % footnotes + 1}]", ""))
    items += [("fn", f"[{n}] Source note {n} for the measurements.", "") for n in range(1, footnotes + 1)]
    return items
