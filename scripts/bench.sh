#!/usr/bin/env bash
# Vestibule benchmark: one command, one run on loopback, compared against nginx.
#
#   bash scripts/bench.sh [OUTPUT.md]          (default: bench-results.md)
#
# One run measures everything issue 7 asks for and writes one report:
# Measures requests/s and p50/p99 latency with wrk (--latency), REPS repetitions of
# every case (medians reported), interleaved so slow drift hits every case alike:
#   upstream direct | nginx proxy_pass (keep-alive upstream), HTTP and TLS |
#   Vestibule bypass path, HTTP and TLS | Vestibule authenticated path with a complete
#   session cookie, embedded and Redis backend, HTTP and TLS | authenticated TLS while
#   STORM logins are in flight | nginx auth_request asking Vestibule in forward-auth mode
#   (issue 21) | new TLS handshakes per second (openssl s_time -new and
#   wrk with Connection: close), Vestibule vs nginx | then resident memory with 100,000
#   live sessions and with 10,000 idle keep-alive connections, Vestibule vs nginx
#   (scripts/bench-memory.sh, run as the last phase; MEMORY=0 skips it).
# See docs/performance.md for the method, the pinning choice and the latest results.
#
# Knobs (environment):
#   DURATION=10   seconds per measured wrk run       WARMUP=2   seconds of warm-up before each
#   REPS=3        repetitions (medians)               CONNS="64 512" space-separated
#   THREADS=2     wrk threads                         STORM=100  concurrent logins in flight
#   PIN=1         pin with taskset (0: let the scheduler place everything)
#   NGINX_WORKERS nginx worker_processes: 1 when pinned (one core each), 2 unpinned — the
#                 "both cores" comparison of issue 26, where Vestibule runs one worker
#                 thread per core it may use (two)
#   SERVER_CPUS=0 cores for the servers (proxy under test + upstream)
#   CLIENT_CPUS=1 cores for the load generators (wrk, login storm, openssl s_time)
#   HANDSHAKE_SECS=5  seconds per s_time run (0 skips the handshake test)
#   BASE_PORT=18400   first of 12 consecutive loopback ports (the memory phase uses
#                     6 more from BASE_PORT+100)
#   ACCESS_LOG=on one access-log line per request in both proxies (their shipped default);
#                 off: nginx `access_log off`, Vestibule `[log] access_log = false`
#   SKIP_BUILD=1  use the existing target/release/vestibule    KEEP_TMP=1 keep the temp dir
#   VESTIBULE_BIN=path  measure that binary instead (e.g. a build from before a change)
#   MEMORY=1      run the memory phase (0 skips); IDLE_CONNS=10000 and SESSIONS=100000 size it
#   LDAP=1        run the LDAP sign-in phase (0 skips): scripts/bench-ldap.sh, a login storm
#                 of LDAP_STORM=32 through a real slapd vs the users file (LDAP_SECS=10 each)
#   ONLY="..."    run only these cases (for quick comparisons while working), e.g.
#                 ONLY="nginx-http bypass-http auth-http"; names: upstream nginx-http nginx-tls
#                 bypass-http bypass-tls auth-http auth-tls auth-redis-http auth-redis-tls
#                 auth-storm-tls handshakes auth-assert-http auth-100apps-http fwd-auth-http
#                 ldap-login h2 (HTTP/2 over TLS with h2load: nginx-tls vs auth-tls, 64x10 and 8x100 streams)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-bench-results.md}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
CONNS=${CONNS:-64 512}
MEMORY=${MEMORY:-1}
LDAP=${LDAP:-1}
LDAP_STORM=${LDAP_STORM:-32}
LDAP_SECS=${LDAP_SECS:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
SESSIONS=${SESSIONS:-100000}
THREADS=${THREADS:-2}
STORM=${STORM:-100}
PIN=${PIN:-1}
if [[ "$PIN" == 1 ]]; then NGINX_WORKERS=${NGINX_WORKERS:-1}; else NGINX_WORKERS=${NGINX_WORKERS:-2}; fi
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
HANDSHAKE_SECS=${HANDSHAKE_SECS:-5}
BASE_PORT=${BASE_PORT:-18400}
ACCESS_LOG=${ACCESS_LOG:-on}
ONLY=${ONLY:-}
wanted() { [[ -z "$ONLY" || " $ONLY " == *" $1 "* ]]; }
[[ "$ACCESS_LOG" == on || "$ACCESS_LOG" == off ]] || { echo "ACCESS_LOG must be on or off" >&2; exit 2; }

P_UP=$BASE_PORT                 # upstream nginx (static responder)
P_NGX_HTTP=$((BASE_PORT + 1))   # nginx proxy, plain HTTP
P_NGX_TLS=$((BASE_PORT + 2))    # nginx proxy, TLS
P_VST_HTTP=$((BASE_PORT + 3))   # vestibule, plain HTTP
P_VST_TLS=$((BASE_PORT + 4))    # vestibule, TLS
P_VST_REDIS=$((BASE_PORT + 5))  # vestibule, plain HTTP, Redis backend
P_REDIS=$((BASE_PORT + 6))      # redis-server for it
P_VST_REDIS_TLS=$((BASE_PORT + 7))  # vestibule, TLS, Redis backend
P_VST_ASSERT=$((BASE_PORT + 8))     # vestibule, plain HTTP, signed identity assertion on
P_VST_APPS=$((BASE_PORT + 9))       # vestibule, plain HTTP, 100 [[apps]] configured
P_VST_FWD=$((BASE_PORT + 10))       # vestibule, plain HTTP, answering nginx's auth_request
P_NGX_FWD=$((BASE_PORT + 11))       # nginx proxy with auth_request to it (forward-auth mode)

BENCH_USER=bench.patient
BENCH_PASS='bench-password-0123456789'

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# On a systemd host the Debian package may start a system nginx on :80; we never use it, and leave it alone.

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
BIN="${VESTIBULE_BIN:-$REPO/target/release/vestibule}"   # VESTIBULE_BIN: measure another build with the same script
[[ -x "$BIN" ]] || die "$BIN not found (build failed?)"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

if [[ "$PIN" == 1 ]]; then
    ON_SERVER=(taskset -c "$SERVER_CPUS")
    ON_CLIENT=(taskset -c "$CLIENT_CPUS")
else
    ON_SERVER=()
    ON_CLIENT=()
fi

for p in $P_UP $P_NGX_HTTP $P_NGX_TLS $P_VST_HTTP $P_VST_TLS $P_VST_REDIS $P_REDIS $P_VST_REDIS_TLS \
    $P_VST_ASSERT $P_VST_APPS $P_VST_FWD $P_NGX_FWD; do
    if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
        die "port $p is in use; set BASE_PORT to a free range"
    fi
done

# ---------------------------------------------------------------- temp dir and cleanup
# shellcheck source=lib/workdir.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/workdir.sh"
start_workdir vestibule-bench
SERVER_PIDS=()

log "work dir $WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

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
# The login storm signs in STORM different people at once (one per connection): one
# account's sign-ins beyond lockout.max_failures in flight at the same moment are
# refused until one of them succeeds (each attempt is counted before it is checked).
for ((i = 0; i < STORM; i++)); do
    printf '[[users]]\nusername = "%s%d"\nroles = ["patient"]\npassword_hash = "%s"\n\n' \
        "$BENCH_USER.storm" "$i" "$HASH" >>"$WORK/users.toml"
done

# ---------------------------------------------------------------- nginx: upstream + proxy
mkdir -p "$WORK/nginx/tmp"
nginx_common() {
    cat <<EOF
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 65536;
daemon off;
pid $WORK/nginx/$1.pid;
error_log $WORK/nginx/$1.error.log warn;
events { worker_connections 8192; }
EOF
}
nginx_http_common() { # name access-log(on|off)
    if [[ "$2" == on ]]; then
        echo "    access_log $WORK/nginx/$1.access.log combined;"
    else
        echo "    access_log off;"
    fi
    cat <<EOF
    client_body_temp_path $WORK/nginx/tmp/body-$1;
    proxy_temp_path $WORK/nginx/tmp/proxy-$1;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi-$1;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi-$1;
    scgi_temp_path $WORK/nginx/tmp/scgi-$1;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
EOF
}
{
    nginx_common upstream
    echo "http {"
    nginx_http_common upstream off
    cat <<EOF
    server {
        listen 127.0.0.1:$P_UP backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
} >"$WORK/nginx/upstream.conf"
{
    nginx_common proxy
    echo "http {"
    nginx_http_common proxy "$ACCESS_LOG"
    cat <<EOF
    upstream backend {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 1000000;
    }
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1h;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$P_NGX_HTTP backlog=4096;
        listen 127.0.0.1:$P_NGX_TLS ssl http2 backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
    # Forward-auth mode (issue 21): the nginx-http server above plus the auth_request
    # of docs/forward-auth/nginx.conf (same directives; the app is the kept-alive
    # backend, as for nginx-http, instead of the snippet's per-host map).
    upstream vestibule_fwd {
        server 127.0.0.1:$P_VST_FWD;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$P_NGX_FWD backlog=4096;
        location = /_vestibule/api/authz/auth-request {
            internal;
            proxy_pass http://vestibule_fwd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
        location @vestibule_login {
            return 302 \$vestibule_login;
        }
        location / {
            auth_request /_vestibule/api/authz/auth-request;
            auth_request_set \$vestibule_login  \$upstream_http_location;
            auth_request_set \$vestibule_user   \$upstream_http_remote_user;
            auth_request_set \$vestibule_email  \$upstream_http_remote_email;
            auth_request_set \$vestibule_name   \$upstream_http_remote_name;
            auth_request_set \$vestibule_groups \$upstream_http_remote_groups;
            auth_request_set \$vestibule_mfa    \$upstream_http_remote_mfa;
            error_page 401 = @vestibule_login;
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header Remote-User   \$vestibule_user;
            proxy_set_header Remote-Email  \$vestibule_email;
            proxy_set_header Remote-Name   \$vestibule_name;
            proxy_set_header Remote-Groups \$vestibule_groups;
            proxy_set_header Remote-MFA    \$vestibule_mfa;
        }
    }
}
EOF
} >"$WORK/nginx/proxy.conf"

for n in upstream proxy; do
    nginx -t -q -p "$WORK/nginx" -c "$WORK/nginx/$n.conf" 2>"$WORK/nginx/$n.test.log" \
        || { cat "$WORK/nginx/$n.test.log" >&2; die "nginx $n config rejected"; }
    "${ON_SERVER[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/$n.conf" >"$WORK/nginx/$n.out" 2>&1 &
    PIDS+=($!)
    SERVER_PIDS+=($!)
done

# ---------------------------------------------------------------- vestibule: HTTP and TLS
vest_conf() { # name port tls? [backend] [assert|apps100|fwd]
    cat <<EOF
[server]
listen = "127.0.0.1:$2"
EOF
    if [[ "${5:-}" == fwd ]]; then
        # Forward-auth mode: nginx (on loopback) is the proxy allowed to ask.
        echo 'trusted_proxies = ["127.0.0.1/32"]'
    fi
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
backend = "${4:-embedded}"
path = "$WORK/vest-$1/data"
redis_url = "redis://127.0.0.1:$P_REDIS/0"
encryption_key_file = "$WORK/encryption.key"

[log]
audit_file = "$WORK/vest-$1/audit.log"
EOF
    if [[ "$ACCESS_LOG" == off ]]; then
        echo "access_log = false"
    fi
    if [[ "${5:-}" == assert ]]; then
        printf '\n[headers]\nassertion = "Remote-Assertion"\nassertion_key_file = "%s"\n' "$WORK/assertion.pem"
    fi
    if [[ "${5:-}" == apps100 ]]; then
        # 100 apps (issue 20): 60 more on the measured request's own host (127.0.0.1)
        # under other prefixes, each with a rule of its own, 39 on other hosts, and the
        # measured one, /app, among them; the [upstream] above stays as the fallback.
        local i
        for i in $(seq 1 99); do
            if ((i <= 60)); then
                printf '\n[[apps]]\nname = "a%d"\nhosts = ["127.0.0.1"]\npath_prefix = "/app%d"\nurl = "http://127.0.0.1:%s"\n' "$i" "$i" "$P_UP"
                printf '[[apps.rules]]\npath_prefix = "/app%d/public/"\naccess = "bypass"\n' "$i"
            else
                printf '\n[[apps]]\nname = "h%d"\nhosts = ["h%d.bench.test"]\nurl = "http://127.0.0.1:%s"\n' "$i" "$i" "$P_UP"
            fi
        done
        printf '\n[[apps]]\nname = "measured"\nhosts = ["127.0.0.1"]\npath_prefix = "/app"\nurl = "http://127.0.0.1:%s"\n' "$P_UP"
    fi
}
"$BIN" gen-signing-key >"$WORK/assertion.pem" || die "gen-signing-key failed"
# The Redis backend's own server, on the servers' core like the upstream.
"${ON_SERVER[@]}" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
SERVER_PIDS+=($!)
for v in http tls redis redis-tls assert apps100 fwd; do
    mkdir -p "$WORK/vest-$v"
    port=$P_VST_HTTP proto=http backend=embedded extra=""
    [[ $v == tls ]] && port=$P_VST_TLS proto=tls
    [[ $v == redis ]] && port=$P_VST_REDIS backend=redis
    [[ $v == redis-tls ]] && port=$P_VST_REDIS_TLS proto=tls backend=redis
    [[ $v == assert ]] && port=$P_VST_ASSERT extra=assert
    [[ $v == apps100 ]] && port=$P_VST_APPS extra=apps100
    [[ $v == fwd ]] && port=$P_VST_FWD extra=fwd
    vest_conf "$v" "$port" "$proto" "$backend" "$extra" >"$WORK/vest-$v/vestibule.toml"
    "$BIN" --config "$WORK/vest-$v/vestibule.toml" check-config >"$WORK/vest-$v/check.log" 2>&1 \
        || { cat "$WORK/vest-$v/check.log" >&2; die "vestibule ($v) config rejected"; }
    "${ON_SERVER[@]}" "$BIN" --config "$WORK/vest-$v/vestibule.toml" serve >"$WORK/vest-$v/serve.log" 2>&1 &
    PIDS+=($!)
    SERVER_PIDS+=($!)
done

wait_for() { # url
    local i
    for i in $(seq 1 100); do
        curl -sk --max-time 2 -o /dev/null "$1" && return 0
        sleep 0.1
    done
    die "nothing answers at $1"
}
wait_for "http://127.0.0.1:$P_UP/"
wait_for "http://127.0.0.1:$P_NGX_HTTP/"
wait_for "https://127.0.0.1:$P_NGX_TLS/"
wait_for "http://127.0.0.1:$P_VST_HTTP/_vestibule/health"
wait_for "https://127.0.0.1:$P_VST_TLS/_vestibule/health"
wait_for "http://127.0.0.1:$P_VST_REDIS/_vestibule/health"
wait_for "https://127.0.0.1:$P_VST_REDIS_TLS/_vestibule/health"
wait_for "http://127.0.0.1:$P_VST_ASSERT/_vestibule/health"
wait_for "http://127.0.0.1:$P_VST_APPS/_vestibule/health"
wait_for "http://127.0.0.1:$P_VST_FWD/_vestibule/health"
wait_for "http://127.0.0.1:$P_NGX_FWD/bench/x"

# ---------------------------------------------------------------- log in once per instance
login() { # scheme port cookie-name -> prints the session token
    local base="$1://127.0.0.1:$2" jar="$WORK/jar-$2" page token code
    page=$(curl -sk --max-time 10 -c "$jar" -b "$jar" "$base/_vestibule/login?rd=/app/")
    token=$(grep -o 'name="csrf_token" value="[^"]*"' <<<"$page" | head -1 | sed 's/.*value="//; s/"$//')
    [[ -n "$token" ]] || die "no csrf_token on $base/_vestibule/login"
    code=$(curl -sk --max-time 30 -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
        --data-urlencode "username=$BENCH_USER" --data-urlencode "password=$BENCH_PASS" \
        --data-urlencode "csrf_token=$token" --data-urlencode "rd=/app/" "$base/_vestibule/login")
    [[ "$code" == 303 ]] || die "login at $base answered $code, expected 303"
    awk -v n="$3" '$6 == n { v = $7 } END { if (v != "") print v }' "$jar"
}
SESS_HTTP=$(login http "$P_VST_HTTP" vestibule_session)
SESS_TLS=$(login https "$P_VST_TLS" __Host-vestibule_session)
SESS_REDIS=$(login http "$P_VST_REDIS" vestibule_session)
COOKIE_REDIS="Cookie: vestibule_session=$SESS_REDIS"
SESS_REDIS_TLS=$(login https "$P_VST_REDIS_TLS" __Host-vestibule_session)
COOKIE_REDIS_TLS="Cookie: __Host-vestibule_session=$SESS_REDIS_TLS"
[[ -n "$SESS_REDIS" && -n "$SESS_REDIS_TLS" ]] || die "no session cookie after login (Redis backend)"
[[ -n "$SESS_HTTP" && -n "$SESS_TLS" ]] || die "no session cookie after login"
SESS_ASSERT=$(login http "$P_VST_ASSERT" vestibule_session)
[[ -n "$SESS_ASSERT" ]] || die "no session cookie after login (assertion instance)"
COOKIE_ASSERT="Cookie: vestibule_session=$SESS_ASSERT"
SESS_APPS=$(login http "$P_VST_APPS" vestibule_session)
[[ -n "$SESS_APPS" ]] || die "no session cookie after login (100-apps instance)"
COOKIE_APPS="Cookie: vestibule_session=$SESS_APPS"
# Forward-auth: signed in at Vestibule's own pages, the cookie then sent to nginx.
SESS_FWD=$(login http "$P_VST_FWD" vestibule_session)
[[ -n "$SESS_FWD" ]] || die "no session cookie after login (forward-auth instance)"
COOKIE_FWD="Cookie: vestibule_session=$SESS_FWD"
COOKIE_HTTP="Cookie: vestibule_session=$SESS_HTTP"
COOKIE_TLS="Cookie: __Host-vestibule_session=$SESS_TLS"
# The CSRF pair of the TLS jar, reused by the login storm (the token is an HMAC of the cookie).
CSRF_TLS_COOKIE=$(awk '$6 == "__Host-vestibule_csrf" { v = $7 } END { print v }' "$WORK/jar-$P_VST_TLS")

check_ok() { # url [header]
    local body
    body=$(curl -sk --max-time 10 ${2:+-H "$2"} "$1") || die "request to $1 failed"
    [[ "$body" == ok ]] || die "$1 answered '$body', expected 'ok' from the upstream"
}
check_ok "http://127.0.0.1:$P_UP/bench/x"
check_ok "http://127.0.0.1:$P_NGX_HTTP/bench/x"
check_ok "https://127.0.0.1:$P_NGX_TLS/bench/x"
check_ok "http://127.0.0.1:$P_VST_HTTP/bench/x"
check_ok "https://127.0.0.1:$P_VST_TLS/bench/x"
check_ok "http://127.0.0.1:$P_VST_HTTP/app/x" "$COOKIE_HTTP"
check_ok "https://127.0.0.1:$P_VST_TLS/app/x" "$COOKIE_TLS"
check_ok "http://127.0.0.1:$P_VST_REDIS/app/x" "$COOKIE_REDIS"
check_ok "https://127.0.0.1:$P_VST_REDIS_TLS/app/x" "$COOKIE_REDIS_TLS"
check_ok "http://127.0.0.1:$P_VST_ASSERT/app/x" "$COOKIE_ASSERT"
check_ok "http://127.0.0.1:$P_VST_APPS/app/x" "$COOKIE_APPS"
check_ok "http://127.0.0.1:$P_NGX_FWD/app/x" "$COOKIE_FWD"
check_ok "http://127.0.0.1:$P_NGX_FWD/bench/x"
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_NGX_FWD/app/x")
[[ "$code" == 302 ]] || die "forward-auth without a cookie answered $code, expected nginx's 302 to sign in"
grep -q "101 apps" "$WORK/vest-apps100/check.log" || die "the 100-apps instance does not have its apps: $(cat "$WORK/vest-apps100/check.log")"
code=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$P_VST_TLS/app/x")
[[ "$code" == 401 ]] || die "authenticated path without a cookie answered $code, expected 401"
log "all endpoints answer; session cookies work"

# ---------------------------------------------------------------- login storm client
cat >"$WORK/storm.py" <<'PY'
"""Keeps N login POSTs in flight against a Vestibule instance until STOP exists."""
import http.client, os, ssl, sys, threading, time, urllib.parse
host, port, n, user, pw, csrf_cookie, stop, out, deadline = sys.argv[1:10]
port, n, deadline = int(port), int(n), time.time() + float(deadline)
ctx = ssl._create_unverified_context()
def get_token():
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    c.request("GET", "/_vestibule/login", headers={"Cookie": "__Host-vestibule_csrf=" + csrf_cookie})
    page = c.getresponse().read().decode()
    c.close()
    i = page.index('name="csrf_token" value="') + len('name="csrf_token" value="')
    return page[i:page.index('"', i)]
token = get_token()
def body_for(i):  # worker i signs in as USER.storm<i>: one person per connection
    return urllib.parse.urlencode({"username": f"{user}.storm{i}", "password": pw,
                                   "csrf_token": token, "rd": "/app/"})
hdrs = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "__Host-vestibule_csrf=" + csrf_cookie}
lock = threading.Lock()
stats = {}
started = threading.Barrier(n + 1)
def worker(i):
    c = None
    body = body_for(i)
    started.wait()
    while not os.path.exists(stop) and time.time() < deadline:
        try:
            if c is None:
                c = http.client.HTTPSConnection(host, port, context=ctx, timeout=120)
            c.request("POST", "/_vestibule/login", body=body, headers=hdrs)
            r = c.getresponse()
            r.read()
            key = str(r.status)
        except Exception as e:  # count, reconnect, go on
            key = type(e).__name__
            c = None
        with lock:
            stats[key] = stats.get(key, 0) + 1
            stats.setdefault("t", []).append(time.time())
threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
for t in threads:
    t.start()
started.wait()
t0 = time.time()
for t in threads:
    t.join(max(0.1, deadline - time.time() + 120))
times = stats.pop("t", [])
with open(out, "w") as f:
    f.write(" ".join(f"{k}={v}" for k, v in sorted(stats.items())) + "\n")
    f.write(f"start={t0:.3f}\n")
    f.write("times=" + ",".join(f"{x:.3f}" for x in times) + "\n")
PY

# ---------------------------------------------------------------- measurement helpers
RAW="$WORK/raw.tsv"   # case conns rep rps p50_ms p99_ms errors
: >"$RAW"

to_ms() { # "615.00us" | "1.23ms" | "1.02s" | "2.00m"
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

run_wrk() { # case conns rep url [header]
    wanted "$1" || return 0
    local name=$1 conns=$2 rep=$3 url=$4 hdr=${5:-} out="$WORK/wrk-$1-$2-$3.txt" rps p50 p99 bad
    local hargs=()
    [[ -n "$hdr" ]] && hargs=(-H "$hdr")
    if ((WARMUP > 0)); then
        timeout $((WARMUP + 30)) "${ON_CLIENT[@]}" wrk -t"$THREADS" -c"$conns" -d"${WARMUP}s" --timeout 10s \
            "${hargs[@]}" "$url" >/dev/null 2>&1 || true
    fi
    timeout $((DURATION + 30)) "${ON_CLIENT[@]}" wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout 10s \
        --latency "${hargs[@]}" "$url" >"$out" 2>&1 || die "wrk failed for $name: $(cat "$out")"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '/^ +50%/ { print $2 }' "$out")")
    p99=$(to_ms "$(awk '/^ +99%/ { print $2 }' "$out")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    [[ -n "$rps" ]] || die "could not parse wrk output for $name: $(cat "$out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$rep" "$rps" "$p50" "$p99" "$bad" >>"$RAW"
    log "$(printf '%-14s c=%-4s rep %s: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s' "$name" "$conns" "$rep" "$rps" "$p50" "$p99" "$bad")"
}

H2_LOG="$WORK/h2.tsv"   # case shape rep rps p50_ms p99_ms errors
: >"$H2_LOG"
# HTTP/2 over TLS (issue 26), what browsers speak to a TLS gateway: h2load with
# `clients` connections of `streams` concurrent streams each, for DURATION seconds
# after WARMUP; latency percentiles from h2load's per-request log.
run_h2load() { # case clients streams rep url [header]
    wanted h2 || return 0
    local name=$1 clients=$2 streams=$3 rep=$4 url=$5 hdr=${6:-}
    local out="$WORK/h2-$1-$2x$3-$4.txt" reqlog="$WORK/h2-$1-$2x$3-$4.log" hargs=()
    [[ -n "$hdr" ]] && hargs=(-H "$hdr")
    timeout $((DURATION + WARMUP + 30)) "${ON_CLIENT[@]}" h2load -c "$clients" -m "$streams" -t "$THREADS" \
        -D "$DURATION" --warm-up-time="$WARMUP" --log-file="$reqlog" "${hargs[@]}" "$url" >"$out" 2>&1 \
        || die "h2load failed for $name: $(tail -5 "$out")"
    python3 - "$out" "$reqlog" "$name" "$clients" "$streams" "$rep" >>"$H2_LOG" <<'PY'
import re, sys
out, reqlog, name, clients, streams, rep = sys.argv[1:7]
text = open(out).read()
m = re.search(r"finished in [^,]+, ([0-9.]+) req/s", text)
if not m:
    sys.exit(f"could not parse h2load output:\n{text}")
rps = float(m.group(1))
req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
errors = (int(req.group(2)) + int(req.group(3)) + int(req.group(4)) if req else 0) + \
         (int(st.group(3)) + int(st.group(4)) if st else 0)
lat = sorted(int(l.split("\t")[2]) for l in open(reqlog) if l.count("\t") >= 2)
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0 if lat else 0.0
print(f"{name}\t{clients}x{streams}\t{rep}\t{rps:.1f}\t{pct(0.5):.3f}\t{pct(0.99):.3f}\t{errors}")
PY
    log "$(tail -1 "$H2_LOG")"
}

STORM_LOG="$WORK/storm.tsv"   # conns rep logins logins_per_s statuses
: >"$STORM_LOG"
run_storm() { # conns rep
    wanted auth-storm-tls || return 0
    local conns=$1 rep=$2 stop="$WORK/storm-stop" out="$WORK/storm-$1-$2.txt" spid t_begin t_end
    rm -f "$stop"
    "${ON_CLIENT[@]}" python3 "$WORK/storm.py" 127.0.0.1 "$P_VST_TLS" "$STORM" "$BENCH_USER" "$BENCH_PASS" \
        "$CSRF_TLS_COOKIE" "$stop" "$out" $((DURATION + WARMUP + 60)) >"$WORK/storm-$1-$2.log" 2>&1 &
    spid=$!
    PIDS+=($spid)
    # Let the queue fill: every worker has sent its first POST and the hashes are flowing.
    sleep 3
    t_begin=$(date +%s.%N)
    run_wrk auth-storm-tls "$conns" "$rep" "https://127.0.0.1:$P_VST_TLS/app/x" "$COOKIE_TLS"
    t_end=$(date +%s.%N)
    touch "$stop"
    timeout 180 tail --pid="$spid" -f /dev/null || kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    [[ -s "$out" ]] || die "login storm wrote no result ($(cat "$WORK/storm-$1-$2.log"))"
    python3 - "$out" "$t_begin" "$t_end" "$conns" "$rep" >>"$STORM_LOG" <<'PY'
import sys
out, b, e, conns, rep = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
lines = open(out).read().splitlines()
statuses = lines[0]
times = [float(x) for x in lines[2].split("=", 1)[1].split(",") if x]
inwin = sum(1 for t in times if b <= t <= e)
print(f"{conns}\t{rep}\t{inwin}\t{inwin / max(e - b, 1e-9):.1f}\t{statuses}")
PY
    log "login storm c=$conns rep $rep: $(tail -1 "$STORM_LOG" | cut -f3-)"
}

HS_LOG="$WORK/handshakes.tsv"   # method server rep per_second
: >"$HS_LOG"
run_handshakes() { # name port rep
    local out="$WORK/stime-$1-$3.txt" n t0 t1 rate
    # s_time prints whole "real seconds" only, so time the run ourselves.
    t0=$(date +%s.%N)
    timeout $((HANDSHAKE_SECS + 30)) "${ON_CLIENT[@]}" openssl s_time -connect "127.0.0.1:$2" -new \
        -time "$HANDSHAKE_SECS" >"$out" 2>&1 || true
    t1=$(date +%s.%N)
    n=$(awk '/connections in .* real seconds/ { print $1; exit }' "$out")
    if [[ -n "$n" ]]; then
        rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
        printf 's_time\t%s\t%s\t%s\n' "$1" "$3" "$rate" >>"$HS_LOG"
        log "s_time -new $1 rep $3: $rate handshakes/s"
    else
        log "s_time against $1 gave no figure: $(tail -3 "$out" | tr '\n' ' ')"
    fi
    # 64 concurrent clients, a new TCP + TLS connection for every request.
    out="$WORK/wrkclose-$1-$3.txt"
    timeout $((HANDSHAKE_SECS + 30)) "${ON_CLIENT[@]}" wrk -t"$THREADS" -c64 -d"${HANDSHAKE_SECS}s" --timeout 10s \
        -H "Connection: close" "https://127.0.0.1:$2/bench/x" >"$out" 2>&1 || true
    rate=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    if [[ -n "$rate" ]]; then
        printf 'wrk-close\t%s\t%s\t%s\n' "$1" "$3" "$rate" >>"$HS_LOG"
        log "wrk Connection: close $1 rep $3: $rate connections/s"
    fi
}

# ---------------------------------------------------------------- the run
T0=$(date +%s)
for rep in $(seq 1 "$REPS"); do
    for c in $CONNS; do
        run_wrk upstream "$c" "$rep" "http://127.0.0.1:$P_UP/bench/x"
        run_wrk nginx-http "$c" "$rep" "http://127.0.0.1:$P_NGX_HTTP/bench/x"
        run_wrk nginx-tls "$c" "$rep" "https://127.0.0.1:$P_NGX_TLS/bench/x"
        run_wrk bypass-http "$c" "$rep" "http://127.0.0.1:$P_VST_HTTP/bench/x"
        run_wrk bypass-tls "$c" "$rep" "https://127.0.0.1:$P_VST_TLS/bench/x"
        run_wrk auth-http "$c" "$rep" "http://127.0.0.1:$P_VST_HTTP/app/x" "$COOKIE_HTTP"
        run_wrk fwd-auth-http "$c" "$rep" "http://127.0.0.1:$P_NGX_FWD/app/x" "$COOKIE_FWD"
        run_wrk auth-assert-http "$c" "$rep" "http://127.0.0.1:$P_VST_ASSERT/app/x" "$COOKIE_ASSERT"
        run_wrk auth-100apps-http "$c" "$rep" "http://127.0.0.1:$P_VST_APPS/app/x" "$COOKIE_APPS"
        run_wrk auth-tls "$c" "$rep" "https://127.0.0.1:$P_VST_TLS/app/x" "$COOKIE_TLS"
        run_wrk auth-redis-http "$c" "$rep" "http://127.0.0.1:$P_VST_REDIS/app/x" "$COOKIE_REDIS"
        run_wrk auth-redis-tls "$c" "$rep" "https://127.0.0.1:$P_VST_REDIS_TLS/app/x" "$COOKIE_REDIS_TLS"
        run_storm "$c" "$rep"
    done
    for shape in "64 10" "8 100"; do
        read -r clients streams <<<"$shape"
        run_h2load nginx-tls "$clients" "$streams" "$rep" "https://127.0.0.1:$P_NGX_TLS/bench/x"
        run_h2load auth-tls "$clients" "$streams" "$rep" "https://127.0.0.1:$P_VST_TLS/app/x" "$COOKIE_TLS"
    done
    if ((HANDSHAKE_SECS > 0)) && wanted handshakes; then
        run_handshakes nginx-tls "$P_NGX_TLS" "$rep"
        run_handshakes vestibule-tls "$P_VST_TLS" "$rep"
    fi
done
ELAPSED=$(($(date +%s) - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Every server must still be alive: a crash mid-run would make the figures meaningless.
for pid in "${SERVER_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "server process $pid died during the run (logs in $WORK)"
done
check_ok "https://127.0.0.1:$P_VST_TLS/app/x" "$COOKIE_TLS"
check_ok "http://127.0.0.1:$P_VST_HTTP/app/x" "$COOKIE_HTTP"

# ---------------------------------------------------------------- report
REV=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
META="$WORK/meta.env"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host_nproc=$(nproc)"
    echo "cpu=${CPU:-unknown}"
    echo "kernel=$(uname -r)"
    echo "rev=$REV"
    echo "bin_built=$(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC')"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "openssl=$(openssl version | awk '{ print $2 }')"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "reps=$REPS"
    echo "threads=$THREADS"
    echo "storm=$STORM"
    echo "pin=$PIN"
    echo "nginx_workers=$NGINX_WORKERS"
    echo "server_cpus=$SERVER_CPUS"
    echo "client_cpus=$CLIENT_CPUS"
    echo "load_start=$LOAD_START"
    echo "load_end=$LOAD_END"
    echo "elapsed=$ELAPSED"
    echo "handshake_secs=$HANDSHAKE_SECS"
    echo "access_log=$ACCESS_LOG"
} >"$META"

python3 - "$RAW" "$STORM_LOG" "$HS_LOG" "$META" "$H2_LOG" >"$OUT" <<'PY'
import statistics, sys
raw, storm_log, hs_log, meta_path, h2_log = sys.argv[1:6]
meta = dict(l.rstrip("\n").split("=", 1) for l in open(meta_path) if "=" in l)
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
med = {}
for case in sorted({(r[0], r[1]) for r in rows}):
    rs = [r for r in rows if (r[0], r[1]) == case]
    med[case] = {
        "rps": statistics.median(float(r[3]) for r in rs),
        "p50": statistics.median(float(r[4]) for r in rs),
        "p99": statistics.median(float(r[5]) for r in rs),
        "err": sum(int(r[6]) for r in rs),
        "n": len(rs),
    }
conns = sorted({int(r[1]) for r in rows})
CASES = [
    ("upstream", "upstream direct (nginx `return 200`)", "HTTP", "nginx-http"),
    ("nginx-http", "nginx `proxy_pass`", "HTTP", "nginx-http"),
    ("nginx-tls", "nginx `proxy_pass`", "TLS", "nginx-tls"),
    ("bypass-http", "Vestibule, bypass path", "HTTP", "nginx-http"),
    ("bypass-tls", "Vestibule, bypass path", "TLS", "nginx-tls"),
    ("auth-http", "Vestibule, authenticated (session cookie)", "HTTP", "nginx-http"),
    ("auth-tls", "Vestibule, authenticated (session cookie)", "TLS", "nginx-tls"),
    ("auth-assert-http", "Vestibule, authenticated, signed assertion on", "HTTP", "nginx-http"),
    ("auth-100apps-http", "Vestibule, authenticated, 100 apps configured", "HTTP", "nginx-http"),
    ("fwd-auth-http", "nginx `auth_request` + Vestibule forward-auth, authenticated (session cookie)", "HTTP", "nginx-http"),
    ("auth-redis-http", "Vestibule, authenticated, Redis backend", "HTTP", "nginx-http"),
    ("auth-redis-tls", "Vestibule, authenticated, Redis backend", "TLS", "nginx-tls"),
    ("auth-storm-tls", f"Vestibule, authenticated, {meta['storm']} logins in flight", "TLS", "nginx-tls"),
]
def ratio(a, b):
    return f"{a / b:.2f}×" if b else "n/a"
o = []
o.append("# Vestibule benchmark results\n")
o.append(f"- date: {meta['date']}")
o.append(f"- machine: {meta['host_nproc']} cores (nproc), {meta['cpu']}, Linux {meta['kernel']}")
o.append(f"- vestibule revision: `{meta['rev']}` (release build of {meta['bin_built']}; `-dirty` = uncommitted changes in the tree)")
o.append(f"- tools: nginx {meta['nginx']}, wrk {meta['wrk']}, OpenSSL {meta['openssl']}")
pin = (f"servers (proxy under test + upstream nginx) on core {meta['server_cpus']}, "
       f"load generators (wrk, login storm, s_time) on core {meta['client_cpus']}") if meta["pin"] == "1" else \
      f"no pinning (nginx worker_processes {meta.get('nginx_workers', '1')}, Vestibule one worker thread per core)"
o.append(f"- method: wrk -t{meta['threads']} --latency, {meta['duration']} s per run after {meta['warmup']} s warm-up, "
         f"median of {meta['reps']} interleaved repetitions; {pin}; everything on 127.0.0.1")
o.append("- access log: " + ("on in both proxies (nginx `access_log` to a file, Vestibule `log.access_log` with stdout to a file)"
                            if meta["access_log"] == "on" else "off in both proxies (nginx `access_log off`, Vestibule `log.access_log = false`)")
         + "; the upstream never logs")
o.append(f"- load average at start / end: {meta['load_start']} / {meta['load_end']} (other work on the machine shows here); run took {meta['elapsed']} s")
o.append("")
o.append("Ratios compare with nginx `proxy_pass` over the same protocol (HTTP rows with nginx HTTP, TLS rows with nginx TLS). "
         "For req/s higher is better; for latency lower is better. `errors` counts non-2xx answers and socket errors over all repetitions.\n")
for c in conns:
    o.append(f"## {c} connections\n")
    o.append("| case | proto | req/s | × nginx | p50 ms | × nginx | p99 ms | × nginx | errors |")
    o.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label, proto, ref in CASES:
        m, r = med.get((key, str(c))), med.get((ref, str(c)))
        if not m or not r:
            continue
        o.append(f"| {label} | {proto} | {m['rps']:.0f} | {ratio(m['rps'], r['rps'])} | {m['p50']:.2f} | {ratio(m['p50'], r['p50'])} "
                 f"| {m['p99']:.2f} | {ratio(m['p99'], r['p99'])} | {m['err']} |")
    o.append("")
    # targets
    def get(k):
        return med.get((k, str(c)))
    checks = []
    for proto, b, a, n in (("HTTP", "bypass-http", "auth-http", "nginx-http"), ("TLS", "bypass-tls", "auth-tls", "nginx-tls")):
        mb, ma, mn = get(b), get(a), get(n)
        if mb and mn:
            checks.append((f"bypass req/s ≥ 0.9× nginx ({proto})", mb["rps"] / mn["rps"], 0.9, True))
            checks.append((f"bypass p99 ≤ 1.2× nginx ({proto})", mb["p99"] / mn["p99"], 1.2, False))
        if ma and mn:
            checks.append((f"authenticated req/s ≥ 0.9× nginx ({proto}) — issue 4", ma["rps"] / mn["rps"], 0.9, True))
            checks.append((f"authenticated req/s ≥ 1.0× nginx ({proto}) — issue 7", ma["rps"] / mn["rps"], 1.0, True))
            checks.append((f"authenticated p99 ≤ 1.2× nginx ({proto}) — issue 7", ma["p99"] / mn["p99"], 1.2, False))
    for proto, rk, ek, nk in (("HTTP", "auth-redis-http", "auth-http", "nginx-http"), ("TLS", "auth-redis-tls", "auth-tls", "nginx-tls")):
        re_, em, nh = get(rk), get(ek), get(nk)
        if re_ and em:
            checks.append((f"Redis backend req/s ≥ 0.8× embedded ({proto}) — issue 6", re_["rps"] / em["rps"], 0.8, True))
        if re_ and nh:
            checks.append((f"Redis backend req/s ≥ 0.8× nginx ({proto}) — issue 7", re_["rps"] / nh["rps"], 0.8, True))
    sa, pa, na = get("auth-assert-http"), get("auth-http"), get("nginx-http")
    if sa and pa:
        checks.append(("signed assertion costs ≤ 3% of authenticated req/s (HTTP) — issues 25/26", sa["rps"] / pa["rps"], 0.97, True))
    if sa and na:
        checks.append(("signed assertion on: req/s ≥ 1.0× nginx (HTTP) — issue 25", sa["rps"] / na["rps"], 1.0, True))
    ma, pa = get("auth-100apps-http"), get("auth-http")
    if ma and pa:
        checks.append(("100 apps cost < 2% of authenticated req/s against 1 app (HTTP) — issues 20/26", ma["rps"] / pa["rps"], 0.98, True))
    # Forward-auth (issue 21): nginx asks Vestibule, then proxies itself. Its cost over
    # nginx alone must not exceed what proxy mode costs over nginx alone, i.e. its req/s
    # at least the authenticated proxy's (both HTTP, same cores, same upstream).
    fa, pa, na = get("fwd-auth-http"), get("auth-http"), get("nginx-http")
    if fa and pa:
        label = "forward-auth decision costs no more than a proxied authenticated request: req/s ≥ 1.0× Vestibule authenticated (HTTP) — issue 21"
        if na:
            label += (f" (below nginx alone: forward-auth {100 * (1 - fa['rps'] / na['rps']):.0f}%, "
                      f"proxy mode {100 * (1 - pa['rps'] / na['rps']):.0f}%)")
        checks.append((label, fa["rps"] / pa["rps"], 1.0, True))
    q, s = get("auth-tls"), get("auth-storm-tls")
    if q and s:
        checks.append(("p99 during login storm ≤ 2× quiet (TLS)", s["p99"] / q["p99"], 2.0, False))
    if checks:
        o.append("| target | measured | verdict |")
        o.append("| --- | ---: | --- |")
        for name, v, lim, higher in checks:
            ok = v >= lim if higher else v <= lim
            o.append(f"| {name} | {v:.2f}× | {'met' if ok else '**missed**'} |")
        o.append("")
h2 = [l.rstrip("\n").split("\t") for l in open(h2_log) if l.strip()]
if h2:
    o.append("## HTTP/2 over TLS (h2load)\n")
    o.append(f"h2load `-c clients -m streams -t {meta['threads']} -D {meta['duration']} --warm-up-time={meta['warmup']}`, "
             "median of the repetitions; nginx with `http2` on its TLS listener, Vestibule authenticated (session cookie). "
             "Percentiles from h2load's per-request log.\n")
    o.append("| shape | server | req/s | × nginx | p50 ms | p99 ms | × nginx p99 | errors |")
    o.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    h2checks = []
    for shape in sorted({r[1] for r in h2}, key=lambda s: -int(s.split("x")[0])):
        hm = {}
        for name in ("nginx-tls", "auth-tls"):
            rs = [r for r in h2 if r[0] == name and r[1] == shape]
            if rs:
                hm[name] = {k: statistics.median(float(r[i]) for r in rs) for k, i in (("rps", 3), ("p50", 4), ("p99", 5))}
                hm[name]["err"] = sum(int(r[6]) for r in rs)
        ng = hm.get("nginx-tls")
        for name, label in (("nginx-tls", "nginx `proxy_pass`"), ("auth-tls", "Vestibule, authenticated")):
            m = hm.get(name)
            if not m:
                continue
            o.append(f"| {shape} | {label} | {m['rps']:.0f} | {ratio(m['rps'], ng['rps']) if ng else 'n/a'} | {m['p50']:.2f} "
                     f"| {m['p99']:.2f} | {ratio(m['p99'], ng['p99']) if ng else 'n/a'} | {m['err']} |")
        if ng and hm.get("auth-tls"):
            a = hm["auth-tls"]
            h2checks.append((f"HTTP/2 {shape}: authenticated req/s ≥ 1.3× nginx — issue 26", a["rps"] / ng["rps"], 1.3, True))
            h2checks.append((f"HTTP/2 {shape}: authenticated p99 ≤ nginx's — issue 26", a["p99"] / ng["p99"], 1.0, False))
    o.append("")
    if h2checks:
        o.append("| target | measured | verdict |")
        o.append("| --- | ---: | --- |")
        for name, v, lim, higher in h2checks:
            ok = v >= lim if higher else v <= lim
            o.append(f"| {name} | {v:.2f}× | {'met' if ok else '**missed**'} |")
        o.append("")
storm = [l.rstrip("\n").split("\t") for l in open(storm_log) if l.strip()]
if storm:
    o.append("Login storm: completed logins during each measured window (all at the default argon2id cost, m=19456 KiB, t=2, p=1):\n")
    o.append("| conns | rep | logins in window | logins/s | answers over the whole storm |")
    o.append("| ---: | ---: | ---: | ---: | --- |")
    for s_ in storm:
        o.append(f"| {s_[0]} | {s_[1]} | {s_[2]} | {s_[3]} | {s_[4]} |")
    o.append("")
hs = [l.rstrip("\n").split("\t") for l in open(hs_log) if l.strip()]
if hs:
    o.append("## New TLS connections per second\n")
    o.append(f"- `s_time -new`: `openssl s_time -new -time {meta['handshake_secs']}`, one connection at a time, a full handshake each "
             "(no resumption), timed by wall clock.")
    o.append(f"- `wrk close`: wrk -c64 with `Connection: close` for {meta['handshake_secs']} s on the bypass path: a new TCP + TLS "
             "connection per request, 64 at once (the client may resume sessions).\n")
    o.append("| method | server | per second (median) | × nginx | runs |")
    o.append("| --- | --- | ---: | ---: | --- |")
    for method in ("s_time", "wrk-close"):
        hm = {}
        for name in ("nginx-tls", "vestibule-tls"):
            vals = [float(h[3]) for h in hs if h[0] == method and h[1] == name]
            if vals:
                hm[name] = statistics.median(vals)
        for name, v in hm.items():
            runs = ", ".join(h[3] for h in hs if h[0] == method and h[1] == name)
            o.append(f"| {method} | {name} | {v:.0f} | {ratio(v, hm.get('nginx-tls', 0))} | {runs} |")
    o.append("")
    st = {n: statistics.median([float(h[3]) for h in hs if h[0] == "s_time" and h[1] == n] or [0]) for n in ("nginx-tls", "vestibule-tls")}
    if st["nginx-tls"] and st["vestibule-tls"]:
        v = st["vestibule-tls"] / st["nginx-tls"]
        o.append("| target | measured | verdict |")
        o.append("| --- | ---: | --- |")
        o.append(f"| full TLS handshakes/s (s_time) ≥ 0.8× nginx — issue 7 | {v:.2f}× | {'met' if v >= 0.8 else '**missed**'} |")
        o.append("")
o.append("<details><summary>every run (case, conns, rep, req/s, p50 ms, p99 ms, errors)</summary>\n")
o.append("```")
for r in rows:
    o.append("\t".join(r))
o.append("```\n</details>")
print("\n".join(o))
PY

# ---------------------------------------------------------------- LDAP sign-in phase
# Sign-in latency with users from a directory (issue 23): scripts/bench-ldap.sh runs its
# own slapd and two gateways (LDAP, users file) on BASE_PORT+200.. and storms them.
if [[ "$LDAP" == 1 ]] && wanted ldap-login; then
    log "LDAP phase: scripts/bench-ldap.sh ($LDAP_STORM concurrent sign-ins, ${LDAP_SECS}s per case)"
    if STORM="$LDAP_STORM" SECS="$LDAP_SECS" REPS="$REPS" BASE_PORT=$((BASE_PORT + 200)) \
        VESTIBULE_BIN="$BIN" PIN="$PIN" SERVER_CPUS="$SERVER_CPUS" CLIENT_CPUS="$CLIENT_CPUS" \
        bash "$REPO/scripts/bench-ldap.sh" "$WORK/ldap.md" >"$WORK/ldap.log" 2>&1; then
        {
            echo ""
            echo "## Sign-in with users from LDAP"
            echo ""
            echo "Measured by \`scripts/bench-ldap.sh\`: each sign-in is a search on the pooled service connection, a base search per mapped group, and a bind as the user on a new LDAPS connection to a local slapd; the users-file row is the same storm checked with argon2id."
            echo ""
            cat "$WORK/ldap.md"
        } >>"$OUT"
    else
        tail -20 "$WORK/ldap.log" >&2
        die "the LDAP phase failed (log above; the throughput report is in $OUT)"
    fi
fi

# ---------------------------------------------------------------- memory phase
if [[ "$MEMORY" == 1 ]]; then
    # The throughput servers go first: the memory figures are of a fresh gateway alone.
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    done
    log "memory phase: scripts/bench-memory.sh ($SESSIONS sessions, $IDLE_CONNS idle connections)"
    if CONNS="$IDLE_CONNS" SESSIONS="$SESSIONS" BASE_PORT=$((BASE_PORT + 100)) UPDATE_DOC=0 BUILD=0 \
        bash "$REPO/scripts/bench-memory.sh" "$WORK/memory.md" >"$WORK/memory.log" 2>&1; then
        {
            echo ""
            echo "## Memory"
            echo ""
            echo "Resident memory of the gateway (VmRSS), measured by \`scripts/bench-memory.sh\`: $SESSIONS live sessions on the embedded backend, each used, and $IDLE_CONNS idle keep-alive connections per protocol, the same connections also held by nginx for the ratio."
            echo ""
            cat "$WORK/memory.md"
        } >>"$OUT"
    else
        tail -20 "$WORK/memory.log" >&2
        die "the memory phase failed (log above; the throughput report is in $OUT)"
    fi
fi

cat "$OUT"
log "results written to $OUT"
