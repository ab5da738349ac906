#!/usr/bin/env bash
# Sign-in latency with users from a directory (issue 23, SPEC §11): a login storm through
# a real OpenLDAP slapd (LDAPS), against the same storm on a users-file gateway (argon2id)
# for comparison. Run by scripts/bench.sh as its "ldap-login" phase; alone:
#
#   bash scripts/bench-ldap.sh [OUTPUT.md]        (default: bench-ldap.md)
#
# Each of STORM workers signs its own user in over and over (one connection each, a
# fresh CSRF pair per worker) for SECS seconds; every POST /login is timed. Reported:
# completed sign-ins per second, p50 and p99 latency of one sign-in, and the statuses
# (all must be 303). slapd runs with its own throw-away configuration on loopback (never
# the system service), like the tests.
#
# Knobs: STORM=32 concurrent sign-ins   SECS=10 seconds per case   REPS=3 (medians)
#        BASE_PORT=18600 (3 ports)      VESTIBULE_BIN=path (default target/release)
#        PIN=1 SERVER_CPUS=0 CLIENT_CPUS=1 (as bench.sh)   KEEP_TMP=1 keep the temp dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-bench-ldap.md}
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
STORM=${STORM:-32}
SECS=${SECS:-10}
REPS=${REPS:-3}
BASE_PORT=${BASE_PORT:-18600}
PIN=${PIN:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
BIN="${VESTIBULE_BIN:-$REPO/target/release/vestibule}"
P_SLAPD=$BASE_PORT P_LDAP_GW=$((BASE_PORT + 1)) P_FILE_GW=$((BASE_PORT + 2))
SUFFIX="dc=clinic,dc=example"
SVC_DN="cn=vestibule,ou=service,$SUFFIX"
SVC_PW="bench-service-pw"
PASS='bench-password-0123456789'

log() { printf '[bench-ldap %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
[[ -x /usr/sbin/slapd ]] || need+=(slapd)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ -x "$BIN" ]] || die "$BIN not found (cargo build --release, or set VESTIBULE_BIN)"
if [[ "$PIN" == 1 ]] && command -v taskset >/dev/null 2>&1; then
    ON_SERVER=(taskset -c "$SERVER_CPUS")
    ON_CLIENT=(taskset -c "$CLIENT_CPUS")
else
    ON_SERVER=()
    ON_CLIENT=()
fi

# shellcheck source=lib/workdir.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/workdir.sh"
start_workdir vestibule-bench-ldap
log "work dir $WORK"

# ---------------------------------------------------------------- CA, certificates
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/cert.pem" 2>/dev/null

# ---------------------------------------------------------------- slapd
mkdir -p "$WORK/db"
cat >"$WORK/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $WORK/slapd.pid
TLSCACertificateFile $WORK/ca.pem
TLSCertificateFile $WORK/cert.pem
TLSCertificateKeyFile $WORK/key.pem
loglevel none
database mdb
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
directory $WORK/db
maxsize 104857600
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
EOF
{
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Clinic\ndc: clinic\n\n' "$SUFFIX"
    for ou in people groups service; do
        printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$SUFFIX" "$ou"
    done
    printf 'dn: %s\nobjectClass: person\ncn: vestibule\nsn: vestibule\nuserPassword: %s\n\n' "$SVC_DN" "$SVC_PW"
    printf 'dn: cn=patients,ou=groups,%s\nobjectClass: groupOfNames\ncn: patients\n' "$SUFFIX"
    for ((i = 0; i < STORM; i++)); do
        printf 'member: uid=bench.storm%d,ou=people,%s\n' "$i" "$SUFFIX"
    done
    printf '\n'
    for ((i = 0; i < STORM; i++)); do
        printf 'dn: uid=bench.storm%d,ou=people,%s\nobjectClass: inetOrgPerson\nuid: bench.storm%d\ncn: s%d\nsn: s%d\nuserPassword: %s\n\n' \
            "$i" "$SUFFIX" "$i" "$i" "$i" "$PASS"
    done
} >"$WORK/init.ldif"
/usr/sbin/slapadd -f "$WORK/slapd.conf" -l "$WORK/init.ldif" >/dev/null 2>&1 || die "slapadd failed"
"${ON_SERVER[@]}" /usr/sbin/slapd -f "$WORK/slapd.conf" -h "ldaps://127.0.0.1:$P_SLAPD/" -d 0 >"$WORK/slapd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$P_SLAPD") 2>/dev/null && break
    sleep 0.05
done

# ---------------------------------------------------------------- two gateways
"$BIN" gen-key >"$WORK/encryption.key"
HASH=$(printf '%s' "$PASS" | "$BIN" hash-password)
: >"$WORK/users.toml"
for ((i = 0; i < STORM; i++)); do
    printf '[[users]]\nusername = "bench.storm%d"\nroles = ["patient"]\npassword_hash = "%s"\n\n' "$i" "$HASH" >>"$WORK/users.toml"
done
gw_conf() { # name port source
    cat <<EOF
[server]
listen = "127.0.0.1:$2"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"

[upstream]
url = "http://127.0.0.1:9"

[users]
source = "$3"
file = "$WORK/users.toml"

[storage]
path = "$WORK/$1/data"
encryption_key_file = "$WORK/encryption.key"

[limits]
own_pages_per_minute = 10000000

[lockout]
ip_failures_per_minute = 1000000

[log]
audit_file = "$WORK/$1/audit.log"
access_log = false

[ldap]
url = ["ldaps://127.0.0.1:$P_SLAPD"]
ca_file = "$WORK/ca.pem"
bind_dn = "$SVC_DN"
base_dn = "ou=people,$SUFFIX"
user_filter = "(&(objectClass=inetOrgPerson)(uid={username}))"
nested_groups = false
refresh = "5m"
timeout = "5s"

[ldap.group_roles]
"cn=patients,ou=groups,$SUFFIX" = "patient"
EOF
}
export VESTIBULE_LDAP_BIND_PASSWORD="$SVC_PW"
for spec in "ldap:$P_LDAP_GW" "file:$P_FILE_GW"; do
    name=${spec%%:*} port=${spec##*:}
    mkdir -p "$WORK/$name"
    gw_conf "$name" "$port" "$name" >"$WORK/$name/vestibule.toml"
    "$BIN" --config "$WORK/$name/vestibule.toml" check-config >"$WORK/$name/check.log" 2>&1 \
        || { cat "$WORK/$name/check.log" >&2; die "$name gateway: configuration rejected"; }
    "${ON_SERVER[@]}" "$BIN" --config "$WORK/$name/vestibule.toml" serve >"$WORK/$name/serve.log" 2>&1 &
    PIDS+=($!)
done
for port in $P_LDAP_GW $P_FILE_GW; do
    for _ in $(seq 1 100); do
        curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$port/_vestibule/health" && break
        sleep 0.1
    done
done

# ---------------------------------------------------------------- the storm client
cat >"$WORK/storm.py" <<'PY'
"""N workers, each signing its own user in repeatedly for SECS seconds; every POST timed."""
import http.client, ssl, sys, threading, time, urllib.parse
port, n, secs, pw = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ctx = ssl._create_unverified_context()
lat, statuses, lock = [], {}, threading.Lock()
barrier = threading.Barrier(n + 1)
def worker(i):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    c.request("GET", "/_vestibule/login")
    r = c.getresponse()
    page = r.read().decode()
    csrf = [h.split(";")[0] for k, h in r.getheaders() if k.lower() == "set-cookie" and "csrf" in h][0]
    a = page.index('name="csrf_token" value="') + len('name="csrf_token" value="')
    body = urllib.parse.urlencode({"username": f"bench.storm{i}", "password": pw,
                                   "csrf_token": page[a:page.index('"', a)], "rd": "/"})
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": csrf}
    barrier.wait()
    end = time.time() + secs
    while time.time() < end:
        t = time.perf_counter()
        try:
            c.request("POST", "/_vestibule/login", body=body, headers=hdrs)
            r = c.getresponse(); r.read(); key = str(r.status)
        except Exception as e:
            key = type(e).__name__
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
        d = time.perf_counter() - t
        with lock:
            statuses[key] = statuses.get(key, 0) + 1
            if key == "303":
                lat.append(d)
ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
for t in ts: t.start()
barrier.wait(); t0 = time.time()
for t in ts: t.join()
el = time.time() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(f"{len(lat) / el:.1f}\t{q(0.50):.2f}\t{q(0.99):.2f}\t" + " ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
PY

RAW="$WORK/raw.tsv"
: >"$RAW"
for rep in $(seq 1 "$REPS"); do
    for spec in "ldap:$P_LDAP_GW" "file:$P_FILE_GW"; do
        name=${spec%%:*} port=${spec##*:}
        line=$("${ON_CLIENT[@]}" python3 "$WORK/storm.py" "$port" "$STORM" "$SECS" "$PASS")
        printf '%s\t%s\t%s\n' "$name" "$rep" "$line" >>"$RAW"
        log "$name rep $rep: $(cut -f1-4 <<<"$line" | awk -F'\t' '{ printf "%s sign-ins/s  p50 %s ms  p99 %s ms  %s", $1, $2, $3, $4 }')"
    done
done
kill -0 "${PIDS[0]}" 2>/dev/null || die "slapd died during the run"

python3 - "$RAW" "$STORM" "$SECS" "$REPS" >"$OUT" <<'PY'
import statistics, sys
raw, storm, secs, reps = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
o = ["| users from | sign-ins/s | p50 ms | p99 ms | statuses (last rep) |", "| --- | --- | --- | --- | --- |"]
for name, label in (("ldap", "LDAP (slapd, LDAPS): search + bind"), ("file", "users file: argon2id")):
    rs = [r for r in rows if r[0] == name]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    o.append(f"| {label} | {med(2):.1f} | {med(3):.2f} | {med(4):.2f} | {rs[-1][5]} |")
print(f"Login storm: {storm} concurrent sign-ins (one user each), {secs} s per case, median of {reps}.\n")
print("\n".join(o))
PY
cat "$OUT"
log "results written to $OUT"
