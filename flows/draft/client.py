"""The chat-completions client: the official `openai` package pointed at BRIEFING_LLM_URL.

Retries are ours, not the SDK's (`max_retries=0`), so every HTTP request is counted, Retry-After is honoured up
to `llm_max_retry_after`, and what failed is reported per block. The API key goes only into the Authorization
header: the SDK's OPENAI_* environment variables (key, organisation, project, custom headers) are overridden so
a hosted-API key can never reach a self-hosted endpoint, and the key is redacted from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from dataclasses import dataclass
from typing import Any

import openai

from flows.core.backoff import backoff_delay
from flows.core.settings import Settings
from flows.draft.budget import MESSAGE_OVERHEAD, estimate_tokens
from flows.draft.prompts import Ask
from flows.draft.report import DraftStats

logger = logging.getLogger(__name__)

NO_KEY = "no-key"  # local servers ignore the header; the SDK insists on one


class NoAnswerError(Exception):
    """One request gave no answer; `fatal` means no other request can succeed either (bad key, wrong URL)."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass
class Completion:
    content: str
    finish_reason: str
    tokens: int


def endpoint_label(url: str) -> str:
    """The endpoint without any user:password part, for logs and reports."""
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class ChatClient:
    """Sends `Ask`s within the concurrency limit; shared by every request of one draft."""

    def __init__(self, settings: Settings, stats: DraftStats) -> None:
        self.settings = settings
        self.stats = stats
        self.structured = settings.llm_structured_output == "json_schema"
        stats.structured_output = settings.llm_structured_output
        self.endpoint = endpoint_label(settings.llm_url)
        self.fatal: str = ""
        self._key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        self._slots = asyncio.Semaphore(settings.llm_concurrency)
        # An explicit Authorization wins over one in OPENAI_CUSTOM_HEADERS; Omit drops the organisation and project
        # headers the SDK would fill from OPENAI_ORG_ID / OPENAI_PROJECT_ID.
        headers: dict[str, Any] = {
            "Authorization": f"Bearer {self._key or NO_KEY}",
            "OpenAI-Organization": openai.Omit(),
            "OpenAI-Project": openai.Omit(),
        }
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_url,
            api_key=self._key or NO_KEY,
            organization="",
            project="",
            admin_api_key="",
            max_retries=0,
            timeout=openai.Timeout(settings.llm_timeout, connect=settings.llm_connect_timeout),
            default_headers=headers,
        )

    async def close(self) -> None:
        await self._client.close()

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def complete(self, ask: Ask, max_tokens: int, problem: str = "") -> Completion:
        """One answer to `ask`, after retries on 429, 5xx and failed connections; raises NoAnswerError."""
        attempt = 0
        while True:
            if self.fatal:
                raise NoAnswerError(self.fatal, fatal=True)
            structured = self.structured
            try:
                return await self._send(ask, max_tokens, problem, structured)
            except openai.APIStatusError as exc:
                status = exc.status_code
                detail = self.redact(_error_detail(exc))
                if status in (400, 422) and structured:
                    return await self._without_schema(ask, max_tokens, problem, f"HTTP {status}: {detail}")
                if status in (401, 403):
                    self.fatal = f"the endpoint refused the request (HTTP {status}: {detail})"
                    self.fatal += "; check BRIEFING_LLM_API_KEY"
                    raise NoAnswerError(self.fatal, fatal=True) from None
                if status == 404:
                    self.fatal = (
                        f"HTTP 404 from {self.endpoint}/chat/completions ({detail}); check that BRIEFING_LLM_URL ends "
                        "where the API starts (usually /v1) and that BRIEFING_LLM_MODEL names a served model"
                    )
                    raise NoAnswerError(self.fatal, fatal=True) from None
                if status != 429 and status < 500:
                    raise NoAnswerError(f"HTTP {status}: {detail}") from None
                wait = self._retry_wait(attempt, retry_after_seconds(exc.response.headers), f"HTTP {status}: {detail}")
            except (openai.APITimeoutError, TimeoutError):
                raise NoAnswerError(
                    f"no answer within {self.settings.llm_timeout:g} s; raise BRIEFING_LLM_TIMEOUT or lower "
                    "BRIEFING_LLM_BATCH_TOKENS"
                ) from None
            except openai.APIConnectionError as exc:
                reason = f"cannot connect to {self.endpoint}: {self.redact(str(exc.__cause__ or exc))}"
                try:
                    wait = self._retry_wait(attempt, None, reason)
                except NoAnswerError:
                    self.fatal = reason
                    raise NoAnswerError(reason, fatal=True) from None
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(wait)

    def _retry_wait(self, attempt: int, retry_after: float | None, reason: str) -> float:
        if attempt >= self.settings.llm_retries:
            raise NoAnswerError(f"{reason} (after {attempt + 1} attempts)")
        if retry_after is not None:
            if retry_after > self.settings.llm_max_retry_after:
                raise NoAnswerError(
                    f"{reason}; the server asked to wait {retry_after:g} s, more than BRIEFING_LLM_MAX_RETRY_AFTER"
                )
            logger.info("%s; retrying in %.1f s as the server asked", reason, retry_after)
            return retry_after
        wait = backoff_delay(self.settings.llm_backoff, attempt)
        logger.info("%s; retrying in %.1f s", reason, wait)
        return wait

    async def _without_schema(self, ask: Ask, max_tokens: int, problem: str, refusal: str) -> Completion:
        """A json_schema request refused with 400/422 is sent once more without `response_format`. When that is
        answered, the server does not do structured output: the rest of the draft describes the JSON in the prompt."""
        try:
            completion = await self._send(ask, max_tokens, problem, structured=False)
        except (openai.APIError, TimeoutError):
            raise NoAnswerError(f"{refusal} (refused without response_format too)") from None
        if self.structured:
            logger.warning(
                "%s refused response_format json_schema (%s); describing the JSON in the prompt instead",
                self.endpoint,
                refusal,
            )
            self.structured = False
            self.stats.structured_output = "prompt"
        return completion

    async def _send(self, ask: Ask, max_tokens: int, problem: str, structured: bool) -> Completion:
        messages = ask.messages(structured, problem)
        extra: dict[str, Any] = {"response_format": ask.response_format()} if structured else {}
        async with self._slots:
            if self.fatal:  # set by a request that finished while this one waited for its slot
                raise NoAnswerError(self.fatal, fatal=True)
            self.stats.requests += 1
            async with asyncio.timeout(self.settings.llm_timeout):
                response = await self._client.chat.completions.create(
                    model=self.settings.llm_model,
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=max_tokens,
                    temperature=self.settings.llm_temperature,
                    **extra,
                )
        return self._completion(response, messages)

    def _completion(self, response: Any, messages: list[dict[str, str]]) -> Completion:
        try:
            choice = response.choices[0]
            content = choice.message.content or ""
            finish = choice.finish_reason or ""
        except (AttributeError, IndexError, TypeError):
            raise NoAnswerError("the server's answer is not a chat completion (no choices[0].message)") from None
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            self.stats.tokens_estimated = True
            prompt = sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)
            completion = estimate_tokens(content)
        self.stats.prompt_tokens += prompt
        self.stats.completion_tokens += completion
        return Completion(content, finish, prompt + completion)


def _error_detail(exc: openai.APIStatusError) -> str:
    """The server's own words about an error status, on one short line."""
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else (inner or body.get("message"))
    elif isinstance(body, str):
        message = body
    text = " ".join(str(message or "").split())[:300]
    return text or exc.response.reason_phrase or "no detail"
