#!/usr/bin/env bash
# Wharf against CNCF Distribution (Debian's docker-registry 2.8.2) and
# ferro-oci-server, and against the machine's physical limits, in one run;
# refreshes the generated part of docs/performance.md from the measurements.
#
#   benches/compare.sh               # full run (under ten minutes on 2 cores), updates docs/performance.md
#   benches/compare.sh --quick       # smoke run (small sizes), writes target/wharf-bench/performance.md
#   benches/compare.sh --no-ferro    # without ferro-oci-server
#
# ferro-oci-server sits out the 1 GiB push and pull scenarios unless
# --ferro-large is given (it refuses the single-request push and takes
# minutes over the chunked one, which would push the run past ten minutes).
#
# Options: --quick, --no-ferro, --ferro-large, --out FILE (report path; only the part
# between the "generated" markers is replaced when the file has them),
# --keep (keep the temporary directory), and -- ARGS... (extra wharf-bench
# arguments, e.g. -- --rounds 4).
# Environment: WHARF_BENCH_TMP (where the data directories and the dd test
# file go; default /tmp, so the disk measured is the registries' disk),
# FERRO_DIR (where ferro-oci-server is built, outside the workspace; default
# $TMPDIR/wharf-bench-ferro, reused by later runs). If ferro-oci-server does
# not build, the run goes on without it and the report says why.
#
# Needs: cargo, docker-registry, nginx, wrk, curl, openssl, dd, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRIPT_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

QUICK=0
FERRO=1
FERRO_LARGE=0
KEEP=0
OUT=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --with-ferro) FERRO=1 ;;
        --no-ferro) FERRO=0 ;;
        --ferro-large) FERRO_LARGE=1 ;;
        --keep) KEEP=1 ;;
        --out) OUT=$2; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$OUT" ]; then
    if [ $QUICK = 1 ]; then OUT=target/wharf-bench/performance.md; else OUT=docs/performance.md; fi
fi

for tool in cargo docker-registry nginx wrk curl openssl dd python3; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is not installed" >&2; exit 1; }
done

if [ $QUICK = 1 ]; then
    BIG_MIB=64; DD_MIB=256; WRK_SECS=3; SHA_SECS=1; RSS_SMALL=16MiB; RSS_LARGE=128MiB
    BENCH_ARGS=(--quick --size "${BIG_MIB}MiB")
else
    BIG_MIB=1024; DD_MIB=1024; WRK_SECS=10; SHA_SECS=3; RSS_SMALL=64MiB; RSS_LARGE=1GiB
    BENCH_ARGS=()
fi

log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }

WORK=$(mktemp -d "${WHARF_BENCH_TMP:-/tmp}/wharf-compare.XXXXXX")
PIDS=()
stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ $KEEP = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "compare.sh: $1 did not come up" >&2
    return 1
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- build

log "build (release): wharf, wharf-bench"
cargo build --release -q -p wharf-server -p wharf-benches --bin wharf --bin wharf-bench
WHARF_BIN=$ROOT/target/release/wharf
BENCH=$ROOT/target/release/wharf-bench

FERRO_BIN=""
FERRO_NOTE=""
if [ $FERRO = 1 ]; then
    FERRO_DIR=${FERRO_DIR:-${TMPDIR:-/tmp}/wharf-bench-ferro}
    log "build ferro-oci-server in $FERRO_DIR (outside the workspace)"
    mkdir -p "$FERRO_DIR/src"
    cat > "$FERRO_DIR/Cargo.toml" <<'EOF'
[package]
name = "ferro-bench-server"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
ferro-oci-server = "1"
tokio = { version = "1", features = ["rt-multi-thread", "macros", "signal"] }

[workspace]
EOF
    cat > "$FERRO_DIR/src/main.rs" <<'EOF'
//! ferro-oci-server's own `serve` (env: FERRO_OCI_LISTEN, FERRO_OCI_STORAGE_DIR).
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ferro_oci_server::serve::init_tracing();
    let config = ferro_oci_server::serve::Config::from_env();
    ferro_oci_server::serve::serve(&config).await
}
EOF
    FERRO_T0=$(date +%s)
    if (cd "$FERRO_DIR" && CARGO_TARGET_DIR="$FERRO_DIR/target" cargo build --release -q) >"$WORK/ferro-build.log" 2>&1; then
        FERRO_BUILD_SECS=$(( $(date +%s) - FERRO_T0 ))
        echo "ferro-oci-server built in ${FERRO_BUILD_SECS}s" >&2
        FERRO_BIN=$FERRO_DIR/target/release/ferro-bench-server
        FERRO_VERSION=$(cd "$FERRO_DIR" && cargo pkgid -q ferro-oci-server 2>/dev/null | sed 's/.*[@#]//')
    else
        FERRO_NOTE="ferro-oci-server did not build: $(tail -5 "$WORK/ferro-build.log" | tr '\n' ' ')"
        echo "compare.sh: $FERRO_NOTE" >&2
    fi
fi

# ---------------------------------------------------------------- registries

# start_registry KIND DIR: starts a fresh registry; sets REG_PID and REG_URL.
start_registry() {
    local kind=$1 dir=$2 port
    port=$(free_port)
    mkdir -p "$dir"
    case "$kind" in
        wharf|wharf-relaxed)
            # wharf-relaxed: blob files not flushed before the 201
            # (storage.fsync = false), measured on the large pushes only.
            WHARF_LOG__LEVEL=warn WHARF_LOG__ACCESS_LOG=false \
                WHARF_STORAGE__FSYNC=$([ "$kind" = wharf ] && echo true || echo false) \
                "$WHARF_BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" \
                >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
        distribution)
            cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  redirect:
    disable: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: wharf-bench-not-secret
EOF
            docker-registry serve "$dir/config.yml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
        ferro)
            FERRO_OCI_LISTEN="127.0.0.1:$port" FERRO_OCI_STORAGE_DIR="$dir/data" RUST_LOG=warn \
                "$FERRO_BIN" >"$dir/stdout.log" 2>"$dir/stderr.log" &
            ;;
    esac
    REG_PID=$!
    PIDS+=("$REG_PID")
    REG_URL="http://127.0.0.1:$port"
    wait_http "$REG_URL/v2/"
}

stop_registry() {
    stop_pid "$1"
    local keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

KINDS=(wharf distribution)
[ -n "$FERRO_BIN" ] && KINDS+=(ferro)

# ---------------------------------------------------------------- physical limits

log "physical limits: SHA-256 (openssl, one core)"
SHA_MBS=$(openssl speed -evp sha256 -bytes 16384 -seconds "$SHA_SECS" 2>/dev/null |
    awk '/^sha256/ {v=$NF; sub("k","",v); printf "%.1f", v*1000/1e6}')
echo "sha256: $SHA_MBS MB/s" >&2

log "physical limits: durable sequential write (dd ${DD_MIB} MiB, fdatasync) in $WORK"
DD_OUT=$(dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$DD_MIB" conv=fdatasync 2>&1 | tail -1)
rm -f "$WORK/dd.bin"
DD_MBS=$(echo "$DD_OUT" | awk '{for (i=1;i<=NF;i++) if ($i ~ /^s,?$/) secs=$(i-1); printf "%.1f", $1/secs/1e6}')
echo "dd: $DD_OUT -> $DD_MBS MB/s" >&2

log "physical limits: nginx (sendfile) loopback and small-file rate"
mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
head -c "$((BIG_MIB << 20))" /dev/zero > "$WORK/nginx/www/big.bin"
python3 -c 'import sys; sys.stdout.write("{" + "\"x\":\"" + "m"*1192 + "\"}")' > "$WORK/nginx/www/m.json" # 1200 bytes, like the manifest
NGINX_PORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
user root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/www;
    }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/start.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
NGINX=http://127.0.0.1:$NGINX_PORT
wait_http "$NGINX/m.json"
curl -s -o /dev/null "$NGINX/big.bin" # warm the page cache
CURL_MBS=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{speed_download}\n' "$NGINX/big.bin"; done |
    sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[2]/1e6}')
echo "curl loopback (median of 3): $CURL_MBS MB/s" >&2
WRK_OUT=$(wrk -t2 -c32 -d"${WRK_SECS}s" --latency "$NGINX/m.json")
echo "$WRK_OUT" >&2
WRK_RPS=$(echo "$WRK_OUT" | awk '/^Requests\/sec:/ {print $2}')
WRK_P99=$(echo "$WRK_OUT" | awk '$1=="99%" {v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[a-z]+$/,"",v);
    m=(u=="us")?0.001:(u=="ms")?1:(u=="s")?1000:1; printf "%.3f", v*m}')
# nginx keeps running: it joins the comparison as a reference target.

# ---------------------------------------------------------------- memory: 64 MiB vs 1 GiB push

RSS_LINES=""
for kind in "${KINDS[@]}"; do
    for size in "$RSS_SMALL" "$RSS_LARGE"; do
        log "peak RSS of $kind over one $size push (fresh process)"
        start_registry "$kind" "$WORK/rss-$kind-$size"
        if "$BENCH" "$REG_URL" --scenario push-large-mono --size "$size" -q >"$WORK/rss.txt"; then
            RSS_LINES+="$kind $size $(hwm_kib "$REG_PID")"$'\n'
        else
            echo "compare.sh: the $size push to $kind failed: $(tail -2 "$WORK/rss.txt")" >&2
            RSS_LINES+="$kind $size failed"$'\n'
        fi
        stop_registry "$REG_PID"
        rm -rf "$WORK/rss-$kind-$size"
    done
done
echo "$RSS_LINES" >&2

# ---------------------------------------------------------------- the comparison

log "start ${KINDS[*]} on fresh data directories"
URLS=()
REG_PIDS=()
for kind in "${KINDS[@]}"; do
    start_registry "$kind" "$WORK/$kind"
    URLS+=("$REG_URL")
    REG_PIDS+=("$REG_PID")
    echo "$kind: $REG_URL (pid $REG_PID)" >&2
done
# Wharf with durability relaxed (storage.fsync = false) joins the large
# pushes only.
start_registry wharf-relaxed "$WORK/wharf-relaxed"
RELAXED_PID=$REG_PID
URLS+=("$REG_URL")
echo "wharf-relaxed: $REG_URL (pid $REG_PID)" >&2
RELAXED_SKIP=wharf-relaxed:pull-large,wharf-relaxed:push-small,wharf-relaxed:manifest-get
RELAXED_SKIP+=,wharf-relaxed:manifest-head,wharf-relaxed:tag-push,wharf-relaxed:tag-list,wharf-relaxed:mixed
# References, interleaved with the registries in the same rounds: nginx
# (manifest scenarios fetch its 1200-byte file, pull-large its big file) and
# the disk (large pushes become a file write plus fdatasync, like dd).
mkdir -p "$WORK/disk"
URLS+=("static+$NGINX" "file://$WORK/disk")
NAMES=$(IFS=,; echo "${KINDS[*]},wharf-relaxed,nginx,disk")
PID_LIST=$(IFS=,; echo "${REG_PIDS[*]},$RELAXED_PID,0,0")
SKIP_LIST=$RELAXED_SKIP
if [ -n "$FERRO_BIN" ] && [ $FERRO_LARGE = 0 ]; then
    SKIP_LIST+=,ferro:push-large-mono,ferro:push-large-chunked,ferro:pull-large
fi
SKIP=(--skip "$SKIP_LIST")

log "wharf-bench --compare ${URLS[*]}"
# The machine's load during the comparison, sampled for the report.
( while :; do cut -d' ' -f1 /proc/loadavg >>"$WORK/load.txt"; sleep 2; done ) &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")
BENCH_STATUS=0
"$BENCH" --compare "${URLS[@]}" --names "$NAMES" --pids "$PID_LIST" --json "$WORK/bench.json" \
    "${SKIP[@]}" "${BENCH_ARGS[@]}" "${EXTRA[@]}" | tee "$WORK/bench.txt" || BENCH_STATUS=$?
stop_registry "$SAMPLER_PID"

RUN_HWM=""
for i in "${!KINDS[@]}"; do
    RUN_HWM+="${KINDS[$i]} $(hwm_kib "${REG_PIDS[$i]}")"$'\n'
done
echo "$RUN_HWM" >&2
for pid in "${REG_PIDS[@]}" "$RELAXED_PID"; do stop_registry "$pid"; done
stop_registry "$NGINX_PID"
DATA_FS=$(df -T "$WORK" | awk 'NR==2 {print $2" on "$1}')

# ---------------------------------------------------------------- the report

log "write $OUT"
mkdir -p "$(dirname "$OUT")"
SCRIPT_SECS=$(( $(date +%s) - SCRIPT_START ))
export FERRO_LARGE
export WORK OUT QUICK SHA_MBS DD_MBS DD_MIB BIG_MIB CURL_MBS WRK_RPS WRK_P99 WRK_SECS RSS_LINES RUN_HWM \
    RSS_SMALL RSS_LARGE DATA_FS SCRIPT_SECS FERRO FERRO_NOTE BENCH_STATUS LOAD_START
export WHARF_VERSION=$("$WHARF_BIN" version 2>/dev/null | head -1)
# The source measured: a commit, "-dirty" when the working tree differed
# (outside a git checkout, e.g. an exported snapshot: $WHARF_REV).
export WHARF_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "${WHARF_REV:-unknown}")
export DIST_VERSION=$(docker-registry --version 2>/dev/null | head -1)
export FERRO_VERSION=${FERRO_VERSION:-} FERRO_BUILD_SECS=${FERRO_BUILD_SECS:-}
export NGINX_VERSION=$(nginx -v 2>&1 | head -1)
export WRK_VERSION=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)
export OPENSSL_VERSION=$(openssl version)
export RUSTC_VERSION=$(rustc --version)
export CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
export CPUS=$(nproc)
export MEM_GIB=$(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)
export KERNEL=$(uname -sr)
export LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - <<'PY'
import datetime, json, os

E = os.environ
work = E["WORK"]
quick = E["QUICK"] == "1"
BEGIN = "<!-- BEGIN generated by benches/compare.sh: do not edit by hand -->"
END = "<!-- END generated by benches/compare.sh -->"


def load(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


bench = load("bench.json")


def fnum(v, digits=None):
    if v is None:
        return "-"
    if digits is not None:
        return f"{v:.{digits}f}"
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def value(report, scenario, metric, target=None):
    if not report:
        return None
    for s in report["scenarios"]:
        if s["name"] != scenario:
            continue
        for r in s["rows"]:
            if r["metric"] == metric:
                name = target or report["targets"][0]["name"]
                return r["values"].get(name)
    return None


def flt(name):
    try:
        return float(E.get(name, ""))
    except ValueError:
        return None


sha, dd, curl = flt("SHA_MBS"), flt("DD_MBS"), flt("CURL_MBS")
wrk_rps, wrk_p99 = flt("WRK_RPS"), flt("WRK_P99")
# The references measured in the same run, interleaved with the registries.
ng_get = value(bench, "manifest-get", "req/s", "nginx")
ng_get_p99 = value(bench, "manifest-get", "p99 ms", "nginx")
ng_head = value(bench, "manifest-head", "req/s", "nginx")
ng_head_p99 = value(bench, "manifest-head", "p99 ms", "nginx")
ng_pull = value(bench, "pull-large", "MB/s", "nginx")
disk_mono = value(bench, "push-large-mono", "MB/s", "disk")
disk_chunked = value(bench, "push-large-chunked", "MB/s", "disk")

rss = {}
for line in E.get("RSS_LINES", "").splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[2].isdigit():
        rss.setdefault(parts[0], {})[parts[1]] = int(parts[2])
run_hwm = {}
for line in E.get("RUN_HWM", "").splitlines():
    parts = line.split()
    if len(parts) == 2 and parts[1].isdigit():
        run_hwm[parts[0]] = int(parts[1])
loads = []
try:
    with open(os.path.join(work, "load.txt")) as f:
        loads = [float(x) for x in f.read().split()]
except (OSError, ValueError):
    pass

names = [t["name"] for t in bench["targets"]] if bench else []
# wharf-relaxed (Wharf with storage.fsync = false) is measured on the large
# pushes only, for the relaxed-durability target; it is not a peer.
RELAXED = "wharf-relaxed"
registries = [n for n in names if n not in ("nginx", "disk", RELAXED)]
A = names[0] if names else "wharf"
B = "distribution" if "distribution" in names else None
peers = [n for n in registries if n != A]


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


targets = []


def target(what, goal, measured, r, ok):
    targets.append((what, goal, measured, r, ok))


size_label = "1 GiB" if not quick else f"{E['BIG_MIB']} MiB (quick)"
for scen, label, ref in [("push-large-mono", "monolithic", disk_mono),
                         ("push-large-chunked", "16 MiB chunks", disk_chunked)]:
    w = value(bench, scen, "MB/s")
    r = ratio(w, ref)
    target(f"Blob push {size_label}, {label}, durable", ">= 0.8 x disk write + fdatasync",
           f"{fnum(w)} MB/s vs {fnum(ref)} MB/s (dd alone: {fnum(dd)})", r, r is not None and r >= 0.8)
for scen, label in [("push-large-mono", "monolithic"), ("push-large-chunked", "16 MiB chunks")]:
    w = value(bench, scen, "MB/s", RELAXED)
    r = ratio(w, sha)
    target(f"Blob push {size_label}, {label}, durability relaxed (`storage.fsync = false`)",
           ">= 0.8 x SHA-256 (one core)", f"{fnum(w)} MB/s vs {fnum(sha)} MB/s", r,
           r is not None and r >= 0.8)
w = value(bench, "pull-large", "MB/s")
r = ratio(w, ng_pull)
target(f"Blob pull {size_label}", ">= 0.8 x loopback (nginx sendfile)",
       f"{fnum(w)} MB/s vs {fnum(ng_pull)} MB/s (curl alone: {fnum(curl)})", r, r is not None and r >= 0.8)
for scen, label, ref in [("manifest-get", "GET", ng_get), ("manifest-head", "HEAD", ng_head)]:
    w = value(bench, scen, "req/s")
    p99 = value(bench, scen, "p99 ms")
    r = ratio(w, ref)
    target(f"Manifest {label} by tag, 32 connections", ">= 0.8 x nginx small file",
           f"{fnum(w)} req/s vs {fnum(ref)} req/s (wrk alone: {fnum(wrk_rps)})", r,
           r is not None and r >= 0.8)
    target(f"Manifest {label} by tag, p99", "<= 5 ms", f"{fnum(p99)} ms", None,
           p99 is not None and p99 <= 5.0)
if B:
    for scen, metric, label in [("push-small", "blobs/s", "Push of small blobs, 16 clients"),
                                ("tag-push", "tags/s", "Tag (manifest) pushes, 16 clients")]:
        w, d = value(bench, scen, metric), value(bench, scen, metric, B)
        r = ratio(w, d)
        target(label, f">= 10 x {B}", f"{fnum(w)} vs {fnum(d)} {metric}", r, r is not None and r >= 10)
    w, d = run_hwm.get(A), run_hwm.get(B)
    r = ratio(w, d)
    target("Peak RSS over the whole run", f"<= 0.5 x {B}",
           f"{fnum(w / 1024 if w else None)} MiB vs {fnum(d / 1024 if d else None)} MiB", r,
           r is not None and r <= 0.5)
small, large = E["RSS_SMALL"], E["RSS_LARGE"]
a = rss.get(A, {})
r = ratio(a.get(large), a.get(small))
target(f"Peak RSS flat between a {small} and a {large} push", "within 10 %",
       f"{fnum((a.get(small) or 0) / 1024)} MiB -> {fnum((a.get(large) or 0) / 1024)} MiB", r,
       r is not None and r <= 1.10)
p50 = value(bench, "tag-list", "page p50 ms")
p99 = value(bench, "tag-list", "page p99 ms")
target("Tag list page n=100 (10k tags), p50", "<= 2 ms", f"{fnum(p50)} ms (p99 {fnum(p99)} ms)", None,
       p50 is not None and p50 <= 2.0)
if B:
    w, d = value(bench, "tag-list", "full p50 ms"), value(bench, "tag-list", "full p50 ms", B)
    r = ratio(w, d)
    target("Full tag list (10k tags), p50", f"<= {B}", f"{fnum(w)} ms vs {fnum(d)} ms", r,
           r is not None and r <= 1.0)

# Wharf against each peer on the headline rows: (scenario, metric, label, higher is better).
HEADLINE = [
    ("push-large-mono", "MB/s", "Push 1 blob, monolithic (MB/s)", True),
    ("push-large-chunked", "MB/s", "Push 1 blob, 16 MiB chunks (MB/s)", True),
    ("pull-large", "MB/s", "Pull 1 blob (MB/s)", True),
    ("push-small", "blobs/s", "Push 4 KiB blobs, 16 clients (blobs/s)", True),
    ("manifest-get", "req/s", "Manifest GET, 32 connections (req/s)", True),
    ("manifest-get", "p99 ms", "Manifest GET p99 (ms)", False),
    ("manifest-head", "req/s", "Manifest HEAD, 32 connections (req/s)", True),
    ("manifest-head", "p99 ms", "Manifest HEAD p99 (ms)", False),
    ("tag-push", "tags/s", "Tag pushes, 16 clients (tags/s)", True),
    ("tag-list", "page p50 ms", "Tag list page n=100, p50 (ms)", False),
    ("tag-list", "full p50 ms", "Full tag list, p50 (ms)", False),
    ("mixed", "push images/s", "Mixed: image pushes (images/s)", True),
    ("mixed", "pull images/s", "Mixed: image pulls (images/s)", True),
]
peer_rows = []
for scen, metric, label, hib in HEADLINE:
    vals = {n: value(bench, scen, metric, n) for n in registries}
    peer_rows.append((label, vals, hib))
vals = {n: (run_hwm[n] / 1024 if n in run_hwm else None) for n in registries}
peer_rows.append(("Peak RSS, whole run (MiB)", vals, False))


def leads(vals, hib):
    w = vals.get(A)
    if w is None:
        return False
    others = [v for n, v in vals.items() if n != A and v is not None]
    return all((w >= v) if hib else (w <= v) for v in others)


out = []
w = out.append
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
w(f"Generated by `benches/compare.sh{' --quick' if quick else ''}` on {now}; the whole script "
  f"took {E['SCRIPT_SECS']} s"
  + (f" (ferro-oci-server build included: {E['FERRO_BUILD_SECS']} s)" if E.get("FERRO_BUILD_SECS") else "")
  + ".\n")
if quick:
    w("**Quick run: small sizes and short durations; the targets are defined for the full run.**\n")
if loads:
    w(f"Load average (1 min) during the comparison: min {min(loads):.1f}, mean "
      f"{sum(loads) / len(loads):.1f}, max {max(loads):.1f} on {E['CPUS']} cores "
      f"(load at the script's start {E['LOAD_START']}, at its end {E['LOAD_END']}).\n")

w("### Targets\n")
w(f"Ratios from this one run ({A} against {B or 'the physical limits'} and the physical limits "
  "measured by the same script, interleaved with the registries).\n")
w("| target | goal | measured | ratio | met |\n|---|---|---|---:|:---:|")
for what, goal, measured, r, ok in targets:
    met = "n/a" if ok is None else ("yes" if ok else "**no**")
    w(f"| {what} | {goal} | {measured} | {fnum(r, 2) + ' x' if r is not None else ''} | {met} |")
w("")

if peers:
    w("### Against each peer\n")
    w(f"{A} divided by each peer on the headline rows (above 1 is better for rates, below 1 for "
      f"latencies and memory); `leads` says whether {A} is best of all registries on the row.\n")
    head = ["row"] + registries + [f"{A}/{p}" for p in peers] + ["leads"]
    w("| " + " | ".join(head) + " |")
    w("|---|" + "---:|" * (len(registries) + len(peers)) + ":---:|")
    for label, vals, hib in peer_rows:
        cells = [label] + [fnum(vals.get(n)) for n in registries]
        cells += [(fnum(ratio(vals.get(A), vals.get(p)), 2) + " x") if ratio(vals.get(A), vals.get(p)) is not None
                  else "-" for p in peers]
        cells.append("yes" if leads(vals, hib) else "**no**")
        w("| " + " | ".join(cells) + " |")
    w("")

if bench:
    w("### All results\n")
    w(f"`wharf-bench --compare` with {', '.join(names)}, {bench['config']['rounds']} rounds per "
      "scenario, targets interleaved round by round (A B C, then C B A). Ratios are the first "
      "column divided by the others: above 1 is better for rates and throughput, below 1 for "
      "latencies, seconds, CPU and memory. `nginx` and `disk` are the physical references; "
      f"`{RELAXED}` is Wharf with `storage.fsync = false`, measured on the large pushes only; "
      "`-` means the scenario does not apply to them (or failed, see the notes below).\n")
    head = ["scenario", "metric"] + names + [f"{A}/{n}" for n in names[1:]]
    w("| " + " | ".join(head) + " |")
    w("|---|---|" + "---:|" * (len(head) - 2))
    for s in bench["scenarios"]:
        first = True
        for row in s["rows"]:
            cells = [s["name"] if first else "", row["metric"]]
            cells += [fnum(row["values"].get(n)) for n in names]
            cells += [fnum(row["ratios"].get(n), 2) + " x" if row["ratios"].get(n) is not None else "-"
                      for n in names[1:]]
            w("| " + " | ".join(cells) + " |")
            first = False
        errs = {n: s["errors"].get(n, 0) for n in names}
        if any(errs.values()) or s["first_error"]:
            cells = [s["name"] if first else "", "errors"] + [
                str(errs[n]) if n not in s["first_error"] or errs[n] else "failed" for n in names]
            w("| " + " | ".join(cells + [""] * (len(names) - 1)) + " |")
    w("")
    for s in bench["scenarios"]:
        for n, e in s["first_error"].items():
            w(f"- {s['name']} on {n}: `{e[:300]}`")
    w("")

w("### Physical limits of this machine\n")
w("Measured alone before the comparison with the usual tools, and again inside the comparison "
  "as the `nginx` and `disk` reference targets, interleaved with the registries and measured "
  "with the same client (the targets use the interleaved values).\n")
w("| limit | how | alone, before | interleaved |\n|---|---|---:|---:|")
w(f"| SHA-256, one core | `openssl speed -evp sha256 -bytes 16384` | {fnum(sha)} MB/s | |")
w(f"| Durable sequential write | `dd bs=1M count={E['DD_MIB']} conv=fdatasync`; interleaved: write the blob to a file and `fdatasync` it | {fnum(dd)} MB/s | {fnum(disk_mono)} MB/s |")
w(f"| Loopback HTTP, one stream | nginx `sendfile` of a {E['BIG_MIB']} MiB file; alone: `curl -o /dev/null` (median of 3) | {fnum(curl)} MB/s | {fnum(ng_pull)} MB/s |")
w(f"| Small-file GET rate, 32 connections | nginx, 1200-byte file; alone: `wrk -t2 -c32 -d{E['WRK_SECS']}s` | {fnum(wrk_rps)} req/s (p99 {fnum(wrk_p99)} ms) | {fnum(ng_get)} req/s (p99 {fnum(ng_get_p99)} ms) |")
w(f"| Small-file HEAD rate, 32 connections | nginx, the same file | | {fnum(ng_head)} req/s (p99 {fnum(ng_head_p99)} ms) |")
w("")

w("### Memory\n")
w("Peak resident set size (`VmHWM` of the server process).\n")
w(f"| registry | whole comparison run | fresh process, one {small} push | fresh process, one {large} push | ratio |")
w("|---|---:|---:|---:|---:|")
for n in registries or list(rss):
    a = rss.get(n, {})
    r = ratio(a.get(large), a.get(small))
    hw = run_hwm.get(n)
    mib = lambda kib: f"{fnum(kib / 1024)} MiB" if kib else "failed"
    w(f"| {n} | {mib(hw)} | {mib(a.get(small))} | {mib(a.get(large))} | {fnum(r, 2)} |")
w("")

w("### Machine\n")
w(f"- CPU: {E['CPU_MODEL']}, {E['CPUS']} logical cores; memory {E['MEM_GIB']} GiB; {E['KERNEL']}")
w(f"- Data directories and the dd file: {E['DATA_FS']}")
w(f"- Wharf: {E['WHARF_VERSION']} (source {E['WHARF_REV']}); Distribution: {E['DIST_VERSION']}"
  + (f"; ferro-oci-server {E['FERRO_VERSION']}" if E.get("FERRO_VERSION") else ""))
w(f"- {E['NGINX_VERSION']}; {E['WRK_VERSION']}; {E['OPENSSL_VERSION']}; {E['RUSTC_VERSION']}")
if E.get("FERRO") == "1" and not E.get("FERRO_VERSION"):
    w(f"- ferro-oci-server: not measured. {E.get('FERRO_NOTE', '')}")
elif E.get("FERRO") != "1":
    w("- ferro-oci-server: not measured (`--no-ferro`).")
elif E.get("FERRO_LARGE") != "1":
    w("- ferro-oci-server sat out the 1 GiB push and pull scenarios (it refuses the single-request "
      "push with 413 and takes minutes over the chunked one); `--ferro-large` includes them.")

generated = "\n".join(out).rstrip() + "\n"
path = E["OUT"]
try:
    with open(path) as f:
        old = f.read()
except OSError:
    old = ""
if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
    text = old[:old.index(BEGIN) + len(BEGIN)] + "\n\n" + generated + "\n" + old[old.index(END):]
else:
    text = ("# Performance\n\nResults of `benches/compare.sh`; see `docs/performance.md` for the "
            "method.\n\n" + BEGIN + "\n\n" + generated + "\n" + END + "\n")
with open(path, "w") as f:
    f.write(text)

# The run fails only when Wharf itself had errors (a peer refusing a
# scenario is a result, reported above).
wharf_errors = 0
if bench:
    for s in bench["scenarios"]:
        wharf_errors += s["errors"].get(A, 0) + (1 if A in s["first_error"] else 0)
else:
    wharf_errors = 1
with open(os.path.join(work, "wharf-errors"), "w") as f:
    f.write(str(wharf_errors))
PY
echo "compare.sh: done in ${SCRIPT_SECS}s; report in $OUT" >&2
if [ "$(cat "$WORK/wharf-errors" 2>/dev/null || echo 1)" != 0 ]; then
    echo "compare.sh: wharf had errors (wharf-bench exit status $BENCH_STATUS); see the report" >&2
    exit 1
fi
