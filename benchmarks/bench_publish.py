"""Benchmark of archive publishing: cold publish, no-op republish and one edited briefing, against a baseline
measured in the same run that renders the same archive and rewrites every file (what a naive generator does).

    python -m benchmarks.bench_publish [--small]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from flows.core.content import load_content
from flows.core.files import atomic_write_bytes
from flows.core.models import Briefing
from flows.core.pages import plan_pages
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.publish.archive import publish_archive, render_archive, safe_join

REPO = Path(__file__).resolve().parent.parent


def synthetic_briefings(samples: tuple[Briefing, ...], count: int) -> tuple[Briefing, ...]:
    start = date(2026, 6, 5)
    made = []
    for i in range(count):
        sample = samples[i % len(samples)]
        made.append(
            sample.model_copy(
                update={
                    "slug": f"{sample.slug}-{i:05d}",
                    "article_id": f"{i:016x}",
                    "date": start - timedelta(days=i // 3),
                    "path": f"content/briefings/{sample.slug}-{i:05d}.md",
                }
            )
        )
    return tuple(made)


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="60 briefings instead of 600")
    args = parser.parse_args()
    count = 60 if args.small else 600
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        settings = load_settings(content_dir=REPO / "content", output_dir=Path(tmp) / "out")
        content = load_content(settings.content_dir).content
        briefings = synthetic_briefings(content.ready, count)
        store = Store(settings.store_url)

        def baseline() -> int:
            files = render_archive(plan_pages(store, briefings), content, settings)
            root = Path(tmp) / "baseline"
            for path, data in files.items():
                atomic_write_bytes(safe_join(root, path), data)
            return len(files)

        render_archive(plan_pages(store, briefings[:3]), content, settings)  # warm the template caches for both
        base_time, base_files = timed(baseline)
        cold_time, cold = timed(lambda: publish_archive(content, store, settings, briefings))
        noop_time, noop = timed(lambda: publish_archive(content, store, settings, briefings))
        edited = (briefings[0].model_copy(update={"judgement": briefings[0].judgement + "（更正）"}), *briefings[1:])
        edit_time, edit = timed(lambda: publish_archive(content, store, settings, edited))
        store.close()

    rows = [
        ("baseline: render + rewrite every file", base_time, base_files, 0),
        ("cold publish (store + write if changed)", cold_time, len(cold.written), len(cold.unchanged)),
        ("republish, nothing changed", noop_time, len(noop.written), len(noop.unchanged)),
        ("republish, one briefing edited", edit_time, len(edit.written), len(edit.unchanged)),
    ]
    print(f"archive publishing, {count} briefings ({base_files} files)")
    print(f"{'step':<42}{'seconds':>9}{'written':>9}{'unchanged':>11}{'vs baseline':>13}")
    for name, seconds, written, unchanged in rows:
        print(f"{name:<42}{seconds:>9.3f}{written:>9}{unchanged:>11}{seconds / base_time:>12.2f}x")


if __name__ == "__main__":
    main()
