#!/usr/bin/env bash
# The benchmark: husk vs containerd's runc shim with runc and with crun, through one private
# containerd, interleaved. Writes bench-results/results.json, p50.svg, memory.svg and containerd.log.
#   scripts/bench.sh [HUSK-BENCH OPTIONS]   on this host (ITERATIONS=N, default 100)
#   scripts/bench.sh --guest [OPTIONS]      inside the systemd + cgroup v2 node guest (QEMU,
#       e2e/src/node): the guest's containerd 2.x with SystemdCgroup = true, husk vs runc vs
#       crun, ratios only (under TCG the guest's absolute times mean nothing); ITERATIONS
#       defaults to 8 there, shim memory at 1 and 10 pods, 1 and 4 clients for pods/s (about
#       25 minutes under TCG on a busy 2-core host); results in bench-results/guest/.
#       Options: --containerd 1.7|2.x, --driver systemd|cgroupfs, and husk-bench's own.
source "$(dirname "$0")/lib.sh"
need_root
ensure_packages   # includes crun
ensure_rust
if [ "${1:-}" = --guest ]; then
    shift
    ensure_guest_tools
    build_release
    exec "$HUSK_SRC/target/release/husk-node" bench --out "$HUSK_SRC/bench-results/guest" \
        --iterations "${ITERATIONS:-8}" --memory-pods 1,10 --parallel 1,4 "$@"
fi
build_release
exec "$HUSK_SRC/target/release/husk-bench" --iterations "${ITERATIONS:-100}" --out "$HUSK_SRC/bench-results" "$@"
