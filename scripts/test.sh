#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need that is not a
# crate, checks formatting and lints, then runs unit, conformance and end-to-end tests
# (the end-to-end tests spawn the real `vestibule` binary over real sockets).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, installed only when missing.
packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || packages+=(redis-tools)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
[ -d /usr/share/fonts/truetype/dejavu ] || packages+=(fonts-dejavu-core)
# The differential test (tests/e2e/differential.rs) runs its own Tomcat 10 from the
# package's files (never the system service) and hypercorn from PyPI with python3.
[ -f /usr/share/tomcat10/bin/bootstrap.jar ] || packages+=(tomcat10)
command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)
command -v curl >/dev/null 2>&1 || packages+=(curl)
# The LDAP tests (tests/e2e/ldap.rs) run their own OpenLDAP slapd from the package's
# binary with a throw-away configuration on a loopback port (never the system service);
# ldap-utils gives ldapmodify/ldapadd to change the directory during a test.
[ -x /usr/sbin/slapd ] || packages+=(slapd)
command -v ldapmodify >/dev/null 2>&1 || packages+=(ldap-utils)
command -v adduser >/dev/null 2>&1 || packages+=(adduser)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
# The forward-auth tests (tests/e2e/forward_auth.rs) run a real nginx (auth_request) and
# a real Caddy (forward_auth, 2.6.2 in Debian 12) from their binaries, with the files of
# docs/forward-auth/ on free loopback ports — never their system services.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || packages+=(nginx)
command -v caddy >/dev/null 2>&1 || packages+=(caddy)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "test.sh: installing ${packages[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' services (nginx, caddy on ports 80/443) are not started: the tests
  # run their own instances, and a machine's port 80 is not the test suite's to take.
  no_start=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    no_start=1
  fi
  installed=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null || installed=$?
  if [ -n "$no_start" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  [ "$installed" -eq 0 ] || exit "$installed"
fi

# Python packages of the tests, from PyPI: hypercorn (an h2c-capable upstream for the
# differential test), PyJWT with cryptography (an app's independent check of the
# signed identity assertion) and Django (docs/upstream-apps.md checked against it). A Debian python3 refuses pip installs outside a virtual
# environment (PEP 668); only then is the install repeated with
# --break-system-packages (none of these is a Debian package the system relies on).
python_packages=()
python3 -c 'import hypercorn' >/dev/null 2>&1 || python_packages+=('hypercorn==0.18.0')
python3 -c 'import jwt, cryptography' >/dev/null 2>&1 || python_packages+=('PyJWT==2.10.1' 'cryptography')
python3 -c 'import django' >/dev/null 2>&1 || python_packages+=('django>=5.2,<6')
if [ "${#python_packages[@]}" -gt 0 ]; then
  echo "test.sh: installing ${python_packages[*]}" >&2
  pip_args=(install --quiet --disable-pip-version-check)
  [ "$(id -u)" -ne 0 ] && pip_args+=(--user)
  python3 -m pip "${pip_args[@]}" "${python_packages[@]}" 2>/dev/null \
    || python3 -m pip "${pip_args[@]}" --break-system-packages "${python_packages[@]}"
fi

# cargo-deny (licences, banned and duplicate crates, sources) and cargo-deb (the Debian
# package test), built once per machine.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked

phase() { printf 'test.sh: %s (%d s so far)\n' "$1" "$(( $(date +%s) - T0 ))" >&2; }
T0=$(date +%s)
cargo fmt --all -- --check
phase "clippy"
cargo clippy --all-targets --locked -- -D warnings
cargo deny --locked check --hide-inclusion-graph licenses bans sources
phase "build (one build for every suite)"
cargo test --locked --all-targets --no-run

# The slow suites run side by side over that one build: the headless-browser journeys
# and the Debian package test (root, dpkg) next to the end-to-end suite. They share no
# port (every server binds a free loopback port) and no file (each has its own temp
# dirs). Their output is shown when they end, each under its own heading.
logs=$(mktemp -d)
phase "tests"
cargo test --locked --test browser -- --test-threads=2 >"$logs/browser.log" 2>&1 &
browser=$!
./scripts/package-test.sh >"$logs/package.log" 2>&1 &
package=$!
status=0
cargo test --locked --no-fail-fast --lib --bins --test architecture --test props --test e2e \
  -- --test-threads="${TEST_THREADS:-3}" || status=1
wait "$browser" || status=1
echo "---- browser journeys (tests/browser) ----"
cat "$logs/browser.log"
wait "$package" || status=1
echo "---- Debian package (scripts/package-test.sh) ----"
cat "$logs/package.log"
phase "done, status $status"
exit "$status"
