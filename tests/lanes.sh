#!/usr/bin/env bash
# make test-lanes: the cluster tests in two lanes side by side, each on a kind cluster of its own (the second,
# $CLUSTER_B, publishes NodePorts 30090-30099). Why and how they are split: docs/architecture.md, "make test".
#
#   lane A, cluster $CLUSTER:   every file of tests/cluster but lane B's, the files that judge timings last
#                               (tests/cluster/conftest.py: LATE), so they run once lane B is done;
#   lane B, cluster $CLUSTER_B: the agent's tests and a few more (MORE), then the fault tests through the
#                               existing provider and the agent's crash matrix, then the tests that mostly wait
#                               on nodes (NotReady takes the node-monitor grace period) and the node faults'
#                               crash cases.
#
# Each lane writes its log to reports/lane-a.log and reports/lane-b.log (follow them with tail -f); both are
# printed when both are done. Exits 1 if any step of either lane failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
REPORTS=${REPORTS:-reports}
CLUSTER=${CHAOSKIT_CLUSTER:-chaoskit}
CLUSTER_B=${CLUSTER_B:-$CLUSTER-gw1}
KUBECONFIG_B=${CHAOSKIT_CACHE:-$HOME/.cache/chaoskit}/clusters/$CLUSTER_B/kubeconfig
mkdir -p "$REPORTS"

AGENT=(tests/cluster/test_injector_agent.py tests/cluster/test_agent_security.py tests/cluster/test_agent_kustomize.py)
# Moved here to balance the lanes: lane A's own part then ends as lane B starts waiting on nodes (light on the
# CPU), which is when lane A's timing tests run. Measured 2026-12-07: lane B 29 min, lane A 45 min before.
MORE=(tests/cluster/test_prometheus.py tests/cluster/test_own_image.py tests/cluster/test_blast_radius.py)
NODES=(tests/cluster/test_node_partition.py tests/cluster/test_faults.py tests/cluster/test_pod_crash.py
    tests/cluster/test_node_restart.py tests/cluster/test_turns.py)
FAULT_TESTS=(tests/cluster/test_pod_faults.py tests/cluster/test_process_freeze.py tests/cluster/test_faults.py
    tests/cluster/test_dns_faults.py tests/cluster/test_http_faults.py tests/cluster/test_stress.py
    tests/cluster/test_disk_fill.py tests/cluster/test_pod_crash.py)

lane_a() {
    local ignore=()
    for file in "${AGENT[@]}" "${MORE[@]}" "${NODES[@]}"; do ignore+=("--ignore=$file"); done
    "$BIN/pytest" tests/cluster "${ignore[@]}" -m "not node_fault" --junitxml="$REPORTS/tests.xml" --durations=30
}

lane_b() {
    local failed=0
    export CHAOSKIT_CLUSTER=$CLUSTER_B
    "$BIN/pytest" "${AGENT[@]}" "${MORE[@]}" --junitxml="$REPORTS/tests-agent.xml" || failed=1
    # The fault tests again with this kind cluster taken as a foreign one: no Docker path at all, faults through
    # the injector agent (those through the API alone are the same there, and left out).
    "$BIN/pytest" "${FAULT_TESTS[@]}" -m "not api_only" --chaos-provider existing \
        --chaos-kube-context "kind-$CLUSTER_B" --chaos-kubeconfig "$KUBECONFIG_B" \
        --chaos-allow-context "kind-$CLUSTER_B" --chaos-node-ports 30090-30099 \
        --junitxml="$REPORTS/tests-existing.xml" || failed=1
    # The crash matrix of the faults that enter pods again, through the agent: SIGTERM on every kind there and
    # SIGKILL on one (SIGINT and SIGKILL on every kind through Docker, in lane A: see signals_for in
    # tests/cluster/test_fault_residue.py).
    "$BIN/pytest" tests/cluster/test_fault_residue.py --chaos-injector agent -k "zero_residue" -m "not node_fault" \
        --junitxml="$REPORTS/tests-agent-crash.xml" || failed=1
    "$BIN/pytest" "${NODES[@]}" --junitxml="$REPORTS/tests-nodes.xml" --durations=10 || failed=1
    "$BIN/pytest" tests/cluster/test_fault_residue.py -m node_fault --junitxml="$REPORTS/tests-node-crash.xml" \
        || failed=1
    return $failed
}

echo "cluster tests in two lanes: $CLUSTER and $CLUSTER_B (follow them: tail -f $REPORTS/lane-a.log $REPORTS/lane-b.log)"
started=$(date +%s)
lane_a > "$REPORTS/lane-a.log" 2>&1 &
a=$!
lane_b > "$REPORTS/lane-b.log" 2>&1 &
b=$!
# Ctrl-C or SIGTERM: each lane stops at once (no further step), its running pytest gets SIGTERM and undoes its
# faults, and this script ends once those have exited.
stop() {
    local kids
    kids=$(pgrep -P "$a"; pgrep -P "$b")
    kill -TERM "$a" "$b" 2>/dev/null
    for pid in $kids; do kill -TERM "$pid" 2>/dev/null; done
    for pid in $kids; do while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done; done
    exit 130
}
trap stop INT TERM
wait $b; status_b=$?
echo "lane B ended (exit $status_b) after $(( $(date +%s) - started )) s"
wait $a; status_a=$?
echo "lane A ended (exit $status_a) after $(( $(date +%s) - started )) s"
for lane in a b; do
    echo "===================== lane ${lane^^} ====================="
    cat "$REPORTS/lane-$lane.log"
done
[ "$status_a" -eq 0 ] && [ "$status_b" -eq 0 ]
