#!/usr/bin/env bash
# The Debian package as an operator meets it: build it with cargo-deb, check its file
# list, install it with dpkg -i, check what the maintainer scripts made (user,
# directories, modes, key, certificate), run `vestibule check-config` and an admin
# command as the service user from the installed layout, start `serve` on a free
# loopback port until /_vestibule/health answers, then purge the package and check that
# it is gone. Called by scripts/test.sh; needs root (or sudo) and dpkg.
#
#   VESTIBULE_PACKAGE_TEST=0   skip (prints why); for machines where installing is unwanted
#
# What is tested is the package — file list, maintainer scripts, layout, unit — not the
# compiler's optimisation, so by default the package is made from the dev-profile binary
# the test suite has just built (`cargo deb --profile dev --no-build`; cargo-deb maps
# `target/release/` in the asset list to the profile's directory and strips it). A
# release build here cost 8–17 minutes on the project's 2-core machine, a third of CI's
# budget. VESTIBULE_PACKAGE_PROFILE=release tests the package exactly as shipped
# (`cargo deb`). The times of the build, of packaging and of the whole test are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${VESTIBULE_PACKAGE_TEST:-1}" = "0" ]; then
  echo "package-test: skipped (VESTIBULE_PACKAGE_TEST=0)" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
log() { printf 'package-test: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

if dpkg-query -W -f='${Status}' vestibule 2>/dev/null | grep -q "installed"; then
  fail "a vestibule package is already installed on this machine; this test would replace and purge it (set VESTIBULE_PACKAGE_TEST=0 to skip)"
fi
if [ -e /etc/vestibule ] || [ -e /var/lib/vestibule ]; then
  fail "/etc/vestibule or /var/lib/vestibule exists without the package; this test would delete it (set VESTIBULE_PACKAGE_TEST=0 to skip)"
fi
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked

profile=${VESTIBULE_PACKAGE_PROFILE:-dev}
start=$(date +%s)
# The dev binary comes from the same command scripts/test.sh just ran (a no-op then):
# `cargo build --bin` would resolve features without the dev-dependencies (resolver 2)
# and rebuild crates and the binary (136 s in a fresh CI clone, beside the e2e suite).
if [ "$profile" = dev ]; then
  cargo test --locked --no-run --quiet
else
  cargo build --profile "$profile" --locked --quiet --bin vestibule
fi
built=$(date +%s)
# --fast: lighter compression; this package is thrown away after the test.
cargo deb --profile "$profile" --no-build --locked --fast --quiet >/dev/null
deb=$(ls -t target/debian/vestibule_*.deb | head -n 1)
packaged=$(date +%s)
log "$profile build $((built - start)) s, cargo deb $((packaged - built)) s: $deb"

# ---- the package's file list and metadata
files=$(dpkg-deb -c "$deb" | awk '{print $NF}')
for f in ./usr/bin/vestibule ./etc/vestibule/vestibule.toml \
         ./usr/share/doc/vestibule/upstream-apps.md ./usr/share/doc/vestibule/vestibule.toml.example; do
  grep -qx "$f" <<<"$files" || fail "$f is not in the package: $files"
done
grep -Eq '^\./(usr/)?lib/systemd/system/vestibule\.service$' <<<"$files" \
  || fail "the systemd unit is not in the package: $files"
dpkg-deb -I "$deb" conffiles | grep -qx /etc/vestibule/vestibule.toml \
  || fail "/etc/vestibule/vestibule.toml is not a conffile"
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "Depends lacks adduser"

cleanup() { $SUDO dpkg --purge vestibule >/dev/null 2>&1 || true; }
trap cleanup EXIT

# ---- install
$SUDO dpkg -i "$deb" >/dev/null
getent passwd vestibule >/dev/null || fail "no vestibule user"
mode() { $SUDO stat -c '%U:%G %a' "$1"; }
[ "$(mode /etc/vestibule)" = "vestibule:vestibule 750" ] || fail "/etc/vestibule: $(mode /etc/vestibule)"
[ "$(mode /var/lib/vestibule)" = "vestibule:vestibule 750" ] || fail "/var/lib/vestibule: $(mode /var/lib/vestibule)"
[ "$(mode /etc/vestibule/encryption.key)" = "vestibule:vestibule 600" ] || fail "encryption.key: $(mode /etc/vestibule/encryption.key)"
[ "$(mode /etc/vestibule/tls/key.pem)" = "vestibule:vestibule 600" ] || fail "tls/key.pem: $(mode /etc/vestibule/tls/key.pem)"
[ "$(mode /etc/vestibule/vestibule.toml)" = "root:vestibule 640" ] || fail "vestibule.toml: $(mode /etc/vestibule/vestibule.toml)"
if command -v systemctl >/dev/null 2>&1; then
  state=$(systemctl is-enabled vestibule.service 2>/dev/null || true)
  [ "$state" = "disabled" ] || fail "vestibule.service should be installed but not enabled, is '$state'"
fi

# ---- the installed layout, as the service user, without --config (cwd has no config/)
as_vestibule() { (cd / && $SUDO setpriv --reuid=vestibule --regid=vestibule --init-groups "$@"); }
out=$(as_vestibule vestibule check-config 2>&1) || fail "check-config on the installed layout: $out"
grep -q "configuration OK" <<<"$out" || fail "check-config: $out"
out=$(printf 'a long enough password\n' | as_vestibule vestibule users add dr.grey --role doctor 2>&1) \
  || fail "users add as the service user: $out"
as_vestibule vestibule users list | grep -q dr.grey || fail "users list does not show dr.grey"

# ---- serve briefly on a free loopback port, as the unit does (user, working directory)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve_log=$(mktemp)
(cd /var/lib/vestibule && exec $SUDO env VESTIBULE__SERVER__LISTEN="127.0.0.1:$port" \
   setpriv --reuid=vestibule --regid=vestibule --init-groups vestibule serve) >"$serve_log" 2>&1 &
serve_pid=$!
healthy=""
for _ in $(seq 1 150); do
  if body=$(curl -ksf --max-time 2 "https://127.0.0.1:$port/_vestibule/health"); then
    healthy="$body"; break
  fi
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.2
done
$SUDO kill -TERM "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
[ -n "$healthy" ] || fail "serve did not become healthy on 127.0.0.1:$port: $(tail -n 20 "$serve_log")"
grep -q '"ok"' <<<"$healthy" || fail "health answered: $healthy"
rm -f "$serve_log"

# ---- purge
trap - EXIT
$SUDO dpkg --purge vestibule >/dev/null
[ ! -e /usr/bin/vestibule ] || fail "/usr/bin/vestibule left after purge"
[ ! -e /etc/vestibule ] || fail "/etc/vestibule left after purge"
[ ! -e /var/lib/vestibule ] || fail "/var/lib/vestibule left after purge"
log "OK in $(( $(date +%s) - start )) s (installed, checked, served, purged)"
