#!/usr/bin/env bash
# Real Redis and Kafka on loopback for the integration tests (no Docker needed).
#
#   scripts/services.sh start    stop whatever this script started before, then start
#                                fresh, empty Redis and Kafka and wait until both answer
#   scripts/services.sh stop     stop both (idempotent)
#   scripts/services.sh status   say whether each answers
#   (add "redis" or "kafka" to act on one only)
#
# Redis:  127.0.0.1:${PUSHTRIO_REDIS_PORT:-16379}, no persistence, files in .services/redis.
# Kafka:  single-node KRaft (broker + controller) on 127.0.0.1:${PUSHTRIO_KAFKA_PORT:-19092},
#         controller on ${PUSHTRIO_KAFKA_CONTROLLER_PORT:-19093}, fresh data in .services/kafka
#         on every start, log in .services/kafka/server.log. The broker runs from Apache
#         Kafka's jars fetched from Maven Central (scripts/kafka/pom.xml) into
#         ${PUSHTRIO_KAFKA_CACHE:-~/.cache/pushtrio/kafka-4.1.1}/lib, once.
# On a fresh Debian machine, missing redis-server, java and mvn are installed with apt-get.
# PYTHON (default .venv/bin/python) must have kafka-python: it runs scripts/wait_kafka.py.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KAFKA_VERSION=4.1.1
REDIS_PORT=${PUSHTRIO_REDIS_PORT:-16379}
KAFKA_PORT=${PUSHTRIO_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${PUSHTRIO_KAFKA_CONTROLLER_PORT:-19093}
SERVICES_DIR=${PUSHTRIO_SERVICES_DIR:-$ROOT/.services}
KAFKA_CACHE=${PUSHTRIO_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pushtrio/kafka-$KAFKA_VERSION}
KAFKA_LIB=$KAFKA_CACHE/lib
KAFKA_MARKER=$KAFKA_LIB/.pushtrio-complete
KAFKA_READY_TIMEOUT=${PUSHTRIO_KAFKA_READY_TIMEOUT:-120}
REDIS_READY_TIMEOUT=${PUSHTRIO_REDIS_READY_TIMEOUT:-20}
STOP_TIMEOUT=20
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

REDIS_DIR=$SERVICES_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
KAFKA_DIR=$SERVICES_DIR/kafka
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid

log() { printf '%s\n' "$*"; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }

# --- helpers -----------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "need $* but apt-get is not available: install it by hand"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# Something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

who_listens() {
    if command -v ss >/dev/null; then
        ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /'
    fi
}

# Print the pid in pidfile $1 if that process is alive and its command line
# contains $2 (so a recycled pid or a zombie never counts).
live_pid() {
    local pidfile=$1 pattern=$2 pid cmd
    [ -f "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ "$cmd" == *"$pattern"* ]] || return 1
    printf '%s\n' "$pid"
}

# stop_pidfile NAME PIDFILE PATTERN: TERM, wait up to STOP_TIMEOUT s, then KILL.
stop_pidfile() {
    local name=$1 pidfile=$2 pattern=$3 pid deadline
    if ! pid=$(live_pid "$pidfile" "$pattern"); then
        rm -f "$pidfile"
        log "$name: not running"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while live_pid "$pidfile" "$pattern" >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$name: still running after ${STOP_TIMEOUT}s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
    log "$name: stopped"
}

require_free_port() {
    local name=$1 port=$2
    if port_busy "$port"; then
        log "$name: port $port on 127.0.0.1 is taken by a process this script did not start:" >&2
        who_listens "$port" >&2
        die "stop it (or choose another port with the PUSHTRIO_*_PORT variables) and retry"
    fi
}

# --- Redis -------------------------------------------------------------------

start_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
        || apt_install redis-server
    stop_pidfile redis "$REDIS_PIDFILE" redis-server
    require_free_port redis "$REDIS_PORT"
    rm -rf "$REDIS_DIR"
    mkdir -p "$REDIS_DIR"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_PIDFILE" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" \
        --save '' --appendonly no 9>&-
    local deadline=$((SECONDS + REDIS_READY_TIMEOUT))
    until [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
            die "redis: no PONG on port $REDIS_PORT after ${REDIS_READY_TIMEOUT}s"
        fi
        sleep 0.1
    done
    log "redis: up on 127.0.0.1:$REDIS_PORT (pid $(cat "$REDIS_PIDFILE" 2>/dev/null || echo '?'))"
}

stop_redis() { stop_pidfile redis "$REDIS_PIDFILE" redis-server; }

status_redis() {
    local pid
    pid=$(live_pid "$REDIS_PIDFILE" redis-server) || pid=none
    if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
        log "redis: answers on 127.0.0.1:$REDIS_PORT (pid $pid)"
        return 0
    fi
    log "redis: not answering on 127.0.0.1:$REDIS_PORT (pid $pid)"
    return 1
}

# --- Kafka -------------------------------------------------------------------

ensure_java() {
    local need=()
    { command -v java >/dev/null && command -v javac >/dev/null; } || need+=(default-jdk-headless)
    command -v mvn >/dev/null || [ -f "$KAFKA_MARKER" ] || need+=(maven)
    [ "${#need[@]}" -eq 0 ] || apt_install "${need[@]}"
    local major
    major=$(java -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')
    [ -n "$major" ] && [ "$major" -ge 17 ] \
        || die "Kafka $KAFKA_VERSION needs Java 17 or newer (java says: ${major:-unknown})"
}

# The marker holds the pom's checksum: a changed pom means fetching again.
ensure_kafka_jars() {
    local want
    want=$(sha256sum scripts/kafka/pom.xml | cut -d' ' -f1)
    if [ -f "$KAFKA_MARKER" ] && [ "$(cat "$KAFKA_MARKER")" = "$want" ]; then
        return 0
    fi
    command -v mvn >/dev/null || apt_install maven
    log "kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB"
    local t0=$SECONDS tmp=$KAFKA_CACHE/lib.tmp.$$
    mkdir -p "$KAFKA_CACHE"
    rm -rf "$tmp"
    if ! (cd scripts/kafka && mvn -B -q -Dstyle.color=never \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp") >"$KAFKA_CACHE/mvn.log" 2>&1 9>&-
    then
        tail -n 40 "$KAFKA_CACHE/mvn.log" >&2
        rm -rf "$tmp"
        die "kafka: mvn could not fetch the jars (log: $KAFKA_CACHE/mvn.log)"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null \
        || { rm -rf "$tmp"; die "kafka: mvn ran but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
    printf '%s\n' "$want" >"$KAFKA_MARKER"
    log "kafka: jars ready in $((SECONDS - t0))s"
}

# Kafka cluster ids are 16 random bytes in unpadded URL-safe base64 (22 characters);
# Kafka itself never hands out one starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ "$id" == -* ]] || break
    done
    printf '%s\n' "$id"
}

write_kafka_properties() {
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services.sh: throwaway single-node KRaft cluster for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=2
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
}

KAFKA_JAVA_OPTS=(
    -Xms256m -Xmx768m
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.xml"
)

start_kafka() {
    ensure_java
    ensure_kafka_jars
    [ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null \
        || die "kafka: $PYTHON not found (create the venv, or set PYTHON to one with kafka-python)"
    stop_pidfile kafka "$KAFKA_PIDFILE" kafka.Kafka
    require_free_port kafka "$KAFKA_PORT"
    require_free_port kafka-controller "$KAFKA_CONTROLLER_PORT"
    rm -rf "$KAFKA_DIR"
    mkdir -p "$KAFKA_DIR/data"
    write_kafka_properties

    local t0=$SECONDS cluster_id pid deadline
    cluster_id=$(new_cluster_id)
    if ! java -Xmx256m "-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.xml" \
        "-Dkafka.logs.dir=$KAFKA_DIR" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$KAFKA_DIR/server.properties" --standalone \
        >"$KAFKA_DIR/format.log" 2>&1 9>&-; then
        cat "$KAFKA_DIR/format.log" >&2
        die "kafka: formatting the storage failed"
    fi

    # setsid: the broker outlives this script and its caller's process group; the
    # inner shell writes its own pid and then becomes java.
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$KAFKA_PIDFILE" \
        nohup java "${KAFKA_JAVA_OPTS[@]}" "-Dkafka.logs.dir=$KAFKA_DIR" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
        </dev/null >"$KAFKA_DIR/stdout.log" 2>&1 9>&- &
    deadline=$((SECONDS + 10))
    until pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka); do
        if [ "$SECONDS" -ge "$deadline" ]; then
            cat "$KAFKA_DIR/stdout.log" >&2 2>/dev/null || true
            die "kafka: the broker process did not start"
        fi
        sleep 0.1
    done
    log "kafka: started pid $pid, waiting for 127.0.0.1:$KAFKA_PORT"
    if ! "$PYTHON" scripts/wait_kafka.py "127.0.0.1:$KAFKA_PORT" \
        --timeout "$KAFKA_READY_TIMEOUT" --pid "$pid" --log "$KAFKA_DIR/server.log" 9>&-; then
        if [ -s "$KAFKA_DIR/stdout.log" ]; then
            log "--- $KAFKA_DIR/stdout.log ---" >&2
            tail -n 30 "$KAFKA_DIR/stdout.log" >&2
        fi
        stop_kafka
        die "kafka: broker did not become ready"
    fi
    log "kafka: up on 127.0.0.1:$KAFKA_PORT (pid $pid, $((SECONDS - t0))s)"
}

stop_kafka() { stop_pidfile kafka "$KAFKA_PIDFILE" kafka.Kafka; }

status_kafka() {
    local pid
    pid=$(live_pid "$KAFKA_PIDFILE" kafka.Kafka) || pid=none
    if [ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null; then
        if "$PYTHON" scripts/wait_kafka.py "127.0.0.1:$KAFKA_PORT" --timeout 5 --quiet \
            2>/dev/null; then
            log "kafka: answers on 127.0.0.1:$KAFKA_PORT (pid $pid)"
            return 0
        fi
    elif port_busy "$KAFKA_PORT"; then
        log "kafka: port 127.0.0.1:$KAFKA_PORT is open (pid $pid; no $PYTHON to probe it)"
        return 0
    fi
    log "kafka: not answering on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    return 1
}

print_env() {
    log "PUSHTRIO_TEST_REDIS=127.0.0.1:$REDIS_PORT"
    log "PUSHTRIO_TEST_KAFKA=127.0.0.1:$KAFKA_PORT"
}

# --- main --------------------------------------------------------------------

usage() { die "usage: $0 start|stop|status [redis|kafka]"; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
ACTION=$1
WANT=${2:-all}
case $WANT in all | redis | kafka) ;; *) usage ;; esac
want() { [ "$WANT" = all ] || [ "$WANT" = "$1" ]; }

mkdir -p "$SERVICES_DIR"
# One start/stop at a time. fd 9 holds the lock; long-lived children get it closed
# (9>&-) so they do not keep the lock after this script exits.
exec 9>"$SERVICES_DIR/.lock"
if command -v flock >/dev/null; then
    flock -w 600 9 || die "another services.sh is still running"
fi

case $ACTION in
start)
    t0=$SECONDS
    if want redis; then start_redis; fi
    if want kafka; then start_kafka; fi
    log "services: ready in $((SECONDS - t0))s"
    print_env
    ;;
stop)
    if want kafka; then stop_kafka; fi
    if want redis; then stop_redis; fi
    ;;
status)
    rc=0
    if want redis; then status_redis || rc=1; fi
    if want kafka; then status_kafka || rc=1; fi
    print_env
    exit "$rc"
    ;;
*) usage ;;
esac
