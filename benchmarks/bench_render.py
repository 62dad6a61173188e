"""Render benchmark: N briefings × every audience × (HTML, text, Markdown), against the reference MJML compiler.

    python -m benchmarks.bench_render [--small] [--briefings N] [--no-reference] [--wall]

Times are CPU time of the process by default (the machine is shared; --wall for wall-clock time), for both
this code and the reference. Briefings are synthesised from the shipped sample ones (varied verdicts,
reordered and repeated core points, prompts and notes).
Reported: ms per variant (HTML stages: jinja2, mjml-python, css-inline + post-processing),
the share of HTML time spent compiling MJML, peak memory, and — in the same run, on the very same MJML
sources — the reference MJML compiler (npm `mjml`, Node) compiling everything in one process. The npm package
is installed on first use into ~/.cache/briefing-bench (override with BRIEFING_BENCH_CACHE).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mjml import mjml2html

from flows.core.content import load_content
from flows.core.models import Briefing, Content, CorePoint
from flows.render.email import (
    INLINE_CSS,
    build_context,
    postprocess_html,
    render_briefing,
    render_markdown,
    render_mjml,
    render_text,
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
CACHE = Path(os.environ.get("BRIEFING_BENCH_CACHE", Path.home() / ".cache" / "briefing-bench"))
HTML_TARGET_MS = 3.0
SPEEDUP_TARGET = 10.0
NODE_SCRIPT = r"""
const fs = require('fs');
const mjml2html = require('mjml');
const sources = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
for (const s of sources.slice(0, 5)) mjml2html(s, {validationLevel: 'skip', fonts: {}});  // warm-up
const times = [];
let bytes = 0;
const start = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
for (const s of sources) {
  const t0 = process.hrtime.bigint();
  const out = mjml2html(s, {validationLevel: 'skip', fonts: {}});
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  bytes += out.html.length;
}
const total = Number(process.hrtime.bigint() - start) / 1e6;
const cpu = process.cpuUsage(cpu0);
times.sort((a, b) => a - b);
console.log(JSON.stringify({n: sources.length, total_ms: total, median_ms: times[times.length >> 1],
  cpu_ms: (cpu.user + cpu.system) / 1000,
  version: require('mjml/package.json').version, node: process.version, rss_mb: process.memoryUsage().rss / 1e6,
  chars: bytes}));
"""

logger = logging.getLogger(__name__)


@dataclass
class Timings:
    jinja: list[float] = field(default_factory=list)
    mjml: list[float] = field(default_factory=list)
    inline: list[float] = field(default_factory=list)
    text: list[float] = field(default_factory=list)
    markdown: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    html_bytes: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def synthesise(samples: tuple[Briefing, ...], count: int) -> list[Briefing]:
    """`count` distinct briefings varied from the samples: verdicts, point order and number, prompts."""
    out = []
    for index in range(count):
        base = samples[index % len(samples)]
        points = list(base.core_points)
        rotation = index % len(points)
        points = points[rotation:] + points[:rotation]
        extra = [CorePoint(lead=f"{p.lead}（续 {index}）", explanation=p.explanation) for p in points[: index % 3]]
        out.append(
            base.model_copy(
                update={
                    "slug": f"{base.slug}-{index:03d}",
                    "verdict": f"{base.verdict}（第 {index} 期）",
                    "judgement": base.judgement + (" 补充说明。" * (index % 5)),
                    "core_points": tuple(points + extra),
                    "prompts": base.prompts[: 1 + index % len(base.prompts)] + base.prompts,
                }
            )
        )
    return out


def measure(briefings: list[Briefing], content: Content, clock: Callable[[], float] = time.process_time) -> Timings:
    """Time each step with `clock`: CPU time by default (robust on a shared machine), wall time with --wall."""
    timings = Timings()
    for briefing in briefings:
        archive = f"https://briefing.example.org/2026/06/{briefing.slug}.html"
        for audience in content.audiences:
            ctx = build_context(
                briefing,
                audience,
                content,
                templates_dir=TEMPLATES,
                archive_url=archive,
                archive_index_url="https://briefing.example.org/index.html",
            )
            t0 = clock()
            source = render_mjml(ctx, TEMPLATES)
            t1 = clock()
            compiled = mjml2html(source, disable_comments=True, fonts={})
            t2 = clock()
            html = postprocess_html(compiled, TEMPLATES)
            t3 = clock()
            render_text(ctx, TEMPLATES)
            t4 = clock()
            render_markdown(ctx, TEMPLATES)
            t5 = clock()
            timings.jinja.append(t1 - t0)
            timings.mjml.append(t2 - t1)
            timings.inline.append(t3 - t2)
            timings.text.append(t4 - t3)
            timings.markdown.append(t5 - t4)
            timings.html_bytes.append(len(html.encode("utf-8")))
            timings.sources.append(source)
        t0 = clock()
        render_briefing(
            briefing,
            content,
            templates_dir=TEMPLATES,
            archive_url=archive,
            archive_index_url="https://briefing.example.org/index.html",
        )
        timings.end_to_end.append((clock() - t0) / len(content.audiences))
    return timings


def ensure_reference() -> Path | None:
    """The npm `mjml` package in the cache folder (installed with `npm install mjml` on first use)."""
    if not shutil.which("node") or not shutil.which("npm"):
        logger.warning("node/npm not found: the reference MJML compiler is skipped")
        return None
    module = CACHE / "node_modules" / "mjml"
    if not module.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not (CACHE / "package.json").exists():
            (CACHE / "package.json").write_text('{"name": "briefing-bench", "private": true}\n')
        done = subprocess.run(
            ["npm", "install", "mjml@4", "--no-audit", "--no-fund"], cwd=CACHE, capture_output=True, text=True
        )
        if done.returncode != 0:
            logger.warning("npm install mjml failed: %s", done.stderr[-500:])
            return None
    return CACHE


def run_reference(sources: list[str]) -> dict[str, float] | None:
    cache = ensure_reference()
    if cache is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        data = Path(tmp) / "sources.json"
        data.write_text(json.dumps(sources), encoding="utf-8")
        script = cache / "compile_all.js"
        script.write_text(NODE_SCRIPT, encoding="utf-8")
        done = subprocess.run(["node", str(script), str(data)], capture_output=True, text=True, cwd=cache)
    if done.returncode != 0:
        logger.warning("reference MJML failed: %s", done.stderr[-500:])
        return None
    return json.loads(done.stdout)


def ms(values: list[float]) -> float:
    return statistics.fmean(values) * 1000


def report(
    timings: Timings, reference: dict[str, dict[str, float]] | None, peak_mb: float, briefings: int, wall: bool
) -> bool:
    n = len(timings.mjml)
    html = [a + b + c for a, b, c in zip(timings.jinja, timings.mjml, timings.inline, strict=True)]
    mjml_share = sum(timings.mjml) / sum(html)
    rows = [
        ("HTML: jinja2 → MJML source", ms(timings.jinja)),
        ("HTML: mjml-python compile", ms(timings.mjml)),
        ("HTML: css-inline + post-process", ms(timings.inline)),
        ("HTML variant (total)", ms(html)),
        ("plain-text variant", ms(timings.text)),
        ("Markdown variant", ms(timings.markdown)),
        ("render_briefing per email (all 3 + budget)", ms(timings.end_to_end)),
    ]
    print(f"\nrender benchmark: {briefings} briefings × {n // briefings} audiences = {n} emails × 3 formats")
    clock = "wall-clock time" if wall else "CPU time of the process (use --wall for wall-clock time)"
    print(f"clock: {clock}")
    print(f"{'step':<46}{'ms/variant':>12}")
    for name, value in rows:
        print(f"{name:<46}{value:>12.3f}")
    print(f"{'share of HTML time in MJML compilation':<46}{mjml_share:>11.0%}")
    sizes = f"{statistics.fmean(timings.html_bytes):.0f} / {max(timings.html_bytes)}"
    print(f"{'HTML size (mean / max bytes)':<46}{sizes:>12}")
    print(f"{'peak Python memory (tracemalloc, MB)':<46}{peak_mb:>12.1f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak RSS of this process (MB)':<46}{rss:>12.1f}")
    ok = ms(html) <= HTML_TARGET_MS
    print(f"target ≤ {HTML_TARGET_MS} ms per HTML variant: {'MET' if ok else 'MISSED'} ({ms(html):.3f} ms)")
    if reference is None:
        print("reference MJML (npm, Node): not available in this run")
        return ok
    plain, inlined = reference["as_is"], reference["with_inline"]
    print(
        f"\nreference: npm mjml {plain['version']} on Node {plain['node']}, one process each,"
        f" {plain['n']} MJML sources;"
        f" peak RSS {max(plain['rss_mb'], inlined['rss_mb']):.0f} MB"
    )
    print("  as is: the exact MJML mjml-python compiled (no inlining)")
    print("  with inline: the same plus our inline CSS as <mj-style inline> (juice inlines it: the same job as ours)")
    ref_plain = per_email(plain, wall)
    ref_inline = per_email(inlined, wall)
    ours_compile = ms(timings.mjml)
    ours_compile_inline = ms([a + b for a, b in zip(timings.mjml, timings.inline, strict=True)])
    print(f"{'compiler':<52}{'ms/email':>10}{'speed-up':>11}")
    rows = [
        ("reference mjml, as is", ref_plain, ref_plain),
        ("mjml-python, as is", ours_compile, ref_plain),
        ("reference mjml, with inline", ref_inline, ref_inline),
        ("mjml-python + css-inline + post-process", ours_compile_inline, ref_inline),
        ("our full HTML variant (jinja2 + the above)", ms(html), ref_inline),
    ]
    for name, value, baseline in rows:
        print(f"{name:<52}{value:>10.3f}{baseline / value:>10.1f}×")
    speedup = ref_inline / ms(html)
    met = speedup >= SPEEDUP_TARGET
    verdict = "MET" if met else "MISSED"
    print(
        f"target ≥ {SPEEDUP_TARGET:.0f}× faster than reference per email (full variant vs reference with inline): "
        f"{verdict} ({speedup:.1f}×)"
    )
    return ok and met


def per_email(result: dict[str, float], wall: bool) -> float:
    return (result["total_ms"] if wall else result["cpu_ms"]) / result["n"]


def with_inline_style(sources: list[str]) -> list[str]:
    css = re.sub(r"/\*.*?\*/", "", (TEMPLATES / INLINE_CSS).read_text(encoding="utf-8"), flags=re.DOTALL)
    block = f'<mj-style inline="inline">{css}</mj-style>'
    return [source.replace("<mj-head>", "<mj-head>" + block, 1) for source in sources]


def reference_runs(sources: list[str]) -> dict[str, dict[str, float]] | None:
    plain = run_reference(sources)
    inlined = run_reference(with_inline_style(sources)) if plain else None
    return {"as_is": plain, "with_inline": inlined} if plain and inlined else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10 briefings instead of 100 (quick check)")
    parser.add_argument("--briefings", type=int, default=None, help="number of synthetic briefings")
    parser.add_argument("--no-reference", action="store_true", help="skip the Node reference compiler")
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time (quiet machines)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    count = args.briefings or (10 if args.small else 100)
    content = load_content(REPO / "content").content
    briefings = synthesise(content.ready, count)
    clock = time.perf_counter if args.wall else time.process_time
    measure(briefings[:2], content, clock)  # warm-up: template compilation, caches
    tracemalloc.start()
    measure(briefings, content, clock)
    peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    # tracemalloc slows Python code; time again without it for the reported figures.
    timings = measure(briefings, content, clock)
    reference = None if args.no_reference else reference_runs(timings.sources)
    report(timings, reference, peak_mb, count, args.wall)


if __name__ == "__main__":
    main()
