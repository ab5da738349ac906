#!/usr/bin/env bash
# TLS scan of a real gateway with testssl.sh: one command, loopback only.
#
#   bash scripts/tls-scan.sh [REPORT.json]     (default: a temp file, path printed)
#
# Starts `vestibule serve` with a throwaway certificate, key, encryption key and
# config on 127.0.0.1, runs testssl.sh against it, prints a short summary and
# FAILS (exit 1) when the gateway offers:
#   - any protocol below TLS 1.2 (SSLv2, SSLv3, TLS 1.0, TLS 1.1),
#   - NULL, anonymous, export, LOW, RC4, 3DES/IDEA or obsoleted CBC ciphers
#     (any CBC suite at all: rustls has none, so one appearing is a regression),
#   - no HSTS header on an HTTPS answer,
#   - insecure (or client-initiated) renegotiation,
#   - any finding testssl.sh rates CRITICAL.
# Exit 2: the scan itself could not run.
#
# Knobs (environment):
#   VESTIBULE_BIN=path   use this binary (default: cargo build --release, then target/release/vestibule)
#   PORT=18530           loopback port for the gateway
#   KEEP_TMP=1           keep the temp dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PORT:-18530}
log() { printf '[tls-scan %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---------------------------------------------------------------- tools
need=()
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || need+=(testssl.sh)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
TESTSSL=$(command -v testssl || command -v testssl.sh) || die "testssl.sh not installed"

if [[ -n "${VESTIBULE_BIN:-}" ]]; then
    BIN=$VESTIBULE_BIN
else
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
    BIN="$REPO/target/release/vestibule"
fi
[[ -x "$BIN" ]] || die "$BIN not found"
if ss -Htln "sport = :$PORT" 2>/dev/null | grep -q .; then
    die "port $PORT is in use; set PORT"
fi

# ---------------------------------------------------------------- throwaway gateway
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vestibule-tls-scan.XXXXXX")
REPORT=${1:-$WORK/testssl.json}
case "$REPORT" in /*) ;; *) REPORT="$PWD/$REPORT" ;; esac
rm -f "$REPORT"
GW_PID=""
cleanup() {
    local rc=$?
    set +e
    if [[ -n "$GW_PID" ]]; then
        kill "$GW_PID" 2>/dev/null
        wait "$GW_PID" 2>/dev/null
    fi
    if [[ "${KEEP_TMP:-0}" == 1 || $rc == 2 ]]; then
        log "temp dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The certificate is its own CA, handed to testssl.sh, so trust findings are about
# the setup and not about "self-signed".
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
"$BIN" gen-key >"$WORK/encryption.key"
echo 'users = []' >"$WORK/users.toml"
cat >"$WORK/vestibule.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"

[upstream]
url = "http://127.0.0.1:9"

[users]
file = "$WORK/users.toml"

[storage]
backend = "embedded"
path = "$WORK/data"
encryption_key_file = "$WORK/encryption.key"
EOF
"$BIN" --config "$WORK/vestibule.toml" check-config >"$WORK/check.log" 2>&1 \
    || { cat "$WORK/check.log" >&2; die "config rejected"; }
"$BIN" --config "$WORK/vestibule.toml" serve >"$WORK/serve.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do
    curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$PORT/_vestibule/health" && break
    kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; die "vestibule exited"; }
    sleep 0.1
done
curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$PORT/_vestibule/health" || die "gateway not answering"

# ---------------------------------------------------------------- scan
# The login page is what every browser meets first; HSTS is checked on its answer.
TARGET="https://127.0.0.1:$PORT/_vestibule/login"
log "testssl.sh $("$TESTSSL" --version 2>/dev/null | grep -m1 -o 'testssl.sh *[0-9][^ ]*' || true) against $TARGET"
started=$(date +%s)
set +e
"$TESTSSL" --quiet --color 0 --warnings off --add-ca "$WORK/cert.pem" \
    --jsonfile "$REPORT" "$TARGET" >"$WORK/testssl.out" 2>&1
scan_rc=$?
set -e
log "scan took $(( $(date +%s) - started )) s (testssl.sh exit $scan_rc)"
[[ -s "$REPORT" ]] || { tail -30 "$WORK/testssl.out" >&2; die "testssl.sh wrote no JSON report"; }

# ---------------------------------------------------------------- verdict
python3 - "$REPORT" <<'PY'
import json, sys

with open(sys.argv[1]) as f:
    findings = json.load(f)
by_id = {}
for x in findings:
    by_id.setdefault(x.get("id", ""), []).append(x)

def get(i):
    return " | ".join(x.get("finding", "") for x in by_id.get(i, [])) or "(not reported)"

fail = []
def must(ok, what):
    if not ok:
        fail.append(what)

# Protocols
protocols = {}
for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]:
    protocols[p] = get(p)
for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]:
    must("not offered" in protocols[p], f"{p} offered: {protocols[p]}")
must(protocols["TLS1_2"].startswith("offered") or protocols["TLS1_3"].startswith("offered"), "neither TLS 1.2 nor 1.3 offered")

# Cipher categories (testssl.sh 3.0 ids)
weak = {
    "cipherlist_NULL": "NULL ciphers",
    "cipherlist_aNULL": "anonymous (aNULL) ciphers",
    "cipherlist_EXPORT": "export ciphers",
    "cipherlist_LOW": "LOW (64-bit/DES) ciphers",
    "cipherlist_3DES_IDEA": "3DES/IDEA ciphers",
    "cipherlist_AVERAGE": "obsoleted CBC ciphers",
    "cipherlist_OBSOLETED": "obsoleted CBC ciphers",
}
for i, what in weak.items():
    if i in by_id:
        must("not offered" in get(i), f"{what} offered: {get(i)}")
must("RC4" not in by_id or "not vulnerable" in get("RC4") or "no RC4" in get("RC4"), f"RC4: {get('RC4')}")
offered_suites = []
for x in findings:
    i = x.get("id", "")
    if i.startswith("cipher-tls") or i.startswith("cipher_x") or i.startswith("cipherorder_") or i.startswith("supportedciphers_"):
        offered_suites.append(x.get("finding", ""))
cbc = [s for s in offered_suites if "CBC" in s or "-SHA " in s or s.rstrip().endswith("-SHA") or "RC4" in s or "DES" in s or "NULL" in s]
must(not cbc, "weak suites listed: " + "; ".join(cbc))

# HSTS (testssl.sh 3.0 reports "HSTS_time" when the header is there, "HSTS" when not)
hsts = get("HSTS_time") if "HSTS_time" in by_id else get("HSTS")
must("HSTS_time" in by_id and by_id["HSTS_time"][0].get("severity") in ("OK", "INFO", "LOW")
     and "not offered" not in get("HSTS"), f"HSTS: {hsts}")

# Renegotiation
reneg = get("secure_renego")
client_reneg = get("secure_client_renego")
reneg_ok = "secure_renego" in by_id and (
    "not vulnerable" in reneg.lower() or ("VULNERABLE" not in reneg.upper() and "not supported" not in reneg.lower()))
must(reneg_ok, f"secure renegotiation: {reneg}")
must("VULNERABLE" not in client_reneg.upper() or "not vulnerable" in client_reneg.lower(),
     f"client-initiated renegotiation: {client_reneg}")

# Anything rated CRITICAL
crit = [f"{x.get('id')}: {x.get('finding')}" for x in findings if x.get("severity") == "CRITICAL"]
must(not crit, "CRITICAL findings: " + "; ".join(crit))
high = [f"{x.get('id')}: {x.get('finding')}" for x in findings if x.get("severity") == "HIGH"]
vulns = [x.get("id") for x in findings if x.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")]

print("TLS scan summary (testssl.sh)")
print("  protocols:   " + ", ".join(f"{p}={'offered' if protocols[p].startswith('offered') else 'no'}" for p in protocols))
print("  weak cipher categories offered: " + (", ".join(w for i, w in weak.items() if i in by_id and "not offered" not in get(i)) or "none"))
suites = [x.get("finding", "").split()[1] for x in findings
          if x.get("id", "").startswith("cipher_x") and len(x.get("finding", "").split()) > 1]
print("  suites:      " + (" ".join(suites) or get("PFS_ciphers")))
print("  cipher order: " + get("cipher_order"))
print(f"  HSTS:        {hsts}")
print(f"  renegotiation: secure={reneg}; client-initiated={client_reneg}")
print(f"  forward secrecy: {get('FS') if 'FS' in by_id else get('PFS')}")
print(f"  findings rated MEDIUM or worse: {', '.join(vulns) or 'none'}")
if high:
    print("  HIGH: " + "; ".join(high))
if fail:
    print("FAIL:")
    for f in fail:
        print("  - " + f)
    sys.exit(1)
print("PASS")
PY
