#!/usr/bin/env bash
# Builds the Helm chart's installer image: FROM scratch + the static husk-node-installer and
# containerd-shim-husk-v2, as an OCI archive (default target/husk-installer.oci.tar).
#   scripts/installer-image.sh [OUT] [IMAGE_REF]
# Then: ctr -n k8s.io images import OUT   (one node), or push it to your registry.
source "$(dirname "$0")/lib.sh"
ensure_packages
ensure_rust
build_static
out=${1:-$HUSK_SRC/target/husk-installer.oci.tar}
cd "$HUSK_SRC"
cargo run --release --locked --quiet -p husk-e2e --bin husk-installer-image -- \
    --bin-dir "$STATIC_BIN_DIR" --out "$out" ${2:+--name "$2"}
