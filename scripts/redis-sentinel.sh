#!/usr/bin/env bash
# Redis with Sentinel on this one host, from the installed redis-server, for the cluster tests
# (npm run test:cluster) and for trying a failover by hand: one primary, one replica, three sentinels.
#
#   scripts/redis-sentinel.sh up              start what is not running, wait until the sentinels agree
#                                             on a primary with its replica, print the sentinel list
#   scripts/redis-sentinel.sh down            stop everything and remove its files
#   scripts/redis-sentinel.sh status          roles and ports; exit 0 only when all is up and in sync
#   scripts/redis-sentinel.sh sentinels       the sentinel list (REDIS_SENTINELS form, host:port,...)
#   scripts/redis-sentinel.sh primary         the current primary's server number (1 or 2), as the sentinels say
#   scripts/redis-sentinel.sh kill-primary    SIGKILL the current primary; prints its server number
#   scripts/redis-sentinel.sh kill N          SIGKILL server N (1 or 2)
#   scripts/redis-sentinel.sh start N         start server N again (a killed primary comes back as
#                                             a primary, and the sentinels turn it into a replica)
#   scripts/redis-sentinel.sh kill-sentinel N / start-sentinel N   the same for sentinel N (1-3)
#
# Servers 127.0.0.1:6391 (the first primary) and :6392 (its replica), no persistence; sentinels
# 127.0.0.1:26391-26393 watching the master name "inbox-relay" (INBOX_RELAY_SENTINEL_NAME), quorum 2,
# down after 1 s, failover timeout 5 s (short, for tests). Files in $INBOX_RELAY_CLUSTER_DIR/redis
# (default /tmp/inbox-relay-cluster): the sentinels rewrite their configuration files there. The
# machine's Redis on 6379 is never touched: every process this script signals is found from its
# own pid file and checked against its own port on its command line.
set -euo pipefail

BASE=${INBOX_RELAY_CLUSTER_DIR:-/tmp/inbox-relay-cluster}/redis
NAME=${INBOX_RELAY_SENTINEL_NAME:-inbox-relay}
SERVERS=(1 2)
SENTINELS=(1 2 3)
DOWN_AFTER_MS=1000
FAILOVER_TIMEOUT_MS=5000
WAIT_S=${INBOX_RELAY_CLUSTER_WAIT_S:-60}

LOG_TAG=redis-sentinel
# shellcheck source=scripts/local-cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/local-cluster-lib.sh"

server_port() { echo $((6390 + $1)); }
sentinel_port() { echo $((26390 + $1)); }

check_number() {
  local n=${1:-} max=$2
  if ! [[ "$n" =~ ^[1-9]$ ]] || [ "$n" -gt "$max" ]; then die "number must be between 1 and $max, not '$n'"; fi
}

rcli() {
  local port=$1
  shift
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# The pid of the redis-server (or sentinel) listening on PORT, from its pid file, checked against
# its command line (redis-server shows "redis-server 127.0.0.1:PORT" there); empty when none.
pid_of() {
  local port=$1 pidfile=$BASE/$2.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "^redis-server 127.0.0.1:$port\b"; then
    echo "$pid"
  fi
}

write_server_conf() {
  local n=$1 port
  port=$(server_port "$n")
  mkdir -p "$BASE/server-$n"
  {
    echo "# Written by scripts/redis-sentinel.sh; the sentinels rewrite it on failover."
    echo "bind 127.0.0.1"
    echo "port $port"
    echo "daemonize yes"
    echo "pidfile $BASE/server-$n.pid"
    echo "logfile $BASE/server-$n.log"
    echo "dir $BASE/server-$n"
    echo 'save ""'
    echo "appendonly no"
    if [ "$n" != 1 ]; then echo "replicaof 127.0.0.1 $(server_port 1)"; fi
  } >"$BASE/server-$n.conf"
}

write_sentinel_conf() {
  local n=$1
  mkdir -p "$BASE/sentinel-$n"
  cat >"$BASE/sentinel-$n.conf" <<EOF
# Written by scripts/redis-sentinel.sh; the sentinel rewrites it (known replicas, peers, epochs).
bind 127.0.0.1
port $(sentinel_port "$n")
daemonize yes
pidfile $BASE/sentinel-$n.pid
logfile $BASE/sentinel-$n.log
dir $BASE/sentinel-$n
sentinel monitor $NAME 127.0.0.1 $(server_port 1) 2
sentinel down-after-milliseconds $NAME $DOWN_AFTER_MS
sentinel failover-timeout $NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $NAME 1
EOF
}

start_process() {
  local port=$1 what=$2
  shift 2
  if [ -n "$(pid_of "$port" "$what")" ]; then return 0; fi
  [ -f "$BASE/$what.conf" ] || die "no $BASE/$what.conf: run \`$0 up\` first"
  port_open "$port" && die "port $port is taken by a process that is not this script's $what"
  log "starting $what on 127.0.0.1:$port"
  redis-server "$BASE/$what.conf" "$@" >/dev/null
}

start_server() { start_process "$(server_port "$1")" "server-$1"; }
start_sentinel() { start_process "$(sentinel_port "$1")" "sentinel-$1" --sentinel; }

kill_process() { sigkill "$(pid_of "$1" "$2")" "$2 (127.0.0.1:$1)"; }

# The primary's port as the first sentinel that answers says it; empty when none answers.
primary_port() {
  local n addr
  for n in "${SENTINELS[@]}"; do
    if addr=$(rcli "$(sentinel_port "$n")" SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null) && [ -n "$addr" ]; then
      echo "$addr" | tail -1
      return 0
    fi
  done
}

# One field of `SENTINEL master <name>` as sentinel N reports it.
sentinel_field() {
  rcli "$(sentinel_port "$1")" SENTINEL master "$NAME" 2>/dev/null | grep -A1 -x -- "$2" | tail -1
}

info_field() {
  rcli "$1" INFO replication 2>/dev/null | tr -d '\r' | grep "^$2:" | cut -d: -f2
}

# Whether everything runs and agrees: both servers answer, the primary has one online replica,
# every sentinel names the same primary, knows the replica and the two other sentinels.
in_sync() {
  local n port primary
  primary=$(primary_port)
  [ -n "$primary" ] || return 1
  for n in "${SERVERS[@]}"; do
    [ -n "$(pid_of "$(server_port "$n")" "server-$n")" ] || return 1
  done
  [ "$(info_field "$primary" role)" = master ] || return 1
  [ "$(info_field "$primary" connected_slaves)" = 1 ] || return 1
  for n in "${SERVERS[@]}"; do
    port=$(server_port "$n")
    [ "$port" = "$primary" ] || [ "$(info_field "$port" master_link_status)" = up ] || return 1
  done
  for n in "${SENTINELS[@]}"; do
    [ -n "$(pid_of "$(sentinel_port "$n")" "sentinel-$n")" ] || return 1
    [ "$(rcli "$(sentinel_port "$n")" SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | tail -1)" = "$primary" ] || return 1
    [ "$(sentinel_field "$n" num-other-sentinels)" = 2 ] || return 1
    [ "$(sentinel_field "$n" num-slaves)" -ge 1 ] 2>/dev/null || return 1
    [ "$(sentinel_field "$n" flags)" = master ] || return 1
  done
}

await_sync() {
  await_true "$WAIT_S" 0.5 "the servers and sentinels did not agree within ${WAIT_S}s; see $BASE/*.log" in_sync
}

sentinel_list() {
  local list=() n
  for n in "${SENTINELS[@]}"; do list+=("127.0.0.1:$(sentinel_port "$n")"); done
  comma_join "${list[@]}"
}

anything_running() {
  local n
  for n in "${SERVERS[@]}"; do [ -z "$(pid_of "$(server_port "$n")" "server-$n")" ] || return 0; done
  for n in "${SENTINELS[@]}"; do [ -z "$(pid_of "$(sentinel_port "$n")" "sentinel-$n")" ] || return 0; done
  return 1
}

cmd_up() {
  local started=$SECONDS n
  command -v redis-server >/dev/null || die "redis-server is not installed"
  if ! anything_running; then
    # A fresh start: configuration files the sentinels rewrote in an earlier run would name a
    # primary that no longer holds the data.
    rm -rf "$BASE"
    mkdir -p "$BASE"
    for n in "${SERVERS[@]}"; do write_server_conf "$n"; done
    for n in "${SENTINELS[@]}"; do write_sentinel_conf "$n"; done
  fi
  for n in "${SERVERS[@]}"; do start_server "$n"; done
  for n in "${SENTINELS[@]}"; do start_sentinel "$n"; done
  await_sync
  log "up in $((SECONDS - started))s: primary 127.0.0.1:$(primary_port), sentinels $(sentinel_list), master name $NAME"
  sentinel_list
}

cmd_down() {
  local n
  for n in "${SENTINELS[@]}"; do kill_process "$(sentinel_port "$n")" "sentinel-$n" 2>/dev/null; done
  for n in "${SERVERS[@]}"; do kill_process "$(server_port "$n")" "server-$n" 2>/dev/null; done
  rm -rf "$BASE"
  rmdir "$(dirname "$BASE")" 2>/dev/null || true
  log "down, files removed"
}

cmd_status() {
  local n port pid
  for n in "${SERVERS[@]}"; do
    port=$(server_port "$n")
    pid=$(pid_of "$port" "server-$n")
    if [ -z "$pid" ]; then echo "server $n 127.0.0.1:$port stopped"; else echo "server $n 127.0.0.1:$port pid $pid role $(info_field "$port" role)"; fi
  done
  for n in "${SENTINELS[@]}"; do
    port=$(sentinel_port "$n")
    pid=$(pid_of "$port" "sentinel-$n")
    if [ -z "$pid" ]; then
      echo "sentinel $n 127.0.0.1:$port stopped"
    else
      echo "sentinel $n 127.0.0.1:$port pid $pid primary $(rcli "$port" SENTINEL get-master-addr-by-name "$NAME" 2>/dev/null | tail -1) other-sentinels $(sentinel_field "$n" num-other-sentinels)"
    fi
  done
  in_sync
}

cmd_primary() {
  local port
  port=$(primary_port)
  [ -n "$port" ] || die "no sentinel answers"
  echo $((port - 6390))
}

command=${1:-}
shift || true
case "$command" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  sentinels) sentinel_list ;;
  primary) cmd_primary ;;
  kill-primary)
    n=$(cmd_primary)
    check_number "$n" 2
    kill_process "$(server_port "$n")" "server-$n"
    echo "$n"
    ;;
  kill)
    check_number "${1:-}" 2
    kill_process "$(server_port "$1")" "server-$1"
    ;;
  start)
    check_number "${1:-}" 2
    start_server "$1"
    ;;
  kill-sentinel)
    check_number "${1:-}" 3
    kill_process "$(sentinel_port "$1")" "sentinel-$1"
    ;;
  start-sentinel)
    check_number "${1:-}" 3
    start_sentinel "$1"
    ;;
  *)
    # The comment at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    [ "$command" = help ] || exit 2
    ;;
esac
