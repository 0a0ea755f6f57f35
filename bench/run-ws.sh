#!/usr/bin/env bash
# WebSocket side-by-side: herald, Nchan (nginx + libnginx-mod-nchan) and a plain Node `ws`
# broadcast server (bench/peers/ws-broadcast.mjs), on this machine, in one sitting.
#
#   bench/run-ws.sh              build, run every WebSocket scenario, print the table
#   ROUNDS=1 bench/run-ws.sh     fewer rounds (default 3; each scenario's result is the median)
#   ONLY=herald bench/run-ws.sh  one server only (herald|nchan|node)
#   SKIP_BUILD=1 HERALD_BIN=... LOAD_BIN=... bench/run-ws.sh
#   TABLE_ONLY=1 OUT=build/bench/<timestamp> bench/run-ws.sh   the table again, from the results
#
# bench/run.sh calls it after the SSE/long-poll comparison (so `make bench` runs both), with
# the same OUT directory. Traffic goes to 127.0.0.1 only; every run is bounded in events and
# seconds, every server is started fresh for each run and stopped after it, and the order of
# the servers rotates from round to round. About 105 s per round (5.5 minutes for 3 rounds).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-}
NCHAN_PORT=18089
NCHAN_CONF="$ROOT/bench/peers/nchan.conf"
NODE_PEER="$ROOT/bench/peers/ws-broadcast.mjs"
OUT=${OUT:-$ROOT/build/bench/$(date +%Y%m%d-%H%M%S)}
HERALD_BIN=${HERALD_BIN:-$ROOT/build/release/herald}
LOAD_BIN=${LOAD_BIN:-$ROOT/build/release/bench/herald-load}
mkdir -p "$OUT"
RESULTS="$OUT/ws-results.jsonl"
TABLE_ONLY=${TABLE_ONLY:-}
[ -n "$TABLE_ONLY" ] || : >"$RESULTS"

LOG_PREFIX="ws-"
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- scenarios
# label|servers|tool arguments. servers: "all" or a comma-separated list. The same arguments
# for every server; publishing is HTTP POST (herald /v1/topics/{t}/events, Nchan /pub/{t},
# Node /pub/{t}), 64-byte bodies carrying the send time.
#
# Fan-out (herald in raw mode, GET /v1/topics/{t}/ws: a frame is the event's data alone, as
# with the peers): W publisher connections, each with one request in flight, held back while
# the subscribers trail by more than --max-lag events on average. The runs with 10,000
# subscribers start on a fresh server and also give the idle RSS per connection (measured
# after the subscribers are connected, before any event; permessage-deflate not offered).
# wsjson-*: herald's multiplexed JSON protocol (GET /v1/ws, then a subscribe message).
# wsidlez: herald with permessage-deflate negotiated on every connection: idle RSS only.
DEFAULT_SCENARIOS=(
  "wsfan1k-w4|all|ws -n 1000 -m 3000 --publishers 4 --max-lag 100 --duration 5"
  "wsfan1k-w8|all|ws -n 1000 -m 3000 --publishers 8 --max-lag 100 --duration 5"
  "wsfan10k-w4|all|ws -n 10000 -m 400 --publishers 4 --max-lag 50 --duration 5 --settle-ms 1000"
  "wsfan10k-w8|all|ws -n 10000 -m 400 --publishers 8 --max-lag 50 --duration 5 --settle-ms 1000"
  "wsjson1k-w8|herald|ws --ws-json -n 1000 -m 3000 --publishers 8 --max-lag 100 --duration 5"
  "wsjson10k-w8|herald|ws --ws-json -n 10000 -m 400 --publishers 8 --max-lag 50 --duration 5 --settle-ms 1000"
  "wsidlez-10k|herald|ws --ws-deflate -n 10000 -m 0 --settle-ms 1000"
)
if [ -n "${WS_SCENARIOS:-}" ]; then
  mapfile -t SCENARIOS <<<"$WS_SCENARIOS"
else
  SCENARIOS=("${DEFAULT_SCENARIOS[@]}")
fi

# ---------------------------------------------------------------- build and checks
SERVERS=(herald nchan node)
[ -n "$ONLY" ] && SERVERS=("$ONLY")
if [ -z "${SKIP_BUILD:-}" ] && [ -z "$TABLE_ONLY" ]; then
  log "building (make build)..."
  make -C "$ROOT" build >"$OUT/build.log" 2>&1 || {
    log "build failed, see $OUT/build.log"
    exit 1
  }
fi
[ -n "$TABLE_ONLY" ] || [ -x "$LOAD_BIN" ] || { log "no load tool at $LOAD_BIN"; exit 1; }
for s in "${SERVERS[@]}"; do
  [ -z "$TABLE_ONLY" ] || break
  case $s in
  herald) [ -x "$HERALD_BIN" ] || { log "no herald binary at $HERALD_BIN"; exit 1; } ;;
  nchan)
    command -v nginx >/dev/null || { log "nginx is not installed (apt-get install nginx libnginx-mod-nchan)"; exit 1; }
    [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || { log "libnginx-mod-nchan is not installed"; exit 1; }
    ;;
  node)
    command -v node >/dev/null || { log "node is not installed"; exit 1; }
    [ -d "$ROOT/node_modules/ws" ] || { log "the npm package ws is missing (make node-deps)"; exit 1; }
    ;;
  *) log "ONLY: herald, nchan or node"; exit 1 ;;
  esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -z "$TABLE_ONLY" ] && [ "$(ulimit -n)" -lt 12000 ]; then
  log "need at least 12,000 open files per process (ulimit -n is $(ulimit -n))"
  exit 1
fi

# ---------------------------------------------------------------- servers
SERVER_PID=""
SERVER_PORT=""
SERVER_DIR=""
SERVER_KIND=""

wait_port_line() { # wait_port_line PATTERN-PREFIX: parse "... listening on http://H:P" from stdout
  for _ in $(seq 100); do
    SERVER_PORT=$(sed -n "s#^$1 listening on http://[0-9.]*:\\([0-9]*\\).*#\\1#p" "$SERVER_DIR/stdout")
    [ -n "$SERVER_PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$1 did not start:"
  cat "$SERVER_DIR/stderr" >&2
  return 1
}

start_herald() {
  SERVER_DIR=$(mktemp -d /tmp/herald-wsbench.XXXXXX)
  "$HERALD_BIN" serve --listen 127.0.0.1:0 --data "$SERVER_DIR/data" --max-connections 19000 \
    >"$SERVER_DIR/stdout" 2>"$SERVER_DIR/stderr" &
  SERVER_PID=$!
  SERVER_KIND=herald
  wait_port_line herald
}

start_node() {
  SERVER_DIR=$(mktemp -d /tmp/node-wsbench.XXXXXX)
  node "$NODE_PEER" --port 0 >"$SERVER_DIR/stdout" 2>"$SERVER_DIR/stderr" &
  SERVER_PID=$!
  SERVER_KIND=node
  wait_port_line ws-broadcast
}


trap stop_server EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers


run_one() { # run_one SERVER SCENARIO ARGS...
  local server=$1 scen=$2
  shift 2
  "start_$server"
  sleep 0.3
  local line
  if line=$(timeout 120 "$LOAD_BIN" "$@" --target "$server" --port "$SERVER_PORT" \
    --server-pid "$SERVER_PID" --label "$scen" 2>>"$OUT/ws-load.stderr"); then
    printf '%s\n' "$line" >>"$RESULTS"
    log "  $(printf '%-12s %-6s' "$scen" "$server") deliveries/s=$(jget deliveries_per_s <<<"$line") events/s=$(jget events_per_s <<<"$line") loss=$(jget loss <<<"$line") failures=$(jget connect_failures <<<"$line") disconnects=$(jget disconnects <<<"$line") p99=$(jget latency_ms_p99 <<<"$line")ms rss/conn=$(jget rss_per_conn_bytes <<<"$line")B"
  else
    log "  $scen $server: the load tool failed (see $OUT/ws-load.stderr)"
  fi
  stop_server
}


# ---------------------------------------------------------------- run
if [ -z "$TABLE_ONLY" ]; then
log "WebSocket results in $RESULTS"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "versions: herald $("$HERALD_BIN" version 2>/dev/null | cut -d' ' -f2) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)), $(nginx -v 2>&1 | cut -d' ' -f3), nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo ?), node $(node --version 2>/dev/null), ws $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$ROOT/node_modules/ws/package.json" 2>/dev/null)"
BUSY_BEFORE=$(busy)
log "CPU busy before the run (other work on the machine): ${BUSY_BEFORE}%"
[ "$BUSY_BEFORE" -gt 20 ] && log "warning: the machine is not idle; numbers will be noisy"
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for entry in "${SCENARIOS[@]}"; do
    scen=${entry%%|*}
    rest=${entry#*|}
    which=${rest%%|*}
    args=${rest#*|}
    # rotate which server goes first, so drift in the machine's load hits all of them alike
    order=()
    n=${#SERVERS[@]}
    for i in $(seq 0 $((n - 1))); do order+=("${SERVERS[$(((i + round - 1) % n))]}"); done
    for server in "${order[@]}"; do
      [ "$which" = all ] || [[ ",$which," == *",$server,"* ]] || continue
      # shellcheck disable=SC2086
      run_one "$server" "$scen" $args
    done
  done
done
log "done in $(($(date +%s) - START)) s"
BUSY_AFTER=$(busy)
log "CPU busy after the run: ${BUSY_AFTER}%"
echo "$BUSY_BEFORE $BUSY_AFTER" >"$OUT/ws-busy"
else
  read -r BUSY_BEFORE BUSY_AFTER <"$OUT/ws-busy" || { BUSY_BEFORE='?'; BUSY_AFTER='?'; }
fi

# ---------------------------------------------------------------- table
g() { grep "$@" || true; } # no match is not an error here
sel() { g "\"target\":\"$1\"" "$RESULTS"; }
medians() { # medians GROUP SERVER FIELD -> "label median" for every label of that group
  local labels l
  labels=$(sel "$2" | jget label | g "^$1-" | sort -u)
  for l in $labels; do
    printf '%s %s\n' "$l" "$(sel "$2" | g "\"label\":\"$l\"" | jget "$3" | median)"
  done
}
best() { medians "$1" "$2" "$3" | sort -k2,2gr | head -1; }
at() { sel "$2" | g "\"label\":\"$1\"" | jget "$3" | median; }
group_median() { sel "$2" | g "\"label\":\"$1-" | jget "$3" | median; }
total() { sel "$2" | g "\"label\":\"$1-" | jget "$3" | awk '{s+=$1} END {print s+0}'; }
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'
}
fmt() { # numbers >= 100 rounded to integers with thousands separators; others as they are
  awk -v v="$1" 'BEGIN { if (v ~ /^-?[0-9.]+$/ && (v >= 100 || v <= -100)) v = sprintf("%.0f", v)
    if (v ~ /^-?[0-9]+$/) { s = ""; n = v; while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) } print n s } else print v }'
}
declare -A BEST
best_row() { # best_row TEXT GROUP FIELD TARGET
  local s b v l cells=() vals=()
  for s in herald nchan node; do
    b=$(best "$2" "$s" "$3")
    if [ -n "$b" ]; then l=${b%% *}; v=${b#* }; else l=-; v=n/a; fi
    BEST[$s]=$l
    vals+=("$v")
    cells+=("$(fmt "$v") (${l##*-})")
  done
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${cells[0]}" "${cells[1]}" "${cells[2]}" \
    "$(ratio "${vals[0]}" "${vals[1]}")" "$(ratio "${vals[0]}" "${vals[2]}")" "$4"
}
at_row() { # at_row TEXT FIELD (at each server's best label from the previous best_row)
  local s vals=()
  for s in herald nchan node; do vals+=("$(at "${BEST[$s]}" "$s" "$2")"); done
  printf '| %s | %s | %s | %s | %s | %s | |\n' "$1" "$(fmt "${vals[0]}")" "$(fmt "${vals[1]}")" \
    "$(fmt "${vals[2]}")" "$(ratio "${vals[0]}" "${vals[1]}")" "$(ratio "${vals[0]}" "${vals[2]}")"
}
plain_row() { # plain_row TEXT GROUP FIELD TARGET
  local s vals=()
  for s in herald nchan node; do vals+=("$(group_median "$2" "$s" "$3")"); done
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "${vals[0]}")" "$(fmt "${vals[1]}")" \
    "$(fmt "${vals[2]}")" "$(ratio "${vals[0]}" "${vals[1]}")" "$(ratio "${vals[0]}" "${vals[2]}")" "$4"
}
herald_row() { # herald_row TEXT GROUP FIELD: herald only, best label of the group
  local b l
  b=$(best "$2" herald "$3")
  [ -n "$b" ] || return 0
  l=${b%% *}
  printf '| %s | %s (%s) | | | | | |\n' "$1" "$(fmt "${b#* }")" "${l##*-}"
  BEST[herald]=$l
}
{
  echo "| WebSocket scenario (median of $ROUNDS runs; (wN) = publisher connections) | herald | Nchan | Node ws | herald/Nchan | herald/Node | target |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  best_row "fan-out to 1,000: deliveries/s" wsfan1k deliveries_per_s "≥ 1.20× Nchan, no loss"
  at_row "  ... latency p50 (ms)" latency_ms_p50
  at_row "  ... latency p99 (ms)" latency_ms_p99
  at_row "  ... deliveries per server CPU-second" deliveries_per_server_cpu_s
  best_row "fan-out to 10,000: deliveries/s" wsfan10k deliveries_per_s "≥ 1.20× Nchan, no loss"
  at_row "  ... latency p50 (ms)" latency_ms_p50
  at_row "  ... latency p99 (ms)" latency_ms_p99
  at_row "  ... deliveries per server CPU-second" deliveries_per_server_cpu_s
  plain_row "idle WebSocket connection, deflate off: server RSS (bytes)" wsfan10k rss_per_conn_bytes "herald ≤ 3,072"
  herald_row "herald JSON protocol (/v1/ws), 1,000: deliveries/s" wsjson1k deliveries_per_s
  printf '| %s | %s | | | | | |\n' "  ... latency p50 / p99 (ms)" "$(at "${BEST[herald]:--}" herald latency_ms_p50) / $(at "${BEST[herald]:--}" herald latency_ms_p99)"
  herald_row "herald JSON protocol (/v1/ws), 10,000: deliveries/s" wsjson10k deliveries_per_s
  printf '| %s | %s | | | | | |\n' "  ... latency p50 / p99 (ms)" "$(at "${BEST[herald]:--}" herald latency_ms_p50) / $(at "${BEST[herald]:--}" herald latency_ms_p99)"
  v=$(group_median wsidlez herald rss_per_conn_bytes)
  printf '| %s | %s | | | | | herald ≤ 3,072 |\n' "herald idle connection, permessage-deflate negotiated: RSS (bytes)" "$(fmt "$v")"
  echo
  echo "Fan-out at equal publisher concurrency (medians, deliveries/s):"
  echo
  echo "| scenario | herald | Nchan | Node ws | herald/Nchan | herald/Node |"
  echo "|---|---:|---:|---:|---:|---:|"
  for l in $(g -o '"label":"wsfan[^"]*"' "$RESULTS" | sed 's/.*:"\(.*\)"/\1/' | sort -u -t- -k1,1r -k2,2V); do
    hv=$(at "$l" herald deliveries_per_s); nv=$(at "$l" nchan deliveries_per_s); ov=$(at "$l" node deliveries_per_s)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$l" "$(fmt "$hv")" "$(fmt "$nv")" "$(fmt "$ov")" \
      "$(ratio "$hv" "$nv")" "$(ratio "$hv" "$ov")"
  done
  echo
  echo "Machine: $(nproc) cores; CPU busy with other work: ${BUSY_BEFORE}% before, ${BUSY_AFTER}% after the run."
  for s in "${SERVERS[@]}"; do
    sum=0; dup=0; cf=0; dc=0; pe=0; pr=0
    for g in wsfan1k wsfan10k wsjson1k wsjson10k wsidlez; do
      sum=$((sum + $(total $g "$s" loss))); dup=$((dup + $(total $g "$s" duplicates)))
      cf=$((cf + $(total $g "$s" connect_failures))); dc=$((dc + $(total $g "$s" disconnects)))
      pe=$((pe + $(total $g "$s" publish_errors))); pr=$((pr + $(total $g "$s" protocol_errors)))
    done
    printf '%s, all WebSocket runs: %s lost deliveries, %s duplicates, %s connect failures, %s disconnects, %s publish errors, %s protocol errors\n' \
      "$s" "$sum" "$dup" "$cf" "$dc" "$pe" "$pr"
  done
  z=$(total wsidlez herald ws_deflate_negotiated); c=$(total wsidlez herald connected)
  echo "herald, permessage-deflate runs: negotiated on $z of $c connections."
} | tee "$OUT/ws-table.md"
