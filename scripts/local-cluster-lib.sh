# Shell functions shared by rabbitmq-cluster.sh and redis-sentinel.sh (sourced, not run). The
# sourcing script sets LOG_TAG (the prefix of its log lines) before it calls them.

log() { printf '[%s +%ss] %s\n' "$LOG_TAG" "$SECONDS" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# Whether PID still runs: a killed daemon stays a zombie until init reaps it, which can take a second.
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# await_true SECONDS INTERVAL MESSAGE COMMAND...: runs COMMAND every INTERVAL seconds until it
# succeeds; dies with MESSAGE when SECONDS passed first.
await_true() {
  local deadline=$((SECONDS + $1)) interval=$2 message=$3
  shift 3
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$message"
    sleep "$interval"
  done
}

# sigkill PID WHAT: SIGKILLs PID (when set) and waits until it is gone; logs it as WHAT.
sigkill() {
  local pid=$1 what=$2
  if [ -z "$pid" ]; then
    log "$what is not running"
    return 0
  fi
  kill -KILL "$pid"
  while alive "$pid"; do sleep 0.05; done
  log "killed $what (pid $pid)"
}

# comma_join WORD...: the words joined by commas.
comma_join() {
  local IFS=,
  echo "$*"
}
