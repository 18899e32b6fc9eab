#!/usr/bin/env bash
# End-to-end load benchmark over real sockets on loopback (issue 8).
#
#   benches/load.sh            # everything below except spray (≈ 6 min with DURATION=10)
#   benches/load.sh main       # bare vs quickstart vs quickstart (ACCESS_LOG=0) vs peer
#   benches/load.sh refusal    # 401 and 429 paths vs the allowed path, quickstart and peer
#   benches/load.sh spray      # 30 s of distinct X-Forwarded-For addresses, RSS every 3 s
#   benches/load.sh parts      # bare vs jwt-floor vs each part of the stack alone (ACCESS_LOG=0)
#
# Servers (release builds):
#   bare        benches/load/target/release/bare   axum 0.8 router, GET /me, no middleware
#   quickstart  target/release/examples/quickstart the axum-shield quickstart
#   peer        benches/load/target/release/peer   tower-http + axum-helmet + tower_governor 0.8
#                                                  + axum-jwt-auth 0.7 (see src/bin/peer.rs)
#   jwt-floor   benches/load/target/release/jwt-floor  the bare router whose handler only verifies
#                                                  the HS256 token with jsonwebtoken: the cost
#                                                  floor of any stack that checks a JWT
#   parts-*     benches/load/target/release/parts  one part of the quickstart stack alone (PART=
#                                                  shield | rate-limit | jwt | all; see parts.rs)
# Each is driven with wrk carrying one valid bearer token (printed by `peer token`), in rounds
# A B C D A B C D … so machine drift hits every server.
#
# PINNED mode (default, PIN=1): the server runs on core 0 with one tokio worker
# (`taskset -c 0`, TOKIO_WORKER_THREADS=1) and wrk on core 1 (`taskset -c 1 wrk -t1 -c64`).
# With both on the same cores the server is preempted at nearly every `writev` when wrk wakes
# up, so each extra microsecond of server work also buys context switches and the ratios are
# inflated and move from run to run; pinned, they measure the server. Each run also reports
# the server's CPU time per request and its context switches per request (from /proc).
# PIN=0 is the SHARED-CORE mode of earlier figures (`wrk -t2 -c64`, server on every core),
# labelled as such in the output.
#
# THE QUICKSTART CONTRACT this script relies on (peer implements the same names):
#   - listens on 127.0.0.1:$PORT
#   - JWT_SECRET (>= 32 bytes) from the environment
#   - accepts HS256 tokens with iss=http://127.0.0.1:3000, aud=axum-shield-quickstart,
#     scopes in the space-separated `scope` claim
#   - GET /me needs a valid token (401 without), answers 200 with a small JSON object
#   - RATE_LIMIT            overrides the per-IP quota string, e.g. "1000000/second"
#   - ACCESS_LOG=0          turns the per-request access line off (security events stay on)
#   - LOG_FORMAT=json       JSON lines
#   - TRUSTED_PROXIES       comma-separated CIDRs whose X-Forwarded-For is believed
#   - RATE_LIMIT_MAX_KEYS   cap on the number of rate-limit keys held in memory
#
# Environment knobs (defaults):
#   PIN=1  DURATION=10  ROUNDS=3  TARGET_PATH=/me  JWT_SECRET=<fixed 44-byte test secret>
#   ALLOW_QUOTA=1000000/second  TINY_QUOTA=1/minute
#   SPRAY_DURATION=30  SPRAY_MAX_KEYS=10000  SPRAY_QUOTA=100/second  SPRAY_SERVERS="quickstart peer"
#   SERVERS="bare quickstart quickstart-nolog peer jwt-floor" (main)   REFUSAL_SERVERS="quickstart peer"
#   PARTS_SERVERS="bare jwt-floor parts-jwt parts-shield parts-rate-limit parts-all" (parts)
#   SKIP_BUILD=1 reuses existing binaries.
# Server output (the access lines) goes to a file in a temporary directory, whose line count is
# printed per run and which is deleted after each run. Everything binds 127.0.0.1 only.
set -euo pipefail

MODE=${1:-all}
case "$MODE" in all | main | refusal | spray | parts) ;; *)
  echo "usage: $0 [all|main|refusal|spray|parts]" >&2
  exit 2
  ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD="$ROOT/benches/load"
LOAD_TARGET="$LOAD/target"
ROOT_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_BARE="$LOAD_TARGET/release/bare"
BIN_PEER="$LOAD_TARGET/release/peer"
BIN_FLOOR="$LOAD_TARGET/release/jwt-floor"
BIN_PARTS="$LOAD_TARGET/release/parts"
BIN_QUICKSTART="$ROOT_TARGET/release/examples/quickstart"

PIN=${PIN:-1}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
TARGET_PATH=${TARGET_PATH:-/me}
ALLOW_QUOTA=${ALLOW_QUOTA:-1000000/second}
TINY_QUOTA=${TINY_QUOTA:-1/minute}
SPRAY_DURATION=${SPRAY_DURATION:-30}
SPRAY_MAX_KEYS=${SPRAY_MAX_KEYS:-10000}
SPRAY_QUOTA=${SPRAY_QUOTA:-100/second}
SPRAY_SERVERS=${SPRAY_SERVERS:-quickstart peer}
SERVERS=${SERVERS:-bare quickstart quickstart-nolog peer jwt-floor}
PARTS_SERVERS=${PARTS_SERVERS:-bare jwt-floor parts-jwt parts-shield parts-rate-limit parts-all}
REFUSAL_SERVERS=${REFUSAL_SERVERS:-quickstart peer}
export JWT_SECRET=${JWT_SECRET:-axum-shield-load-benchmark-secret-0123456789}
export LOG_FORMAT=json
unset RUST_LOG

WORK=$(mktemp -d "${TMPDIR:-/tmp}/axum-shield-load.XXXXXX")
SERVER_PID=""
BG_PID=""

stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL (bounded)
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  [[ -n "$BG_PID" ]] && stop_pid "$BG_PID"
  [[ -n "$SERVER_PID" ]] && stop_pid "$SERVER_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and builds ----------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  echo "== installing wrk from the distribution's packages"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk
fi
command -v curl >/dev/null 2>&1 || { echo "curl is required" >&2; exit 1; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building (release)"
  (cd "$ROOT" && cargo build --release --example quickstart)
  cargo build --release --manifest-path "$LOAD/Cargo.toml" --target-dir "$LOAD_TARGET"
fi
[[ -x "$BIN_PEER" ]] || { echo "missing $BIN_PEER (it prints the token)" >&2; exit 1; }

TOKEN=$("$BIN_PEER" token)
AUTH=(-H "Authorization: Bearer $TOKEN")

# --- helpers -------------------------------------------------------------------------------
free_port() { # a loopback port nobody answers on (bounded tries)
  local i port
  for i in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# start_server NAME [VAR=value ...]: starts NAME on a free port; sets PORT, SERVER_PID, SERVER_LOG.
start_server() {
  local name=$1 bin
  shift
  local env=("RATE_LIMIT=$ALLOW_QUOTA")
  case "$name" in
  bare) bin=$BIN_BARE ;;
  peer) bin=$BIN_PEER ;;
  jwt-floor) bin=$BIN_FLOOR ;;
  parts-*) bin=$BIN_PARTS; env+=("PART=${name#parts-}") ;;
  peer-nolog) bin=$BIN_PEER; env+=(ACCESS_LOG=0) ;;
  quickstart) bin=$BIN_QUICKSTART ;;
  quickstart-nolog) bin=$BIN_QUICKSTART; env+=(ACCESS_LOG=0) ;;
  *) echo "unknown server $name" >&2; return 1 ;;
  esac
  [[ -x "$bin" ]] || { echo "missing binary $bin (build failed, or SKIP_BUILD=1 before a build)" >&2; return 1; }
  PORT=$(free_port)
  SERVER_LOG="$WORK/$name.log"
  local pin=()
  if [[ "$PIN" == 1 ]]; then
    pin=(taskset -c 0)
    env+=(TOKIO_WORKER_THREADS=1)
  fi
  env "${env[@]}" "$@" PORT="$PORT" "${pin[@]}" "$bin" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  local i
  for i in $(seq 1 100); do # up to 10 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "$name exited at start:" >&2
      tail -n 20 "$SERVER_LOG" >&2
      SERVER_PID=""
      return 1
    fi
    if curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT$TARGET_PATH"; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not answer on 127.0.0.1:$PORT within 10 s" >&2
  return 1
}

stop_server() { # prints the number of lines the server wrote, then deletes its log
  stop_pid "$SERVER_PID"
  SERVER_PID=""
  LOG_LINES=$(wc -l <"$SERVER_LOG")
  rm -f "$SERVER_LOG"
}

status_of() { # status_of [curl args...]: HTTP status of one request to the target
  curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" "http://127.0.0.1:$PORT$TARGET_PATH" || true
}

to_ms() { # "1.23ms" | "456.00us" | "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n = n * 60000; else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

# The server's CPU time (user + system, in clock ticks, all threads) and context switches
# (voluntary + involuntary, summed over its threads), read from /proc.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
wrk_cmd() {
  if [[ "$PIN" == 1 ]]; then
    echo "taskset -c 1 wrk -t1 -c64"
  else
    echo "wrk -t2 -c64"
  fi
}

# run_wrk [wrk args...]: sets RPS, P99 (ms), NON2XX, TOTAL, ERRORS, CPU_US (server CPU µs per
# request) and CTX (server context switches per request) from one wrk run.
run_wrk() {
  local out ticks0 ctx0 ticks1 ctx1
  ticks0=$(cpu_ticks "$SERVER_PID")
  ctx0=$(ctx_switches "$SERVER_PID")
  # shellcheck disable=SC2046
  out=$($(wrk_cmd) -d"${DURATION}s" --latency "$@" "http://127.0.0.1:$PORT$TARGET_PATH")
  ticks1=$(cpu_ticks "$SERVER_PID")
  ctx1=$(ctx_switches "$SERVER_PID")
  echo "$out" >"$WORK/wrk.last"
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  NON2XX=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")
  NON2XX=${NON2XX:-0}
  TOTAL=$(awk '/requests in/ { print $1 }' <<<"$out")
  ERRORS=$(awk '/Socket errors/ { sub(/.*Socket errors: /, ""); print }' <<<"$out")
  ERRORS=${ERRORS:-none}
  [[ -n "$RPS" && -n "$TOTAL" ]] || { echo "could not parse wrk output:" >&2; echo "$out" >&2; return 1; }
  CPU_US=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n="$TOTAL" \
    'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "n/a" }')
  CTX=$(awk -v c=$((ctx1 - ctx0)) -v n="$TOTAL" 'BEGIN { if (n > 0) printf "%.3f", c / n; else print "n/a" }')
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }

declare -A RPS_OF P99_OF CPU_OF CTX_OF
MISMATCHES=0

# measure KEY NAME EXPECT [server env...] -- [wrk args...]
measure() {
  local key=$1 name=$2 expect=$3
  shift 3
  local senv=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do senv+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  start_server "$name" "${senv[@]}"
  # One probe request with the same headers as the load: is it the path we mean to measure?
  local probe
  probe=$(status_of "$@")
  [[ "$expect" == 429 ]] && probe=$(status_of "$@") # the first request may spend the tiny quota
  run_wrk "$@"
  stop_server
  RPS_OF[$key]="${RPS_OF[$key]:-} $RPS"
  P99_OF[$key]="${P99_OF[$key]:-} $P99"
  CPU_OF[$key]="${CPU_OF[$key]:-} $CPU_US"
  CTX_OF[$key]="${CTX_OF[$key]:-} $CTX"
  local warn=""
  if [[ "$probe" != "$expect" ]]; then
    warn="  !! probe answered $probe, expected $expect"
    MISMATCHES=$((MISMATCHES + 1))
  fi
  printf '  %-26s %11s req/s  p99 %8s ms  cpu %7s us/req  ctx %6s /req  requests %8s  non-2xx %8s  log lines %8s  socket errors: %s%s\n' \
    "$key" "$RPS" "$P99" "$CPU_US" "$CTX" "$TOTAL" "$NON2XX" "$LOG_LINES" "$ERRORS" "$warn"
}

row() { # row KEY: "req/s p99 cpu ctx" medians
  printf '  %-26s %12s %10s %12s %10s\n' "$1" "$(median <<<"${RPS_OF[$1]}")" "$(median <<<"${P99_OF[$1]}")" \
    "$(median <<<"${CPU_OF[$1]}")" "$(median <<<"${CTX_OF[$1]}")"
}
header_row() { printf '  %-26s %12s %10s %12s %10s\n' "$1" "req/s" "p99 ms" "cpu us/req" "ctx/req"; }
med_rps() { median <<<"${RPS_OF[$1]}"; }

machine() {
  echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ "$PIN" == 1 ]]; then
    echo "PINNED: server on core 0 with one tokio worker, $(wrk_cmd) on core 1; -d${DURATION}s --latency, GET $TARGET_PATH, $ROUNDS rounds, medians"
  else
    echo "SHARED CORES (PIN=0): server and $(wrk_cmd) on every core; -d${DURATION}s --latency, GET $TARGET_PATH, $ROUNDS rounds, medians"
  fi
}

# --- main: bare vs quickstart vs peer ------------------------------------------------------
run_main() {
  echo
  echo "== main: allowed request with a valid token, servers alternating: $SERVERS"
  local r s
  for r in $(seq 1 "$ROUNDS"); do
    echo " round $r"
    for s in $SERVERS; do
      measure "$s" "$s" 200 -- "${AUTH[@]}"
    done
  done
  echo
  machine
  header_row server
  for s in $SERVERS; do row "$s"; done
  local has=" $SERVERS "
  if [[ $has == *" bare "* && $has == *" quickstart "* ]]; then
    echo "  quickstart / bare          $(ratio "$(med_rps quickstart)" "$(med_rps bare)")   (target >= 0.70x)"
  fi
  if [[ $has == *" bare "* && $has == *" quickstart-nolog "* ]]; then
    echo "  quickstart-nolog / bare    $(ratio "$(med_rps quickstart-nolog)" "$(med_rps bare)")   (target >= 0.85x, ACCESS_LOG=0)"
  fi
  if [[ $has == *" quickstart "* && $has == *" peer "* ]]; then
    echo "  quickstart / peer          $(ratio "$(med_rps quickstart)" "$(med_rps peer)")   (target >= 1.6x)"
  fi
  if [[ $has == *" bare "* && $has == *" peer "* ]]; then
    echo "  peer / bare                $(ratio "$(med_rps peer)" "$(med_rps bare)")"
  fi
  if [[ $has == *" bare "* && $has == *" jwt-floor "* ]]; then
    echo "  jwt-floor / bare           $(ratio "$(med_rps jwt-floor)" "$(med_rps bare)")   (HS256 check alone: the ceiling of any JWT stack)"
  fi
}

# --- refusal paths: 401 (no token) and 429 (tiny quota) vs allowed -------------------------
run_refusal() {
  echo
  echo "== refusal paths vs allowed, servers alternating: $REFUSAL_SERVERS"
  local r s
  for r in $(seq 1 "$ROUNDS"); do
    echo " round $r"
    for s in $REFUSAL_SERVERS; do
      measure "$s allowed" "$s" 200 -- "${AUTH[@]}"
      measure "$s 401" "$s" 401 --
      measure "$s 429" "$s" 429 "RATE_LIMIT=$TINY_QUOTA" -- "${AUTH[@]}"
    done
  done
  echo
  machine
  header_row path
  for s in $REFUSAL_SERVERS; do
    row "$s allowed"
    row "$s 401"
    row "$s 429"
  done
  for s in $REFUSAL_SERVERS; do
    echo "  $s 401 / allowed   $(ratio "$(med_rps "$s 401")" "$(med_rps "$s allowed")")   (target >= 1.00x)"
    echo "  $s 429 / allowed   $(ratio "$(med_rps "$s 429")" "$(med_rps "$s allowed")")   (target >= 1.00x)"
  done
}

# --- spray: one distinct X-Forwarded-For per request through a trusted proxy ---------------
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

run_spray() {
  local s
  for s in $SPRAY_SERVERS; do
    echo
    echo "== spray: $s, TRUSTED_PROXIES=127.0.0.1/32 RATE_LIMIT_MAX_KEYS=$SPRAY_MAX_KEYS RATE_LIMIT=$SPRAY_QUOTA, ${SPRAY_DURATION}s, distinct X-Forwarded-For per request"
    [[ $s == peer* ]] && echo "   (peer: tower_governor SmartIpKeyExtractor; it has no key cap, RATE_LIMIT_MAX_KEYS is ignored)"
    start_server "$s" TRUSTED_PROXIES=127.0.0.1/32 "RATE_LIMIT_MAX_KEYS=$SPRAY_MAX_KEYS" "RATE_LIMIT=$SPRAY_QUOTA"
    local start_kib
    start_kib=$(rss_kib "$SERVER_PID")
    local out="$WORK/spray.out"
    wrk -t2 -c64 -d"${SPRAY_DURATION}s" --latency -s "$LOAD/spray.lua" "${AUTH[@]}" \
      "http://127.0.0.1:$PORT$TARGET_PATH" >"$out" 2>&1 &
    BG_PID=$!
    printf '   %6s  %10s  %10s\n' "t (s)" "RSS MiB" "growth MiB"
    printf '   %6s  %10.1f  %10.1f\n' 0 "$(awk -v k="$start_kib" 'BEGIN { print k / 1024 }')" 0
    local t=0 kib max_ticks=$((SPRAY_DURATION / 3 + 5))
    local i
    for i in $(seq 1 "$max_ticks"); do
      sleep 3
      t=$((t + 3))
      kib=$(rss_kib "$SERVER_PID")
      printf '   %6s  %10.1f  %10.1f%s\n' "$t" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$kib" -v s="$start_kib" 'BEGIN { print (k - s) / 1024 }')" \
        "$(kill -0 "$BG_PID" 2>/dev/null || echo '  (load finished, idle)')"
      if ! kill -0 "$BG_PID" 2>/dev/null && ((t >= SPRAY_DURATION + 6)); then break; fi
    done
    wait "$BG_PID" || true
    BG_PID=""
    local sent non2xx rps
    sent=$(awk '/requests in/ { print $1 }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out")
    kib=$(rss_kib "$SERVER_PID")
    stop_server
    printf '   %s: %s requests (%s req/s, non-2xx %s), RSS %.1f -> %.1f MiB (+%.1f MiB)\n' \
      "$s" "${sent:-?}" "${rps:-?}" "${non2xx:-0}" \
      "$(awk -v k="$start_kib" 'BEGIN { print k / 1024 }')" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" \
      "$(awk -v k="$kib" -v s="$start_kib" 'BEGIN { print (k - s) / 1024 }')"
  done
}

# --- parts: what each part of the stack costs alone under load -------------------------------
run_parts() {
  echo
  echo "== parts: allowed request with a valid token, servers alternating: $PARTS_SERVERS"
  local r s
  for r in $(seq 1 "$ROUNDS"); do
    echo " round $r"
    for s in $PARTS_SERVERS; do
      measure "$s" "$s" 200 -- "${AUTH[@]}"
    done
  done
  echo
  machine
  printf '  %-26s %12s %10s %10s\n' server "req/s" "p99 ms" "/ bare"
  for s in $PARTS_SERVERS; do
    printf '  %-26s %12s %10s %10s\n' "$s" "$(med_rps "$s")" "$(median <<<"${P99_OF[$s]}")" \
      "$(ratio "$(med_rps "$s")" "$(med_rps bare)")"
  done
}

case "$MODE" in
all) run_main; run_refusal ;;
parts) run_parts ;;
main) run_main ;;
refusal) run_refusal ;;
spray) run_spray ;;
esac
if ((MISMATCHES > 0)); then
  echo
  echo "WARNING: $MISMATCHES run(s) did not measure the intended status (see '!!' above); their figures are not comparable."
fi
