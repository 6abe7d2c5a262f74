#!/usr/bin/env bash
# The churn soak with leak accounting (issue 14 §1): N pods per handler (default 1000) through
# CRI on husk and on runc in one private containerd, 8 clients in parallel, each handler's
# phase bounded to SOAK_MINUTES (default 60) minutes. Writes soak-results/results.{json,md};
# exits 1 on any leak, lost exit or CRI error.
#   scripts/soak.sh [N] [more husk-soak options, e.g. --clients 16]
source "$(dirname "$0")/lib.sh"
need_root
pods=${1:-1000}
[ $# -gt 0 ] && shift
ensure_packages
ensure_rust
build_release
exec "$HUSK_SRC/target/release/husk-soak" --pods "$pods" --minutes "${SOAK_MINUTES:-60}" \
    --out "$HUSK_SRC/soak-results" "$@"
