#!/usr/bin/env bash
# The nightly resilience run: every experiment repeated, judged against the last nights' figures, and
# tonight's journal, report and figures kept for the next night. Run it from the repository's root, on a
# machine with Docker (kind's stock node image when a registry can be reached; the air-gapped image
# otherwise: the same command either way). The CI system keeps $NIGHTS between runs (an artefact or a
# cache) and publishes $NIGHTS/<tonight>/chaoskit-report.html.
#
#   NIGHTS=nights REPEAT=5 KEEP=14 WORKERS=2 examples/ci/nightly.sh
#
# WORKERS > 1 runs the experiments on that many pytest-xdist workers (README: "Parallel experiments").
#
# Exit status: pytest's (0 all passed; 1 an experiment failed, regressed or was flaky-failed).
set -euo pipefail
cd "$(dirname "$0")/../.."

NIGHTS=${NIGHTS:-nights}
REPEAT=${REPEAT:-5}
KEEP=${KEEP:-14}               # how many earlier nights make the baseline
WORKERS=${WORKERS:-1}          # pytest -n: experiments on this many worker processes at once
EXPERIMENTS=${EXPERIMENTS:-experiments/}
TONIGHT="$NIGHTS/$(date -u +%Y%m%dT%H%M%SZ)"

make cluster
mkdir -p "$TONIGHT" "$NIGHTS/baseline"
# The baseline: the figures of the last $KEEP nights (none on the first night).
rm -f "$NIGHTS"/baseline/*.json
for night in $(ls -1d "$NIGHTS"/2*/ 2>/dev/null | sort | tail -n "$KEEP"); do
    [ -f "$night/baseline.json" ] && cp "$night/baseline.json" "$NIGHTS/baseline/$(basename "$night").json"
done
args=(--chaos-repeat "$REPEAT" --chaos-report-dir "$TONIGHT" --chaos-baseline-write "$TONIGHT/baseline.json"
      --junitxml "$TONIGHT/experiments.xml")
if [ "$WORKERS" -gt 1 ]; then
    args+=(-n "$WORKERS")
fi
if ls "$NIGHTS"/baseline/*.json >/dev/null 2>&1; then
    args+=(--chaos-baseline "$NIGHTS/baseline")
fi
status=0
.venv/bin/pytest "$EXPERIMENTS" "${args[@]}" ${PYTEST_ARGS:-} || status=$?
# Tonight again under a fixed name, for the CI system to publish; nights beyond the baseline's dropped.
rm -rf "$NIGHTS/tonight" && cp -r "$TONIGHT" "$NIGHTS/tonight"
ls -1d "$NIGHTS"/2*/ | sort | head -n -"$((KEEP + 1))" | xargs -r rm -rf
echo "nightly: tonight's reports in $TONIGHT (exit $status)"
exit "$status"
