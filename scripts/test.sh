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
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
fc-list 2>/dev/null | grep -qi dejavu || packages+=(fonts-dejavu-core)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v adduser >/dev/null 2>&1 || packages+=(adduser)
command -v python3 >/dev/null 2>&1 || packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "test.sh: installing ${packages[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# Django for the upstream-apps test (docs/upstream-apps.md checked against real Django).
if ! python3 -c 'import django' >/dev/null 2>&1; then
  echo "test.sh: installing Django" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'django>=5.2,<6' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'django>=5.2,<6'
fi

# cargo-deny (licences, banned and duplicate crates, sources) and cargo-deb (the Debian
# package test), built once per machine.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo deny --locked check --hide-inclusion-graph licenses bans sources
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-2}"
# Builds the release binary and the .deb, installs, checks, serves and purges it.
./scripts/package-test.sh
