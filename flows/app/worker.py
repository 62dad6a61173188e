"""One deliverer without Prefect: `python -m flows.app.worker SLUG [--audience ID] [--resend-uncertain]`.

Start it on as many machines as you like against one shared store (docs/scaling.md): the send ledger hands each
recipient to one of them, and with BRIEFING_SMTP_RATE and a Prefect API they share one global send rate. It
sends through the same edition as every other path (`flows.edition.deliver_slug`), prints a JSON summary on
stdout, and exits with the error's status when it cannot send (3 for a briefing held back).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from flows.core.errors import BriefingError
from flows.edition import deliver_slug

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.app.worker", description=deliver_slug.__doc__)
    parser.add_argument("slug")
    parser.add_argument("--audience", action="append", dest="audiences")
    parser.add_argument("--resend-uncertain", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    try:
        summary = deliver_slug(args.slug, audiences=args.audiences, resend_uncertain=args.resend_uncertain)
    except BriefingError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
