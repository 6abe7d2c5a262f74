#!/usr/bin/env bash
# The churn soak with leak accounting (issue 14 §1): N pods per handler (default 1000) through
# CRI on husk and on runc in one private containerd, 8 clients in parallel, each handler's
# phase bounded to SOAK_MINUTES (default 60) minutes. Writes soak-results/results.{json,md};
# exits 1 on any leak, lost exit or CRI error.
#   scripts/soak.sh [N] [more husk-soak options, e.g. --clients 16]   on this host
#   scripts/soak.sh --guest [N] [OPTIONS]   inside the systemd + cgroup v2 node guest (QEMU,
#       e2e/src/node): the guest's containerd 2.x with SystemdCgroup = true, kubelet's
#       systemd-driver pod parents; N defaults to 100 there (TCG is slow); the leak counters
#       walk the unified hierarchy; results in soak-results/guest/.
#       Options: --containerd 1.7|2.x, --driver systemd|cgroupfs, and husk-soak's own.
source "$(dirname "$0")/lib.sh"
need_root
guest=0
if [ "${1:-}" = --guest ]; then
    guest=1
    shift
fi
pods=${1:-}
[ $# -gt 0 ] && shift
ensure_packages
ensure_rust
if [ "$guest" = 1 ]; then
    ensure_guest_tools
    build_release
    exec "$HUSK_SRC/target/release/husk-node" soak --out "$HUSK_SRC/soak-results/guest" \
        --pods "${pods:-100}" --minutes "${SOAK_MINUTES:-60}" "$@"
fi
build_release
exec "$HUSK_SRC/target/release/husk-soak" --pods "${pods:-1000}" --minutes "${SOAK_MINUTES:-60}" \
    --out "$HUSK_SRC/soak-results" "$@"
