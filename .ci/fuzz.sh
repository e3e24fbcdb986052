#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60) from the checked-in seed
# corpus, as many targets at once as there are CPUs. Before fuzzing, the
# inputs in fuzz/regressions/<target>/ (crashes found earlier, kept as
# regression tests) are replayed once each. Any crash fails the run; its
# input is in fuzz/artifacts/<target>/ (copy it to fuzz/regressions/<target>/
# once fixed). cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 allows them
# on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET=${1:-60}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O

targets=$(cargo fuzz list)
for target in $targets; do
    if [ -d "regressions/$target" ] && [ -n "$(ls -A "regressions/$target")" ]; then
        echo "--- regressions $target"
        cargo fuzz run -O "$target" "regressions/$target" -- -runs=0 2>&1 | tail -n 2
    fi
done

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_one() {
    local target=$1
    # Work on a scratch copy so runs never dirty the checked-in seeds.
    local work
    work=$(mktemp -d)
    cp -r "corpus/$target/." "$work/" 2>/dev/null || true
    local status=0
    cargo fuzz run -O "$target" "$work" -- -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 >"$logs/$target.log" 2>&1 || status=$?
    rm -rf "$work"
    echo "--- fuzz $target (${SECONDS_PER_TARGET}s): exit $status"
    tail -n 3 "$logs/$target.log"
    return "$status"
}

failed=()
running=()
for target in $targets; do
    run_one "$target" &
    running+=("$!:$target")
    if [ "${#running[@]}" -ge "$JOBS" ]; then
        entry=${running[0]}
        running=("${running[@]:1}")
        wait "${entry%%:*}" || failed+=("${entry#*:}")
    fi
done
for entry in "${running[@]}"; do
    wait "${entry%%:*}" || failed+=("${entry#*:}")
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)"
    for target in "${failed[@]}"; do
        echo "--- $target log"
        tail -n 40 "$logs/$target.log"
    done
    exit 1
fi
