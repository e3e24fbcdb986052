#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 10) from the checked-in seed
# corpus. cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 allows them on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET=${1:-10}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in $(cargo fuzz list); do
    echo "--- fuzz $target (${SECONDS_PER_TARGET}s)"
    # Work on a scratch copy so runs never dirty the checked-in seeds.
    work=$(mktemp -d)
    cp -r "corpus/$target/." "$work/" 2>/dev/null || true
    cargo fuzz run -O "$target" "$work" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 2>&1 | tail -n 3
    rm -rf "$work"
done
