#!/usr/bin/env bash
# A two-node Ray cluster on one machine, started the way the README's "On a cluster" says,
# running the pointmaze smoke sweep with --address. Checks what a newcomer's cluster needs:
# a non-editable install (the suites travel as package data), token authentication on
# every node (Ray 2.60), and trials on both nodes. Takes about 3 minutes on 2 cores.
#
#   bash bench/two_node_cluster.sh                  # BASE_PYTHON defaults to .venv/bin/python
#   BASE_PYTHON=/path/to/python bash bench/two_node_cluster.sh
#
# BASE_PYTHON must have the dependencies installed (`make install` does that). The script
# makes a fresh venv in a temporary directory that sees BASE_PYTHON's packages (nothing is
# downloaded, BASE_PYTHON's environment is not changed) and installs this project into it
# with a plain `pip install .`, then runs everything from that directory, so that neither
# the driver nor the workers import the source tree.
#
# Each node is `ray start --block` in the background with its own --temp-dir and ports, and
# is stopped by its process id at the end: `ray stop` would stop every Ray on the machine.
# The token lives in RAY_AUTH_TOKEN, so nothing is written to ~/.ray. Not a test: it needs
# free ports, a few minutes and two spare cores (tests/test_tune_cluster.py covers the
# sweep's cluster behaviour on one Ray instance).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_PYTHON=${BASE_PYTHON:-$ROOT/.venv/bin/python}
CPUS_PER_NODE=${CPUS_PER_NODE:-2}
WORK=$(mktemp -d /tmp/diffcps-two-node.XXXXXX)
PIDS=()

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true  # `ray start --block` stops its node's processes
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    echo "work directory (logs, results): $WORK"
    exit "$status"
}
trap cleanup EXIT

echo "== a fresh venv with a non-editable install of $ROOT"
"$BASE_PYTHON" -m venv --without-pip "$WORK/venv"
PY=$WORK/venv/bin/python
base_site=$("$BASE_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
venv_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$base_site" > "$venv_site/base-packages.pth"  # the dependencies, read-only
cp -r "$ROOT" "$WORK/src"  # build from a copy: the source tree gets no build/ or egg-info
rm -rf "$WORK/src/.venv" "$WORK/src/results" "$WORK/src/data"
"$PY" -m pip install -q --no-deps --no-build-isolation --ignore-installed "$WORK/src"
rm -rf "$WORK/src"
cd "$WORK"
"$PY" -c 'import diffcps_ray; print("diffcps_ray from", diffcps_ray.__file__)'

free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r PORT HEAD_AGENT NODE_AGENT HEAD_METRICS NODE_METRICS HEAD_CLIENT <<< "$(free_ports 6)"

# Token authentication: every node and the driver run with RAY_AUTH_MODE=token and the
# same token (the README's way: `ray get-auth-token --generate` on the head, the token
# copied to ~/.ray/auth_token or RAY_AUTH_TOKEN on every other node).
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$("$PY" -c 'from ray._private.authentication.authentication_token_generator import generate_new_authentication_token as g; print(g())')
export RAY_AUTH_TOKEN
export OMP_NUM_THREADS=1 RAY_DEDUP_LOGS=0

ray_start() {  # NAME ARGS...: ray start --block in the background, its pid kept to stop it
    local name=$1
    shift
    "$PY" -m ray.scripts.scripts start --block --num-cpus "$CPUS_PER_NODE" --num-gpus 0 \
        "$@" > "$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
}

echo "== head node on port $PORT"
ray_start head --head --port "$PORT" --temp-dir "$WORK/ray-head" --include-dashboard false \
    --dashboard-agent-listen-port "$HEAD_AGENT" --metrics-export-port "$HEAD_METRICS" \
    --ray-client-server-port "$HEAD_CLIENT" --min-worker-port 21000 --max-worker-port 21999
HEAD=127.0.0.1:$PORT
for _ in $(seq 60); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" \
        2>/dev/null && break
    sleep 1
done

echo "== second node joins $HEAD"
ray_start node --address "$HEAD" --temp-dir "$WORK/ray-node" \
    --dashboard-agent-listen-port "$NODE_AGENT" --metrics-export-port "$NODE_METRICS" \
    --min-worker-port 22000 --max-worker-port 22999
"$PY" - "$HEAD" <<'EOF'
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
for _ in range(60):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) == 2:
        break
    time.sleep(1)
print(f"nodes alive: {len(alive)}, CPUs: {ray.cluster_resources().get('CPU')}")
assert len(alive) == 2, "the second node did not join (see the .log files)"
EOF

echo "== the smoke sweep with --address $HEAD"
"$PY" -m diffcps_ray.tune --suite pointmaze --budget smoke --tasks pointmaze-umaze \
    --data-root "$WORK/data" --storage "$WORK/results" --name smoke --address "$HEAD"

echo "== where the trials ran"
trial_logs() {  # the worker logs of trial actors under one node's temp dir
    cat "$1"/session_*/logs/worker-*.out 2>/dev/null | grep -c ":actor_name:DiffCPSTrial" || true
}
head_trials=$(trial_logs "$WORK/ray-head")
node_trials=$(trial_logs "$WORK/ray-node")
echo "worker logs naming a trial: head $head_trials, second node $node_trials"
test "$head_trials" -gt 0 && test "$node_trials" -gt 0
test -f "$WORK/results/smoke/experiment.json"
echo "OK: experiment in $WORK/results/smoke"
