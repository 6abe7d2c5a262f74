#!/usr/bin/env bash
# The benchmark: husk vs containerd's runc shim with runc and with crun, through one private
# containerd, interleaved. Writes bench-results/results.json and bench-results/p50.svg.
source "$(dirname "$0")/lib.sh"
need_root
ensure_packages   # includes crun
ensure_rust
build_release
exec "$HUSK_SRC/target/release/husk-bench" --iterations "${ITERATIONS:-100}" --out "$HUSK_SRC/bench-results" "$@"
