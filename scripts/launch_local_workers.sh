#!/usr/bin/env bash
# Start N copies of a training command on this machine as one TensorFlow multi-worker cluster:
#
#     scripts/launch_local_workers.sh 2 -- python scripts/train_gan.py --run 3 --data phantom_small --image-size 32
#
# Each copy gets a TF_CONFIG naming all N workers on 127.0.0.1 (free ports) and its own index;
# worker 0 is the chief. Output of worker I goes to stdout with a "[wI]" prefix. Waits for all;
# when one fails the others are stopped (they would wait for it), as a cluster's job would be.
# Exit code: 0 when every worker succeeded, else the first failure's code.
# For trying multi-worker training on one machine; on a cluster use its scheduler (docs/distributed.md).
set -u -o pipefail

usage() { echo "usage: $0 N -- COMMAND [ARG...]" >&2; exit 2; }
[ $# -ge 3 ] && [ "$2" = "--" ] || usage
N=$1
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "error: N must be a whole number >= 1, got '$N'" >&2; exit 2; }
shift 2
PYTHON=${PYTHON:-python3}

# N ports the kernel says are free now (bound to port 0, then released).
PORTS=$("$PYTHON" - "$N" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
) || { echo "error: could not find $N free ports" >&2; exit 1; }
WORKERS=$(printf '"127.0.0.1:%s",' $PORTS)
WORKERS="[${WORKERS%,}]"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done; }
trap 'cleanup; exit 130' INT TERM

for ((i = 0; i < N; i++)); do
  TF_CONFIG="{\"cluster\": {\"worker\": $WORKERS}, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
    "$@" > >(sed -u "s/^/[w$i] /") 2>&1 &
  PIDS+=($!)
done
echo "launched $N workers (pids ${PIDS[*]}) on 127.0.0.1 ports $PORTS" >&2

STATUS=0
RUNNING=("${PIDS[@]}")
while [ ${#RUNNING[@]} -gt 0 ]; do
  wait -n -p DONE "${RUNNING[@]}"
  CODE=$?
  RUNNING=($(for pid in "${RUNNING[@]}"; do [ "$pid" != "$DONE" ] && echo "$pid"; done))
  if [ "$CODE" -ne 0 ] && [ "$STATUS" -eq 0 ]; then
    STATUS=$CODE
    echo "worker pid $DONE failed with exit code $CODE: stopping the others" >&2
    cleanup
  fi
done
exit "$STATUS"
