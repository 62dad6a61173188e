"""`draft_briefing` against a real loopback chat-completions server: the file, the review gate and the report
after valid output and after every fault a server or model can produce."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flows.core.briefing_format import parse_briefing_file
from flows.core.content import load_content
from flows.core.errors import ContentError, SettingsError
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.draft import approve_sections, draft_briefing
from tests.llm_support import PREFIX, ChatServer, write_article_stub

SLUG = "horizon-study"
AUDIENCES = ["atou", "neta", "uota", "investors"]
CURATED = ["verdict", "judgement", "core_points", "prompts"]


@pytest.fixture
def server() -> Any:
    with ChatServer() as running:
        yield running


@pytest.fixture
def stub(project: Path) -> Path:
    return write_article_stub(project / "content", SLUG)


def make_settings(server: ChatServer, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "llm_url": server.url,
        "llm_model": "loopback-model",
        "llm_backoff": 0.01,
        "llm_timeout": 10.0,
    }
    values.update(overrides)
    return load_settings(**values)


def draft(server: ChatServer, sections: list[str] | None = None, store: Store | None = None, **overrides: Any) -> Any:
    settings = make_settings(server, **overrides)
    return draft_briefing(settings, store or Store(settings.store_url), SLUG, sections)


def one_batch(**overrides: Any) -> dict[str, Any]:
    """Settings that send the whole translation as one request (faults then hit a known request)."""
    return {"llm_concurrency": 1, "llm_batch_blocks": 100, "llm_batch_tokens": 10_000, **overrides}


def parsed(path: Path) -> Any:
    briefing, _, problems = parse_briefing_file(path)
    assert briefing is not None, problems
    return briefing


def kept_in_order(old: str, new: str) -> bool:
    """Every line of the old file is in the new one, in order (empty 'Means:'/'Next:' labels may be filled)."""
    lines = iter(new.splitlines())
    for line in old.splitlines():
        if line.strip() in ("Means:", "Next:"):
            continue
        if not any(candidate == line for candidate in lines):
            return False
    return True


def failed_parts(report: Any) -> dict[str, str]:
    return {f.part: f.reason for f in report.failures}


# --- valid output --------------------------------------------------------------------------------------------


def test_fills_an_empty_stub_aligned_block_by_block_and_every_curated_section(
    server: ChatServer, stub: Path, project: Path
) -> None:
    before = stub.read_text("utf-8")
    report = draft(server)
    after = stub.read_text("utf-8")
    assert report.ok and report.written, report.failures
    briefing = parsed(stub)
    blocks = briefing.aligned
    assert len(blocks) == 7 and {b.kind.value for b in blocks} == {"h", "p", "img", "fn"}
    for block in blocks:
        assert block.translation == PREFIX + block.source, block.id  # each block got its own text back
    assert "[1]" in blocks[1].translation and "[2]" in blocks[2].translation  # footnote markers kept
    assert blocks[3].translation == PREFIX + "Figure 1: task length against model release date."  # the caption
    assert briefing.verdict.startswith("判断：") and briefing.judgement.startswith("评估：")
    assert len(briefing.core_points) == 2 and len(briefing.prompts) == 2
    assert {n.audience for n in briefing.notes} == set(AUDIENCES)
    assert all(n.meaning and n.next_step for n in briefing.notes)
    assert kept_in_order(before, after), "a line the stub had is gone or moved"
    # every drafted part is marked, naming the model and the date
    names = {d.name for d in briefing.machine_drafts}
    assert names == {*CURATED, *(f"notes.{a}" for a in AUDIENCES), *(f"translation.{b.id}" for b in blocks)}
    assert all(d.model == "loopback-model" and len(d.drafted) == 10 for d in briefing.machine_drafts)
    # the report
    translation_requests = server.requests("translation")
    assert report.stats.requests == len(server.seen) == len(translation_requests) + 2
    assert report.blocks_filled == 7 and report.blocks_from_cache == 0 and report.stats.cache_hits == 0
    assert report.stats.prompt_tokens > 0 and report.stats.completion_tokens > 0 and report.wall_seconds > 0
    assert set(report.filled) == {*CURATED, *(f"notes.{a}" for a in AUDIENCES), "translation"}
    # requests: structured output, ids offered as an enum, every block asked for once and in order
    order = [b.id for b in blocks]
    batches = [[b["id"] for b in json.loads(r.body["messages"][1]["content"])["blocks"]] for r in translation_requests]
    assert [i for batch in sorted(batches, key=lambda ids: order.index(ids[0])) for i in batch] == order
    schema = translation_requests[0].body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["blocks"]["items"]["properties"]["id"]["enum"]
    notes_payload = json.loads(server.requests("notes")[0].body["messages"][1]["content"])
    assert notes_payload["audiences"][0]["cares_about"], "the audience profile from audiences.yaml is sent"


def test_the_gate_refuses_ready_until_every_machine_draft_is_reviewed(
    server: ChatServer, stub: Path, project: Path
) -> None:
    assert draft(server).ok
    stub.write_text(stub.read_text("utf-8").replace("status: draft", "status: ready"), "utf-8")
    problems = [p for p in load_content(project / "content").problems if p.path == str(stub)]
    gate = {p.field: p for p in problems if p.message.startswith("machine draft not reviewed")}
    assert set(gate) == {*CURATED, *(f"notes.{a}" for a in AUDIENCES), "translation"}
    assert all(p.severity == "error" and p.line for p in gate.values())
    assert "translation of 7 blocks" in gate["translation"].message and "loopback-model" in gate["verdict"].message
    assert "briefing approve horizon-study --section notes.neta" in gate["notes.neta"].hint
    # the editor reviews the verdict by deleting its marker by hand, the rest with approve
    text = stub.read_text("utf-8")
    marker = next(line for line in text.splitlines() if "machine-draft" in line)
    stub.write_text(text.replace(marker + "\n", "", 1), "utf-8")
    assert not any(p.field == "verdict" for p in load_content(project / "content").problems if p.path == str(stub))
    approval = approve_sections(stub, ["translation", "notes.neta"])
    assert "translation.h01-" in " ".join(approval.approved) and "notes.neta" in approval.approved
    assert "notes.atou" in approval.remaining and "judgement" in approval.remaining
    left = {p.field for p in load_content(project / "content").problems if p.path == str(stub)}
    assert left == {"judgement", "core_points", "prompts", "notes.atou", "notes.uota", "notes.investors"}
    before = parsed(stub)
    approve_sections(stub, ["all"])
    assert [p for p in load_content(project / "content").problems if p.path == str(stub)] == []
    after = parsed(stub)
    assert after.content_hash() == before.content_hash(), "approving changes no text"


def test_a_rerun_with_no_change_makes_no_request_and_the_cache_serves_a_fresh_stub(
    server: ChatServer, stub: Path, project: Path
) -> None:
    empty_stub = stub.read_text("utf-8")
    first = draft(server)
    drafted = stub.read_text("utf-8")
    sent = len(server.seen)
    again = draft(server)
    assert again.stats.requests == 0 and len(server.seen) == sent and not again.written
    assert stub.read_text("utf-8") == drafted
    assert set(again.already_written) >= {*CURATED, "translation"}
    # the same stub again (an editor threw the draft away): every answer comes from the store
    stub.write_text(empty_stub, "utf-8")
    cached = draft(server)
    assert cached.stats.requests == 0 and len(server.seen) == sent
    assert cached.blocks_from_cache == 7 and cached.stats.cache_hits == 7 + 2
    assert stub.read_text("utf-8") == drafted
    assert first.stats.requests == sent


def test_fresh_asks_the_model_again_and_replaces_the_cached_answers(
    server: ChatServer, stub: Path, store: Store
) -> None:
    empty_stub = stub.read_text("utf-8")
    first = draft(server, ["translation"], store=store)
    stub.write_text(empty_stub, "utf-8")
    server.prefix = "【新译】"  # the model now answers differently
    settings = make_settings(server)
    fresh = draft_briefing(settings, store, SLUG, ["translation"], fresh=True)
    assert fresh.stats.requests == first.stats.requests > 0 and fresh.blocks_from_cache == 0
    stub.write_text(empty_stub, "utf-8")
    server.always["translation"] = "server_error"  # only the cache can answer now
    cached = draft_briefing(settings, store, SLUG, ["translation"])
    assert cached.ok and cached.stats.requests == 0 and cached.blocks_from_cache == 7
    assert all(b.translation == "【新译】" + b.source for b in parsed(stub).aligned), "fresh answers replace old ones"


def test_after_a_small_source_change_only_the_changed_block_is_translated(
    server: ChatServer, stub: Path, project: Path
) -> None:
    empty_stub = stub.read_text("utf-8")
    draft(server, ["translation"])
    changed = "Its latest test found a horizon of at least twenty hours[2], near the top of its task suite."
    stub.write_text(empty_stub.replace("at least sixteen hours[2]", "at least twenty hours[2]"), "utf-8")
    report = draft(server, ["translation"])
    last = server.requests("translation")[-1]
    asked = json.loads(last.body["messages"][1]["content"])["blocks"]
    assert [b["text"] for b in asked] == [changed]
    assert report.blocks_from_cache == 6 and report.blocks_filled == 7 and report.stats.requests == 1
    assert parsed(stub).aligned[2].translation == PREFIX + changed


def test_only_empty_parts_are_drafted_and_the_editors_text_is_kept(server: ChatServer, project: Path) -> None:
    path = project / "content" / "briefings" / "metr-task-horizons.md"
    before = path.read_text("utf-8")
    settings = make_settings(server)
    report = draft_briefing(settings, Store(settings.store_url), "metr-task-horizons")
    briefing = parsed(path)
    assert set(report.already_written) == {"verdict", "core_points", "notes.atou"}
    assert set(report.filled) == {"judgement", "prompts", "notes.neta", "notes.uota", "notes.investors", "translation"}
    assert briefing.verdict.startswith("agent 能独立工作的时长")
    assert briefing.note_for("atou").meaning.startswith("半天")
    assert briefing.aligned[0].translation.startswith("评测机构 METR")  # the editor's translation of p01
    assert [b.translation.startswith(PREFIX) for b in briefing.aligned] == [False, True, True, True]
    assert {d.name for d in briefing.machine_drafts} >= {"translation.p02-bb341660", "notes.neta", "judgement"}
    assert not any(d.name in ("verdict", "notes.atou", "translation.p01-4e4f4b05") for d in briefing.machine_drafts)
    assert kept_in_order(before, path.read_text("utf-8"))
    summary = json.loads(server.requests("summary")[0].body["messages"][1]["content"])
    assert summary["draft"] == ["judgement", "prompts"] and summary["written"]["verdict"].startswith("agent")


def test_a_crlf_file_keeps_its_line_endings(server: ChatServer, stub: Path) -> None:
    stub.write_bytes(stub.read_bytes().replace(b"\n", b"\r\n"))
    report = draft(server)
    raw = stub.read_bytes()
    assert report.ok and raw.count(b"\n") == raw.count(b"\r\n") > 0
    assert all(b.translation == PREFIX + b.source for b in parsed(stub).aligned)


def test_section_option_drafts_only_the_named_parts(server: ChatServer, stub: Path) -> None:
    report = draft(server, ["notes.neta", "verdict"])
    briefing = parsed(stub)
    assert set(report.filled) == {"notes.neta", "verdict"}
    assert {d.name for d in briefing.machine_drafts} == {"notes.neta", "verdict"}
    assert not briefing.judgement and not any(b.translation for b in briefing.aligned)
    assert {s.kind for s in server.seen} == {"summary", "notes"}
    with pytest.raises(ContentError, match="not a section that can be drafted"):
        draft(server, ["discussion"])


def test_an_editor_writing_during_the_draft_keeps_their_text(server: ChatServer, stub: Path) -> None:
    server.delay = 0.6

    def editor_writes() -> None:
        time.sleep(0.2)
        text = stub.read_text("utf-8")
        stub.write_text(text.replace("## Judgement\n", "## Judgement\n\nThe editor's own judgement.\n"), "utf-8")

    typing = threading.Thread(target=editor_writes)
    typing.start()
    report = draft(server, ["judgement", "verdict"])
    typing.join()
    briefing = parsed(stub)
    assert briefing.judgement == "The editor's own judgement." and briefing.verdict.startswith("判断：")
    assert {d.name for d in briefing.machine_drafts} == {"verdict"}
    assert any("judgement: the editor wrote it" in w for w in report.warnings)


def test_the_cache_works_on_both_databases(server: ChatServer, stub: Path, store: Store) -> None:
    empty_stub = stub.read_text("utf-8")
    assert draft(server, ["translation"], store=store).stats.requests > 0
    stub.write_text(empty_stub, "utf-8")
    again = draft(server, ["translation"], store=store)
    assert again.stats.requests == 0 and again.blocks_from_cache == 7


# --- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["malformed", "wrong_ids", "reordered", "truncated"])
def test_an_unusable_answer_is_asked_again_once(server: ChatServer, stub: Path, fault: str) -> None:
    server.faults["translation"].append(fault)
    report = draft(server, ["translation"], **one_batch())
    assert report.ok, report.failures
    assert all(b.translation == PREFIX + b.source for b in parsed(stub).aligned)
    assert report.stats.reasks >= 1
    retry = server.requests("translation")[1]
    assert "could not be used" in retry.body["messages"][0]["content"]
    if fault == "truncated":  # cut off at max_tokens: asked again in two halves
        assert len(server.requests("translation")) == 3 and report.stats.reasks == 2
    else:
        assert len(server.requests("translation")) == 2 and report.stats.reasks == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("malformed", "the answer is not JSON"),
        ("wrong_ids", "not asked for"),
        ("reordered", "out of order"),
        ("truncated", "cut off"),
    ],
)
def test_a_batch_that_stays_unusable_is_left_empty_and_reported(
    server: ChatServer, stub: Path, fault: str, reason: str
) -> None:
    before = stub.read_text("utf-8")
    server.always["translation"] = fault
    report = draft(server, ["translation"], **one_batch())
    failures = failed_parts(report)
    assert len(failures) == 7 and all(reason in why for why in failures.values()), failures
    assert not report.ok and not report.written
    assert stub.read_text("utf-8") == before, "nothing invented, nothing written"
    assert "p99-deadbeef" not in stub.read_text("utf-8")


def test_a_block_left_out_twice_is_the_only_one_left_empty(server: ChatServer, stub: Path) -> None:
    server.always["translation"] = "missing_ids"
    report = draft(server, ["translation"], **one_batch())
    blocks = parsed(stub).aligned
    assert [bool(b.translation) for b in blocks] == [True] * 6 + [False]
    assert failed_parts(report) == {f"translation.{blocks[6].id}": "the answer left this block out"}
    reask = json.loads(server.requests("translation")[1].body["messages"][1]["content"])
    assert [b["id"] for b in reask["blocks"]] == [blocks[6].id], "only the missing block is asked again"
    assert report.blocks_filled == 6


def test_a_translation_that_drops_footnote_markers_is_not_accepted(server: ChatServer, stub: Path) -> None:
    server.always["translation"] = "drop_markers"
    report = draft(server, ["translation"], **one_batch())
    blocks = parsed(stub).aligned
    failures = failed_parts(report)
    with_markers = [b for b in blocks if "[1]" in b.source or "[2]" in b.source]
    assert {f"translation.{b.id}" for b in with_markers} == set(failures)
    assert all("footnote markers" in reason for reason in failures.values())
    assert all(not b.translation for b in with_markers)
    assert all(b.translation for b in blocks if b not in with_markers)


def test_429_waits_as_long_as_retry_after_says(server: ChatServer, stub: Path) -> None:
    server.faults["translation"].append("rate_limited")
    report = draft(server, ["translation"], **one_batch())
    first, second = server.requests("translation")[:2]
    assert report.ok and report.stats.retries == 1 and report.stats.requests == 2
    assert second.at - first.at >= 0.95, "Retry-After: 1 was not honoured"


def test_a_retry_after_longer_than_allowed_fails_at_once(server: ChatServer, stub: Path) -> None:
    server.always["translation"] = "rate_limited"
    report = draft(server, ["translation"], llm_max_retry_after=0.5, **one_batch())
    assert report.stats.requests == 1
    assert all("more than BRIEFING_LLM_MAX_RETRY_AFTER" in r for r in failed_parts(report).values())


def test_500_is_retried_with_backoff(server: ChatServer, stub: Path) -> None:
    server.faults["translation"].extend(["server_error", "server_error"])
    report = draft(server, ["translation"], **one_batch())
    assert report.ok and report.stats.retries == 2 and report.stats.requests == 3


def test_500_every_time_ends_after_the_retries(server: ChatServer, stub: Path) -> None:
    before = stub.read_text("utf-8")
    server.always["translation"] = "server_error"
    report = draft(server, ["translation"], llm_retries=2, **one_batch())
    assert report.stats.requests == 3
    assert all("HTTP 500: the model crashed (after 3 attempts)" in r for r in failed_parts(report).values())
    assert stub.read_text("utf-8") == before


def test_a_hung_request_hits_the_timeout_and_is_not_retried(project: Path) -> None:
    with ChatServer(hang_seconds=5) as server:
        stub = write_article_stub(project / "content", SLUG)
        before = stub.read_text("utf-8")
        server.always["translation"] = "hang"
        started = time.monotonic()
        report = draft(server, ["translation"], llm_timeout=0.5, **one_batch())
        elapsed = time.monotonic() - started
    assert elapsed < 3, f"the timeout did not end the request ({elapsed:.1f} s)"
    assert report.stats.requests == 1
    assert all("no answer within 0.5 s" in r for r in failed_parts(report).values())
    assert stub.read_text("utf-8") == before


def test_a_server_without_structured_output_gets_the_schema_in_the_prompt(server: ChatServer, stub: Path) -> None:
    server.always["*"] = "no_schema"
    report = draft(server)
    assert report.ok, report.failures
    assert report.stats.structured_output == "prompt"
    refused = [s for s in server.seen if "response_format" in s.body]
    answered = [s for s in server.seen if "response_format" not in s.body]
    assert refused and len(answered) == len(server.seen) - len(refused)
    assert all("JSON schema" in s.body["messages"][0]["content"] for s in answered)
    assert all(b.translation == PREFIX + b.source for b in parsed(stub).aligned)


def test_prompt_mode_setting_never_sends_response_format(server: ChatServer, stub: Path) -> None:
    server.always["translation"] = "fenced"  # a reasoning model's <think> and a ```json fence around the JSON
    report = draft(server, ["translation"], llm_structured_output="prompt")
    assert report.ok and all("response_format" not in s.body for s in server.seen)
    assert all(b.translation == PREFIX + b.source for b in parsed(stub).aligned)


def test_a_refused_key_stops_the_draft_with_a_clear_reason(server: ChatServer, stub: Path) -> None:
    before = stub.read_text("utf-8")
    server.always["*"] = "unauthorized"
    report = draft(server, llm_concurrency=1)
    assert report.stats.requests == 1, "a refused key is not tried again and again"
    failures = failed_parts(report)
    assert {*CURATED, *(f"notes.{a}" for a in AUDIENCES)} <= set(failures)
    assert all("HTTP 401" in r and "BRIEFING_LLM_API_KEY" in r for r in failures.values())
    assert stub.read_text("utf-8") == before


def test_missing_usage_is_estimated_and_said_so(server: ChatServer, stub: Path) -> None:
    server.always["*"] = "no_usage"
    report = draft(server, ["translation", "verdict"])
    assert report.ok and report.stats.tokens_estimated and report.stats.tokens > 0


def test_the_token_budget_stops_requests_before_they_are_sent(server: ChatServer, stub: Path) -> None:
    report = draft(server, llm_token_budget=100)
    assert report.stats.requests == 0 and len(server.seen) == 0
    assert report.failures and all("token budget of 100" in f.reason for f in report.failures)


def test_unreachable_endpoint_fails_every_part_without_waiting_long(stub: Path, project: Path) -> None:
    from tests.preview_support import free_port

    settings = load_settings(llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_model="m", llm_backoff=0.01)
    report = draft_briefing(settings, Store(settings.store_url), SLUG)
    assert not report.ok and not report.written
    assert all("cannot connect to http://127.0.0.1" in f.reason for f in report.failures)


# --- secrets, settings, misuse --------------------------------------------------------------------------------


def test_the_api_key_goes_only_to_the_endpoint_and_is_never_printed(
    server: ChatServer, stub: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "Authorization: Bearer sk-custom-header")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-not-ours")
    caplog.set_level(logging.DEBUG)
    server.faults["summary"].append("unauthorized")
    report = draft(server, ["verdict"], llm_api_key="sk-configured-secret")
    headers = server.seen[0].headers
    assert headers.get("authorization") == "Bearer sk-configured-secret"
    assert "openai-organization" not in headers and "openai-project" not in headers
    outputs = caplog.text + json.dumps(report.to_dict()) + stub.read_text("utf-8") + repr(make_settings(server))
    assert "sk-configured-secret" not in outputs
    # no key configured: the environment's OpenAI key is not sent to this endpoint either
    report = draft(server, ["verdict"])
    assert report.ok and server.seen[-1].headers.get("authorization") == "Bearer no-key"
    assert all("sk-from-the-environment" not in json.dumps(s.headers) for s in server.seen)


def test_without_an_endpoint_drafting_says_which_settings_to_set(project: Path, stub: Path) -> None:
    settings = load_settings()
    assert settings.llm_url == "" and settings.draft_new_stubs is False
    with pytest.raises(SettingsError, match="BRIEFING_LLM_URL and BRIEFING_LLM_MODEL"):
        draft_briefing(settings, Store(settings.store_url), SLUG)
    with pytest.raises(SettingsError, match="BRIEFING_DRAFT_NEW_STUBS needs BRIEFING_LLM_URL"):
        load_settings(draft_new_stubs=True)
    with pytest.raises(SettingsError, match="BRIEFING_LLM_URL"):
        load_settings(llm_url="localhost:11434")


def test_a_ready_briefing_or_an_unknown_slug_is_refused(server: ChatServer, project: Path) -> None:
    settings = make_settings(server)
    store = Store(settings.store_url)
    with pytest.raises(ContentError, match="is ready"):
        draft_briefing(settings, store, "github-commit-flood")
    with pytest.raises(ContentError, match="no briefing with slug 'nope'"):
        draft_briefing(settings, store, "nope")
    assert server.seen == []
