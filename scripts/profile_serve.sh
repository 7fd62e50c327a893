#!/usr/bin/env bash
# Profile `pushtrio serve` over COUNT pre-produced records with py-spy (pip install py-spy).
#
#   bash scripts/profile_serve.sh [COUNT] [OUT-PREFIX]
#
# Needs the Redis and Kafka of scripts/services.sh. Writes OUT-PREFIX.gil.txt (samples
# holding the GIL) and OUT-PREFIX.all.txt (every thread, idle ones dropped), both in
# py-spy's raw (collapsed stack) format, and prints the top functions of each.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=${1:-200000}
OUT=${2:-/tmp/pushtrio-profile}
PY=$ROOT/.venv/bin/python
TOPIC=profile-$(date +%s)
export KAFKA_BROKERS=127.0.0.1:${PUSHTRIO_KAFKA_PORT:-19092} REDIS_ADDR=127.0.0.1:${PUSHTRIO_REDIS_PORT:-16379}
export REDIS_DB=9 KAFKA_TOPIC=$TOPIC CONSUMER_GROUP=$TOPIC-group DLQ_TOPIC=$TOPIC.dlq
export PORT=0 LOG_LEVEL=warning PROVIDER_LATENCY=0 PROVIDER_SUCCESS_RATE=1
export RATE_LIMIT_PER_USER=1000000 RATE_LIMIT_WINDOW=1h WORKER_COUNT=100
redis-cli -p "${PUSHTRIO_REDIS_PORT:-16379}" -n 9 flushdb >/dev/null
"$PY" -m pushtrio produce -n "$COUNT" --users 10000 -q
for mode in gil all; do
    flags=()
    [ "$mode" = gil ] && flags=(--gil)
    export CONSUMER_GROUP=$TOPIC-$mode OUTCOME_LOG=/tmp/$TOPIC-$mode.log
    : >"$OUTCOME_LOG"
    "$ROOT/.venv/bin/py-spy" record -r 200 -f raw ${flags[@]+"${flags[@]}"} -o "$OUT.$mode.txt" -- \
        "$PY" -m pushtrio serve >/tmp/$TOPIC-$mode.serve.log 2>&1 &
    spy=$!
    deadline=$((SECONDS + 300))
    while [ "$(wc -l <"$OUTCOME_LOG")" -lt "$COUNT" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    pkill -INT -f "^$PY -m pushtrio serve" || true
    wait $spy || true
    echo "== $mode: top self time"
    "$PY" - "$OUT.$mode.txt" <<'PYEOF'
import collections, sys
own = collections.Counter(); total = 0
for line in open(sys.argv[1]):
    stack, _, n = line.rpartition(" ")
    frames = stack.split(";")
    total += int(n)
    own[frames[-1].rsplit(":", 1)[0]] += int(n)
for frame, n in own.most_common(25):
    print(f"{100 * n / total:5.1f}%  {frame}")
PYEOF
done
