#!/usr/bin/env bash
# The package as a user gets it: build the wheel from the working tree, install it with its runtime
# dependencies only (no dev extra, which could hide a missing one) into a fresh venv outside the checkout,
# then in an empty folder `briefing init` + `briefing run`: emails must land in the outbox and the archive
# must be written. Also: a PostgreSQL URL on this install (no `postgres` extra) is a clear exit-2 error.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

# Build from a copy (tracked and new files): setuptools' build/ folder in the checkout could leak old files.
mkdir -p "$work/src"
(cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 tar -cf -) | tar -xf - -C "$work/src"
"$python" -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/briefing_pipeline-*.whl)"

# Every file of templates/ and content/ is in the wheel, where flows/core/resources.py looks for it, and so is every
# file of the store's migrations (a store cannot be created or migrated without them).
"$python" - "$wheel" "$repo" <<'EOF'
import subprocess, sys, zipfile
wheel, repo = sys.argv[1], sys.argv[2]
names = set(zipfile.ZipFile(wheel).namelist())
def tracked(*paths):
    return subprocess.run(["git", "-C", repo, "ls-files", *paths], capture_output=True, text=True,
                          check=True).stdout.split()
expected = {f"flows/templates/{p[len('templates/'):]}" if p.startswith("templates/")
            else f"flows/sample_content/{p[len('content/'):]}" for p in tracked("templates", "content")}
migrations = set(tracked("flows/core/store/migrations"))
missing = sorted((expected | migrations) - names)
if missing or not expected or not any(m.endswith("_baseline.py") for m in migrations):
    sys.exit(f"check_wheel: {len(missing)} run-time files missing from {wheel}: {missing[:10]}")
print(f"check_wheel: {wheel.rsplit('/', 1)[-1]} carries all {len(expected)} template and sample-content files"
      f" and all {len(migrations)} files of the store's migrations")
EOF

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$wheel"

mkdir "$work/site"
cd "$work/site"
# A user's shell: no PYTHONPATH into the checkout, no BRIEFING_* settings, Prefect state in a scratch folder.
run() {
  env -u PYTHONPATH $(env | sed -n 's/^\(BRIEFING_[A-Z0-9_]*\)=.*/-u \1/p') \
    PREFECT_HOME="$work/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false "$@"
}
installed="$(run "$work/venv/bin/python" -c 'import flows; print(flows.__file__)')"
case "$installed" in
  "$work/venv/"*) ;;
  *) echo "check_wheel: flows was imported from $installed, not from the installed wheel" >&2; exit 1 ;;
esac

run "$work/venv/bin/briefing" init my-briefing
cd my-briefing
run "$work/venv/bin/briefing" --quiet run
emails="$(find outputs/outbox -name '*.eml' | wc -l)"
test "$emails" -gt 0 || { echo "check_wheel: no email in outputs/outbox" >&2; exit 1; }
for page in outputs/archive/index.md outputs/archive/index.html outputs/archive/feed.xml; do
  test -s "$page" || { echo "check_wheel: $page was not written" >&2; exit 1; }
done
pages="$(find outputs/archive -name '*.html' | wc -l)"
echo "check_wheel: briefing init + briefing run from the wheel: $emails emails in the outbox, $pages archive pages"

# Without the postgres extra, psycopg is absent: a PostgreSQL URL must say which extra to install.
if run "$work/venv/bin/python" -c 'import psycopg' 2>/dev/null; then
  echo "check_wheel: psycopg is installed without the postgres extra; the missing-driver check cannot run" >&2
  exit 1
fi
set +e
message="$(run env BRIEFING_DATABASE_URL=postgresql+psycopg://briefing@127.0.0.1:9/briefing \
  "$work/venv/bin/briefing" status 2>&1)"
code=$?
set -e
if [ "$code" != 2 ] || [[ "$message" != *"pip install 'briefing-pipeline[postgres]'"* ]]; then
  echo "check_wheel: a PostgreSQL URL without psycopg gave exit $code: $message" >&2
  exit 1
fi
echo "check_wheel: PostgreSQL URL without the postgres extra: exit 2, names the extra"
