#!/usr/bin/env bash
# The regression gate as a CI job runs it: the GitHub Action (action.yml)
# and the GitLab job in the README call this script, and so does its test
# (cmd/meshbench TestIntegrationCIGate). It builds this checkout (the
# candidate), gets the base's results (a results directory given, or a run
# of the base ref built in a git worktree), runs the scenario with the
# candidate, compares, appends the Markdown verdict to the step summary,
# writes JUnit, and exits by the verdict: 0 pass, 1 fail, 2 bad input, 3
# inconclusive (as MESHBENCH_INCONCLUSIVE says).
#
# Environment (the action's inputs):
#   MESHBENCH_SRC           the meshbench tree to build as the candidate
#                           (default: the one holding this script)
#   MESHBENCH_BASE_REF      git ref to build and run as the base (needs the
#                           history: actions/checkout with fetch-depth: 0)
#   MESHBENCH_BASE_RESULTS  or: the base's results (a results directory, or
#                           SMPS results, e.g. the last nightly's)
#   MESHBENCH_SCENARIO      scenario file or built-in name (default: gate)
#   MESHBENCH_RUN_ARGS      more arguments for both runs (e.g. --trials 12)
#   MESHBENCH_GATE          gate rules or name (default: auto)
#   MESHBENCH_INCONCLUSIVE  inconclusive (exit 3, default), pass or fail
#   MESHBENCH_OUT           working directory (default: meshbench-gate)
#   MESHBENCH_JUNIT         JUnit file (default: $MESHBENCH_OUT/gate.xml)
#   GITHUB_STEP_SUMMARY     where the Markdown goes (default: $MESHBENCH_OUT/gate.md)
#   GITHUB_OUTPUT           where verdict=... and results=... go, when set
set -euo pipefail

# The meshbench tree to build as the candidate: the workspace the job
# checked out (MESHBENCH_SRC), else the one this script is in.
src=$(cd "${MESHBENCH_SRC:-$(dirname "$0")/..}" && pwd)
scenario=${MESHBENCH_SCENARIO:-gate}
gate=${MESHBENCH_GATE:-auto}
policy=${MESHBENCH_INCONCLUSIVE:-inconclusive}
out=$(mkdir -p "${MESHBENCH_OUT:-meshbench-gate}" && cd "${MESHBENCH_OUT:-meshbench-gate}" && pwd)
junit=${MESHBENCH_JUNIT:-$out/gate.xml}
summary=${GITHUB_STEP_SUMMARY:-$out/gate.md}
read -r -a run_args <<< "${MESHBENCH_RUN_ARGS:-}"

bad() { echo "ci-gate: $*" >&2; exit 2; }
if [ -n "${MESHBENCH_BASE_REF:-}" ] && [ -n "${MESHBENCH_BASE_RESULTS:-}" ]; then
  bad "give MESHBENCH_BASE_REF or MESHBENCH_BASE_RESULTS, not both"
fi
if [ -z "${MESHBENCH_BASE_REF:-}" ] && [ -z "${MESHBENCH_BASE_RESULTS:-}" ]; then
  bad "no base: give MESHBENCH_BASE_REF (a git ref to build and run) or MESHBENCH_BASE_RESULTS (its results)"
fi
case "$policy" in inconclusive|pass|fail) ;; *) bad "MESHBENCH_INCONCLUSIVE=$policy: want inconclusive, pass or fail" ;; esac
if [ -n "${MESHBENCH_BASE_RESULTS:-}" ] && [ ! -e "$MESHBENCH_BASE_RESULTS" ]; then
  bad "MESHBENCH_BASE_RESULTS=$MESHBENCH_BASE_RESULTS: no such file or directory"
fi

# The candidate: this checkout. `make build` installs what is missing.
make -C "$src" --no-print-directory build >&2 || { echo "ci-gate: building the candidate failed" >&2; exit 1; }
cand_bin=$src/bin/meshbench
# Check the scenario and arguments before anything runs (exit 2 on bad input).
"$cand_bin" scenarios validate "$scenario" >&2

base=${MESHBENCH_BASE_RESULTS:-}
if [ -z "$base" ]; then
  ref=$MESHBENCH_BASE_REF
  git -C "$src" rev-parse --verify --quiet "$ref^{commit}" >/dev/null ||
    bad "MESHBENCH_BASE_REF=$ref is not a commit of this checkout (fetch it: actions/checkout with fetch-depth: 0)"
  wt=$out/base-src
  git -C "$src" worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git -C "$src" worktree add --detach "$wt" "$ref" >&2
  trap 'git -C "$src" worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
  make -C "$wt" --no-print-directory build >&2 || { echo "ci-gate: building the base ($ref) failed" >&2; exit 1; }
  base=$out/base
  rm -rf "$base"
  echo "ci-gate: base $ref: meshbench run $scenario ${run_args[*]}" >&2
  "$wt/bin/meshbench" run "$scenario" "${run_args[@]}" --out "$base" >&2
fi

cand=$out/candidate
rm -rf "$cand"
echo "ci-gate: candidate: meshbench run $scenario ${run_args[*]}" >&2
"$cand_bin" run "$scenario" "${run_args[@]}" --out "$cand" >&2

rc=0
"$cand_bin" compare "$base" "$cand" --gate "$gate" --inconclusive "$policy" --format md >> "$summary" || rc=$?
if [ "$rc" -eq 2 ]; then
  exit 2 # compare said why
fi
"$cand_bin" compare "$base" "$cand" --gate "$gate" --inconclusive "$policy" --format junit --out "$junit" || true
"$cand_bin" compare "$base" "$cand" --gate "$gate" --inconclusive "$policy" >&2 || true
case "$rc" in 0) verdict=pass ;; 1) verdict=fail ;; 3) verdict=inconclusive ;; *) verdict=error ;; esac
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  { echo "verdict=$verdict"; echo "results=$cand"; echo "junit=$junit"; } >> "$GITHUB_OUTPUT"
fi
echo "ci-gate: gate $verdict (exit $rc); summary in $summary, JUnit in $junit" >&2
exit "$rc"
