#!/usr/bin/env bash
# ruff with the rules in pyproject.toml ([tool.ruff]); extra arguments go to `ruff check`
# (e.g. `bash scripts/lint.sh odctl tests/odctl`, or `--statistics`). ruff comes with the
# test extra (.venv, made by scripts/setup-dev.sh); a ruff on PATH is used otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF=.venv/bin/ruff
[ -x "$RUFF" ] || RUFF=ruff
if [ $# -eq 0 ]; then
    set -- .
fi
exec "$RUFF" check "$@"
