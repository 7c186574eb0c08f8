#!/usr/bin/env bash
# Measures the regression gate on this machine: how often `meshbench compare
# --gate` fails when nothing changed (A/A: two runs of the same
# configuration), and how often it catches a known regression (A/B: B adds
# service time in the server, which raises the sidecar row's p99 by about
# 10%). Runs alternate A, B, A, B... so that machine drift hits both alike.
#
#   RUNS=8 DELAY=120us scripts/gate-validity.sh
#
# Each run is the built-in `gate` scenario (8 trials of 3 s for the
# baseline and the own sidecar, about 80 s). The results stay in OUT; the
# summary (scripts/gatestats) is printed and saved as OUT/gatestats.txt.
set -euo pipefail
RUNS=${RUNS:-8}
DELAY=${DELAY:-120us}
GATE=${GATE:-p99:+5%,p50:+5%,cpu:+10%,errors:0}
BIN=${BIN:-bin/meshbench}
OUT=${OUT:-gate-validity-$(date -u +%Y%m%dT%H%M%SZ)}

mkdir -p "$OUT"
"$BIN" scenarios show gate > "$OUT/a.yaml"
sed -e "s/serviceTime: 0s/serviceTime: $DELAY/" -e 's/^name: gate$/name: gate-regressed/' "$OUT/a.yaml" > "$OUT/b.yaml"
grep -q "serviceTime: $DELAY" "$OUT/b.yaml" || { echo "could not inject the service time into $OUT/b.yaml" >&2; exit 1; }
for i in $(seq 1 "$RUNS"); do
  for side in a b; do
    [ -e "$OUT/$side-$i/summary.txt" ] && continue # finished earlier: resume
    rm -rf "${OUT:?}/$side-$i"
    echo "run $side-$i of $RUNS" >&2
    "$BIN" run "$OUT/$side.yaml" --out "$OUT/$side-$i" > "$OUT/$side-$i.log" 2>&1 || { echo "run $side-$i failed: see $OUT/$side-$i.log" >&2; exit 1; }
  done
done
go run ./scripts/gatestats -gate "$GATE" -row meshbench/sidecar@1000 "$OUT" | tee "$OUT/gatestats.txt"
