#!/bin/bash
# The user's loop (issue 30): run, edit forward to return zeros, run again (one cache); then the CI template's PR flow
# with one shared cache (head 16384 wide first, base 8 wide), harness ab, harness gate.
# usage: PYTHON=.venv/bin/python benchmarks/stale_cache_repro.sh CODE_ROOT WORKDIR   (CODE_ROOT: the harness checkout to test)
CODE=$1; W=$2; rm -rf $W; mkdir -p $W
PY=$(realpath "$(command -v "${PYTHON:-python}")")
export PYTHONPATH=$CODE
cd "$(dirname "$0")/.." && $PY - "$W" <<'PYEOF'
import sys; from pathlib import Path
sys.path.insert(0, ".")
from tests.test_identity import make_project
make_project(Path(sys.argv[1]) / "proj", "pkg_repro")
make_project(Path(sys.argv[1]) / "head", "pkg_ci", width=16384)
make_project(Path(sys.argv[1]) / "base", "pkg_ci", width=8)
for side in ("head", "base"):
    p = Path(sys.argv[1]) / side / "bench" / "ci.toml"
    p.write_text(p.read_text().replace("min_runs = 5", "min_runs = 5\nrounds = 5"))
PYEOF
cd $W/proj
$PY -c "import harness; print('harness from', harness.__file__)"
$PY -m harness run --suite ci --out $W/r1 --cache $W/cache --no-progress 2>&1 | grep "artifacts built"
sed -i 's/return torch.tanh(/return 0 * torch.tanh(/' pkg_repro/gen.py
$PY -m harness run --suite ci --out $W/r2 --cache $W/cache --no-progress 2>&1 | grep "artifacts built"
$PY - $W <<'PYEOF'
import json, sys, numpy as np
from pathlib import Path
for run in ("r1", "r2"):
    recs = [json.loads(l) for l in open(Path(sys.argv[1]) / run / "results.jsonl")]
    r = next(r for r in recs if r["format"] == "onnx")
    psnr = next(m["value"] for m in r["measurements"] if m["metric"] == "psnr")
    print(run, "artifact", r["artifact_id"], "psnr", round(psnr, 1))
PYEOF
# the CI template's PR flow, one shared cache: head (100x wider hidden layer) first, then base
cd $W/head && $PY -m harness run --suite ci --out $W/runs/head --cache $W/cicache --no-progress 2>&1 | grep "artifacts built"
cd $W/base && $PY -m harness run --suite ci --out $W/runs/base --cache $W/cicache --no-progress 2>&1 | grep "artifacts built"
cd $W && $PY -m harness ab --baseline runs/base --candidate runs/head --out runs/ab --pairs 8 2>&1 | tail -2
$PY -m harness gate --baseline runs/ab/baseline --candidate runs/ab/candidate --markdown $W/summary.md; echo "gate exit $?"
head -12 $W/summary.md
