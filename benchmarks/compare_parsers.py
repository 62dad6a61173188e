"""feedparser against feedparser-rs (and "auto") on feedparser's own test corpus (~2,250 files).

Each file is parsed the way the ingest parses a fetched feed: its bytes with the response headers its
`Header:` comments declare (gzip/deflate files decompressed first, as httpx hands them over), through
`flows.ingest.reading.parse_feed` and `read_entries`. Printed per parser: parse CPU time, feeds with entries,
and agreement with feedparser — same entry count, and per entry the same id, link, title and published
date as parsed, plus the same article id and paragraph texts after our own reading — with every
disagreement listed by category.

    python -m benchmarks.compare_parsers                # summary and up to 8 examples per category
    python -m benchmarks.compare_parsers --list 0       # every disagreement
"""

from __future__ import annotations

import argparse
import gzip
import time
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from flows.core.models import Feed
from flows.core.settings import FeedParserName
from flows.ingest.reading import parse_feed, read_entries
from tests.test_ingest_corpus import HEADER_LINE, corpus_dir

PARSERS: tuple[FeedParserName, ...] = ("feedparser", "feedparser-rs", "auto")
FIELDS = ("id", "link", "title", "published_parsed")
CATEGORIES = ("entry count", "id", "link", "title", "published", "article id", "paragraphs", "read error")


@dataclass
class CorpusFile:
    name: str
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Result:
    entries: list[dict[str, Any]]
    articles: list[tuple[str, tuple[str, ...]]]  # (article id, paragraph texts) per read entry
    bozo: bool
    read_error: str = ""


@dataclass
class Tally:
    parse_seconds: float = 0.0
    read_seconds: float = 0.0
    with_entries: int = 0
    entries: int = 0
    bozo: int = 0
    agree: int = 0
    disagreements: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def load_corpus() -> list[CorpusFile]:
    folder = corpus_dir()
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in {".xml", ".gz", ".z"}):
        blob = path.read_bytes()
        name = path.relative_to(folder).as_posix()
        if "compression/" in name:
            try:
                blob = gzip.decompress(blob) if name.endswith("gz") else _inflate(blob)
            except (OSError, EOFError, zlib.error):
                continue  # a broken body: the fetch fails before any parser sees it
            headers = {"content-type": "application/xml"}
        else:
            headers = {
                k.decode().strip().lower(): v.decode("utf-8", "replace").strip() for k, v in HEADER_LINE.findall(blob)
            }
            headers.setdefault("content-type", "application/xml")
        headers.pop("status", None)
        files.append(CorpusFile(name, f"http://127.0.0.1:8097/tests/{name}", blob, headers))
    return files


def _inflate(blob: bytes) -> bytes:
    try:
        return zlib.decompress(blob)
    except zlib.error:
        return zlib.decompress(blob, -zlib.MAX_WBITS)


def run(parser: FeedParserName, item: CorpusFile, tally: Tally) -> Result:
    started = time.process_time()
    parsed = parse_feed(item.body, item.headers, item.url, parser)
    tally.parse_seconds += time.process_time() - started
    entries = [{f: dict.get(e, f) for f in FIELDS} for e in parsed.entries]
    started = time.process_time()
    try:
        read, _warnings = read_entries(parsed, Feed(id="c", url=item.url))
        articles = [(e.article.id, tuple(p.text for p in e.article.paragraphs)) for e in read]
        error = ""
    except Exception as exc:
        articles, error = [], f"{type(exc).__name__}: {exc}"
    tally.read_seconds += time.process_time() - started
    return Result(entries, articles, bool(parsed.get("bozo")), error)


def compare(reference: Result, other: Result) -> list[str]:
    """The categories in which `other` disagrees with feedparser's `reference`."""
    found = []
    if other.read_error and not reference.read_error:
        found.append("read error")
    if len(reference.entries) != len(other.entries):
        return [*found, "entry count"]
    for name, key in (("id", "id"), ("link", "link"), ("title", "title"), ("published", "published_parsed")):
        if any(_value(a.get(key)) != _value(b.get(key)) for a, b in zip(reference.entries, other.entries, strict=True)):
            found.append(name)
    if [a for a, _p in reference.articles] != [a for a, _p in other.articles]:
        found.append("article id")
    if [p for _a, p in reference.articles] != [p for _a, p in other.articles]:
        found.append("paragraphs")
    return found


def _value(value: Any) -> Any:
    if value is None or value == "":
        return None
    return tuple(value)[:6] if hasattr(value, "tm_year") else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=int, default=8, help="examples shown per category (0 = all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    corpus = load_corpus()
    tallies = {name: Tally() for name in PARSERS}
    for item in corpus:
        results = {name: run(name, item, tallies[name]) for name in PARSERS}
        for name, result in results.items():
            tally = tallies[name]
            tally.with_entries += bool(result.entries)
            tally.entries += len(result.entries)
            tally.bozo += result.bozo
            found = compare(results["feedparser"], result)
            tally.agree += not found
            for category in found:
                tally.disagreements[category].append(item.name)
    print_report(len(corpus), tallies, args.list)


def print_report(files: int, tallies: dict[str, Tally], examples: int) -> None:
    print(f"\nfeedparser's test corpus: {files} files, parsed as the ingest parses a fetched feed\n")
    header = (
        f"{'parser':<14} {'parse s':>8} {'read s':>7} {'with entries':>12} {'entries':>8} {'bozo':>5} {'agree':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, t in tallies.items():
        share = f"{t.agree}/{files}"
        print(
            f"{name:<14} {t.parse_seconds:>8.2f} {t.read_seconds:>7.2f} {t.with_entries:>12} {t.entries:>8} "
            f"{t.bozo:>5} {share:>11}"
        )
    for name, t in tallies.items():
        if name == "feedparser":
            continue
        print(f"\n{name}: disagreements with feedparser by category (files)")
        for category in CATEGORIES:
            names = t.disagreements.get(category, [])
            if not names:
                continue
            shown = names if examples == 0 else names[:examples]
            more = "" if len(shown) == len(names) else f" … and {len(names) - len(shown)} more"
            print(f"  {category:<12} {len(names):>5}: {', '.join(shown)}{more}")


if __name__ == "__main__":
    main()
