"""The one HTTP fetcher of the ingest stage: shared client, limits, timeouts, retries and address checks.

`Fetcher` wraps one `httpx.AsyncClient` for a whole ingest run. Every request:

- waits for a per-host slot, then a global slot (a host's queue never holds global slots);
- is checked before connecting: http/https only, the host resolved once per run and every address checked
  by `flows.ingest.address_policy` (public addresses only, unless the settings allow more), the connection pinned
  to a checked address so a second DNS answer cannot point elsewhere; redirects are followed by hand, each
  hop checked;
- streams the raw body and decodes it itself (gzip, deflate, br, stacked in any order), counting decoded bytes
  as they are produced, a bounded piece at a time: it stops at `max_body_bytes`, so a compression bomb is cut
  after reading one piece past the limit, never after inflating a whole network chunk (see `BodyDecoder`);
- is retried with exponential backoff and jitter on timeouts, connection errors, 429 (Retry-After
  honoured) and 5xx, never on other 4xx;
- sends If-None-Match / If-Modified-Since when given; a 304 comes back with an empty body;
- carries no cookies: none are stored and none are sent (see `CookielessClient`).

Underneath, `flows.ingest.transport` gives each host its own small connection pool on plain asyncio sockets.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import socket
import ssl
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

import brotli
import certifi
import httpx

from flows.core.backoff import backoff_delay
from flows.core.errors import FetchError, UnsafeURLError
from flows.core.settings import Settings
from flows.ingest.address_policy import AddressPolicy, IPAddress, describe, parse_host_address
from flows.ingest.transport import FetchTransport

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK_BYTES = 64 * 1024
DECODE_PIECE_BYTES = 64 * 1024  # most a decoding stage produces at once: memory per stage stays this small
ACCEPT_ENCODING = "gzip, deflate, br"
DRAIN_BYTES = 64 * 1024  # a body we do not keep is read up to this size so its connection can be reused


@dataclass
class FetchResult:
    """A fetched resource: status 200 (body read) or 304 (not modified, empty body)."""

    url: str  # the final URL, after redirects
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    attempts: int = 1
    redirects: int = 0

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


class _RetryableError(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else datetime.now(UTC).timestamp()))


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is in the chain of causes under `exc` (httpx wraps httpcore's error, which wraps ssl's)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kind):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class _NoCookies(httpx.Cookies):
    """An always-empty jar: Set-Cookie headers are neither parsed nor kept."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` without a cookie jar.

    Requests are addressed to the checked IP, so a jar would file every cookie under that IP and send it on
    to any other site on the same address (shared hosting, CDNs). A feed reader has no session to keep, and
    reading each response's Set-Cookie headers was about 5 % of a conditional GET's CPU."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        """Assigning a jar (httpx allows `client.cookies = …`) keeps it empty all the same."""

    async def _send_handling_redirects(
        self, request: httpx.Request, follow_redirects: bool, history: list[httpx.Response]
    ) -> httpx.Response:
        # The fetcher follows redirects itself, each hop checked. httpx would still parse every Location with
        # its own URL parser to prepare a request nobody sends, and a Location of http://0177.0.0.1/ (a valid
        # spelling of 127.0.0.1) failed there as a retried protocol error instead of being refused by the
        # address check as the dotted form is. (httpx 0.27 and 0.28: `send` calls this with these arguments.)
        return await self._send_single_request(request)


class BodyDecodeError(Exception):
    """The body is not valid data in its declared Content-Encoding."""


class _Stage:
    """One Content-Encoding being undone: input goes in with `feed`, `read(n)` gives at most about n bytes."""

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, max_length: int) -> bytes:
        raise NotImplementedError


class _Identity(_Stage):
    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data

    def read(self, max_length: int) -> bytes:
        piece, self._pending = self._pending[:max_length], self._pending[max_length:]
        return piece


class _Zlib(_Stage):
    """gzip (members in a row, as RFC 1952 allows) or deflate (zlib-wrapped, or raw as some servers send it)."""

    RAW_DEFLATE_PROBE = 1024  # input kept until the zlib wrapper is confirmed, to retry it as raw deflate

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._wbits = zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(self._wbits)
        self._pending = b""
        self._head: bytes | None = None if gzip else b""  # deflate input seen while the wrapper is unconfirmed

    def feed(self, data: bytes) -> None:
        self._pending += data

    def read(self, max_length: int) -> bytes:
        while True:
            if self._decompressor.eof:
                rest = self._decompressor.unused_data + self._pending
                if not self._gzip or not rest.strip(b"\0"):
                    self._pending = b""  # trailing bytes after the stream (zero padding) are ignored, as by httpx
                    return b""
                self._decompressor, self._pending = zlib.decompressobj(self._wbits), rest  # the next gzip member
            data, self._pending = self._pending, b""
            if self._head is not None:
                self._head += data
            try:
                out = self._decompressor.decompress(data, max_length)
            except zlib.error as exc:
                if self._head is None:
                    raise BodyDecodeError(str(exc)) from None
                # "deflate" sent without the zlib wrapper: start again on everything read so far
                self._wbits, self._pending, self._head = -zlib.MAX_WBITS, self._head, None
                self._decompressor = zlib.decompressobj(self._wbits)
                continue
            if self._head is not None and (out or len(self._head) > self.RAW_DEFLATE_PROBE):
                self._head = None
            self._pending = self._decompressor.unconsumed_tail + self._pending
            if out or not self._decompressor.eof:
                return out


class _Brotli(_Stage):
    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data

    def read(self, max_length: int) -> bytes:
        try:
            if self._decompressor.is_finished():
                self._pending = b""  # bytes after the end of the stream are ignored
                return b""
            data = b""
            if self._decompressor.can_accept_more_data():
                data, self._pending = self._pending, b""
            # with empty input this hands out what an earlier call held back at the limit
            return bytes(self._decompressor.process(data, output_buffer_limit=max_length))
        except brotli.error as exc:
            raise BodyDecodeError(f"brotli: {exc}") from None


_STAGES: dict[str, Callable[[], _Stage]] = {
    "gzip": lambda: _Zlib(gzip=True),
    "x-gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "br": _Brotli,
}


class BodyDecoder:
    """Undoes a Content-Encoding list (`gzip, gzip`, `br, gzip`, …) a bounded piece at a time.

    Encodings are listed in the order they were applied, so they are undone from the last. Each stage hands
    the next at most DECODE_PIECE_BYTES at once, and the caller counts the final output as it comes: a
    512 MiB bomb costs a few pieces of memory before the body limit stops the read, instead of the whole
    inflated network chunk that httpx's own decoders produce before anyone can count it."""

    def __init__(self, header: str) -> None:
        names = [name.strip().lower() for name in header.split(",") if name.strip()]
        self.encodings = [name for name in names if name not in {"identity", "none"}]
        unknown = [name for name in self.encodings if name not in _STAGES]
        if unknown:
            accepted = f"this reader accepts {ACCEPT_ENCODING}"
            raise ValueError(f"unsupported Content-Encoding {', '.join(unknown)} ({accepted})")
        self.stages: list[_Stage] = [_STAGES[name]() for name in reversed(self.encodings)] or [_Identity()]

    @property
    def encodings_text(self) -> str:
        return "Content-Encoding: " + (", ".join(self.encodings) or "identity")

    def decode(self, raw: bytes) -> Iterator[bytes]:
        """The decoded pieces that `raw` (the next bytes off the wire) completes."""
        self.stages[0].feed(raw)
        return self._pull(0)

    def finish(self) -> Iterator[bytes]:
        """Whatever the stages still hold once the body has ended."""
        return self._pull(0)

    def _pull(self, index: int) -> Iterator[bytes]:
        stage, last = self.stages[index], index == len(self.stages) - 1
        while piece := stage.read(DECODE_PIECE_BYTES):
            if last:
                yield piece
            else:
                self.stages[index + 1].feed(piece)
                yield from self._pull(index + 1)


def _cut_message(limit: int, decoder: BodyDecoder) -> str:
    how = f" after decoding ({decoder.encodings_text})" if decoder.encodings else ""
    return f"body cut off: more than {limit:,} bytes{how}"


class Fetcher:
    """One shared client for a whole run. Use as `async with Fetcher(settings) as fetcher:`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._global = asyncio.Semaphore(settings.fetch_concurrency)
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.fetch_per_host)
        )
        self.address_policy = AddressPolicy.from_settings(
            settings.allow_private_addresses, settings.fetch_allowed_networks
        )
        # Certificates are verified as usual (CERT_REQUIRED, host names checked); the CA bundle is loaded on the
        # first https request only, as loading it costs ~0.1-0.2 s and many runs are all-304 or all-local.
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls_loaded = False
        self._lookups: dict[tuple[str, int], asyncio.Future[list[IPAddress]]] = {}
        self.lookups = 0  # host-name lookups made (a run makes one per host and port)
        self._checked: dict[tuple[str, int], IPAddress] = {}  # host and port → the allowed address requests go to
        timeout = httpx.Timeout(
            connect=settings.fetch_connect_timeout,
            read=settings.fetch_read_timeout,
            write=settings.fetch_read_timeout,
            pool=None,  # waiting for a pool slot is bounded by our own semaphores and the total timeout
        )
        self.transport = FetchTransport(self._tls, settings.fetch_per_host)
        self._headers = {
            "Accept": "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,
            "Connection": "keep-alive",
            "User-Agent": settings.user_agent,
        }
        self._timeouts = timeout.as_dict()
        self.client = CookielessClient(
            timeout=timeout, follow_redirects=False, transport=self.transport, headers=self._headers, trust_env=False
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.aclose()

    # public ---------------------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = "*/*",
        allow_file: bool = False,
    ) -> FetchResult:
        """Fetch one URL with retries. Raises FetchError (UnsafeURLError for refused addresses/schemes)."""
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            if not allow_file:
                raise UnsafeURLError(url, "file: URLs are only allowed for feeds listed in feeds.yaml")
            return await asyncio.to_thread(self._read_file, url, etag)
        if scheme not in {"http", "https"}:
            raise UnsafeURLError(url, f"scheme {scheme or '(none)'!r} is not allowed", hint="use an http(s) URL")
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        retries = self.settings.fetch_retries
        for attempt in range(retries + 1):
            try:
                result = await self._attempt(url, headers)
            except _RetryableError as retry:
                if attempt >= retries:
                    raise FetchError(
                        url,
                        f"{retry.reason} (gave up after {attempt + 1} attempts)",
                        retryable=True,
                        hint="the server or network failed; it will be tried again on the next run",
                    ) from None
                delay = retry.delay if retry.delay is not None else backoff_delay(self.settings.fetch_backoff, attempt)
                if delay > self.settings.fetch_max_retry_after:
                    raise FetchError(
                        url, f"{retry.reason}; the server asks to wait {delay:.0f} s", retryable=True
                    ) from None
                logger.info("%s: %s; retry %d/%d in %.2f s", url, retry.reason, attempt + 1, retries, delay)
                await asyncio.sleep(delay)
                continue
            result.attempts = attempt + 1
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # one attempt: redirects, checks, body ------------------------------------------------------------

    async def _attempt(self, url: str, headers: dict[str, str]) -> FetchResult:
        host = urlsplit(url).hostname or ""
        async with self._hosts[host], self._global:
            try:
                async with asyncio.timeout(self.settings.fetch_timeout):
                    return await self._follow(url, headers)
            except TimeoutError:
                raise _RetryableError(f"no complete answer within {self.settings.fetch_timeout:g} s") from None
            except httpx.TimeoutException as exc:
                raise _RetryableError(f"timed out ({type(exc).__name__})") from None
            except httpx.DecodingError as exc:
                raise FetchError(url, f"the body could not be decoded: {exc}") from None
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                raise FetchError(url, f"request failed: {type(exc).__name__}: {exc}") from None
            except httpx.ConnectError as exc:
                if _caused_by(exc, ssl.SSLCertVerificationError):
                    raise FetchError(
                        url, f"TLS certificate not trusted: {exc}", hint="the server's certificate does not verify"
                    ) from None
                raise _RetryableError(f"connection failed: ConnectError: {exc}".rstrip(": ")) from None
            except httpx.TransportError as exc:
                raise _RetryableError(f"connection failed: {type(exc).__name__}: {exc}".rstrip(": ")) from None
            except (httpx.RequestError, httpx.InvalidURL) as exc:
                raise FetchError(url, f"request failed: {type(exc).__name__}: {exc}") from None

    async def _follow(self, url: str, headers: dict[str, str]) -> FetchResult:
        visited = {url}
        current = url
        for hop in range(self.settings.max_redirects + 1):
            request = await self._build_request(current, headers, origin=url)
            response = await self.client.send(request, stream=True)
            try:
                if response.status_code in REDIRECT_STATUSES and response.headers.get("location"):
                    target = urljoin(current, response.headers["location"])
                    if target in visited:
                        raise FetchError(url, f"redirect loop at {target}", hint="fix the feed URL")
                    visited.add(target)
                    if urlsplit(target).scheme.lower() not in {"http", "https"}:
                        raise UnsafeURLError(url, f"redirect to a non-http(s) URL refused: {target}")
                    await self._drain(response)
                    current = target
                    continue
                return await self._finish(response, current, hop)
            finally:
                await response.aclose()
        raise FetchError(
            url,
            f"more than {self.settings.max_redirects} redirects",
            hint="use the final URL, or raise BRIEFING_MAX_REDIRECTS",
        )

    async def _finish(self, response: httpx.Response, url: str, hops: int) -> FetchResult:
        status = response.status_code
        if not 200 <= status < 300:
            await self._drain(response)
        if status == 304:
            return FetchResult(url=url, status=304, headers=dict(response.headers.items()), redirects=hops)
        if status == 429 or status >= 500:
            raise _RetryableError(f"HTTP {status}", delay=parse_retry_after(response.headers.get("retry-after")))
        if status >= 400:
            raise FetchError(url, f"HTTP {status}", hint=_hint_for_status(status))
        if status >= 300:
            raise FetchError(url, f"HTTP {status} without a usable Location header")
        body = await self._read_body(response, url)
        return FetchResult(url=url, status=status, body=body, headers=dict(response.headers.items()), redirects=hops)

    async def _drain(self, response: httpx.Response) -> None:
        """Read the rest of a body we do not keep (a 304's empty one, a redirect's or an error's page).
        httpcore returns a connection to the pool only once its response was read to the end; closed
        unread, even a 304 closes the connection, and the host's next feed pays a new connection (and
        TLS handshake). A body over DRAIN_BYTES, or one that fails to arrive, is left: the connection
        is closed instead."""
        drained = 0
        try:
            async for chunk in response.aiter_raw():
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    return
        except httpx.HTTPError as exc:
            logger.debug("%s: unread body left with its connection: %s", response.request.url, exc)

    async def _read_body(self, response: httpx.Response, url: str) -> bytes:
        """The body, decoded and counted as it is produced: over `max_body_bytes` on the wire or decoded, the
        read stops with a FetchError naming the URL (the connection is closed by the caller)."""
        limit = self.settings.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit and "content-encoding" not in response.headers:
            raise FetchError(url, f"body of {int(declared):,} bytes exceeds the limit of {limit:,}", hint=_SIZE_HINT)
        try:
            decoder = BodyDecoder(response.headers.get("content-encoding", ""))
        except ValueError as exc:
            raise FetchError(url, str(exc), hint="the server sent an encoding this reader cannot decode") from None
        chunks: list[bytes] = []
        size = wire = 0
        try:
            async for raw in response.aiter_raw(CHUNK_BYTES):
                wire += len(raw)
                if wire > limit:
                    raise FetchError(url, f"body cut off: more than {limit:,} bytes on the wire", hint=_SIZE_HINT)
                for piece in decoder.decode(raw):
                    size += len(piece)
                    if size > limit:
                        raise FetchError(url, _cut_message(limit, decoder), hint=_SIZE_HINT)
                    chunks.append(piece)
            for piece in decoder.finish():
                size += len(piece)
                if size > limit:
                    raise FetchError(url, _cut_message(limit, decoder), hint=_SIZE_HINT)
                chunks.append(piece)
        except BodyDecodeError as exc:
            raise FetchError(url, f"the body could not be decoded ({decoder.encodings_text}): {exc}") from None
        return b"".join(chunks)

    # address checks -----------------------------------------------------------------------------------

    async def _build_request(self, url: str, headers: dict[str, str], origin: str) -> httpx.Request:
        """Resolve and check the host, then address the request to the checked IP (Host header and SNI kept)."""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise UnsafeURLError(origin, f"URL has no host: {url}")
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        if parts.scheme.lower() == "https" and not self._tls_loaded:
            self._load_certificate_authorities(origin)
        address = await self._checked_address(origin, url, host, port)
        netloc = f"[{address}]" if address.version == 6 else str(address)
        if parts.port:
            netloc += f":{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if not parts.port else f"{host}:{parts.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" + (f":{parts.port}" if parts.port else "")
        # Built here rather than by client.build_request, which re-merges the client's headers, cookies and
        # query on every call; the client's own headers and timeouts are the ones given.
        return httpx.Request(
            "GET",
            pinned,
            headers={"Host": host_header, **self._headers, **headers},
            extensions={"sni_hostname": host, "timeout": self._timeouts},
        )

    def _load_certificate_authorities(self, origin: str) -> None:
        self._tls.load_verify_locations(certifi.where())
        extra = self.settings.fetch_ca_file
        if extra is not None:
            try:
                self._tls.load_verify_locations(extra)
            except (OSError, ssl.SSLError) as exc:
                raise FetchError(
                    origin,
                    f"cannot load the certificate authorities in {extra}: {exc}",
                    hint="BRIEFING_FETCH_CA_FILE must name a readable PEM file of CA certificates",
                ) from None
        self._tls_loaded = True

    async def _checked_address(self, origin: str, url: str, host: str, port: int) -> IPAddress:
        """Every address of the host must be allowed; errors name the URL asked for and the hop refused.
        An allowed answer is kept for the run, like the lookup it came from."""
        checked = self._checked.get((host, port))
        if checked is not None:
            return checked
        via = f" (redirected to {url})" if url != origin else ""
        literal = parse_host_address(host)  # 0x7f.1 and 2130706433 are 127.0.0.1, checked and pinned as such
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self._lookup(host, port)
            except socket.gaierror as exc:
                if exc.errno == socket.EAI_AGAIN:
                    raise _RetryableError(f"cannot resolve host {host!r} (temporary DNS failure)") from None
                raise FetchError(
                    origin, f"cannot resolve host {host!r}{via}: {exc.strerror}", hint="check the URL"
                ) from None
            except UnicodeError:
                raise FetchError(origin, f"host name {host!r} is not valid{via}", hint="check the URL") from None
        if not addresses:
            raise _RetryableError(f"host {host!r} has no address")
        for address in addresses:
            if not self.address_policy.allows(address):
                raise UnsafeURLError(
                    origin,
                    f"refused: {host} resolves to the non-public address {describe(address)}{via}",
                    hint="set BRIEFING_ALLOW_PRIVATE_ADDRESSES=true or list the network in "
                    "BRIEFING_FETCH_ALLOWED_NETWORKS if this source is trusted",
                )
        self._checked[(host, port)] = addresses[0]
        return addresses[0]

    async def _lookup(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses, looked up once per run: its feeds and pages share one answer (and so one
        checked address and one connection pool), and concurrent requests share one lookup instead of each
        taking a thread of the resolver pool. A failed lookup is not kept, so a retry asks again."""
        key = (host, port)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(self._getaddrinfo(host, port))
            lookup.add_done_callback(lambda done: self._forget_failed_lookup(key, done))
        return await asyncio.shield(lookup)  # a cancelled request must not cancel the lookup others wait on

    def _forget_failed_lookup(self, key: tuple[str, int], done: asyncio.Future[list[IPAddress]]) -> None:
        if done.cancelled() or done.exception() is not None:
            self._lookups.pop(key, None)

    async def _getaddrinfo(self, host: str, port: int) -> list[IPAddress]:
        self.lookups += 1
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]

    # local feeds --------------------------------------------------------------------------------------

    def _read_file(self, url: str, etag: str | None) -> FetchResult:
        path = Path(url2pathname(urlsplit(url).path)).resolve()
        allowed = self.settings.file_feed_dirs
        roots = [self.settings.content_dir.resolve(), *(Path(d).expanduser().resolve() for d in allowed)]
        if not any(path.is_relative_to(root) for root in roots):  # ingest refuses these earlier, naming feeds.yaml
            raise UnsafeURLError(url, f"{path} is outside the content folder", hint="see BRIEFING_FILE_FEED_DIRS")
        try:
            stat = path.stat()
            tag = f'"file-{stat.st_mtime_ns}-{stat.st_size}"'
            if etag == tag:
                return FetchResult(url=url, status=304, headers={"etag": tag})
            if stat.st_size > self.settings.max_body_bytes:
                raise FetchError(url, f"file of {stat.st_size:,} bytes exceeds the limit", hint=_SIZE_HINT)
            return FetchResult(url=url, status=200, body=path.read_bytes(), headers={"etag": tag})
        except OSError as exc:
            raise FetchError(
                url, f"cannot read local feed: {exc.strerror}", hint="fix the path in feeds.yaml"
            ) from None


_SIZE_HINT = "raise BRIEFING_MAX_BODY_BYTES if this source is trusted"


def _hint_for_status(status: int) -> str:
    if status in {401, 403}:
        return "the server refuses access; check the URL or whether the feed needs a login"
    if status in {404, 410}:
        return "the feed moved or is gone; update its URL in feeds.yaml"
    return "the server rejected the request; check the URL"
