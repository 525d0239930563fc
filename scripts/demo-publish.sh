#!/usr/bin/env bash
# Publish and verify from where users download, on one machine: a log server trusting a dev CA,
# a local OCI registry (Debian's docker-registry, CNCF Distribution), a host/enclave build with
# the simulated NSM that publishes the artifact and its bundle to the registry, then
# `attestlog verify --oci` and `attestlog verify --url` (the out/ folder served over HTTP as a
# stand-in for a release), and a swapped artifact that is refused.
# Needs git, bwrap, cc, docker-registry and python3. Builds the binaries first (release), unless
# BIN names a folder holding them already.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p enclave-builder -p attestlog-server -p attestlog
  BIN="$ROOT/target/release"
fi
BIN=$(cd "$BIN" && pwd)
W=$(mktemp -d)
trap 'kill ${SERVER_PID:-} ${REGISTRY_PID:-} ${HTTP_PID:-} 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== dev CA and log server"
"$BIN/enclave-builder" dev-ca init ca >/dev/null
"$BIN/attestlog-server" --data-dir data --listen 127.0.0.1:0 --origin demo.attestlog/log \
  --trust-root ca/root.pem >server.out 2>server.err &
SERVER_PID=$!
for _ in $(seq 50); do grep -q '^listening on ' server.out 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' server.out)
KEY=$(sed -n 's/^verifier key: //p' server.out)
echo "log $URL"

echo "== local OCI registry"
REG=127.0.0.1:$(free_port)
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: %s\n' "$W" "$REG" >registry.yml
docker-registry serve registry.yml >registry.log 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "registry $REG"

echo "== source"
mkdir repo
printf '#include <stdio.h>\nint main(void){puts("hello, published world");return 0;}\n' >repo/hello.c
printf 'command = "cc -O2 -o hello hello.c"\noutputs = ["hello"]\n' >repo/attestlog-build.toml
git -C repo init -q -b main
git -C repo add -A
git -C repo -c user.name=demo -c user.email=demo@example.com commit -q -m hello
COMMIT=$(git -C repo rev-parse HEAD)

echo "== host + enclave build, publishing to $REG/demo/hello:v1"
ENCLAVE_ARGS=(--log "$URL" --log-key "$KEY" --source host-bundle)
"$BIN/enclave-builder" host --listen-unix "$W/enclave.sock" --log "$URL" --repo repo \
  --commit "$COMMIT" --out out --publish oci --oci-ref "$REG/demo/hello:v1" \
  -- "$BIN/enclave-builder" enclave --connect-unix "$W/enclave.sock" --nsm simulated \
  --dev-ca "$W/ca" "${ENCLAVE_ARGS[@]}"

echo "== policy endorsing the enclave half's PCRs"
{
  echo "log_keys = [\"$KEY\"]"
  printf '[trust]\naws_root = false\nextra_roots = ["ca/root.pem"]\n'
  "$BIN/enclave-builder" measure "${ENCLAVE_ARGS[@]}" | sed -n '/^\[\[measurement\]\]/,$p'
} >policy.toml

echo "== publishing again is a no-op"
"$BIN/enclave-builder" publish --artifact out/hello --oci "$REG/demo/hello:v1"

echo "== verify from the registry"
mkdir dl
"$BIN/attestlog" verify --oci "$REG/demo/hello:v1" --policy policy.toml --commit "$COMMIT" \
  --output dl/hello
chmod +x dl/hello && ./dl/hello

echo "== verify from a URL (out/ served over HTTP, as a release would be)"
HTTP_PORT=$(free_port)
python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory out >http.log 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$HTTP_PORT/hello" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/attestlog" verify --url "http://127.0.0.1:$HTTP_PORT/hello" --policy policy.toml \
  --commit "$COMMIT" --output dl/hello-from-url

echo "== a swapped artifact carrying the real bundle must fail"
mkdir swapped
printf 'not what was built\n' >swapped/hello
cp out/hello.attestlog.json swapped/
"$BIN/enclave-builder" publish --artifact swapped/hello --oci "$REG/demo/swapped:v1"
if "$BIN/attestlog" verify --oci "$REG/demo/swapped:v1" --policy policy.toml --output dl/swapped; then
  echo "FAIL: swapped artifact verified" >&2
  exit 1
fi
test ! -e dl/swapped
echo "swapped artifact refused, and nothing written, as it must be"
