#!/bin/bash
# The gate on a contended candidate: the same generator, base run quiet, head run while two busy loops hold both CPUs.
# usage: PYTHON=.venv/bin/python benchmarks/contended_gate_demo.sh [WORKDIR]
set -u
W=${1:-/tmp/contended}; rm -rf $W; mkdir -p $W
PY=$(realpath "$(command -v "${PYTHON:-python}")")
cd "$(dirname "$0")/.." && $PY - "$W" <<'PYEOF'
import sys; from pathlib import Path
sys.path.insert(0, ".")
from tests.test_identity import make_project
for side in ("base", "head"):
    root = make_project(Path(sys.argv[1]) / side, "pkg_busy", width=512)
    p = root / "bench" / "ci.toml"
    p.write_text(p.read_text().replace("min_runs = 5", "min_runs = 5\nrounds = 5"))
PYEOF
cd $W/base && $PY -m harness run --suite ci --out $W/runs/base --cache $W/cache --no-progress 2>&1 | grep "jobs:"
for i in 1 2; do $PY -c "while True: pass" & done
cd $W/head && $PY -m harness run --suite ci --out $W/runs/head --cache $W/cache --no-progress 2>&1 | grep "jobs:"
kill %1 %2
cd $W
echo "--- gate (default)"; $PY -m harness gate --baseline runs/base --candidate runs/head --markdown $W/summary.md; echo "exit $?"
head -3 $W/summary.md
echo "--- gate --fail-on-unjudged"; $PY -m harness gate --baseline runs/base --candidate runs/head --fail-on-unjudged --markdown $W/summary2.md --junit $W/junit.xml; echo "exit $?"
head -1 $W/summary2.md; grep -o 'failures="[0-9]*"\|skipped="[0-9]*"' $W/junit.xml | head -2
