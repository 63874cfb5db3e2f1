#!/usr/bin/env bash
# The nightly resilience run: every experiment repeated, judged against the last nights' figures, and
# tonight's journal, report and figures kept for the next night. Run it from the repository's root, on a
# machine with Docker (kind's stock node image when a registry can be reached; the air-gapped image
# otherwise: the same command either way). The CI system keeps $NIGHTS between runs (an artefact or a
# cache) and publishes $NIGHTS/<tonight>/chaoskit-report.html.
#
#   NIGHTS=nights REPEAT=5 KEEP=14 WORKERS=2 examples/ci/nightly.sh [PYTEST ARGS...]
#
# WORKERS > 1 runs the experiments on that many pytest-xdist workers (README: "Parallel experiments").
# EXPERIMENTS and PYTEST_ARGS are split as a shell splits words, quotes kept, and never evaluated:
# PYTEST_ARGS='-k "kill or partition"' passes -k and "kill or partition"; arguments after the script's name
# are passed to pytest as they are.
#
# The cluster: the recipe creates the kind cluster when none runs, and never deletes or recreates one that
# does (`chaoskit cluster up --keep-existing`): a cluster another job made, or shared by several runners, is
# used as it is. With PROVIDER=existing (and CONTEXT=...) it creates nothing and runs on that cluster.
#
# Exit status: pytest's (0 all passed; 1 an experiment failed, regressed or was flaky-failed).
set -euo pipefail
cd "$(dirname "$0")/../.."

NIGHTS=${NIGHTS:-nights}
REPEAT=${REPEAT:-5}
KEEP=${KEEP:-14}               # how many earlier nights make the baseline
WORKERS=${WORKERS:-1}          # pytest -n: experiments on this many worker processes at once
EXPERIMENTS=${EXPERIMENTS:-experiments/}
PROVIDER=${PROVIDER:-kind}
TONIGHT="$NIGHTS/$(date -u +%Y%m%dT%H%M%SZ)"

make venv  # first: the words below are split by the venv's Python
# Words as a shell splits them, with their quotes, and nothing run: no eval of the CI system's variables.
words() { .venv/bin/python -c 'import shlex, sys; sys.stdout.write("".join(w + "\0" for w in shlex.split(sys.argv[1])))' "$1"; }
words "$EXPERIMENTS" >/dev/null && words "${PYTEST_ARGS:-}" >/dev/null || { echo "nightly: EXPERIMENTS or PYTEST_ARGS has an unclosed quote" >&2; exit 2; }
mapfile -d '' -t experiments < <(words "$EXPERIMENTS")
mapfile -d '' -t extra < <(words "${PYTEST_ARGS:-}")

cluster_args=()
if [ "$PROVIDER" = existing ]; then
    cluster_args=(--chaos-provider existing ${CONTEXT:+--chaos-kube-context "$CONTEXT"})
else
    .venv/bin/chaoskit cluster up --keep-existing
fi
mkdir -p "$TONIGHT" "$NIGHTS/baseline"
# The baseline: the figures of the last $KEEP nights (none on the first night).
rm -f "$NIGHTS"/baseline/*.json
for night in $(ls -1d "$NIGHTS"/2*/ 2>/dev/null | sort | tail -n "$KEEP"); do
    [ -f "$night/baseline.json" ] && cp "$night/baseline.json" "$NIGHTS/baseline/$(basename "$night").json"
done
args=("${cluster_args[@]}" --chaos-repeat "$REPEAT" --chaos-report-dir "$TONIGHT" --chaos-baseline-write "$TONIGHT/baseline.json"
      --junitxml "$TONIGHT/experiments.xml")
if [ "$WORKERS" -gt 1 ]; then
    args+=(-n "$WORKERS")
fi
if ls "$NIGHTS"/baseline/*.json >/dev/null 2>&1; then
    args+=(--chaos-baseline "$NIGHTS/baseline")
fi
status=0
.venv/bin/pytest "${experiments[@]}" "${args[@]}" "${extra[@]}" "$@" || status=$?
# Tonight again under a fixed name, for the CI system to publish; nights beyond the baseline's dropped.
rm -rf "$NIGHTS/tonight" && cp -r "$TONIGHT" "$NIGHTS/tonight"
ls -1d "$NIGHTS"/2*/ | sort | head -n -"$((KEEP + 1))" | xargs -r rm -rf
echo "nightly: tonight's reports in $TONIGHT (exit $status)"
exit "$status"
