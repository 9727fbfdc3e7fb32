# Sourced by scripts/demo and scripts/test: make .venv (Python 3.11+) and install the project
# into it with the extras given in $EXTRAS. Re-runs are quick: pip skips what is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
SPEC="."
[ -n "${EXTRAS:-}" ] && SPEC=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$SPEC"
