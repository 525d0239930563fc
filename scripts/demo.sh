#!/usr/bin/env bash
# The whole attestlog flow on one machine: a log server trusting a dev CA, a
# sandboxed build of a small C program with the simulated NSM, verification of
# the bundle, and a tampered artifact that fails verification.
# Needs git, bwrap and cc. Builds the three binaries first (release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
cargo build --release -q -p enclave-builder -p attestlog-server -p attestlog
BIN="$ROOT/target/release"
W=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
start=$EPOCHREALTIME

echo "== dev CA"
"$BIN/enclave-builder" dev-ca init ca

echo "== log server"
"$BIN/attestlog-server" --data-dir data --listen "${ATTESTLOG_DEMO_LISTEN:-127.0.0.1:0}" --origin demo.attestlog/log \
  --trust-root ca/root.pem >server.out 2>server.err &
SERVER_PID=$!
for _ in $(seq 50); do grep -q '^listening on ' server.out 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' server.out)
KEY=$(sed -n 's/^verifier key: //p' server.out)
echo "log $URL key $KEY"

echo "== source: a C program with attestlog-build.toml"
mkdir repo
printf '#include <stdio.h>\nint main(void){puts("hello, attested world");return 0;}\n' >repo/hello.c
printf 'command = "cc -O2 -o hello hello.c"\noutputs = ["hello"]\n' >repo/attestlog-build.toml
git -C repo init -q -b main
git -C repo add -A
git -C repo -c user.name=demo -c user.email=demo@example.com commit -q -m hello
COMMIT=$(git -C repo rev-parse HEAD)

echo "== bare build (no builder), for comparison"
cp -r repo bare
TIMEFORMAT="bare build: %R s"
time (cd bare && cc -O2 -o hello hello.c)

echo "== enclave-builder build (bwrap sandbox, simulated NSM)"
TIMEFORMAT="enclave-builder build total: %R s"
time "$BIN/enclave-builder" build --repo repo --commit "$COMMIT" --log "$URL" --log-key "$KEY" \
  --nsm simulated --dev-ca ca --out out

echo "== policy endorsing the builder's PCRs"
{
  echo "log_keys = [\"$KEY\"]"
  printf '[trust]\naws_root = false\nextra_roots = ["ca/root.pem"]\n'
  "$BIN/enclave-builder" measure --log "$URL" --log-key "$KEY" | sed -n '/^\[\[measurement\]\]/,$p'
} >policy.toml
cat policy.toml

echo "== verify"
"$BIN/attestlog" verify --bundle out/hello.attestlog.json --artifact out/hello --policy policy.toml \
  --commit "$COMMIT"
./out/hello

echo "== tampered artifact must fail"
cp out/hello tampered && printf 'Z' | dd of=tampered bs=1 seek=0 conv=notrunc status=none
if "$BIN/attestlog" verify --bundle out/hello.attestlog.json --artifact tampered --policy policy.toml; then
  echo "FAIL: tampered artifact verified" >&2
  exit 1
fi
echo "tampered artifact refused, as it must be"

echo "== verify without the bundle: the log is asked for entry, proof and checkpoint"
"$BIN/attestlog" verify --log "$URL" --artifact out/hello --policy policy.toml --commit "$COMMIT"
echo "== demo done in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s (after the cargo build)"
echo "explorer: $URL/ (drop $W/out/hello on the page to verify it in the browser)"
if [ "${ATTESTLOG_DEMO_KEEP:-}" = 1 ]; then
  echo "ATTESTLOG_DEMO_KEEP=1: the server keeps running; Ctrl-C stops it and removes $W"
  wait "$SERVER_PID"
fi
