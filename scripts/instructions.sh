#!/usr/bin/env bash
# Instructions per request (issue 26): the release gateway runs under valgrind's
# callgrind, which counts every instruction it executes in user space (this machine's
# VM exposes no hardware counters to `perf`). After sign-in and a warm-up, the counters
# are zeroed, N requests are sent one after another on one keep-alive connection, and
# the counters are dumped: the total over N is the cost of one request, all of it —
# parsing, the session lookup, the header rewrite, the upstream exchange, the access
# line — on a path where nothing else runs.
#
#   bash scripts/instructions.sh            prints a small markdown table
#
# Knobs: N=2000 requests per case; VESTIBULE_BIN=path (default target/release/vestibule,
# built when missing); KEEP_TMP=1 keeps the temp dir; PROFILE=1 also prints
# the top functions (self instructions per request) of each case; VARIANT= one of
#   apps100    99 more [[apps]] (60 on the measured host, each with a rule) — issue 20's
#              "100 apps cost nothing measurable", counted exactly
#   assertion  headers.assertion on (a signed JWT per request, cached per session)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-2000}
BIN=${VESTIBULE_BIN:-$REPO/target/release/vestibule}
die() { echo "instructions.sh: $*" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || die "valgrind is needed (apt-get install valgrind)"
command -v callgrind_control >/dev/null 2>&1 || die "callgrind_control is needed (part of valgrind)"
[[ -x "$BIN" ]] || (cd "$REPO" && cargo build --release --locked) || die "no binary at $BIN"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP_TMP:-0}" == 1 ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_UP=$(free_port)
P_VST=$(free_port)

# The upstream: a tiny keep-alive HTTP/1.1 server answering "ok" (not measured).
python3 - "$P_UP" >"$WORK/upstream.log" 2>&1 <<'PY' &
import asyncio, sys
async def serve(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
            await w.drain()
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
PIDS+=($!)

PASS="instructions bench password"
HASH=$(printf '%s\n%s\n' "$PASS" "$PASS" | "$BIN" hash-password 2>/dev/null | tail -1)
[[ "$HASH" == '$argon2'* ]] || die "hash-password gave no hash"
printf '[[users]]\nusername = "bench"\nroles = ["patient"]\npassword_hash = "%s"\n' "$HASH" >"$WORK/users.toml"
"$BIN" gen-key >"$WORK/encryption.key" 2>/dev/null || die "gen-key failed"
mkdir -p "$WORK/data"
cat >"$WORK/vestibule.toml" <<EOF
[server]
listen = "127.0.0.1:$P_VST"

[upstream]
url = "http://127.0.0.1:$P_UP"

[users]
file = "$WORK/users.toml"

[[policy.rules]]
path_prefix = "/bench/"
access = "bypass"

[storage]
path = "$WORK/data"
encryption_key_file = "$WORK/encryption.key"

[log]
audit_file = "$WORK/audit.log"
EOF
case "${VARIANT:-}" in
    "") ;;
    apps100)
        for i in $(seq 1 99); do
            if ((i <= 60)); then
                printf '\n[[apps]]\nname = "a%d"\nhosts = ["127.0.0.1"]\npath_prefix = "/app%d"\nurl = "http://127.0.0.1:%s"\n[[apps.rules]]\npath_prefix = "/app%d/public/"\naccess = "bypass"\n' "$i" "$i" "$P_UP" "$i"
            else
                printf '\n[[apps]]\nname = "h%d"\nhosts = ["h%d.bench.test"]\nurl = "http://127.0.0.1:%s"\n' "$i" "$i" "$P_UP"
            fi
        done >>"$WORK/vestibule.toml"
        printf '\n[[apps]]\nname = "measured"\nhosts = ["127.0.0.1"]\npath_prefix = "/app"\nurl = "http://127.0.0.1:%s"\n' "$P_UP" >>"$WORK/vestibule.toml"
        ;;
    assertion)
        "$BIN" gen-signing-key >"$WORK/assertion.pem" 2>/dev/null || die "gen-signing-key failed"
        printf '\n[headers]\nassertion = "Remote-Assertion"\nassertion_key_file = "%s"\n' "$WORK/assertion.pem" >>"$WORK/vestibule.toml"
        ;;
    *) die "unknown VARIANT ${VARIANT}" ;;
esac
# Names are written out in full in every dump (not as ids defined in an earlier part), so
# callgrind_annotate can read each dump on its own; PROFILE=1 prints each case's top functions.
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" --dump-instr=no --collect-atstart=yes \
    --compress-strings=no --compress-pos=no \
    "$BIN" --config "$WORK/vestibule.toml" serve >"$WORK/serve.log" 2>&1 &
VPID=$!
PIDS+=($VPID)
for _ in $(seq 1 600); do
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$P_VST/_vestibule/health" && break
    sleep 0.2
done
curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$P_VST/_vestibule/health" || die "the gateway did not start under valgrind ($(tail -5 "$WORK/serve.log"))"

JAR="$WORK/jar"
page=$(curl -s -c "$JAR" -b "$JAR" "http://127.0.0.1:$P_VST/_vestibule/login")
token=$(grep -o 'name="csrf_token" value="[^"]*"' <<<"$page" | head -1 | sed 's/.*value="//; s/"$//')
code=$(curl -s --max-time 120 -c "$JAR" -b "$JAR" -o /dev/null -w '%{http_code}' \
    --data-urlencode "username=bench" --data-urlencode "password=$PASS" \
    --data-urlencode "csrf_token=$token" --data-urlencode "rd=/" "http://127.0.0.1:$P_VST/_vestibule/login")
[[ "$code" == 303 ]] || die "sign-in answered $code"
SESSION=$(awk '$6 == "vestibule_session" { print $7 }' "$JAR")

# Sends N requests on one keep-alive connection, checking every answer.
send() { # path cookie-or-empty count
    python3 - "$P_VST" "$1" "$2" "$3" <<'PY'
import http.client, sys
port, path, cookie, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
h = {"Cookie": f"vestibule_session={cookie}"} if cookie else {}
for _ in range(n):
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or body != b"ok":
        sys.exit(f"{path}: {r.status} {body[:80]!r}")
PY
}

# Instructions counted between a zero and a dump of the counters.
counted() { # command...
    local before f total
    callgrind_control --zero "$VPID" >/dev/null 2>&1
    "$@"
    before=$(ls "$WORK"/cg.* 2>/dev/null | wc -l)
    callgrind_control --dump "$VPID" >/dev/null 2>&1
    for _ in $(seq 1 100); do
        (( $(ls "$WORK"/cg.* 2>/dev/null | wc -l) > before )) && break
        sleep 0.1
    done
    sleep 0.5
    f=$(ls -t "$WORK"/cg.* | head -1)
    total=$(awk '/^summary:|^totals:/ { print $2; exit }' "$f")
    [[ -n "$total" ]] || die "no totals in $f"
    echo "$total"
}

# What the idle gateway executes per second (timers, file polls), subtracted below.
IDLE_SECS=10
IDLE=$(counted sleep "$IDLE_SECS")
IDLE_PER_S=$((IDLE / IDLE_SECS))

measure() { # label path cookie
    send "$2" "$3" 200                       # warm-up: connections, caches
    local t0 t1 total idle_share
    t0=$(date +%s%N)
    total=$(counted send "$2" "$3" "$N")
    t1=$(date +%s%N)
    idle_share=$(( IDLE_PER_S * (t1 - t0) / 1000000000 ))
    printf '| %s | %s | %d | %d |\n' "$1" "$N" $((total / N)) $(( (total - idle_share) / N ))
    if [[ "${PROFILE:-0}" == 1 ]]; then
        cp "$(ls -t "$WORK"/cg.* | head -1)" "$WORK/profile-${2//\//_}.cg"
    fi
}

echo "idle gateway: $IDLE_PER_S instructions per second (subtracted in the last column)"
echo
echo "| case | requests | instructions per request | without the idle share |"
echo "| --- | ---: | ---: | ---: |"
measure "bypass path (no session)" /bench/x ""
measure "authenticated (session cookie)" /app/x "$SESSION"
if [[ "${PROFILE:-0}" == 1 ]]; then
    for f in "$WORK"/profile-*.cg; do
        echo
        echo "## $(basename "$f" .cg): instructions by function (self), per request"
        # callgrind_annotate folds Rust's many monomorphised names together; this reads
        # the dump itself: a cost line belongs to the current fn= unless it follows a
        # calls= line (then it is the callee's inclusive cost, not self cost).
        python3 - "$f" "$N" <<'PY'
import collections, sys
path, n = sys.argv[1], int(sys.argv[2])
self_cost, fn, after_call = collections.Counter(), "?", False
for line in open(path, errors="replace"):
    if line.startswith("fn="):
        fn = line[3:].strip()
    elif line.startswith("calls="):
        after_call = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if after_call:
            after_call = False
        elif len(parts) > 1:
            self_cost[fn] += int(parts[1])
for name, cost in self_cost.most_common(25):
    print(f"{cost // n:8d}  {name[:150]}")
PY
    done
fi
