#!/usr/bin/env bash
# Vestibule memory benchmark: resident memory (VmRSS) of the gateway on loopback with
#   1. SESSIONS (100,000) live sessions on the embedded (SQLite) backend, every one
#      of them used by at least one authenticated request;
#   2. CONNS (10,000) idle HTTP/1.1 keep-alive connections, plain HTTP and TLS.
#
#   bash scripts/bench-memory.sh [OUTPUT.md]     (default: bench-memory-results.md)
#
# It prints a markdown table and writes it into the "Memory" section of
# docs/performance.md (between the memory-results markers; the section is appended
# when it is missing). See that section for the method.
#
# Knobs (environment):
#   SESSIONS=100000   sessions inserted into the gateway's SQLite database
#   USE_CONNS=16      keep-alive connections the session client uses
#   CONNS=10000       idle keep-alive connections per protocol
#   OPEN_CONC=200     connections being opened (and handshaken) at once
#   REQ_CONC=8        requests in flight while each idle connection sends its one request
#                     (kept low so the gateway's upstream pool stays small)
#   SILENT=100        extra connections that never send a byte, held to see if they are closed
#   TLS=1             also measure idle TLS connections (0 skips)
#   HOLD_MAX=40       seconds to wait for the gateway to close the idle connections
#   SETTLE=3          seconds between the last request and the idle measurement
#   BASE_PORT=18600   first of 6 consecutive loopback ports
#   NGINX=1           also measure nginx (proxy_pass, one worker) holding the same idle
#                     connections, for the ratio (0 skips)
#   UPDATE_DOC=1      write the results into docs/performance.md (0: only print)
#   BUILD=0           1: cargo build --release first (by default only when the binary is missing)
#   KEEP_TMP=1        keep the temp dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-bench-memory-results.md}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

SESSIONS=${SESSIONS:-100000}
USE_CONNS=${USE_CONNS:-16}
CONNS=${CONNS:-10000}
OPEN_CONC=${OPEN_CONC:-200}
REQ_CONC=${REQ_CONC:-8}
SILENT=${SILENT:-100}
TLS=${TLS:-1}
HOLD_MAX=${HOLD_MAX:-40}
SETTLE=${SETTLE:-3}
BASE_PORT=${BASE_PORT:-18600}
UPDATE_DOC=${UPDATE_DOC:-1}
NGINX=${NGINX:-1}
DOC="$REPO/docs/performance.md"

P_UP=$BASE_PORT                 # upstream nginx (static responder)
P_SESS=$((BASE_PORT + 1))       # vestibule, HTTP, session test
P_HTTP=$((BASE_PORT + 2))       # vestibule, HTTP, idle-connection test
P_TLS=$((BASE_PORT + 3))        # vestibule, TLS, idle-connection test
P_NGX_HTTP=$((BASE_PORT + 4))   # nginx proxy_pass, HTTP, idle-connection test (the comparison)
P_NGX_TLS=$((BASE_PORT + 5))    # nginx proxy_pass, TLS, idle-connection test

BENCH_USER=bench.patient
BENCH_PASS='bench-password-0123456789'

log() { printf '[bench-memory %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
python3 -c 'import sqlite3, ssl, asyncio' 2>/dev/null || die "python3 lacks sqlite3/ssl/asyncio"

BIN="$REPO/target/release/vestibule"
if [[ "${BUILD:-0}" == 1 || ! -x "$BIN" ]]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
[[ -x "$BIN" ]] || die "$BIN not found (build failed?)"

# File descriptors: the client holds CONNS sockets, the gateway CONNS plus its upstream
# pool and database. Children (gateway, client) inherit this limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
NEED_FD=$((CONNS + 1000))
((NEED_FD < 20000)) && NEED_FD=20000
if [[ "$NOFILE" != unlimited ]] && ((NOFILE < NEED_FD)); then
    if ((NOFILE >= CONNS + 1000)); then
        log "open-file limit is $NOFILE (hard limit; wanted $NEED_FD): enough for $CONNS connections"
    else
        die "open-file limit is $NOFILE; need at least $((CONNS + 1000)) (raise the hard limit or lower CONNS)"
    fi
fi

for p in $P_UP $P_SESS $P_HTTP $P_TLS $P_NGX_HTTP $P_NGX_TLS; do
    if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
        die "port $p is in use; set BASE_PORT to a free range"
    fi
done

# ---------------------------------------------------------------- temp dir and cleanup
# shellcheck source=lib/workdir.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/workdir.sh"
start_workdir vestibule-bench-memory
T0=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK (open-file limit $NOFILE)"

# ---------------------------------------------------------------- keys, certificate, users
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
"$BIN" gen-key >"$WORK/encryption.key"
HASH=$(printf '%s' "$BENCH_PASS" | "$BIN" hash-password)
[[ "$HASH" == '$argon2id$'* ]] || die "hash-password printed: $HASH"
cat >"$WORK/users.toml" <<EOF
[[users]]
username = "$BENCH_USER"
display_name = "Bench Patient"
email = "bench.patient@example.invalid"
roles = ["patient"]
password_hash = "$HASH"
disabled = false
EOF

# ---------------------------------------------------------------- upstream: nginx, return 200
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/upstream.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $WORK/nginx/upstream.pid;
error_log $WORK/nginx/upstream.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$P_UP backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
nginx -t -q -p "$WORK/nginx" -c "$WORK/nginx/upstream.conf" 2>"$WORK/nginx/test.log" \
    || { cat "$WORK/nginx/test.log" >&2; die "nginx config rejected"; }
nginx -p "$WORK/nginx" -c "$WORK/nginx/upstream.conf" >"$WORK/nginx/out.log" 2>&1 &
PIDS+=($!)

# ---------------------------------------------------------------- vestibule instances
vest_conf() { # name port tls?
    cat <<EOF
[server]
listen = "127.0.0.1:$2"
EOF
    if [[ "$3" == tls ]]; then
        printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$WORK/cert.pem" "$WORK/key.pem"
    fi
    cat <<EOF

[upstream]
url = "http://127.0.0.1:$P_UP"

[users]
file = "$WORK/users.toml"

[[policy.rules]]
path_prefix = "/bench/"
access = "bypass"

[storage]
backend = "embedded"
path = "$WORK/vest-$1/data"
encryption_key_file = "$WORK/encryption.key"

[log]
audit_file = "$WORK/vest-$1/audit.log"
EOF
}
declare -A VPID
start_vest() { # name port tls?
    mkdir -p "$WORK/vest-$1"
    vest_conf "$1" "$2" "$3" >"$WORK/vest-$1/vestibule.toml"
    "$BIN" --config "$WORK/vest-$1/vestibule.toml" check-config >"$WORK/vest-$1/check.log" 2>&1 \
        || { cat "$WORK/vest-$1/check.log" >&2; die "vestibule ($1) config rejected"; }
    "$BIN" --config "$WORK/vest-$1/vestibule.toml" serve >"$WORK/vest-$1/serve.log" 2>&1 &
    VPID[$1]=$!
    PIDS+=($!)
}
stop_vest() { # name
    local pid=${VPID[$1]}
    kill "$pid" 2>/dev/null || true
    timeout 40 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck source=lib/measure.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/measure.sh"

# ---------------------------------------------------------------- python helpers
cat >"$WORK/insert.py" <<'PY'
# Inserts N sessions copied from the row of a real login; prints the tokens, one a line.
import base64, hashlib, os, sqlite3, sys, time
db, token, n, tokens_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
con = sqlite3.connect(db, timeout=30)
con.execute("PRAGMA busy_timeout=30000")
row = con.execute("SELECT user, stage, credential FROM sessions WHERE id=?",
                  (hashlib.sha256(token.encode()).digest(),)).fetchone()
if row is None:
    sys.exit("the login's session row is not in the database")
user, stage, credential = row
now = int(time.time() * 1000)
# last seen 5 minutes ago: inside the 30 min idle timeout, but past the "last seen"
# write throttle (a quarter of the idle timeout, at most 60 s), so the first request
# of every session also makes the gateway write its new last-seen time.
seen = now - 5 * 60 * 1000
idle = 30 * 60 * 1000
toks = []
with con:
    rows = []
    for _ in range(n):
        t = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        toks.append(t)
        rows.append((hashlib.sha256(t.encode()).digest(), user, stage, seen, seen, credential, seen + idle))
    con.executemany("INSERT INTO sessions(id,user,stage,created_ms,last_seen_ms,credential,expires_ms) "
                    "VALUES(?,?,?,?,?,?,?)", rows)
total = con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
con.close()
with open(tokens_out, "w") as f:
    f.write("\n".join(toks) + "\n")
print(f"stage={stage}")
print(f"credential={credential.hex()}")
print(f"seen_ms={seen}")
print(f"total={total}")
PY

cat >"$WORK/use.py" <<'PY'
# One authenticated request per session token, over C keep-alive connections.
# Every answer must be the upstream's 200 "ok\n".
import asyncio, sys, time
host, port, cookie, tokens_file, conns, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
tokens = open(tokens_file).read().split()
it = iter(tokens)
stats = {}
done = 0

async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = False
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    body = await r.readexactly(length) if length else b""
    return status, body, close

async def worker():
    global done
    r = w = None
    for tok in it:
        for attempt in range(3):
            try:
                if w is None:
                    r, w = await asyncio.open_connection(host, port)
                w.write(f"GET /app/x HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}={tok}\r\n\r\n".encode())
                status, body, close = await read_response(r)
                key = "200-ok" if status == 200 and body == b"ok\n" else str(status)
                stats[key] = stats.get(key, 0) + 1
                done += 1
                if close:
                    w.close(); w = None
                break
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                stats[type(e).__name__] = stats.get(type(e).__name__, 0) + 1
                if w is not None:
                    w.close()
                w = None
        if time.time() > deadline:
            break
    if w is not None:
        w.close()

async def main():
    t0 = time.time()
    await asyncio.gather(*(worker() for _ in range(conns)))
    el = time.time() - t0
    print(f"requests={done}")
    print(f"seconds={el:.1f}")
    print(f"rate={done / el:.0f}")
    print("statuses=" + " ".join(f"{k}:{v}" for k, v in sorted(stats.items())))

asyncio.run(main())
PY

cat >"$WORK/idle.py" <<'PY'
# Idle keep-alive connections, in steps the benchmark drives with files in CTL:
#   1. opens N connections (TLS handshake done when TLS), OPEN_CONC at a time; status phase=connected
#   2. when CTL/go exists: one complete request on each (REQ_CONC in flight); phase=open
#   3. when CTL/silent exists: opens SILENT more connections that never send a byte; phase=silent
#   4. watches for the server closing them, until CTL/stop exists, all are closed, or the deadline.
# The status file (key=value) tells how many are open and when the server closed them.
import asyncio, os, ssl, sys, time
(host, port, n, use_tls, open_conc, req_conc, silent_n, ctl, deadline) = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]),
    int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], float(sys.argv[9]))
REQ = b"GET /bench/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
ctx = None
if use_tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
st = {"phase": "connecting"}
errors = {}
conns, silent = [], []
closed = {"requested": [], "silent": []}
t0 = time.time()

def status():
    st["connected"] = len(conns)
    st["silent_open"] = len(silent)
    for k, v in closed.items():
        st[f"closed_{k}"] = len(v)
        if v:
            st[f"closed_{k}_first_s"] = f"{min(v):.1f}"
            st[f"closed_{k}_last_s"] = f"{max(v):.1f}"
    st["errors"] = " ".join(f"{k}:{v}" for k, v in sorted(errors.items()))
    tmp = os.path.join(ctl, "status.tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in st.items()))
    os.replace(tmp, os.path.join(ctl, "status"))

def err(e):
    k = type(e).__name__
    errors[k] = errors.get(k, 0) + 1

async def connect(sem, into):
    async with sem:
        try:
            into.append(await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 60))
        except Exception as e:
            err(e)

async def request(sem, r, w, ok):
    async with sem:
        try:
            w.write(REQ)
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
            lines = head.split(b"\r\n")
            code = int(lines[0].split()[1])
            length = 0
            for l in lines[1:]:
                k, _, v = l.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            body = await asyncio.wait_for(r.readexactly(length), 60)
            if code == 200 and body == b"ok\n":
                ok.append((r, w))
            else:
                errors[f"status{code}"] = errors.get(f"status{code}", 0) + 1
        except Exception as e:
            err(e)

async def watch(r, kind, since):
    try:
        await r.read(1)
    except Exception:
        pass
    closed[kind].append(time.time() - since)

async def wait_file(name):
    while not os.path.exists(os.path.join(ctl, name)):
        if time.time() > deadline:
            raise SystemExit("deadline")
        await asyncio.sleep(0.1)

async def main():
    global conns
    sem = asyncio.Semaphore(open_conc)
    await asyncio.gather(*(connect(sem, conns) for _ in range(n)))
    st["t_connect"] = f"{time.time() - t0:.1f}"
    st["phase"] = "connected"
    status()
    await wait_file("go")
    t1 = time.time()
    ok = []
    rsem = asyncio.Semaphore(req_conc)
    await asyncio.gather(*(request(rsem, r, w, ok) for r, w in conns))
    for r, w in conns:
        if not any(w is w2 for _, w2 in ok):
            w.close()
    conns = ok
    t_req = time.time()
    st["t_requests"] = f"{t_req - t1:.1f}"
    watchers = [asyncio.ensure_future(watch(r, "requested", t_req)) for r, _ in conns]
    st["phase"] = "open"
    status()
    await wait_file("silent")
    await asyncio.gather(*(connect(asyncio.Semaphore(open_conc), silent) for _ in range(silent_n)))
    t_sil = time.time()
    watchers += [asyncio.ensure_future(watch(r, "silent", t_sil)) for r, _ in silent]
    st["phase"] = "silent"
    status()
    while (time.time() < deadline and not os.path.exists(os.path.join(ctl, "stop"))
           and sum(len(v) for v in closed.values()) < len(conns) + len(silent)):
        await asyncio.sleep(0.5)
        status()
    st["phase"] = "done"
    status()
    for _, w in conns + silent:
        w.close()
    for t in watchers:
        t.cancel()
    await asyncio.sleep(0.5)

asyncio.run(main())
PY

# ---------------------------------------------------------------- test 1: live sessions
wait_for "http://127.0.0.1:$P_UP/"
start_vest sess "$P_SESS" http
wait_for "http://127.0.0.1:$P_SESS/_vestibule/health"
SPID=${VPID[sess]}
sleep 1
measure sessions "started" "$SPID"

jar="$WORK/jar-sess"
base="http://127.0.0.1:$P_SESS"
page=$(curl -s --max-time 10 -c "$jar" -b "$jar" "$base/_vestibule/login?rd=/app/")
csrf=$(grep -o 'name="csrf_token" value="[^"]*"' <<<"$page" | head -1 | sed 's/.*value="//; s/"$//')
[[ -n "$csrf" ]] || die "no csrf_token on $base/_vestibule/login"
code=$(curl -s --max-time 30 -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
    --data-urlencode "username=$BENCH_USER" --data-urlencode "password=$BENCH_PASS" \
    --data-urlencode "csrf_token=$csrf" --data-urlencode "rd=/app/" "$base/_vestibule/login")
[[ "$code" == 303 ]] || die "login answered $code, expected 303"
COOKIE_NAME=vestibule_session
TOKEN=$(awk -v n="$COOKIE_NAME" '$6 == n { v = $7 } END { if (v != "") print v }' "$jar")
[[ ${#TOKEN} == 43 && "$TOKEN" =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected session cookie '$TOKEN' (expected 43 URL-safe base64 characters)"
body=$(curl -s --max-time 10 -H "Cookie: $COOKIE_NAME=$TOKEN" "$base/app/x")
[[ "$body" == ok ]] || die "the logged-in session does not reach the upstream: '$body'"
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$base/app/x")
[[ "$code" == 401 ]] || die "authenticated path without a cookie answered $code, expected 401"
# A few requests on the session so the warm-up state matches what follows.
for _ in 1 2 3 4 5; do curl -s --max-time 10 -o /dev/null -H "Cookie: $COOKIE_NAME=$TOKEN" "$base/app/x"; done
sleep 2
measure sessions "after one login" "$SPID"

DB="$WORK/vest-sess/data/vestibule.sqlite3"
[[ -f "$DB" ]] || die "no database at $DB"
log "inserting $SESSIONS sessions into $DB while the gateway runs"
timeout 300 python3 "$WORK/insert.py" "$DB" "$TOKEN" "$SESSIONS" "$WORK/tokens.txt" >"$WORK/insert.out" \
    || die "insert failed: $(cat "$WORK/insert.out")"
STAGE=$(sed -n 's/^stage=//p' "$WORK/insert.out")
SEEN_MS=$(sed -n 's/^seen_ms=//p' "$WORK/insert.out")
ROWS=$(sed -n 's/^total=//p' "$WORK/insert.out")
log "stage copied from the login: $STAGE; $ROWS session rows in the database"
note stage "$STAGE"
note rows "$ROWS"
sleep 2
measure sessions "$SESSIONS sessions inserted" "$SPID"

log "one authenticated request per inserted session ($USE_CONNS keep-alive connections)"
USE_START_MS=$(($(date +%s%N) / 1000000))
# Peak sampler: RSS, threads every 0.5 s while the client runs.
(
    while kill -0 "$SPID" 2>/dev/null; do
        pstat "$SPID" 2>/dev/null | awk -v t="$(date +%s.%N)" '{ print t, $0 }'
        sleep 0.5
    done
) >"$WORK/sampler.txt" 2>/dev/null &
SAMPLER=$!
PIDS+=($SAMPLER)
timeout 600 python3 "$WORK/use.py" 127.0.0.1 "$P_SESS" "$COOKIE_NAME" "$WORK/tokens.txt" "$USE_CONNS" \
    $(($(date +%s) + 540)) >"$WORK/use.out" 2>&1 || die "session client failed: $(tail -5 "$WORK/use.out")"
cat "$WORK/use.out" >&2
USE_STATUSES=$(sed -n 's/^statuses=//p' "$WORK/use.out")
USE_OK=$(grep -o '200-ok:[0-9]*' <<<"$USE_STATUSES" | cut -d: -f2)
note use_rate "$(sed -n 's/^rate=//p' "$WORK/use.out")"
note use_seconds "$(sed -n 's/^seconds=//p' "$WORK/use.out")"
note use_statuses "$USE_STATUSES"
[[ "${USE_OK:-0}" -ge "$SESSIONS" ]] || die "only ${USE_OK:-0} of $SESSIONS session requests reached the upstream ($USE_STATUSES)"
measure sessions "all used (right after)" "$SPID"
# Wait for the "last seen" writes (run on the blocking pool) to land, then count them.
for _ in $(seq 1 60); do
    TOUCHED=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30); print(c.execute("SELECT COUNT(*) FROM sessions WHERE last_seen_ms >= ?", (int(sys.argv[2]),)).fetchone()[0])' "$DB" "$USE_START_MS")
    ((TOUCHED >= SESSIONS)) && break
    sleep 1
done
note touched "$TOUCHED"
log "sessions whose last-seen time the gateway updated: $TOUCHED of $((SESSIONS + 1))"
# Idle blocking-pool threads exit after 10 s; measure once they have.
sleep 12
measure sessions "all used (settled, +12 s)" "$SPID"
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
PEAK_THREADS=$(awk 'BEGIN { m = 0 } $6 > m { m = $6 } END { print m }' "$WORK/sampler.txt")
note peak_threads "$PEAK_THREADS"
body=$(curl -s --max-time 10 -H "Cookie: $COOKIE_NAME=$(tail -1 "$WORK/tokens.txt")" "$base/app/x")
[[ "$body" == ok ]] || die "an inserted session stopped working: '$body'"
stop_vest sess

# ---------------------------------------------------------------- nginx proxy (the comparison)
# The same job as the gateway's bypass path: proxy_pass to the upstream with a keep-alive
# pool, one worker, a long keep-alive so the idle connections stay open while measured.
declare -A NPID
start_nginx_proxy() { # name port tls?
    local dir="$WORK/ngx-$1" listen="listen 127.0.0.1:$2 backlog=4096;"
    mkdir -p "$dir/tmp"
    [[ "$3" == tls ]] && listen="listen 127.0.0.1:$2 ssl backlog=4096;"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 25000; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backend { server 127.0.0.1:$P_UP; keepalive 64; }
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    server {
        $listen
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/test.log" \
        || { cat "$dir/test.log" >&2; die "nginx proxy config rejected"; }
    nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
    NPID[$1]=$!
    PIDS+=($!)
}
# "master,worker" pids of an nginx started above
nginx_pids() { # name
    local master=${NPID[$1]} worker="" i
    for i in $(seq 1 50); do
        worker=$(pgrep -P "$master" | head -1)
        [[ -n "$worker" ]] && break
        sleep 0.1
    done
    [[ -n "$worker" ]] || die "nginx ($1) started no worker"
    echo "$master,$worker"
}
stop_nginx_proxy() { # name
    local pid=${NPID[$1]}
    kill "$pid" 2>/dev/null || true
    timeout 40 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- test 2: idle connections
wait_phase() { # status-file phase client-pid seconds
    local i
    for i in $(seq 1 $(($4 * 10))); do
        [[ "$(sed -n 's/^phase=//p' "$1" 2>/dev/null)" == "$2" ]] && return 0
        kill -0 "$3" 2>/dev/null || die "idle client died: $(tail -5 "$(dirname "$1")/client.log")"
        sleep 0.1
    done
    die "idle client did not reach phase $2 in $4 s"
}
idle_test() { # name port tls(0|1) label [vestibule|nginx]
    local name=$1 port=$2 tls=$3 label=$4 server=${5:-vestibule} scheme=http ctl="$WORK/idle-$1" cpid i pid st up
    st="$ctl/status"
    mkdir -p "$ctl"
    [[ $tls == 1 ]] && scheme=https
    if [[ $server == nginx ]]; then
        start_nginx_proxy "$name" "$port" "$([[ $tls == 1 ]] && echo tls || echo http)"
        wait_for "$scheme://127.0.0.1:$port/bench/x"
        pid=$(nginx_pids "$name")
    else
        start_vest "$name" "$port" "$([[ $tls == 1 ]] && echo tls || echo http)"
        wait_for "$scheme://127.0.0.1:$port/_vestibule/health"
        pid=${VPID[$name]}
    fi
    # Warm-up: a few hundred bypass requests, so the upstream pool and the allocator
    # are in their working state before the baseline.
    for i in $(seq 1 4); do
        curl -sk --max-time 10 -o /dev/null "$scheme://127.0.0.1:$port/bench/x?[1-50]" || true
    done
    sleep 2
    measure "$label" "before" "$pid"
    log "$label: opening $CONNS connections"
    python3 "$WORK/idle.py" 127.0.0.1 "$port" "$CONNS" "$tls" "$OPEN_CONC" "$REQ_CONC" "$SILENT" "$ctl" \
        $(($(date +%s) + 150 + HOLD_MAX)) >"$ctl/client.log" 2>&1 &
    cpid=$!
    PIDS+=($cpid)
    wait_phase "$st" connected "$cpid" 120
    sleep 1
    measure "$label" "$(sed -n 's/^connected=//p' "$st") connected, no request yet" "$pid" \
        "$([[ $tls == 1 ]] && echo "handshakes done; ")$(sed -n 's/^t_connect=//p' "$st") s to open"
    touch "$ctl/go"
    wait_phase "$st" open "$cpid" 60
    # Idle means idle: the gateway parks a keep-alive connection 100-200 ms after its
    # last request (src/accept/http1.rs), so measure SETTLE seconds after the last answer.
    sleep "$SETTLE"
    local open est parked
    open=$(sed -n 's/^connected=//p' "$st")
    est=$(ss -Htn state established "sport = :$port" 2>/dev/null | wc -l)
    up=$(ss -Htn state established "dport = :$P_UP" 2>/dev/null | wc -l)
    if [[ $server == nginx ]]; then
        measure "$label" "$open open, one request each" "$pid" \
            "$est established; $up upstream conns; master + worker"
    else
        parked=$(curl -sk --max-time 10 "$scheme://127.0.0.1:$port/_vestibule/metrics" |
            sed -n 's/^vestibule_connections_parked_total //p')
        measure "$label" "$open open, one request each" "$pid" \
            "$est established; $up upstream conns in the pool; ${parked:-?} parks counted"
    fi
    note "${name}_open" "$open"
    note "${name}_established" "$est"
    note "${name}_upstream" "$up"
    note "${name}_t_connect" "$(sed -n 's/^t_connect=//p' "$st")"
    note "${name}_t_requests" "$(sed -n 's/^t_requests=//p' "$st")"
    note "${name}_errors" "$(sed -n 's/^errors=//p' "$st")"
    note "${name}_closed_before_measure" "$(sed -n 's/^closed_requested=//p' "$st")"
    # Silent connections (TCP, and the handshake under TLS, but not a byte of HTTP),
    # to see whether the gateway ever closes those.
    touch "$ctl/silent"
    wait_phase "$st" silent "$cpid" 60
    log "$label: holding $open idle connections and $SILENT silent ones (up to $HOLD_MAX s) to see whether the gateway closes them"
    local t_end=$(($(date +%s) + HOLD_MAX))
    while (($(date +%s) < t_end)) && [[ "$(sed -n 's/^phase=//p' "$st")" != done ]]; do
        sleep 1
    done
    touch "$ctl/stop"
    timeout 30 tail --pid="$cpid" -f /dev/null || kill "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    local k
    for k in closed_requested closed_requested_first_s closed_requested_last_s closed_silent silent_open; do
        note "${name}_$k" "$(sed -n "s/^$k=//p" "$st")"
    done
    log "$label: the gateway closed $(sed -n 's/^closed_requested=//p' "$st") of $open idle connections" \
        "($(sed -n 's/^closed_requested_first_s=//p' "$st")–$(sed -n 's/^closed_requested_last_s=//p' "$st") s after their request)" \
        "and $(sed -n 's/^closed_silent=//p' "$st") of $(sed -n 's/^silent_open=//p' "$st") silent ones within $HOLD_MAX s"
    sleep 3
    measure "$label" "after all closed (+3 s)" "$pid" \
        "$(ss -Htn state established "dport = :$P_UP" 2>/dev/null | wc -l) upstream conns in the pool"
    if [[ $server == nginx ]]; then stop_nginx_proxy "$name"; else stop_vest "$name"; fi
}
idle_test http "$P_HTTP" 0 "idle-http"
if [[ "$NGINX" == 1 ]]; then idle_test nginx_http "$P_NGX_HTTP" 0 "nginx-idle-http" nginx; fi
if [[ "$TLS" == 1 ]]; then
    idle_test tls "$P_TLS" 1 "idle-tls"
    if [[ "$NGINX" == 1 ]]; then idle_test nginx_tls "$P_NGX_TLS" 1 "nginx-idle-tls" nginx; fi
fi

# ---------------------------------------------------------------- report
ELAPSED=$(($(date +%s) - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=${CPU:-unknown}"
    echo "mem=$MEM"
    echo "kernel=$(uname -r)"
    echo "rev=$REV"
    echo "bin_built=$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
    echo "sessions=$SESSIONS"
    echo "use_conns=$USE_CONNS"
    echo "conns=$CONNS"
    echo "load_start=$LOAD_START"
    echo "load_end=$LOAD_END"
    echo "elapsed=$ELAPSED"
    echo "nofile=$NOFILE"
    echo "hold_max=$HOLD_MAX"
} >>"$NOTES"

python3 - "$MEAS" "$NOTES" >"$OUT" <<'PY'
import sys
meas_path, notes_path = sys.argv[1:3]
notes = {}
for l in open(notes_path):
    if "=" in l:
        k, v = l.rstrip("\n").split("=", 1)
        notes[k] = v
rows = [l.rstrip("\n").split("\t") for l in open(meas_path) if l.strip()]
def mib(kib):
    return f"{int(kib) / 1024:.1f}"
n_sess = int(notes["sessions"])
o = []
o.append(f"- date: {notes['date']}; machine: {notes['nproc']} cores, {notes['cpu']}, {notes['mem']} RAM, Linux {notes['kernel']}")
o.append(f"- vestibule revision: `{notes['rev']}` (release build of {notes['bin_built']}), mimalloc global allocator, default settings")
o.append(f"- load average at start / end: {notes['load_start']} / {notes['load_end']}; run took {notes['elapsed']} s")
o.append("")
o.append("| test | point | VmRSS MiB | anon MiB | file+shmem MiB | peak (VmHWM) MiB | threads | fds | note |")
o.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for t, p, rss, hwm, anon, fil, thr, fds, note in rows:
    o.append(f"| {t} | {p} | {mib(rss)} | {mib(anon)} | {mib(fil)} | {mib(hwm)} | {thr} | {fds} | {note} |")
o.append("")
def find(test, prefix):
    for r in rows:
        if r[0] == test and r[1].startswith(prefix):
            return {"rss": int(r[2]), "hwm": int(r[3]), "anon": int(r[4])}
    return None
targets = []
used = find("sessions", "all used (settled")
start = find("sessions", "started")
login = find("sessions", "after one login")
if used and start:
    o.append(f"- **sessions**: {n_sess} inserted ({notes.get('rows')} rows in all), each used by one authenticated request "
             f"over {notes['use_conns']} keep-alive connections: {notes.get('use_rate')} req/s for {notes.get('use_seconds')} s, "
             f"answers `{notes.get('use_statuses')}`. The gateway then wrote a new last-seen time for "
             f"{notes.get('touched')} sessions. Peak thread count during the requests: {notes.get('peak_threads')}. "
             f"RSS after use minus RSS at start: {(used['rss'] - start['rss']) / 1024:.1f} MiB "
             f"({(used['rss'] - start['rss']) * 1024 / n_sess:.0f} bytes per session).")
    targets.append((f"RSS with {n_sess} live, used sessions < 200 MB", used["rss"]))
    targets.append(("peak RSS (VmHWM) of the whole session test < 200 MB", used["hwm"]))
compare = []
for name, label in (("http", "idle-http"), ("tls", "idle-tls"), ("nginx_http", "nginx-idle-http"), ("nginx_tls", "nginx-idle-tls")):
    before = find(label, "before")
    with_ = find(label, f"{notes.get(name + '_open', 'x')} open")
    if not before or not with_:
        continue
    n = int(notes[name + "_open"])
    per = (with_["rss"] - before["rss"]) * 1024 / max(n, 1)
    connected = [r for r in rows if r[0] == label and "connected" in r[1]]
    pre = ""
    if connected:
        c = int(connected[0][2]); cn = int(connected[0][1].split()[0])
        pre = (f" Before the request (connection accepted{', handshake done' if name == 'tls' else ''}, no bytes of HTTP read): "
               f"{(c - before['rss']) * 1024 / max(cn, 1) / 1024:.1f} KiB per connection; the request adds "
               f"{(with_['rss'] - c) * 1024 / max(n, 1) / 1024:.1f} KiB.")
    compare.append((name, n, before["rss"], with_["rss"], per))
    if name.startswith("nginx"):
        o.append(f"- **{label}** (the comparison: nginx `proxy_pass`, one worker, master + worker summed): {n} connections, "
                 f"one request each (errors: {notes.get(name + '_errors') or 'none'}): **{per / 1024:.1f} KiB per connection**.")
        continue
    cl = notes.get(name + "_closed_requested", "?")
    first, last = notes.get(name + "_closed_requested_first_s"), notes.get(name + "_closed_requested_last_s")
    when = f", {first}–{last} s after their request" if first else ""
    o.append(f"- **{label}**: {n} connections, opened in {notes.get(name + '_t_connect')} s, "
             f"one request each in {notes.get(name + '_t_requests')} s (errors: {notes.get(name + '_errors') or 'none'}; "
             f"{notes.get(name + '_established')} established on the gateway's port, {notes.get(name + '_upstream')} "
             f"upstream connections in its pool): **{per / 1024:.1f} KiB per connection**.{pre} "
             f"The gateway closed {cl} of the {n} idle connections{when}, and {notes.get(name + '_closed_silent', '?')} of "
             f"{notes.get(name + '_silent_open', '?')} silent connections (no byte sent) within {notes.get('hold_max')} s.")
    targets.append((f"RSS with {n} idle {name.upper()} connections < 100 MB", with_["rss"]))
by = {c[0]: c for c in compare}
pairs = [(p, by.get(p), by.get("nginx_" + p)) for p in ("http", "tls")]
if any(v and g for _, v, g in pairs):
    o.append("")
    o.append("Idle keep-alive connections against nginx (same client, same count; ratio = Vestibule / nginx, lower is better):")
    o.append("")
    o.append("| protocol | connections | Vestibule RSS MiB | nginx RSS MiB | × nginx | Vestibule KiB/conn | nginx KiB/conn | × nginx |")
    o.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p, v, g in pairs:
        if v and g:
            o.append(f"| {p.upper()} | {v[1]} | {v[3] / 1024:.1f} | {g[3] / 1024:.1f} | {v[3] / g[3]:.2f}× "
                     f"| {v[4] / 1024:.1f} | {g[4] / 1024:.1f} | {v[4] / max(g[4], 1):.2f}× |")
o.append("")
o.append("| target | measured | verdict |")
o.append("| --- | ---: | --- |")
for tname, key, lim in [(t, k, 200e6 if "session" in t else 100e6) for t, k in targets]:
    b = key * 1024
    o.append(f"| {tname} | {b / 1e6:.1f} MB ({key / 1024:.1f} MiB) | {'met' if b < lim else '**missed**'} |")
print("\n".join(o))
PY

cat "$OUT"
log "results written to $OUT"

# ---------------------------------------------------------------- docs/performance.md
if [[ "$UPDATE_DOC" == 1 ]]; then
    python3 - "$DOC" "$OUT" <<'PY'
import sys
doc, res = sys.argv[1:3]
text = open(doc).read()
results = open(res).read().rstrip("\n")
BEGIN, END = "<!-- memory-results:begin -->", "<!-- memory-results:end -->"
block = f"{BEGIN}\n{results}\n{END}"
if BEGIN in text and END in text:
    a = text.index(BEGIN)
    b = text.index(END) + len(END)
    text = text[:a] + block + text[b:]
else:
    section = f"""
## Memory

`scripts/bench-memory.sh` measures the gateway's resident memory on loopback, in
one run of about three minutes, with the shipped defaults (embedded SQLite backend,
`server.max_connections` 25,000, mimalloc):

```sh
bash scripts/bench-memory.sh                 # prints the table, writes bench-memory-results.md and this section
UPDATE_DOC=0 bash scripts/bench-memory.sh    # leave docs/performance.md alone
SESSIONS=20000 CONNS=2000 TLS=0 bash scripts/bench-memory.sh   # a quick run
```

Knobs: `SESSIONS` (100000), `USE_CONNS` (16), `CONNS` (10000), `OPEN_CONC` (200),
`REQ_CONC` (8), `SILENT` (100), `TLS` (1), `HOLD_MAX` (40 s), `BASE_PORT` (18600, four
ports), `UPDATE_DOC` (1), `BUILD` (0: build only when the binary is missing), `KEEP_TMP`.
It needs `nginx` (the upstream, `return 200`), `curl`, `openssl` and `python3` (installed
from Debian packages when missing), and an open-file limit of at least `CONNS` + 1000
(it raises `ulimit -n` as far as the hard limit allows). Everything listens on
127.0.0.1, lives in a `mktemp -d` directory and is stopped by a trap; every wait is
bounded.

Memory is `VmRSS` from `/proc/<pid>/status` of the `vestibule serve` process (split
into `RssAnon` and `RssFile`+`RssShmem`; `VmHWM` is the peak since start). Method:

- **Live sessions.** A fresh gateway (plain HTTP); one real sign-in with curl
  (`GET` then `POST /_vestibule/login`, 303, cookie `vestibule_session`, 43 characters
  of URL-safe base64). Then `SESSIONS` rows are inserted straight into its SQLite
  database while it runs (python3 `sqlite3`, one transaction): `id` = SHA-256 of a new
  random token, and `user`, `stage` and `credential` copied from the real login's row, so
  every one is a valid, complete session of that user. Their last-seen time is set
  5 minutes back: inside the 30 min idle timeout, but past the last-seen write throttle,
  so the first request of each makes the gateway write its last-seen time, as for a
  returning user. A python asyncio client then sends one authenticated `GET /app/x` per
  session over `USE_CONNS` keep-alive connections; every answer must be the upstream's
  `200 ok`, and the script checks in the database that the gateway updated every
  session's last-seen time.
- **Idle connections.** A fresh gateway per protocol, warmed with 200 bypass
  requests. A python asyncio client opens `CONNS` connections (`OPEN_CONC` at a time;
  under TLS each completes its handshake), then sends one complete HTTP/1.1 keep-alive
  request on each (`GET /bench/x`, a bypass path; `REQ_CONC` in flight, so the
  gateway's upstream pool stays small), and keeps them all open and idle. RSS is taken
  before, after the connections are open but before any request, and with all of them
  idle, `SETTLE` (3) seconds after the last answer (the gateway parks an idle
  connection 100–200 ms after its request); per-connection cost = growth / connections. It then also
  opens `SILENT` connections that never send a byte, and holds everything for up to
  `HOLD_MAX` seconds, noting when the gateway closes which.

Latest results (the script rewrites the block between the markers):

{block}
"""
    head = "\n## Memory\n"
    if head in text:  # a Memory section without the markers: replace it up to the next "## "
        a = text.index(head)
        nxt = text.find("\n## ", a + len(head))
        rest = text[nxt:] if nxt >= 0 else ""
        text = text[:a].rstrip("\n") + "\n" + section + rest
    else:
        text = text.rstrip("\n") + "\n" + section
open(doc, "w").write(text)
PY
    log "docs/performance.md updated"
fi
