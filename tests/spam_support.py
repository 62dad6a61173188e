"""Score a raw RFC 5322 message with SpamAssassin, offline: Debian's `spamassassin` with local tests only.

The exact command (one process per message, about 2 s each on these machines; no spamd daemon needed):

    HOME=<empty temp dir> spamassassin -L -x --configpath=/usr/share/spamassassin \\
        --cf='report_safe 0' --cf='use_bayes 0' --cf='bayes_auto_learn 0' \\
        --cf='add_header all Briefing-Result score=_SCORE_ required=_REQD_ tests=_TESTSSCORES(,)_' < message.eml

- `-L` (--local): local tests only — no DNSBL, no URIBL, no Razor/Pyzor/DCC, no network at all; SpamAssassin then
  uses its score set 0 (no network, no Bayes).
- `--configpath=/usr/share/spamassassin`: the rules the Debian package ships, never rules a `sa-update` may have
  left under /var/lib/spamassassin on some machine, so every machine scores with the same rules. The site
  configuration (/etc/spamassassin: the plugin `.pre` files and local.cf) is Debian's default.
- `use_bayes 0`, `bayes_auto_learn 0`, `-x` and a throw-away HOME: nothing is learnt or kept between runs, so a
  score never depends on what was scored before. (SpamAssassin still makes an empty `.spamassassin` folder in the
  home directory of the user's passwd entry, whatever HOME says: its "global state dir", used only by network rules.)
- `report_safe 0`: the message comes back with headers added, never wrapped into a report; the `Briefing-Result`
  header lists every rule hit with its score (`_TESTSSCORES_`), from which the exact score is summed (SpamAssassin
  rounds `_SCORE_` to one decimal).

`require_spamassassin()` fails under CI (scripts/test.sh installs Debian's `spamassassin` as root) and skips elsewhere.
"""

from __future__ import annotations

import email
import subprocess
import tempfile
from dataclasses import dataclass
from email import policy

from tests.tool_support import require_executable

SPAMASSASSIN = "spamassassin"
PACKAGED_RULES = "/usr/share/spamassassin"
RESULT_HEADER = "X-Spam-Briefing-Result"
HOW_TO_GET_IT = "install Debian's `spamassassin` package (scripts/test.sh does, as root)"
TIMEOUT = 120  # seconds; a message normally takes 2 s


@dataclass(frozen=True)
class SpamReport:
    """SpamAssassin's verdict on one message: `score` summed from `rules` (rule → points), `reported` as it printed
    it (one decimal), `required` the spam threshold (5.0 by default)."""

    score: float
    reported: float
    required: float
    rules: dict[str, float]

    @property
    def scoring_rules(self) -> dict[str, float]:
        """The rules that moved the score (informational rules score ±0.001 or 0)."""
        return {name: points for name, points in self.rules.items() if abs(points) >= 0.01}

    def describe(self) -> str:
        hits = ", ".join(f"{name}={points:g}" for name, points in sorted(self.rules.items()))
        return f"{self.score:.3f} (required {self.required:g}): {hits}"


def require_spamassassin() -> str:
    return require_executable(SPAMASSASSIN, HOW_TO_GET_IT)


def command(executable: str = SPAMASSASSIN) -> list[str]:
    return [
        executable,
        "-L",
        "-x",
        f"--configpath={PACKAGED_RULES}",
        "--cf=report_safe 0",
        "--cf=use_bayes 0",
        "--cf=bayes_auto_learn 0",
        "--cf=add_header all Briefing-Result score=_SCORE_ required=_REQD_ tests=_TESTSSCORES(,)_",
    ]


def parse_result(value: str) -> SpamReport:
    """The `Briefing-Result` header's value: `score=1.2 required=5.0 tests=RULE=0.5,OTHER=0.001`."""
    head, _, tests = " ".join(value.split()).partition("tests=")
    fields = dict(part.split("=", 1) for part in head.split() if "=" in part)
    rules: dict[str, float] = {}
    for item in "".join(tests.split()).split(","):  # the header is folded after commas
        name, _, points = item.strip().partition("=")
        if name and name != "none":
            rules[name] = float(points)
    return SpamReport(
        score=round(sum(rules.values()), 3),
        reported=float(fields["score"]),
        required=float(fields["required"]),
        rules=rules,
    )


def score_message(data: bytes, executable: str | None = None) -> SpamReport:
    """Score one raw message (bytes as they would go on the wire). Raises AssertionError with SpamAssassin's
    output when it fails or gives no result."""
    executable = executable or require_spamassassin()
    with tempfile.TemporaryDirectory(prefix="briefing-spamassassin-") as home:
        done = subprocess.run(
            command(executable),
            input=data,
            capture_output=True,
            timeout=TIMEOUT,
            env={"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            check=False,
        )
    if done.returncode != 0:
        raise AssertionError(f"spamassassin exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    message = email.message_from_bytes(done.stdout, policy=policy.compat32)
    value = message.get(RESULT_HEADER)
    if value is None:
        raise AssertionError(f"spamassassin gave no {RESULT_HEADER} header: {done.stderr.decode(errors='replace')}")
    return parse_result(str(value))
