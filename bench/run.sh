#!/usr/bin/env bash
# Side-by-side comparison of herald and Nchan (nginx + libnginx-mod-nchan) on this machine:
# SSE, long-poll and publishing here, then the WebSocket scenarios (herald, Nchan and a Node
# `ws` broadcast server) through bench/run-ws.sh, into the same OUT directory.
#
#   bench/run.sh                 build, run every scenario against every server, print the tables
#   ROUNDS=1 bench/run.sh        fewer rounds (default 3; each scenario's result is the median)
#   ONLY=nchan bench/run.sh      one server only (herald|nchan; node: the WebSocket part only)
#   SKIP_WS=1 bench/run.sh       SSE/long-poll/publish only (SKIP_SSE=1: WebSocket only)
#   SKIP_BUILD=1 HERALD_BIN=... LOAD_BIN=... bench/run.sh
#
# Traffic goes to 127.0.0.1 only. Each run of the load tool is bounded in events and seconds,
# and every server is started fresh for each run and stopped after it; the SSE part takes
# about 2 minutes per round, the WebSocket part under 2 (about 11 minutes in all for 3 rounds),
# and the scripts stop everything they started on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-}
NCHAN_PORT=18089
NCHAN_CONF="$ROOT/bench/peers/nchan.conf"
OUT=${OUT:-$ROOT/build/bench/$(date +%Y%m%d-%H%M%S)}
HERALD_BIN=${HERALD_BIN:-$ROOT/build/release/herald}
LOAD_BIN=${LOAD_BIN:-$ROOT/build/release/bench/herald-load}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

LOG_PREFIX=""
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- scenarios
# label|tool arguments (the same for both servers). A label's part before "-" is its group.
#
# Fan-out: W publisher connections, each with one request in flight, held back while the
# subscribers trail by more than --max-lag events on average, so that neither server queues
# without bound; the result is the sustained deliveries/s from the first publish to the last
# delivery. The servers answer a publish at different moments (Nchan once it has handed the
# message to its subscribers, herald once the event is durable), so publisher concurrency
# suits them differently: each fan-out is run with 1, 4 and 8 publishers and each server is
# credited with its best. The 10k fan-out runs start on a fresh server and also give the idle
# RSS per connection (measured after the 10,000 subscribers are connected, before any event).
SCENARIOS=(
  "fan1k-w1|sse -n 1000 -m 3000 --publishers 1 --max-lag 100 --duration 6"
  "fan1k-w4|sse -n 1000 -m 3000 --publishers 4 --max-lag 100 --duration 6"
  "fan1k-w8|sse -n 1000 -m 3000 --publishers 8 --max-lag 100 --duration 6"
  "fan10k-w1|sse -n 10000 -m 400 --publishers 1 --max-lag 50 --duration 6 --settle-ms 1000"
  "fan10k-w4|sse -n 10000 -m 400 --publishers 4 --max-lag 50 --duration 6 --settle-ms 1000"
  "fan10k-w8|sse -n 10000 -m 400 --publishers 8 --max-lag 50 --duration 6 --settle-ms 1000"
  "lp1k-w4|longpoll -n 1000 -m 2000 --publishers 4 --max-lag 100 --duration 6"
  "pub-w64|pub -m 60000 --publishers 64 --duration 6"
)

# ---------------------------------------------------------------- build
if [ -z "${SKIP_BUILD:-}" ]; then
  log "building (make build)..."
  make -C "$ROOT" build >"$OUT/build.log" 2>&1 || {
    log "build failed, see $OUT/build.log"
    exit 1
  }
fi
[ -x "$LOAD_BIN" ] || { log "no load tool at $LOAD_BIN"; exit 1; }

run_ws() { # the WebSocket scenarios (bench/run-ws.sh), same binaries, rounds and OUT
  [ -z "${SKIP_WS:-}" ] || return 0
  SKIP_BUILD=1 OUT="$OUT" HERALD_BIN="$HERALD_BIN" LOAD_BIN="$LOAD_BIN" ROUNDS="$ROUNDS" ONLY="$ONLY" \
    "$ROOT/bench/run-ws.sh"
}
if [ -n "${SKIP_SSE:-}" ] || [ "$ONLY" = node ]; then
  run_ws
  exit 0
fi

if [ "$ONLY" != nchan ]; then
  [ -x "$HERALD_BIN" ] || { log "no herald binary at $HERALD_BIN"; exit 1; }
fi
if [ "$ONLY" != herald ]; then
  command -v nginx >/dev/null || { log "nginx is not installed (apt-get install nginx libnginx-mod-nchan)"; exit 1; }
  [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || { log "libnginx-mod-nchan is not installed"; exit 1; }
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 12000 ]; then
  log "need at least 12,000 open files per process (ulimit -n is $(ulimit -n))"
  exit 1
fi

# ---------------------------------------------------------------- servers
SERVER_PID=""
SERVER_PORT=""
SERVER_DIR=""
SERVER_KIND=""

start_herald() {
  SERVER_DIR=$(mktemp -d /tmp/herald-bench.XXXXXX)
  "$HERALD_BIN" serve --listen 127.0.0.1:0 --data "$SERVER_DIR/data" --max-connections 19000 \
    >"$SERVER_DIR/stdout" 2>"$SERVER_DIR/stderr" &
  SERVER_PID=$!
  SERVER_KIND=herald
  for _ in $(seq 100); do
    SERVER_PORT=$(sed -n 's#^herald listening on http://[0-9.]*:\([0-9]*\).*#\1#p' "$SERVER_DIR/stdout")
    [ -n "$SERVER_PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "herald did not start:"
  cat "$SERVER_DIR/stderr" >&2
  return 1
}


trap stop_server EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers


run_one() { # run_one SERVER SCENARIO ARGS...
  local server=$1 scen=$2
  shift 2
  if [ "$server" = herald ]; then start_herald; else start_nchan; fi
  sleep 0.3
  local line
  if line=$(timeout 120 "$LOAD_BIN" "$@" --target "$server" --port "$SERVER_PORT" \
    --server-pid "$SERVER_PID" --label "$scen" 2>>"$OUT/load.stderr"); then
    printf '%s\n' "$line" >>"$RESULTS"
    log "  $(printf '%-7s %-6s' "$scen" "$server") deliveries/s=$(jget deliveries_per_s <<<"$line") events/s=$(jget events_per_s <<<"$line") loss=$(jget loss <<<"$line") failures=$(jget connect_failures <<<"$line") p99=$(jget latency_ms_p99 <<<"$line")ms rss/conn=$(jget rss_per_conn_bytes <<<"$line")B"
  else
    log "  $scen $server: the load tool failed (see $OUT/load.stderr)"
  fi
  stop_server
}

# ---------------------------------------------------------------- run
SERVERS=(herald nchan)
[ -n "$ONLY" ] && SERVERS=("$ONLY")
log "results in $OUT"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
BUSY_BEFORE=$(busy)
log "CPU busy before the run (other work on the machine): ${BUSY_BEFORE}%"
[ "$BUSY_BEFORE" -gt 20 ] && log "warning: the machine is not idle; numbers will be noisy"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for entry in "${SCENARIOS[@]}"; do
    scen=${entry%%|*}
    args=${entry#*|}
    # alternate which server goes first, so drift in the machine's load hits both alike
    order=("${SERVERS[@]}")
    if [ ${#SERVERS[@]} -eq 2 ] && [ $((round % 2)) -eq 0 ]; then order=("${SERVERS[1]}" "${SERVERS[0]}"); fi
    for server in "${order[@]}"; do
      # shellcheck disable=SC2086
      run_one "$server" "$scen" $args
    done
  done
done
log "done in $(($(date +%s) - START)) s"
BUSY_AFTER=$(busy)
log "CPU busy after the run: ${BUSY_AFTER}%"

# ---------------------------------------------------------------- table
g() { grep "$@" || true; } # no match (a server left out with ONLY) is not an error here
# medians LABEL-PREFIX SERVER FIELD -> "label median" for every label of that group
medians() {
  local labels l
  labels=$(g "\"target\":\"$2\"" "$RESULTS" | jget label | g "^$1-" | sort -u)
  for l in $labels; do
    printf '%s %s\n' "$l" "$(g "\"target\":\"$2\"" "$RESULTS" | g "\"label\":\"$l\"" | jget "$3" | median)"
  done
}
best() { # best GROUP SERVER FIELD -> "label value" with the highest median
  medians "$1" "$2" "$3" | sort -k2,2gr | head -1
}
at() { # at LABEL SERVER FIELD -> median of FIELD for that exact label
  g "\"target\":\"$2\"" "$RESULTS" | g "\"label\":\"$1\"" | jget "$3" | median
}
group_median() { # group_median GROUP SERVER FIELD -> median over every run of the group
  g "\"target\":\"$2\"" "$RESULTS" | g "\"label\":\"$1-" | jget "$3" | median
}
total() { # total GROUP SERVER FIELD -> sum over every run of the group
  g "\"target\":\"$2\"" "$RESULTS" | g "\"label\":\"$1-" | jget "$3" | awk '{s+=$1} END {print s+0}'
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'
}
fmt() { # thousands separators for integers, as is otherwise
  awk -v v="$1" 'BEGIN { if (v ~ /^-?[0-9]+$/) { s = ""; n = v; while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) } print n s } else print v }'
}
best_row() { # best_row TEXT GROUP FIELD TARGET
  local hb nb hl hv nl nv
  hb=$(best "$2" herald "$3"); nb=$(best "$2" nchan "$3")
  hl=${hb%% *}; hv=${hb#* }; nl=${nb%% *}; nv=${nb#* }
  [ -n "$hb" ] || { hl=-; hv=n/a; }
  [ -n "$nb" ] || { nl=-; nv=n/a; }
  printf '| %s | %s (%s) | %s (%s) | %s | %s |\n' "$1" "$(fmt "$hv")" "${hl#*-}" "$(fmt "$nv")" "${nl#*-}" "$(ratio "$hv" "$nv")" "$4"
  BEST_H=$hl; BEST_N=$nl
}
at_row() { # at_row TEXT FIELD (uses BEST_H / BEST_N from the previous best_row)
  local hv nv
  hv=$(at "$BEST_H" herald "$2"); nv=$(at "$BEST_N" nchan "$2")
  printf '| %s | %s | %s | %s | |\n' "$1" "$(fmt "$hv")" "$(fmt "$nv")" "$(ratio "$hv" "$nv")"
}
plain_row() { # plain_row TEXT GROUP FIELD TARGET
  local hv nv
  hv=$(group_median "$2" herald "$3"); nv=$(group_median "$2" nchan "$3")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$hv")" "$(fmt "$nv")" "$(ratio "$hv" "$nv")" "$4"
}
{
  echo "| scenario (median of $ROUNDS runs; (wN) = publisher connections) | herald | Nchan | herald/Nchan | target |"
  echo "|---|---:|---:|---:|---|"
  best_row "SSE fan-out to 1,000: deliveries/s" fan1k deliveries_per_s "≥ 1.20, no loss"
  at_row "  ... latency p50 (ms)" latency_ms_p50
  at_row "  ... latency p99 (ms)" latency_ms_p99
  at_row "  ... deliveries per server CPU-second" deliveries_per_server_cpu_s
  best_row "SSE fan-out to 10,000: deliveries/s" fan10k deliveries_per_s "≥ 1.20, no loss"
  at_row "  ... latency p50 (ms)" latency_ms_p50
  at_row "  ... latency p99 (ms)" latency_ms_p99
  at_row "  ... deliveries per server CPU-second" deliveries_per_server_cpu_s
  plain_row "idle SSE connection: server RSS (bytes)" fan10k rss_per_conn_bytes "herald ≤ 3,072"
  best_row "long-poll, 1,000 subscribers: deliveries/s" lp1k deliveries_per_s ""
  at_row "  ... latency p99 (ms)" latency_ms_p99
  best_row "publish: events/s acknowledged (herald: durable)" pub events_per_s "herald ≥ 20,000"
  at_row "  ... ack latency p99 (ms)" ack_ms_p99
  echo
  echo "Machine: $(nproc) cores; CPU busy with other work: ${BUSY_BEFORE}% before, ${BUSY_AFTER}% after the run."
  for s in "${SERVERS[@]}"; do
    sum=0; dup=0; cf=0; dc=0; pe=0
    for g in fan1k fan10k lp1k pub; do
      sum=$((sum + $(total $g "$s" loss))); dup=$((dup + $(total $g "$s" duplicates)))
      cf=$((cf + $(total $g "$s" connect_failures))); dc=$((dc + $(total $g "$s" disconnects)))
      pe=$((pe + $(total $g "$s" publish_errors)))
    done
    printf '%s, all runs: %s lost deliveries, %s duplicates, %s connect failures, %s disconnects, %s publish errors\n' \
      "$s" "$sum" "$dup" "$cf" "$dc" "$pe"
  done
} | tee "$OUT/table.md"

# ---------------------------------------------------------------- WebSocket
echo
run_ws
