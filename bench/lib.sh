#!/usr/bin/env bash
# Shared by bench/run.sh and bench/run-ws.sh: logging, the Nchan peer's start and stop, and
# the small statistics helpers. Callers set ROOT, NCHAN_CONF, NCHAN_PORT, OUT and LOG_PREFIX
# (prefix of per-run files, "" or "ws-"), and keep SERVER_PID/PORT/DIR/KIND.

log() { printf '%s\n' "$*" >&2; }

start_nchan() {
  if (exec 3<>/dev/tcp/127.0.0.1/$NCHAN_PORT) 2>/dev/null; then
    log "port $NCHAN_PORT is already in use (an nginx left running?)"
    return 1
  fi
  SERVER_DIR=$(mktemp -d /tmp/nchan-${LOG_PREFIX}bench.XXXXXX)
  mkdir -p "$SERVER_DIR/logs" "$SERVER_DIR/tmp"
  SERVER_KIND=nchan
  nginx -c "$NCHAN_CONF" -p "$SERVER_DIR" 2>"$SERVER_DIR/stderr"
  for _ in $(seq 100); do
    if [ -s "$SERVER_DIR/logs/nginx.pid" ] && (exec 3<>/dev/tcp/127.0.0.1/$NCHAN_PORT) 2>/dev/null; then
      SERVER_PID=$(cat "$SERVER_DIR/logs/nginx.pid")
      SERVER_PORT=$NCHAN_PORT
      return 0
    fi
    sleep 0.1
  done
  log "nginx did not start:"
  cat "$SERVER_DIR/stderr" "$SERVER_DIR/logs/error.log" >&2 2>/dev/null || true
  return 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if [ "$SERVER_KIND" = nchan ]; then
    nginx -c "$NCHAN_CONF" -p "$SERVER_DIR" -s quit 2>/dev/null || kill -QUIT "$SERVER_PID" 2>/dev/null || true
  else
    kill -TERM "$SERVER_PID" 2>/dev/null || true
  fi
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$SERVER_KIND (pid $SERVER_PID) did not stop in 10 s; killing it"
    if [ "$SERVER_KIND" = nchan ]; then
      pkill -KILL -P "$SERVER_PID" 2>/dev/null || true
    fi
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$SERVER_KIND" != nchan ]; then wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_DIR" ]; then
    cp "$SERVER_DIR/stderr" "$OUT/last-${LOG_PREFIX}$SERVER_KIND.stderr" 2>/dev/null || true
    [ "$SERVER_KIND" = nchan ] && cp "$SERVER_DIR/logs/error.log" "$OUT/last-${LOG_PREFIX}nchan-error.log" 2>/dev/null
    rm -rf "$SERVER_DIR"
  fi
  SERVER_PID=""
  SERVER_DIR=""
}

jget() { # jget KEY < json-line  (flat numeric/string fields only)
  sed -n -E "s/.*\"$1\":\"?([^\",}]*)\"?[,}].*/\1/p"
}

median() { # numbers on stdin -> median
  sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

busy() { # percentage of CPU time the machine spent busy over one second
  local a b
  read -r -a a </proc/stat; sleep 1; read -r -a b </proc/stat
  awk -v u=$((b[1] + b[2] + b[3] + b[6] + b[7] - a[1] - a[2] - a[3] - a[6] - a[7])) \
    -v t=$((b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + b[7] - a[1] - a[2] - a[3] - a[4] - a[5] - a[6] - a[7])) \
    'BEGIN { printf "%.0f", t ? 100 * u / t : 0 }'
}
