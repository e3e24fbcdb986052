#!/usr/bin/env bash
# Installs the system packages and cargo tools the tests use. Idempotent:
# already-present tools are skipped, so repeated runs are fast.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
want() { dpkg -s "$1" >/dev/null 2>&1 || need_apt+=("$1"); }
want build-essential
want pkg-config
want bc
# TLS tests in crates/wharf-server/tests/server.rs make certificates with
# openssl and check HTTP/2 with curl.
want openssl
want curl
want ca-certificates
# Real registry clients for crates/wharf-server/tests/interop.rs: skopeo
# (with images built by umoci), buildah and podman (vfs storage, runc),
# the Docker engine and CLI, containerd's ctr, Debian's static busybox as
# image content, CNCF Distribution as the reference registry, and Python's
# venv for the oras SDK below.
for pkg in skopeo umoci buildah podman runc containerd docker.io \
    busybox-static docker-registry python3-venv tar gzip; do
    want "$pkg"
done
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as docker.io and docker-registry start their daemons
    # from postinst where they can: the tests start their own, so forbid it
    # for this install (unless the machine already has a policy).
    policy_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        policy_made=1
    fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
    if [ -n "$policy_made" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# The oras Python SDK, in a venv the interop tests find (or point them at
# another Python with WHARF_ORAS_PYTHON).
ORAS_VERSION=0.2.43
VENV="${WHARF_CI_CACHE:-$HOME/.cache/wharf-ci}/venv"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('oras') != '$ORAS_VERSION')" 2>/dev/null; then
    python=/usr/bin/python3
    [ -x "$python" ] || python=python3
    "$python" -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "oras==$ORAS_VERSION"
fi

# The SBOM formats' own validators (CycloneDX JSON schema, SPDX tools) for
# crates/wharf-scan/tests/sbom_validators.rs, in their own venv.
SBOM_VENV="${WHARF_CI_CACHE:-$HOME/.cache/wharf-ci}/sbom-venv"
CYCLONEDX_LIB_VERSION=11.12.0
SPDX_TOOLS_VERSION=0.8.5
if ! "$SBOM_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('cyclonedx-python-lib') != '$CYCLONEDX_LIB_VERSION' or m.version('spdx-tools') != '$SPDX_TOOLS_VERSION')" 2>/dev/null; then
    python=/usr/bin/python3
    [ -x "$python" ] || python=python3
    "$python" -m venv --clear "$SBOM_VENV"
    "$SBOM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "cyclonedx-python-lib[json-validation]==$CYCLONEDX_LIB_VERSION" "spdx-tools==$SPDX_TOOLS_VERSION"
fi

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

# Garage, the S3-compatible object store the S3 backend's tests run a
# three-node cluster of (crates/wharf-storage-s3/src/testing.rs). Building
# it takes about 25 minutes on two cores, so a binary already in
# ~/.cargo/bin (cached between runs) is kept.
GARAGE_VERSION=2.5.0
if [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]; then
    cargo install --locked garage --version "$GARAGE_VERSION"
fi
