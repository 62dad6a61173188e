"""One settings object for the whole product.

Values come from, in order of precedence: explicit overrides (tests, CLI flags), environment variables
prefixed ``BRIEFING_``, an optional ``briefing.toml`` in the working directory (or the file named by
``BRIEFING_CONFIG``), then the defaults below. Every field carries help text; ``docs/settings.md`` is
generated from this class and a test fails when the two drift apart.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flows.core import resources
from flows.core.errors import POSTGRES_DRIVER_MISSING, SettingsError
from flows.core.text_safety import describe, first_forbidden

logger = logging.getLogger(__name__)

FeedParserName = Literal["feedparser", "feedparser-rs", "auto"]
SmtpTls = Literal["auto", "starttls", "tls", "none"]
HOST_NAME = re.compile(r"^(\[(IPv6:)?[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$")
DEFAULT_SECRET = "dev-only-secret-change-me"
MIN_SECRET_BYTES = 32
SECRET_HOWTO = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def _toml_path() -> Path:
    return Path(os.environ.get("BRIEFING_CONFIG", "briefing.toml"))


class Settings(BaseSettings):
    """Every knob of the pipeline, with its default and what it is for."""

    model_config = SettingsConfigDict(env_prefix="BRIEFING_", extra="forbid", validate_default=True)

    content_dir: Path = Field(
        Path("content"), description="Folder of human-edited content: audiences.yaml, feeds.yaml, briefings/."
    )
    output_dir: Path = Field(
        Path("outputs"), description="Folder for everything generated: outbox, archive, store, previews."
    )
    templates_dir: Path = Field(
        resources.templates_dir(),
        description="Folder of jinja2 templates (email/, text/, markdown/, html/, partials/); the default is the set shipped with the package.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the store. Empty: a SQLite file `store.db` under the output dir. PostgreSQL: `postgresql+psycopg://user:pass@host/db`.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where the archive is served; used for 'read online' and unsubscribe links in emails.",
    )
    archive_dir: Path | None = Field(
        None, description="Folder of the published archive. Empty: `archive/` under the output dir."
    )
    smtp_url: str = Field(
        "",
        description="SMTP server, e.g. `smtp://user:pass@host:587` (STARTTLS) or `smtps://host:465`. Empty: emails are written to the outbox folder.",
    )
    smtp_tls: SmtpTls = Field(
        "auto",
        description="How SMTP is encrypted. `auto`: TLS from the start for `smtps://`; for `smtp://` STARTTLS when the server offers it, and a server without it is refused when the URL carries a password. `starttls`: always STARTTLS (a server without it is refused). `tls`: TLS from the start (port 465 unless the URL names one). `none`: plain text, never STARTTLS, the password too (only on a network you trust).",
    )
    smtp_starttls: bool | None = Field(
        None,
        description="Deprecated: use BRIEFING_SMTP_TLS. `true` means `auto`, `false` means `none`; setting both is an error.",
    )
    smtp_ehlo_name: str = Field(
        "",
        description="Name this machine gives in the SMTP EHLO greeting, which receiving servers check. Empty: the machine's fully qualified name when it has a dot and is not localhost, else the domain of the From address.",
    )
    smtp_connections: int = Field(1, ge=1, le=32, description="How many SMTP connections send in parallel.")
    smtp_rate: float = Field(0.0, ge=0, description="Messages per second across all connections (0 = unlimited).")
    smtp_timeout: float = Field(30.0, gt=0, description="Seconds to wait for the SMTP server on each command.")
    secret: str = Field(
        DEFAULT_SECRET,
        description="Key for HMAC-signed links (unsubscribe tokens). Sending over SMTP needs at least 32 bytes of it, and not this default; generate one with `python -c \"import secrets; print(secrets.token_urlsafe(32))\"`.",
    )
    secret_previous: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Earlier values of `secret`, comma-separated (or a list in briefing.toml): links they signed still verify, new links are signed with `secret` only. Drop them once the grace period is over (docs/delivery.md, key rotation).",
    )
    from_address: str = Field("briefing@example.org", description="From address of every email.")
    from_name: str = Field("阿头学 Briefing", description="Display name in the From header.")
    reply_to: str = Field("", description="Reply-To address; empty = the From address.")
    brand: str = Field(
        "",
        description="Brand line of the emails, Markdown briefings and archive pages (emoji welcome, e.g. `🧠 阿头学 · 💬 讨论题`); empty = the locale's `brand` label.",
    )
    unsubscribe_mailto: str = Field(
        "", description="Mailbox for mailto unsubscribe requests; empty = `unsubscribe@<from domain>`."
    )
    dkim_key_path: Path | None = Field(
        None,
        description="PEM private key for DKIM signing: RSA (rsa-sha256) or Ed25519 (ed25519-sha256); empty = no signature.",
    )
    dkim_selector: str = Field("briefing", description="DKIM selector (the `s=` tag).")
    user_agent: str = Field(
        "briefing-pipeline/0.1 (+https://example.org/briefing; feed reader)",
        description="User-Agent sent with every feed and page fetch.",
    )
    fetch_concurrency: int = Field(32, ge=1, le=512, description="How many feeds or pages are fetched at once.")
    fetch_per_host: int = Field(4, ge=1, le=64, description="How many requests one host gets at once (politeness).")
    fetch_timeout: float = Field(
        20.0, gt=0, description="Total seconds allowed for one fetch (connect + headers + body)."
    )
    fetch_connect_timeout: float = Field(5.0, gt=0, description="Seconds to establish a connection.")
    fetch_retries: int = Field(
        3, ge=0, le=10, description="Retries on timeouts, connection errors, 429 and 5xx (none on other 4xx)."
    )
    fetch_backoff: float = Field(
        0.5, ge=0, description="First retry delay in seconds; doubles each retry, with jitter."
    )
    max_body_bytes: int = Field(
        10_000_000,
        ge=1024,
        description="A response larger than this is cut off while streaming and recorded as an error.",
    )
    max_redirects: int = Field(5, ge=0, le=20, description="How many redirects a fetch follows.")
    max_entries_per_feed: int = Field(
        200,
        ge=1,
        description="A feed listing more entries than this has only its newest this many read (by date, then the feed's order); the rest are left out with a warning. A 10,000-entry feed would otherwise cost minutes and hundreds of MB per run.",
    )
    new_feed_stubs: int = Field(
        5,
        ge=0,
        description="The first time a feed is read, only its newest this many new articles get draft stubs; the rest of its back catalogue is stored without stubs (`briefing add URL` writes one later). The run summary says how many.",
    )
    max_stubs_per_run: int = Field(
        50,
        ge=0,
        description="Most draft stubs one run writes; the newest new articles get them and the others are stored without stubs, as the run summary says.",
    )
    allow_private_addresses: bool = Field(
        False, description="Allow fetching from loopback, private and link-local addresses (tests and local feeds)."
    )
    fulltext_threshold: int = Field(
        600,
        ge=0,
        description="A feed entry whose content is shorter than this many characters is a teaser: the page is fetched and its full text extracted.",
    )
    ingest_schedule: str = Field(
        "*/30 * * * *", description="Cron schedule of the ingest deployment under `briefing serve`."
    )
    archive_feed_entries: int = Field(
        20, ge=1, le=500, description="How many briefings the archive's Atom feed carries."
    )
    archive_git_remote: str = Field(
        "", description="Git remote to push the archive to after publishing; empty = no git publishing."
    )
    email_size_budget: int = Field(
        100_000,
        ge=10_000,
        description="Maximum bytes of an HTML email; longer briefings are shortened with 'continue reading' links.",
    )
    strict: bool = Field(False, description="Fail the run on the first bad file instead of skipping it.")
    # --- publish ---
    archive_git_branch: str = Field(
        "main", description="Branch the archive is committed to and pushed to when `archive_git_remote` is set."
    )
    archive_git_timeout: float = Field(
        120.0, gt=0, description="Seconds allowed for each git command of archive publishing (push included)."
    )
    # --- postgres ---
    send_rate_limit: str = Field(
        "briefing-smtp-send",
        description="Name of the Prefect global concurrency limit that paces SMTP sends across all workers at `smtp_rate` messages per second; created at start-up when `smtp_rate` > 0 and a Prefect API is set.",
    )
    # --- delivery ---
    dkim_domain: str = Field(
        "", description="DKIM signing domain (the `d=` tag); empty = the domain of the From address."
    )
    dkim_ed25519_key_path: Path | None = Field(
        None,
        description="PEM Ed25519 private key for a second DKIM signature (ed25519-sha256, RFC 8463) next to the RSA one of `dkim_key_path`; empty = RSA only.",
    )
    dkim_ed25519_selector: str = Field(
        "briefing-ed25519", description="DKIM selector of the Ed25519 signature (must differ from `dkim_selector`)."
    )
    delivery_max_attempts: int = Field(
        6,
        ge=1,
        le=50,
        description="After this many temporary (4xx) refusals of one recipient the row becomes `failed`.",
    )
    delivery_retry_delay: float = Field(
        30.0, ge=0, description="Seconds before the first retry of a deferred (4xx) recipient; doubles per attempt."
    )
    delivery_retry_window: float = Field(
        300.0,
        ge=0,
        description="How long one send waits for deferred recipients to come due before it reports them and stops; the next send retries them.",
    )
    delivery_batch_size: int = Field(
        200, ge=1, le=5000, description="Ledger rows one SMTP connection leases at a time."
    )
    # --- orchestrate ---
    ingest_batch_size: int = Field(
        50,
        ge=1,
        le=5000,
        description="Feeds per Prefect task in the ingest flow (one task run per batch, retried as a unit).",
    )
    task_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Prefect retries of a network task (a feed batch with transient errors, a delivery).",
    )
    task_retry_delay: float = Field(
        10.0, ge=0, description="Seconds before the first Prefect task retry; doubles each retry, with ±50% jitter."
    )
    prefect_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the loopback Prefect server `briefing serve` starts when PREFECT_API_URL is unset (0 = any free port).",
    )
    prefect_ui: bool = Field(
        True, description="Serve Prefect's web UI from the server `briefing serve` starts (off saves start-up time)."
    )
    # --- ingest ---
    fetch_read_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the next bytes of a response before giving up on that attempt."
    )
    fetch_max_retry_after: float = Field(
        120.0,
        ge=0,
        description="Longest wait a Retry-After header may ask for; a longer one ends the fetch with an error for this run.",
    )
    ingest_parse_processes: int | Literal["auto"] = Field(
        "auto",
        description="Worker processes that parse feeds in parallel (feedparser is pure Python: threads share one core). 0 or 1 = parse inside the ingest process; `auto` = one per CPU core when a run has at least 100 feeds (starting the workers costs ≈1 s of CPU, which fewer feeds do not pay back), else none.",
    )
    ingest_parser: FeedParserName = Field(
        "feedparser",
        description="Feed parser: `feedparser` (the reference), `feedparser-rs` (Rust, ≈10× faster, young) or `auto` (feedparser-rs, and feedparser for any feed it finds ill-formed or without entries). See docs/ingest.md for how they compare.",
    )
    fetch_ca_file: Path | None = Field(
        None,
        description="PEM file of extra certificate authorities to trust for https feeds and pages (a private CA); the public ones (certifi) stay trusted.",
    )
    file_feed_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders besides the content folder that `file:` feeds may read (a JSON list, e.g. `[\"/srv/feeds\"]`). Any other `file:` URL (an absolute path, `..` or a symlink out of the content folder) is refused by `briefing check` and by ingest.",
    )
    fetch_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks (CIDR, e.g. `127.0.0.1/32`) that fetches may reach although BRIEFING_ALLOW_PRIVATE_ADDRESSES is off.",
    )
    # --- collect ---
    imap_url: str = Field(
        "",
        description="IMAP mailbox that receives replies, bounces, complaints and mailto unsubscribes, e.g. `imaps://user:pass@imap.example.org/INBOX` (implicit TLS, port 993) or `imap://user:pass@host:143/INBOX` (STARTTLS when offered). The path names the folder read (default INBOX). Empty: `briefing collect` has nothing to read.",
    )
    imap_starttls: bool = Field(
        True, description="Use STARTTLS on `imap://` URLs when the server offers it (refuse to log in without it on non-loopback hosts)."
    )
    imap_timeout: float = Field(30.0, gt=0, description="Seconds to wait for the IMAP server on each command.")
    imap_ca_file: Path | None = Field(
        None, description="PEM file of extra certificate authorities to trust for the IMAP server's certificate (a private CA)."
    )
    collect_schedule: str = Field(
        "*/10 * * * *", description="Cron schedule of the collect deployment (read the mailbox) under `briefing serve`."
    )
    collect_folder_prefix: str = Field(
        "Briefing",
        description="Parent folder of the folders processed messages are moved to (`<prefix>/Replies`, `Bounces`, `Complaints`, `Unsubscribes`, `AutoReplies`, `Other`, `Unreadable`).",
    )
    collect_batch_size: int = Field(
        100, ge=1, le=5000, description="Messages fetched from the IMAP server per request."
    )
    soft_bounce_limit: int = Field(
        3, ge=1, le=100, description="Soft bounces (4.x.x) of one address within `soft_bounce_window_days` that suppress it."
    )
    soft_bounce_window_days: float = Field(
        14.0, gt=0, description="Window in days over which soft bounces are counted towards `soft_bounce_limit`."
    )
    discussion_name: Literal["name", "initials", "audience"] = Field(
        "initials",
        description="Name shown beside an approved reply in the archive's discussion view: the sender's display `name`, their `initials`, or only the `audience` they read.",
    )
    discussion_max_chars: int = Field(
        4000, ge=200, le=100_000, description="A reply's text is cut to this many characters when stored as a discussion entry."
    )
    # --- draft ---
    llm_url: str = Field(
        "",
        description="Base URL of an OpenAI-compatible chat-completions endpoint that drafts empty sections (`briefing draft`), e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama), `http://127.0.0.1:8000/v1` (vLLM, llama.cpp). Empty: no drafting, everything else works as without it.",
    )
    llm_model: str = Field(
        "", description="Model name sent with every drafting request and written into each machine-draft marker."
    )
    llm_api_key: SecretStr | None = Field(
        None,
        description="API key sent as a Bearer token to BRIEFING_LLM_URL; never logged or printed. Empty for local servers without keys (OPENAI_* environment variables are never used).",
    )
    llm_timeout: float = Field(
        120.0, gt=0, description="Seconds one drafting request may take in all; a request that takes longer is not retried."
    )
    llm_connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect to BRIEFING_LLM_URL.")
    llm_concurrency: int = Field(4, ge=1, le=64, description="How many drafting requests are in flight at once.")
    llm_retries: int = Field(
        3, ge=0, le=10, description="Retries of a drafting request answered 429 or 5xx, or whose connection failed."
    )
    llm_backoff: float = Field(
        1.0, ge=0, description="First retry delay in seconds when the server sends no Retry-After; doubles each retry, with jitter."
    )
    llm_max_retry_after: float = Field(
        60.0, ge=0, description="Longest Retry-After a drafting request waits for; a longer one fails that request."
    )
    llm_token_budget: int = Field(
        200_000,
        ge=0,
        description="Most tokens (prompt + completion) drafting one briefing may spend; a request that would pass it is not sent and what it would have filled stays empty (reported). 0 = no limit.",
    )
    llm_batch_tokens: int = Field(
        1500,
        ge=50,
        description="Estimated source tokens per translation request: the blocks are sent in batches of consecutive blocks under this size.",
    )
    llm_batch_blocks: int = Field(
        30, ge=1, le=500, description="Most translation blocks in one request (fewer ids per answer align more reliably)."
    )
    llm_max_output_tokens: int = Field(
        4096, ge=64, description="`max_tokens` of each drafting request; an answer cut off at it is asked again in halves."
    )
    llm_context_tokens: int = Field(
        12_000,
        ge=500,
        description="Most estimated article tokens sent to draft the verdict, judgement, core points, prompts and notes; a longer article is cut at a block boundary (reported).",
    )
    llm_temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature of drafting requests.")
    llm_structured_output: Literal["json_schema", "prompt"] = Field(
        "json_schema",
        description="`json_schema`: ask for JSON through `response_format` (a server that refuses it gets `prompt` for the rest of the draft); `prompt`: describe the JSON in the prompt only, for servers without structured output.",
    )
    draft_language: str = Field(
        "zh-CN", description="Language the drafts are written in: the translation and every curated section."
    )
    draft_new_stubs: bool = Field(
        False,
        description="After ingest, draft the empty sections of every new stub with the model at BRIEFING_LLM_URL (an editor still reviews them before anything is sent).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, toml)

    @field_validator("brand")
    @classmethod
    def _brand_is_one_line(cls, value: str) -> str:
        char = first_forbidden(value)
        if char is not None:
            raise ValueError(f"contains {describe(char)}: the brand is one line of text")
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ValueError("must be an http(s) URL such as https://briefing.example.org")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_scheme(cls, value: str) -> str:
        if value and urlparse(value).scheme not in {"smtp", "smtps"}:
            raise ValueError("must start with smtp:// or smtps:// (or be empty to write to the outbox)")
        return value

    @field_validator("imap_url")
    @classmethod
    def _imap_url_scheme(cls, value: str) -> str:
        if value and (urlparse(value).scheme not in {"imap", "imaps"} or not urlparse(value).hostname):
            raise ValueError("must be an imap:// or imaps:// URL with a host (or empty when no mailbox is read)")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL (or empty for the default)")
        if value.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
            raise ValueError(POSTGRES_DRIVER_MISSING)
        return value

    @field_validator("ingest_parse_processes")
    @classmethod
    def _parse_processes_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 64:
            raise ValueError("must be between 0 and 64, or auto")
        return value

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _networks_are_cidr(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network such as 127.0.0.1/32 or 10.0.0.0/8") from None
        return value

    @field_validator("secret_previous", mode="before")
    @classmethod
    def _split_previous_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)  # a JSON list, as other list settings take
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("secret")
    @classmethod
    def _secret_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError(f"must not be empty: links signed with an empty key can be forged; {SECRET_HOWTO}")
        return value

    @field_validator("llm_url")
    @classmethod
    def _llm_url_is_http(cls, value: str) -> str:
        parsed = urlparse(value)
        if value and (parsed.scheme not in {"http", "https"} or not parsed.netloc):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:11434/v1 (or empty: no drafting)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _llm_is_set_for_new_stubs(self) -> Settings:
        if self.draft_new_stubs and not (self.llm_url and self.llm_model):
            raise ValueError("BRIEFING_DRAFT_NEW_STUBS needs BRIEFING_LLM_URL and BRIEFING_LLM_MODEL")
        return self

    @field_validator("dkim_key_path", "dkim_ed25519_key_path", mode="before")
    @classmethod
    def _empty_key_path_is_none(cls, value: object) -> object:
        # `BRIEFING_DKIM_KEY_PATH=` means "no signature", not the current directory (Path("") is ".")
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_ehlo_name")
    @classmethod
    def _ehlo_name_is_a_host(cls, value: str) -> str:
        if value and not HOST_NAME.match(value):
            raise ValueError("must be a host name such as mail.example.org, or an address literal such as [192.0.2.1]")
        return value

    @model_validator(mode="after")
    def _one_smtp_tls_setting(self) -> Settings:
        if self.smtp_starttls is not None:
            if "smtp_tls" in self.model_fields_set:
                raise ValueError("BRIEFING_SMTP_STARTTLS is deprecated and conflicts with BRIEFING_SMTP_TLS: remove it")
            self.smtp_tls = "auto" if self.smtp_starttls else "none"
            _deprecated(f"BRIEFING_SMTP_STARTTLS is deprecated: set BRIEFING_SMTP_TLS={self.smtp_tls} instead")
        if urlparse(self.smtp_url).scheme == "smtps" and self.smtp_tls in ("starttls", "none"):
            raise ValueError(
                f"BRIEFING_SMTP_TLS={self.smtp_tls} contradicts an smtps:// URL (TLS from the start): "
                "use smtp:// for STARTTLS or plain text, or BRIEFING_SMTP_TLS=tls"
            )
        return self

    @model_validator(mode="after")
    def _secret_is_strong_for_smtp(self) -> Settings:
        if not self.smtp_url:
            return self
        if self.secret == DEFAULT_SECRET or DEFAULT_SECRET in self.secret_previous:
            raise ValueError(
                f"BRIEFING_SECRET must be a private value (not the shipped default) to send real email over SMTP; "
                f"{SECRET_HOWTO}"
            )
        size = len(self.secret.encode("utf-8"))
        if size < MIN_SECRET_BYTES:
            raise ValueError(
                f"BRIEFING_SECRET is {size} bytes; sending real email over SMTP needs at least {MIN_SECRET_BYTES} "
                f"(it signs every unsubscribe link); {SECRET_HOWTO}"
            )
        return self

    @property
    def verification_secrets(self) -> list[str]:
        """The keys an unsubscribe link may be signed with: `secret` first, then `secret_previous`."""
        return [self.secret, *(key for key in self.secret_previous if key and key != self.secret)]

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.output_dir / 'store.db').resolve()}"

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.output_dir / "archive"

    @property
    def outbox_path(self) -> Path:
        return self.output_dir / "outbox"


_DEPRECATIONS_REPORTED: set[str] = set()


def _deprecated(message: str) -> None:
    """Log a deprecation once per process (settings are loaded more than once per command)."""
    if message not in _DEPRECATIONS_REPORTED:
        _DEPRECATIONS_REPORTED.add(message)
        logger.warning(message)


def load_settings(**overrides: Any) -> Settings:
    """Build and check the settings once; turn validation errors into one clear SettingsError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            # a check across settings (no field) names its variables in the message itself
            problems.append(f"BRIEFING_{field.upper()}: {err['msg']}" if field else err["msg"].removeprefix("Value error, "))
        raise SettingsError("; ".join(problems), hint="fix the environment variable or briefing.toml") from None
