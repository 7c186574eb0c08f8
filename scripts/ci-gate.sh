#!/usr/bin/env bash
# The regression gate as a CI job runs it: the GitHub Action (action.yml)
# and the GitLab job in the README call this script, and so does its test
# (cmd/meshbench TestIntegrationCIGate). It builds this checkout (the
# candidate), gets the base's results (a results directory given, or a run
# of the base ref built in a git worktree), runs the scenario with the
# candidate, compares, appends the Markdown verdict to the step summary,
# writes JUnit, and exits by the verdict: 0 pass, 1 fail, 3 inconclusive
# (as MESHBENCH_INCONCLUSIVE says); 2 bad input, 4 any other error (a
# build or a run that failed): 1 is only ever the gate's verdict.
#
# Environment (the action's inputs):
#   MESHBENCH_SRC           the meshbench tree to build as the candidate
#                           (default: the one holding this script)
#   MESHBENCH_BASE_REF      git ref to build and run as the base (needs the
#                           history: actions/checkout with fetch-depth: 0)
#   MESHBENCH_BASE_RESULTS  or: the base's results (a results directory, or
#                           SMPS results, e.g. the last nightly's)
#   MESHBENCH_SCENARIO      scenario file or built-in name (default: gate)
#   MESHBENCH_RUN_ARGS      more arguments for both runs (e.g. --trials 12),
#                           split on whitespace (no quoting)
#   MESHBENCH_GATE          gate rules or name (default: auto)
#   MESHBENCH_INCONCLUSIVE  inconclusive (exit 3, default), pass or fail
#   MESHBENCH_OUT           working directory (default: meshbench-gate)
#   MESHBENCH_JUNIT         JUnit file (default: $MESHBENCH_OUT/gate.xml)
#   GITHUB_STEP_SUMMARY     where the Markdown goes (default: $MESHBENCH_OUT/gate.md)
#   GITHUB_OUTPUT           where verdict=pass|fail|inconclusive|error (before
#                           the inconclusive policy), results= and junit= go
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

wt=
cleanup() {
  if [ -n "$wt" ]; then git -C "$src" worktree remove --force "$wt" >/dev/null 2>&1 || true; fi
  # Under sudo (the action on a runner with it), hand what was written
  # back to the job's user: the next checkout must be able to remove it.
  if [ -n "${SUDO_UID:-}" ]; then chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$out" "$src/bin" 2>/dev/null || true; fi
}
trap cleanup EXIT
# finish CODE VERDICT: the outputs, then the exit.
finish() {
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    { echo "verdict=$2"; [ -z "${cand:-}" ] || echo "results=$cand"; [ "$2" = error ] || echo "junit=$junit"; } >> "$GITHUB_OUTPUT"
  fi
  exit "$1"
}
bad() { echo "ci-gate: $*" >&2; finish 2 error; }
# fail_run MSG: a command other than the gate failed: exit 2 where it
# said its input was bad, else 4 (an error, never the gate's 1).
fail_run() { local c=$?; echo "ci-gate: $* (exit $c)" >&2; if [ "$c" -eq 2 ]; then finish 2 error; fi; finish 4 error; }

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
if [ -n "${MESHBENCH_BASE_REF:-}" ] && ! git -C "$src" rev-parse --verify --quiet "$MESHBENCH_BASE_REF^{commit}" >/dev/null; then
  bad "MESHBENCH_BASE_REF=$MESHBENCH_BASE_REF is not a commit of this checkout (fetch it: actions/checkout with fetch-depth: 0)"
fi

# The candidate: this checkout. `make build` installs what is missing.
make -C "$src" --no-print-directory build >&2 || fail_run "building the candidate failed"
cand_bin=$src/bin/meshbench
# The scenario is checked before anything runs (run arguments are checked
# by the first run, which starts nothing on bad input).
"$cand_bin" scenarios validate "$scenario" >&2 || fail_run "scenario $scenario"

base=${MESHBENCH_BASE_RESULTS:-}
if [ -z "$base" ]; then
  ref=$MESHBENCH_BASE_REF
  wt=$out/base-src
  git -C "$src" worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git -C "$src" worktree add --detach "$wt" "$ref" >&2 || fail_run "git worktree add $ref"
  make -C "$wt" --no-print-directory build >&2 || fail_run "building the base ($ref) failed"
  base=$out/base
  rm -rf "$base"
  echo "ci-gate: base $ref: meshbench run $scenario ${run_args[*]}" >&2
  "$wt/bin/meshbench" run "$scenario" "${run_args[@]}" --out "$base" >&2 || fail_run "the base's run failed"
fi

cand=$out/candidate
rm -rf "$cand"
echo "ci-gate: candidate: meshbench run $scenario ${run_args[*]}" >&2
"$cand_bin" run "$scenario" "${run_args[@]}" --out "$cand" >&2 || fail_run "the candidate's run failed"

compare() { "$cand_bin" compare "$base" "$cand" --gate "$gate" "$@"; }
# The verdict itself, before the inconclusive policy: the output says it.
verdict=error
compare --inconclusive inconclusive >&2 && verdict=pass || case $? in 1) verdict=fail ;; 2) finish 2 error ;; 3) verdict=inconclusive ;; esac
[ "$verdict" != error ] || fail_run "compare failed"
rc=0
compare --inconclusive "$policy" --format md --out "$out/gate.md.part" || rc=$?
compare --inconclusive "$policy" --format junit --out "$junit" || [ $? -ne 2 ] || fail_run "writing JUnit to $junit"
cat "$out/gate.md.part" >> "$summary" || fail_run "appending to the step summary $summary"
rm -f "$out/gate.md.part"
echo "ci-gate: gate $verdict (exit $rc under --inconclusive $policy); summary in $summary, JUnit in $junit" >&2
finish "$rc" "$verdict"
