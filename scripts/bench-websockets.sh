#!/usr/bin/env bash
# Vestibule WebSocket memory benchmark: resident memory (VmRSS) of the gateway holding
# WS (5,000) idle WebSockets on an authenticated path, against nginx (one worker)
# holding the same WebSockets to the same upstream. Target (issue 26): "5,000 idle
# WebSockets through the gateway in less memory than nginx holding the same".
#
#   bash scripts/bench-websockets.sh [OUTPUT.md]   (default: bench-websockets-results.md)
#
# Everything runs on 127.0.0.1: a python asyncio WebSocket upstream (answers the
# opening handshake with 101 and the RFC 6455 Sec-WebSocket-Accept, then reads and
# discards; to the first frame it answers one small text frame), the gateway or nginx in
# front of it, and a python asyncio client that opens the WebSockets through the proxy
# (every handshake checked: 101 and the right accept), sends one message on each and
# reads the upstream's answer (so both directions of every tunnel have carried data),
# then keeps them all open and idle while the proxy's RSS is read from /proc.
# It prints a markdown table and writes it into the "Idle WebSockets" subsection of
# docs/performance.md (between the websocket-results markers).
#
# Knobs (environment):
#   WS=5000            WebSockets held open through each proxy
#   OPEN_CONC=100      handshakes in flight at once
#   TLS=1              also measure over TLS (the gateway and nginx with the same
#                      certificate; 0: plain HTTP only)
#   SETTLE=3           seconds between the last handshake/message and a measurement
#   HOLD=25            seconds the WebSockets are then held idle before the headline
#                      measurement (the gateway re-checks each tunnel's session every
#                      7.5-10 s, so this covers at least two checks)
#   NGINX_ONLY=0       1: measure only nginx (no vestibule binary needed)
#   BASE_PORT=18700    first of 5 consecutive loopback ports
#   UPDATE_DOC=1       write the results into docs/performance.md (0: only print)
#   VESTIBULE_BIN      the release binary (default: target/release/vestibule; never built here)
#   KEEP_TMP=1         keep the temp dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-bench-websockets-results.md}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

WS=${WS:-5000}
OPEN_CONC=${OPEN_CONC:-100}
TLS=${TLS:-1}
SETTLE=${SETTLE:-3}
HOLD=${HOLD:-25}
NGINX_ONLY=${NGINX_ONLY:-0}
BASE_PORT=${BASE_PORT:-18700}
UPDATE_DOC=${UPDATE_DOC:-1}
BIN=${VESTIBULE_BIN:-$REPO/target/release/vestibule}
DOC="$REPO/docs/performance.md"

P_UP=$BASE_PORT                # the WebSocket upstream (python)
P_VHTTP=$((BASE_PORT + 1))     # vestibule, HTTP
P_VTLS=$((BASE_PORT + 2))      # vestibule, TLS
P_NHTTP=$((BASE_PORT + 3))     # nginx, HTTP
P_NTLS=$((BASE_PORT + 4))      # nginx, TLS

BENCH_USER=bench.patient
BENCH_PASS='bench-password-0123456789'

log() { printf '[bench-websockets %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
python3 -c 'import ssl, asyncio, hashlib, base64' 2>/dev/null || die "python3 lacks ssl/asyncio"
if [[ "$NGINX_ONLY" != 1 ]]; then
    [[ -x "$BIN" ]] || die "$BIN not found: build it (cargo build --release), set VESTIBULE_BIN, or run with NGINX_ONLY=1"
fi

# File descriptors: the client holds WS sockets, the upstream WS, the proxy 2 × WS
# (client side and upstream side of every tunnel). Children inherit this limit.
NEED_FD=$((2 * WS + 1000))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ "$NOFILE" != unlimited ]] && ((NOFILE < NEED_FD)); then
    die "open-file limit is $NOFILE (hard limit $(ulimit -Hn)); $WS WebSockets need at least $NEED_FD: raise the hard limit (ulimit -Hn, limits.conf) or lower WS"
fi
[[ "$NOFILE" == unlimited ]] && NOFILE=65536

for p in $P_UP $P_VHTTP $P_VTLS $P_NHTTP $P_NTLS; do
    if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
        die "port $p is in use; set BASE_PORT to a free range"
    fi
done

# ---------------------------------------------------------------- temp dir and cleanup
# shellcheck source=lib/workdir.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/workdir.sh"
start_workdir vestibule-bench-websockets
T0=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK (open-file limit $NOFILE)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# ---------------------------------------------------------------- the WebSocket upstream
cat >"$WORK/upstream.py" <<'PY'
# A WebSocket upstream: answers an RFC 6455 opening handshake with 101, then reads and
# discards; to the first bytes it receives it answers one text frame "ok". A request
# without `Upgrade: websocket` gets `200 ok` and a close (health checks, warm-up).
# Every second it writes counters to STATUS.
import asyncio, base64, hashlib, os, sys
port, status_path = int(sys.argv[1]), sys.argv[2]
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
c = {"open": 0, "handshakes": 0, "with_user": 0, "messages": 0, "plain": 0, "bad": 0}

async def handle(r, w):
    try:
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
        hdrs = {}
        for line in head.split(b"\r\n")[1:]:
            k, sep, v = line.partition(b":")
            if sep:
                hdrs[k.strip().lower()] = v.strip()
        if hdrs.get(b"upgrade", b"").lower() != b"websocket":
            c["plain"] += 1
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            await w.drain()
            return
        key = hdrs.get(b"sec-websocket-key")
        if not key:
            c["bad"] += 1
            w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await w.drain()
        c["handshakes"] += 1
        if hdrs.get(b"remote-user"):
            c["with_user"] += 1
        c["open"] += 1
        try:
            answered = False
            while True:
                data = await r.read(4096)
                if not data:
                    break
                if not answered:
                    answered = True
                    c["messages"] += 1
                    w.write(b"\x81\x02ok")
                    await w.drain()
        finally:
            c["open"] -= 1
    except Exception:
        pass
    finally:
        w.close()

async def report():
    while True:
        with open(status_path + ".tmp", "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in c.items()))
        os.replace(status_path + ".tmp", status_path)
        await asyncio.sleep(0.5)

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    asyncio.ensure_future(report())
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
PY
python3 "$WORK/upstream.py" "$P_UP" "$WORK/upstream.status" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

# ---------------------------------------------------------------- the WebSocket client
cat >"$WORK/client.py" <<'PY'
# Opens N WebSockets through a proxy and holds them, in steps driven by files in CTL:
#   1. N opening handshakes (OPEN_CONC at a time), each checked: 101, Upgrade:
#      websocket, the RFC 6455 Sec-WebSocket-Accept of its key; status phase=open
#   2. when CTL/msg exists: one masked text frame on each, and the upstream's "ok"
#      frame read back (REQ at a time); phase=exchanged
#   3. watches for closes until CTL/stop exists or the deadline; then closes all, phase=done.
import asyncio, base64, hashlib, os, ssl, sys, time
(host, port, n, use_tls, open_conc, cookie, ctl, deadline) = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]),
    sys.argv[6], sys.argv[7], float(sys.argv[8]))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
scheme = "https" if use_tls else "http"
ctx = None
if use_tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
st = {"phase": "opening"}
errors = {}
conns = []
closed = []
t0 = time.time()

def status():
    st["open"] = len(conns)
    st["closed"] = len(closed)
    st["errors"] = " ".join(f"{k}:{v}" for k, v in sorted(errors.items()))
    tmp = os.path.join(ctl, "status.tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in st.items()))
    os.replace(tmp, os.path.join(ctl, "status"))

def err(kind):
    errors[kind] = errors.get(kind, 0) + 1

async def open_ws(sem):
    async with sem:
        w = None
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 60)
            key = base64.b64encode(os.urandom(16))
            req = (f"GET /app/ws HTTP/1.1\r\nHost: {host}:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Origin: {scheme}://{host}:{port}\r\n"
                   f"Cookie: {cookie}\r\n"
                   f"User-Agent: bench-websockets\r\n\r\n").encode()
            w.write(req)
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
            lines = head.split(b"\r\n")
            code = int(lines[0].split()[1])
            hdrs = {}
            for l in lines[1:]:
                k, sep, v = l.partition(b":")
                if sep:
                    hdrs[k.strip().lower()] = v.strip()
            want = base64.b64encode(hashlib.sha1(key + GUID).digest())
            if code != 101:
                err(f"status{code}")
            elif hdrs.get(b"upgrade", b"").lower() != b"websocket":
                err("no-upgrade")
            elif hdrs.get(b"sec-websocket-accept") != want:
                err("bad-accept")
            else:
                conns.append((r, w))
                return
        except Exception as e:
            err(type(e).__name__)
        if w is not None:
            w.close()

def frame(payload):
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

async def exchange(sem, r, w, ok):
    async with sem:
        try:
            w.write(frame(b"hello, idle websocket"))
            await w.drain()
            got = await asyncio.wait_for(r.readexactly(4), 60)
            if got == b"\x81\x02ok":
                ok.append((r, w))
            else:
                err("bad-frame")
        except Exception as e:
            err(type(e).__name__)

async def watch(r):
    try:
        await r.read(1)
    except Exception:
        pass
    closed.append(time.time())

async def wait_file(name):
    while not os.path.exists(os.path.join(ctl, name)):
        if time.time() > deadline:
            raise SystemExit("deadline")
        await asyncio.sleep(0.1)

async def main():
    global conns
    sem = asyncio.Semaphore(open_conc)
    await asyncio.gather(*(open_ws(sem) for _ in range(n)))
    st["t_open"] = f"{time.time() - t0:.1f}"
    st["phase"] = "open"
    status()
    await wait_file("msg")
    t1 = time.time()
    ok = []
    await asyncio.gather(*(exchange(sem, r, w, ok) for r, w in conns))
    for r, w in conns:
        if not any(w is w2 for _, w2 in ok):
            w.close()
    conns = ok
    st["t_exchange"] = f"{time.time() - t1:.1f}"
    watchers = [asyncio.ensure_future(watch(r)) for r, _ in conns]
    st["phase"] = "exchanged"
    status()
    while time.time() < deadline and not os.path.exists(os.path.join(ctl, "stop")):
        await asyncio.sleep(0.5)
        status()
    st["phase"] = "done"
    status()
    for _, w in conns:
        w.close()
    for t in watchers:
        t.cancel()
    await asyncio.sleep(0.5)

asyncio.run(main())
PY

# ---------------------------------------------------------------- helpers
# shellcheck source=lib/measure.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/measure.sh"
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null; } # file key

# ---------------------------------------------------------------- vestibule
declare -A VPID
start_vest() { # name port tls?
    local dir="$WORK/vest-$1"
    mkdir -p "$dir"
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\n' "$2"
        # Every open WebSocket keeps its client connection's place under
        # max_connections; the default (25,000) is enough unless WS is large.
        if ((2 * WS + 1000 > 25000)); then printf 'max_connections = %s\n' $((2 * WS + 1000)); fi
        if [[ "$3" == tls ]]; then
            printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$WORK/cert.pem" "$WORK/key.pem"
        fi
        cat <<EOF

[upstream]
url = "http://127.0.0.1:$P_UP"
websocket_idle_timeout = "30m"

[users]
file = "$WORK/users.toml"

[storage]
backend = "embedded"
path = "$dir/data"
encryption_key_file = "$WORK/encryption.key"

[log]
audit_file = "$dir/audit.log"
EOF
    } >"$dir/vestibule.toml"
    "$BIN" --config "$dir/vestibule.toml" check-config >"$dir/check.log" 2>&1 \
        || { cat "$dir/check.log" >&2; die "vestibule ($1) config rejected"; }
    "$BIN" --config "$dir/vestibule.toml" serve >"$dir/serve.log" 2>&1 &
    VPID[$1]=$!
    PIDS+=($!)
}
stop_pid() { # pid
    kill "$1" 2>/dev/null || true
    timeout 40 tail --pid="$1" -f /dev/null || kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
login() { # scheme port cookie-name -> prints the session token
    local base="$1://127.0.0.1:$2" jar="$WORK/jar-$2" page csrf code
    page=$(curl -sk --max-time 10 -c "$jar" -b "$jar" "$base/_vestibule/login?rd=/app/")
    csrf=$(grep -o 'name="csrf_token" value="[^"]*"' <<<"$page" | head -1 | sed 's/.*value="//; s/"$//')
    [[ -n "$csrf" ]] || die "no csrf_token on $base/_vestibule/login"
    code=$(curl -sk --max-time 30 -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
        --data-urlencode "username=$BENCH_USER" --data-urlencode "password=$BENCH_PASS" \
        --data-urlencode "csrf_token=$csrf" --data-urlencode "rd=/app/" "$base/_vestibule/login")
    [[ "$code" == 303 ]] || die "login at $base answered $code, expected 303"
    awk -v n="$3" '$6 == n { v = $7 } END { if (v != "") print v }' "$jar"
}

if [[ "$NGINX_ONLY" != 1 ]]; then
    "$BIN" gen-key >"$WORK/encryption.key"
    HASH=$(printf '%s' "$BENCH_PASS" | "$BIN" hash-password)
    # shellcheck disable=SC2016 # a literal '$'
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
fi

# ---------------------------------------------------------------- nginx (the comparison)
declare -A NPID
start_nginx() { # name port tls?
    local dir="$WORK/ngx-$1" listen="listen 127.0.0.1:$2 backlog=4096;"
    mkdir -p "$dir/tmp"
    [[ "$3" == tls ]] && listen="listen 127.0.0.1:$2 ssl backlog=4096;"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((2 * WS + 1000)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    server {
        $listen
        location / {
            proxy_pass http://127.0.0.1:$P_UP;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
EOF
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/test.log" \
        || { cat "$dir/test.log" >&2; die "nginx config rejected"; }
    nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
    NPID[$1]=$!
    PIDS+=($!)
}
nginx_worker() { # name -> the worker's pid
    local master=${NPID[$1]} worker=""
    for _ in $(seq 1 50); do
        worker=$(pgrep -P "$master" | head -1)
        [[ -n "$worker" ]] && break
        sleep 0.1
    done
    [[ -n "$worker" ]] || die "nginx ($1) started no worker"
    echo "$worker"
}

# ---------------------------------------------------------------- one run
wait_phase() { # status-file phase client-pid seconds
    for _ in $(seq 1 $(($4 * 10))); do
        [[ "$(kv "$1" phase)" == "$2" ]] && return 0
        kill -0 "$3" 2>/dev/null || die "client died: $(tail -5 "$(dirname "$1")/client.log")"
        sleep 0.1
    done
    die "client did not reach phase $2 in $4 s"
}
ws_test() { # name port tls(0|1) server(vestibule|nginx)
    local name=$1 port=$2 tls=$3 server=$4 scheme=http ctl="$WORK/run-$1" pid cookie="" cpid st
    local base code body up
    local up0 up1 extra="" worker=""
    st="$ctl/status"
    mkdir -p "$ctl"
    [[ $tls == 1 ]] && scheme=https
    base="$scheme://127.0.0.1:$port"
    if [[ $server == nginx ]]; then
        start_nginx "$name" "$port" "$([[ $tls == 1 ]] && echo tls || echo http)"
        wait_for "$base/"
        worker=$(nginx_worker "$name")
        pid="${NPID[$name]},$worker"
        # Same request bytes as through the gateway (nginx passes the cookie on).
        cookie="vestibule_session=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    else
        start_vest "$name" "$port" "$([[ $tls == 1 ]] && echo tls || echo http)"
        wait_for "$base/_vestibule/health"
        pid=${VPID[$name]}
        local cname=vestibule_session token
        [[ $tls == 1 ]] && cname=__Host-vestibule_session
        token=$(login "$scheme" "$port" "$cname")
        [[ ${#token} == 43 ]] || die "unexpected session cookie '$token'"
        cookie="$cname=$token"
        # The sign-in's argon2id hash leaves its 19 MiB block with the allocator, which
        # would blur the baseline: restart the gateway on the same database (the session
        # is stored there) and measure a process that never hashed.
        stop_pid "${VPID[$name]}"
        start_vest "$name" "$port" "$([[ $tls == 1 ]] && echo tls || echo http)"
        wait_for "$base/_vestibule/health"
        pid=${VPID[$name]}
        code=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' "$base/app/ws")
        [[ "$code" == 401 ]] || die "the WebSocket path without a cookie answered $code, expected 401 (it must be an authenticated path)"
    fi
    # Warm-up: 200 plain requests through the proxy (authenticated ones for the gateway).
    for _ in 1 2 3 4; do
        curl -sk --max-time 10 -o /dev/null -H "Cookie: $cookie" "$base/app/x?[1-50]" || true
    done
    body=$(curl -sk --max-time 10 -H "Cookie: $cookie" "$base/app/x")
    [[ "$body" == ok ]] || die "$name: an authenticated request does not reach the upstream: '$body'"
    sleep 2
    up0=$(kv "$WORK/upstream.status" handshakes); up0=${up0:-0}
    local u0 u1
    u0=$(kv "$WORK/upstream.status" with_user); u0=${u0:-0}
    measure "$name" "before" "$pid"
    log "$name: opening $WS WebSockets ($OPEN_CONC at a time)"
    python3 "$WORK/client.py" 127.0.0.1 "$port" "$WS" "$tls" "$OPEN_CONC" "$cookie" "$ctl" \
        $(($(date +%s) + 240 + HOLD)) >"$ctl/client.log" 2>&1 &
    cpid=$!
    PIDS+=("$cpid")
    wait_phase "$st" open "$cpid" 180
    local open errs
    open=$(kv "$st" open)
    errs=$(kv "$st" errors)
    ((open == WS)) || die "$name: only $open of $WS WebSocket handshakes completed (errors: $errs); logs in $WORK"
    sleep "$SETTLE"
    up1=$(kv "$WORK/upstream.status" handshakes)
    u1=$(kv "$WORK/upstream.status" with_user)
    note "${name}_t_open" "$(kv "$st" t_open)"
    note "${name}_upstream_handshakes" "$((up1 - up0))"
    note "${name}_with_user" "$((u1 - u0))"
    if [[ $server == vestibule ]]; then
        ((u1 - u0 >= WS)) || die "$name: the upstream saw Remote-User on only $((u1 - u0)) of $WS handshakes"
        extra="; upstream saw Remote-User on $((u1 - u0))"
    fi
    measure "$name" "$open open (handshakes only)" "$pid" \
        "$(kv "$st" t_open) s to open$extra"
    touch "$ctl/msg"
    wait_phase "$st" exchanged "$cpid" 120
    open=$(kv "$st" open)
    errs=$(kv "$st" errors)
    ((open == WS)) || die "$name: only $open of $WS WebSockets carried a message both ways (errors: $errs)"
    note "${name}_t_exchange" "$(kv "$st" t_exchange)"
    sleep "$SETTLE"
    measure "$name" "$open open, one message each way" "$pid" "$(kv "$st" t_exchange) s for the messages"
    log "$name: holding $open idle WebSockets for $HOLD s"
    sleep "$HOLD"
    local est
    est=$(ss -Htn state established "sport = :$port" 2>/dev/null | wc -l)
    up=$(ss -Htn state established "dport = :$P_UP" 2>/dev/null | wc -l)
    [[ "$(kv "$st" closed)" == 0 ]] || die "$name: the proxy closed $(kv "$st" closed) WebSockets while idle"
    if [[ $server == nginx ]]; then
        local w
        w=$(pstat "$worker" | cut -d' ' -f1)
        measure "$name" "$open idle for $HOLD s" "$pid" \
            "$est client / $up upstream conns established; master + worker (worker alone $((w / 1024)) MiB)"
    else
        measure "$name" "$open idle for $HOLD s" "$pid" \
            "$est client / $up upstream conns established; $(curl -sk --max-time 10 "$base/_vestibule/metrics" |
                sed -n 's/^vestibule_connections_open \(.*\)/\1 connections open (metrics)/p')"
    fi
    note "${name}_open" "$open"
    note "${name}_errors" "$errs"
    touch "$ctl/stop"
    timeout 30 tail --pid="$cpid" -f /dev/null || kill "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    sleep 3
    measure "$name" "after all closed (+3 s)" "$pid" \
        "$(ss -Htn state established "dport = :$P_UP" 2>/dev/null | wc -l) upstream conns"
    if [[ $server == nginx ]]; then stop_pid "${NPID[$name]}"; else stop_pid "${VPID[$name]}"; fi
}

wait_for "http://127.0.0.1:$P_UP/"
if [[ "$NGINX_ONLY" != 1 ]]; then ws_test vestibule-http "$P_VHTTP" 0 vestibule; fi
ws_test nginx-http "$P_NHTTP" 0 nginx
if [[ "$TLS" == 1 ]]; then
    if [[ "$NGINX_ONLY" != 1 ]]; then ws_test vestibule-tls "$P_VTLS" 1 vestibule; fi
    ws_test nginx-tls "$P_NTLS" 1 nginx
fi

# ---------------------------------------------------------------- report
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "python=$(python3 -c 'import platform; print(platform.python_version())')"
    if [[ "$NGINX_ONLY" != 1 ]]; then
        echo "bin=$BIN"
        echo "bin_built=$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
        echo "bin_version=$("$BIN" --version 2>/dev/null | head -1)"
    fi
    echo "rev=$REV"
    echo "ws=$WS"
    echo "hold=$HOLD"
    echo "load_start=$LOAD_START"
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "elapsed=$(($(date +%s) - T0))"
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
mib = lambda kib: f"{int(kib) / 1024:.1f}"
n = int(notes["ws"])
o = []
o.append(f"- date: {notes['date']}; machine: {notes['nproc']} cores, {notes['cpu']}, {notes['mem']} RAM, Linux {notes['kernel']}; nginx {notes['nginx']}; python {notes['python']}")
if "bin" in notes:
    o.append(f"- vestibule: `{notes['bin_version']}`, binary built {notes['bin_built']} (`{notes['bin']}`); script at `{notes['rev']}`")
else:
    o.append("- nginx only (`NGINX_ONLY=1`): no vestibule measured")
o.append(f"- {n} WebSockets per proxy, held idle {notes['hold']} s; load average at start / end: {notes['load_start']} / {notes['load_end']}; run took {notes['elapsed']} s")
o.append("")
o.append("| proxy | point | VmRSS MiB | anon MiB | file+shmem MiB | peak (VmHWM) MiB | threads | fds | note |")
o.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for t, p, rss, hwm, anon, fil, thr, fds, note in rows:
    o.append(f"| {t} | {p} | {mib(rss)} | {mib(anon)} | {mib(fil)} | {mib(hwm)} | {thr} | {fds} | {note} |")
o.append("")
def find(name, prefix):
    for r in rows:
        if r[0] == name and r[1].startswith(prefix):
            return {"rss": int(r[2]), "hwm": int(r[3])}
    return None
res = {}
for name in ("vestibule-http", "nginx-http", "vestibule-tls", "nginx-tls"):
    b, h, i = find(name, "before"), find(name, f"{n} open (handshakes"), find(name, f"{n} idle")
    if b and i:
        res[name] = (b, h, i)
o.append(f"{n} idle WebSockets (RSS with them open, after one message each way and {notes['hold']} s idle; "
         "nginx = master + worker; ratio = Vestibule / nginx, lower is better):")
o.append("")
o.append("| proxy | baseline RSS MiB | RSS with the WebSockets MiB | peak (VmHWM) MiB | KiB per WebSocket | × nginx (RSS) | × nginx (KiB per WebSocket) |")
o.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
verdicts = []
for proto in ("http", "tls"):
    g = res.get(f"nginx-{proto}")
    for name in (f"vestibule-{proto}", f"nginx-{proto}"):
        if name not in res:
            continue
        b, h, i = res[name]
        per = (i["rss"] - b["rss"]) / n
        ratio = ratio_per = "—"
        if g and name.startswith("vestibule"):
            gper = (g[2]["rss"] - g[0]["rss"]) / n
            ratio = f"{i['rss'] / g[2]['rss']:.2f}×"
            ratio_per = f"{per / gper:.2f}×" if gper > 0 else "—"
            verdicts.append((proto.upper(), i["rss"], g[2]["rss"]))
        label = f"{name} ({'TLS' if proto == 'tls' else 'plain HTTP'})"
        o.append(f"| {label} | {mib(b['rss'])} | {mib(i['rss'])} | {mib(i['hwm'])} | {per:.1f} | {ratio} | {ratio_per} |")
o.append("")
if verdicts:
    o.append("| target | measured | verdict |")
    o.append("| --- | --- | --- |")
    for proto, v, g in verdicts:
        ok = v < g
        o.append(f"| {n} idle WebSockets through the gateway in less memory than nginx holding the same ({proto}) "
                 f"| {v / 1024:.1f} MiB vs nginx {g / 1024:.1f} MiB ({v / g:.2f}×) | {'met' if ok else '**missed**'} |")
print("\n".join(o))
PY

cat "$OUT"
log "results written to $OUT"

# ---------------------------------------------------------------- docs/performance.md
if [[ "$UPDATE_DOC" == 1 && "$NGINX_ONLY" != 1 ]]; then
    python3 - "$DOC" "$OUT" <<'PY'
import sys
doc, res = sys.argv[1:3]
text = open(doc).read()
results = open(res).read().rstrip("\n")
BEGIN, END = "<!-- websocket-results:begin -->", "<!-- websocket-results:end -->"
if BEGIN not in text or END not in text:
    sys.exit(f"{doc} has no {BEGIN} … {END} block; add the 'Idle WebSockets' subsection first")
a = text.index(BEGIN)
b = text.index(END) + len(END)
text = text[:a] + f"{BEGIN}\n{results}\n{END}" + text[b:]
open(doc, "w").write(text)
PY
    log "docs/performance.md updated"
fi
