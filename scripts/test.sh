#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# System packages (Chromium for screenshots/preview tests, PostgreSQL for store tests, CJK fonts, Dovecot for the
# mailbox tests, OpenDKIM's tools for the DKIM tests, SpamAssassin and npm for the email quality tests) come from
# Debian when we are root; Python packages go into .venv, axe-core (npm) into tests/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v pg_ctlcluster >/dev/null || [ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql)
fc-list 2>/dev/null | grep -qi "noto sans cjk" || need_apt+=(fonts-noto-cjk)
command -v git >/dev/null || need_apt+=(git)
# Dovecot: the collect tests run a real IMAP server (tests/mailbox_support.py); Debian's package tries to start
# a system service, which policy-rc.d or the lack of an init system stops: the tests start their own.
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/dovecot-lda ] || need_apt+=(dovecot-imapd)
# OpenDKIM's opendkim-testmsg: the second, independent verifier of our DKIM signatures (tests/dkim_support.py)
[ -x /usr/sbin/opendkim-testmsg ] || command -v opendkim-testmsg >/dev/null || need_apt+=(opendkim-tools)
# SpamAssassin scores every sample email offline (local rules only, tests/spam_support.py)
command -v spamassassin >/dev/null || need_apt+=(spamassassin)
# Node.js and npm install axe-core, which the accessibility tests inject into Chromium (tests/a11y_support.py)
command -v npm >/dev/null || need_apt+=(npm)
# the simulated internet of tests/netns_support.py: network namespaces (unshare, nsenter, mount) and `ip`
{ command -v unshare && command -v nsenter; } >/dev/null || need_apt+=(util-linux)
command -v mount >/dev/null || need_apt+=(mount)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "warning: missing system packages (${need_apt[*]}); tests that need them will fail" >&2
  fi
fi

# PostgreSQL tests start their own throwaway cluster (tests/pg_support.py); as root it runs as the `postgres` OS
# user that the Debian package creates. BRIEFING_TEST_POSTGRES_URL points them at an existing server instead.
if [ -z "${BRIEFING_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
  echo "warning: no 'postgres' OS user: the PostgreSQL tests cannot start their server" >&2
fi

# axe-core at the version tests/package-lock.json pins, into tests/node_modules (git-ignored)
if [ ! -f tests/node_modules/axe-core/axe.min.js ]; then
  if command -v npm >/dev/null; then
    npm ci --prefix tests --no-audit --no-fund --loglevel=error
  else
    echo "warning: npm is missing; the accessibility tests need axe-core (npm ci --prefix tests)" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[dev]'

export PREFECT_SERVER_ANALYTICS_ENABLED=false
ruff check flows tests benchmarks
mypy  # over flows/, configured in pyproject.toml; must report no issues

# The package as a user installs it: wheel → fresh venv outside the checkout → `briefing init` + `briefing run`.
bash scripts/check_wheel.sh

# Two workers (pytest-xdist): each has its own PostgreSQL cluster and Prefect harness; about half the wall time.
python -m pytest -q -p no:cacheprovider -n 2 "$@"
