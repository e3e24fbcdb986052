#!/usr/bin/env bash
# Compares Wharf's SHA-256 throughput with sha256sum and openssl on this
# machine, one core each, and prints the ratios (used in README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-1024}
cargo build --release -q -p wharf-benches --bin hash-throughput
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A file in tmpfs-backed /dev/shm when available so sha256sum is not disk-bound.
dir=/dev/shm; [ -w "$dir" ] || dir=$tmp
f=$(mktemp -p "$dir")
trap 'rm -rf "$tmp" "$f"' EXIT
head -c $((MIB << 20)) /dev/urandom > "$f"
wharf=$(./target/release/hash-throughput "$MIB" 2>/dev/null)
start=$(date +%s.%N); sha256sum "$f" > /dev/null; end=$(date +%s.%N)
sum=$(echo "$MIB * 1048576 / ($end - $start) / 1000000" | bc -l)
openssl=$(openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null | awk '/^sha256/ {v=$NF; sub("k","",v); print v*1000/1e6}')
printf 'wharf Digester   %8.1f MB/s\n' "$wharf"
printf 'sha256sum        %8.1f MB/s   ratio wharf/sha256sum = %.2f\n' "$sum" "$(echo "$wharf / $sum" | bc -l)"
printf 'openssl -evp     %8.1f MB/s   ratio wharf/openssl   = %.2f\n' "$openssl" "$(echo "$wharf / $openssl" | bc -l)"
