#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this one host, from the installed RabbitMQ (the Debian package; no
# Docker), for the cluster tests (npm run test:cluster) and for trying failover by hand.
#
#   scripts/rabbitmq-cluster.sh up        start the nodes that are not running, cluster them, wait
#                                         until all three run as one cluster, print the URL list
#   scripts/rabbitmq-cluster.sh down      stop every node and remove the cluster's data
#   scripts/rabbitmq-cluster.sh status    each node's state; exit 0 only when all three run clustered
#   scripts/rabbitmq-cluster.sh urls      the AMQP URL list (RABBITMQ_URL form, comma-separated)
#   scripts/rabbitmq-cluster.sh kill N    SIGKILL node N (1-3): a crash, no goodbye to its peers
#   scripts/rabbitmq-cluster.sh stop N    stop node N cleanly (it stays a cluster member)
#   scripts/rabbitmq-cluster.sh start N   start node N again; it rejoins the cluster with its data
#   scripts/rabbitmq-cluster.sh ctl N ... rabbitmqctl against node N (e.g. ctl 1 list_queues name leader)
#   scripts/rabbitmq-cluster.sh queues N ...  rabbitmq-queues against node N
#
# Nodes irN@<short hostname>, N = 1..3:
#   AMQP 127.0.0.1:568N, Erlang distribution 2568N, management 1568N, Prometheus 1579N,
#   data and logs in $INBOX_RELAY_CLUSTER_DIR/rabbitmq/irN (default /tmp/inbox-relay-cluster).
#   New quorum queue leaders: INBOX_RELAY_CLUSTER_LEADER_LOCATOR (client-local, the default, or
#   balanced), read when a node starts.
# None of these ports is one of the machine's own broker (5672, 15672, 15692, 25672), whose node
# this script never stops, kills or reconfigures: every process it signals is found by a marker
# that only its own nodes carry on their command line.
#
# The nodes run as the `rabbitmq` user, so they share its Erlang cookie (/var/lib/rabbitmq) with
# each other and with the CLI tools, with the open-files limit raised to 20000 (a soft limit of
# 1024 hangs classic queues once a few hundred of them hold messages). Run this as root or as
# rabbitmq. guest/guest may connect: RabbitMQ lets guest in from loopback, where these listen.
set -euo pipefail

BASE=${INBOX_RELAY_CLUSTER_DIR:-/tmp/inbox-relay-cluster}/rabbitmq
HOST=$(hostname -s)
RABBIT_BIN=/usr/lib/rabbitmq/bin
RABBIT_HOME=/var/lib/rabbitmq
NODES=(1 2 3)
# queue_leader_locator of every node (see write_node_files).
LEADER_LOCATOR=${INBOX_RELAY_CLUSTER_LEADER_LOCATOR:-client-local}
# How long `up` and `start` wait for a node to boot and for the cluster to form.
WAIT_S=${INBOX_RELAY_CLUSTER_WAIT_S:-120}

LOG_TAG=rabbitmq-cluster
# shellcheck source=scripts/local-cluster-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/local-cluster-lib.sh"

node_name() { echo "ir$1@$HOST"; }
amqp_port() { echo $((5680 + $1)); }
dist_port() { echo $((25680 + $1)); }
management_port() { echo $((15680 + $1)); }
prometheus_port() { echo $((15790 + $1)); }
node_dir() { echo "$BASE/ir$1"; }
# The marker on the node's beam command line (an Erlang user flag, ignored by the VM).
MARKER=-inbox_relay_cluster_node

check_node_number() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *) die "node number must be 1, 2 or 3, not '${1:-}'" ;;
  esac
}

# Runs a command as the rabbitmq user (HOME is its home, where the Erlang cookie is), for at most
# $CLI_TIMEOUT_S seconds.
CLI_TIMEOUT_S=$((WAIT_S + 30))
as_rabbitmq() {
  if [ "$(id -un)" = rabbitmq ]; then
    HOME=$RABBIT_HOME timeout "$CLI_TIMEOUT_S" "$@"
  elif [ "$(id -u)" = 0 ]; then
    timeout "$CLI_TIMEOUT_S" runuser -u rabbitmq -- env HOME=$RABBIT_HOME "$@"
  else
    die "run this as root or as the rabbitmq user (the nodes share that user's Erlang cookie)"
  fi
}

# The environment of node N, for the server and for the CLI tools that talk to it.
node_env() {
  local n=$1 dir
  dir=$(node_dir "$n")
  echo "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf"
  echo "RABBITMQ_NODENAME=$(node_name "$n")"
  echo "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
  echo "RABBITMQ_NODE_PORT=$(amqp_port "$n")"
  echo "RABBITMQ_DIST_PORT=$(dist_port "$n")"
  echo "RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf"
  echo "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins"
  echo "RABBITMQ_MNESIA_BASE=$dir/mnesia"
  echo "RABBITMQ_LOG_BASE=$dir/log"
  echo "ERL_EPMD_ADDRESS=127.0.0.1"
}

# A CLI tool (rabbitmqctl, rabbitmq-queues, rabbitmq-diagnostics) against node N.
cli() {
  local tool=$1 n=$2
  shift 2
  local env_lines=()
  mapfile -t env_lines < <(node_env "$n")
  as_rabbitmq env "${env_lines[@]}" "$RABBIT_BIN/$tool" -n "$(node_name "$n")" "$@"
}
ctl() { cli rabbitmqctl "$@"; }

write_node_files() {
  local n=$1 dir
  dir=$(node_dir "$n")
  mkdir -p "$dir/mnesia" "$dir/log"
  # Only this file, not /etc/rabbitmq/rabbitmq-env.conf (the machine's node name and settings).
  cat >"$dir/rabbitmq-env.conf" <<EOF
# Written by scripts/rabbitmq-cluster.sh for node $(node_name "$n").
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $MARKER $(node_name "$n")"
EOF
  cat >"$dir/rabbitmq.conf" <<EOF
## Written by scripts/rabbitmq-cluster.sh for node $(node_name "$n"). Every listener on 127.0.0.1,
## on ports of this node's own (the machine's broker keeps 5672, 15672, 15692 and 25672).
management.tcp.ip = 127.0.0.1
management.tcp.port = $(management_port "$n")
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $(prometheus_port "$n")
prometheus.return_per_object_metrics = false
## A fresh node joins $(node_name 1) as it boots (classic peer discovery): a second boot after
## stop_app / reset / join_cluster / start_app costs ~20 s a node on a busy 2-core machine. \`up\`
## still joins by hand a node that did not make it in this way.
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name 1)
## A node cut off from the majority pauses rather than going on alone (3-node production setting).
cluster_partition_handling = pause_minority
## Where new quorum queue leaders go: client-local (RabbitMQ's default: the node the declaring
## client is connected to) or balanced (the node leading the fewest), unless the queue's
## x-queue-leader-locator argument or a policy says otherwise.
queue_leader_locator = $LEADER_LOCATOR
log.file.level = info
log.console = false
EOF
  echo '[rabbitmq_management,rabbitmq_prometheus].' >"$dir/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$BASE" 2>/dev/null || [ "$(id -un)" = rabbitmq ]
}

# The pid of node N's beam process, found by its own marker; empty when it is not running.
node_pid() {
  local n=$1 name pid cmdline
  name=$(node_name "$n")
  for pid in $(pgrep -x beam.smp || true); do
    cmdline=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" || true)
    if printf '%s\n' "$cmdline" | grep -A1 -x -- "$MARKER" | tail -n +2 | grep -qx -- "$name"; then
      echo "$pid"
      return 0
    fi
  done
}

start_node() {
  local n=$1 env_lines=()
  if [ -n "$(node_pid "$n")" ]; then
    log "$(node_name "$n") already runs"
    return 0
  fi
  if port_open "$(amqp_port "$n")" || port_open "$(dist_port "$n")"; then
    die "port $(amqp_port "$n") or $(dist_port "$n") is taken by a process that is not $(node_name "$n")"
  fi
  write_node_files "$n"
  mapfile -t env_lines < <(node_env "$n")
  log "starting $(node_name "$n") (AMQP 127.0.0.1:$(amqp_port "$n"))"
  # Raised in the rabbitmq user's shell: runuser's PAM session resets the limits it was given.
  # shellcheck disable=SC2016 # $@ is the inner shell's
  as_rabbitmq env "${env_lines[@]}" sh -c 'ulimit -n 20000 && exec "$@"' sh "$RABBIT_BIN/rabbitmq-server" -detached
}

# Waits until node N has booted. await_startup fails at once while the node has not yet
# registered with epmd, so it is asked again until the deadline or until the node's process is gone.
await_node() {
  local n=$1 deadline=$((SECONDS + WAIT_S))
  until ctl "$n" await_startup --timeout "$WAIT_S" >/dev/null 2>&1; do
    [ -n "$(node_pid "$n")" ] || die "$(node_name "$n") exited while booting; see $(node_dir "$n")/log"
    [ "$SECONDS" -lt "$deadline" ] || die "$(node_name "$n") did not boot in ${WAIT_S}s; see $(node_dir "$n")/log"
    sleep 1
  done
}

# Prints the number of running nodes node N sees in its cluster (0 when it does not answer).
running_count() {
  ctl "$1" eval 'length(rabbit_nodes:all_running()).' 2>/dev/null | tr -d '\r' | tail -1 || echo 0
}

# Whether node N is a member of node 1's cluster (running or not).
is_member() {
  # Prints a list such as [ir3@vm,ir2@vm,ir1@vm] (quoted where the host name needs it).
  ctl 1 eval 'rabbit_nodes:all().' 2>/dev/null | tr -d "[]' " | tr ',' '\n' | grep -qx -- "$(node_name "$1")"
}

join_node() {
  local n=$1
  local out
  out=$(node_dir "$n")/log/join.log
  log "joining $(node_name "$n") to $(node_name 1)"
  # join_cluster prints warnings and errors about tables it recreates; kept in a file, shown on failure.
  {
    ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$(node_name 1)" && ctl "$n" start_app
  } >"$out" 2>&1 || {
    cat "$out" >&2
    die "$(node_name "$n") could not join $(node_name 1)"
  }
}

all_running() { [ "$(running_count 1)" = "${#NODES[@]}" ]; }

await_cluster() {
  await_true "$WAIT_S" 1 "the cluster did not reach ${#NODES[@]} running nodes in ${WAIT_S}s" all_running
}

urls() {
  local list=() n
  for n in "${NODES[@]}"; do list+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")"); done
  comma_join "${list[@]}"
}

cmd_up() {
  local started=$SECONDS n
  if cmd_status >/dev/null 2>&1; then
    urls
    return 0
  fi
  id rabbitmq >/dev/null 2>&1 || die "no rabbitmq user: install the RabbitMQ Debian package"
  mkdir -p "$BASE"
  start_node 1
  await_node 1
  log "$(node_name 1) booted"
  # Nodes 2 and 3 boot side by side; joining is one at a time.
  for n in 2 3; do start_node "$n"; done
  for n in 2 3; do await_node "$n"; done
  log "all three nodes booted"
  for n in 2 3; do is_member "$n" || join_node "$n"; done
  await_cluster
  log "cluster up in $((SECONDS - started))s: $(node_name 1), $(node_name 2), $(node_name 3)"
  urls
}

stop_node() {
  local n=$1 pid
  pid=$(node_pid "$n")
  [ -n "$pid" ] || return 0
  log "stopping $(node_name "$n")"
  CLI_TIMEOUT_S=60 ctl "$n" stop >/dev/null 2>&1 || kill_node "$n"
  while alive "$pid"; do sleep 0.2; done
}

kill_node() { sigkill "$(node_pid "$1")" "$(node_name "$1")"; }

cmd_down() {
  local n
  # Without their peers the last nodes wait to stop; stop them all side by side.
  for n in "${NODES[@]}"; do stop_node "$n" & done
  wait
  rm -rf "$BASE"
  rmdir "$(dirname "$BASE")" 2>/dev/null || true
  log "cluster down, data removed"
}

cmd_status() {
  local n pid all=0 limit
  for n in "${NODES[@]}"; do
    pid=$(node_pid "$n")
    if [ -z "$pid" ]; then
      echo "$(node_name "$n") stopped"
      all=1
      continue
    fi
    limit=$(awk '/Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null || echo '?')
    echo "$(node_name "$n") pid $pid amqp 127.0.0.1:$(amqp_port "$n") open-files $limit running-nodes-seen $(running_count "$n")"
  done
  [ "$all" = 0 ] && [ "$(running_count 1)" = "${#NODES[@]}" ]
}

command=${1:-}
shift || true
case "$command" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  urls) urls ;;
  kill)
    check_node_number "${1:-}"
    kill_node "$1"
    ;;
  stop)
    check_node_number "${1:-}"
    stop_node "$1"
    ;;
  start)
    check_node_number "${1:-}"
    start_node "$1"
    await_node "$1"
    ;;
  ctl)
    check_node_number "${1:-}"
    n=$1
    shift
    ctl "$n" "$@"
    ;;
  queues)
    check_node_number "${1:-}"
    n=$1
    shift
    cli rabbitmq-queues "$n" "$@"
    ;;
  *)
    # The comment at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    [ "$command" = help ] || exit 2
    ;;
esac
