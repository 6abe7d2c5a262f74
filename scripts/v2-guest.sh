#!/usr/bin/env bash
# Runs the node-only CLI tests — runtime/tests/cgroup_v2.rs (cgroup v2 on real controllers),
# runtime/tests/apparmor.rs (AppArmor profiles) and runtime/tests/systemd.rs (the systemd cgroup
# driver), husk against runc on the same bundles — inside one node guest (a systemd + cgroup v2
# QEMU guest with AppArmor, e2e/src/node). Extra arguments go to every test binary (a test name
# filter, --nocapture, ...). scripts/systemd-guest.sh runs systemd.rs alone.
#   scripts/v2-guest.sh measure [N]   instead: N create/start/exec/delete rounds of husk with and
#                                     without clone3(CLONE_INTO_CGROUP), interleaved
source "$(dirname "$0")/lib.sh"
need_root
ensure_guest_tools
cd "$HUSK_SRC"
# HUSK_NODE_TESTS_BINS: the node-tests binaries, already built (the test command builds them
# before its host stage, so this does not wait on cargo's lock meanwhile).
if [ -z "${HUSK_NODE_TESTS_BINS:-}" ]; then
    cargo build --locked --quiet -p husk-runtime --bin husk
    cargo build --locked --quiet -p husk-e2e --bin husk-node
fi
# The guest has no busybox of its own; it sees the workspace (read-only) at the same path.
mkdir -p target/husk-guest
cp -f "$(command -v busybox)" target/husk-guest/busybox
if [ "${1:-}" = measure ]; then
    exec "$HUSK_SRC/target/debug/husk-node" sh \
        "HUSK=$HUSK_SRC/target/debug/husk BUSYBOX=$HUSK_SRC/target/husk-guest/busybox N=${2:-40} bash $HUSK_SRC/scripts/clone-into-cgroup-measure.sh"
fi
bins=${HUSK_NODE_TESTS_BINS:-$(node_tests_binaries)}
[ "$(echo "$bins" | wc -w)" = 3 ] || { echo "v2-guest: test binaries not built" >&2; exit 1; }
quoted=$(printf ' %q' "$@")
run="cd $HUSK_SRC/runtime && export HUSK_TEST_TMPDIR=/var/tmp HUSK_BUSYBOX=$HUSK_SRC/target/husk-guest/busybox; rc=0"
for b in $bins; do
    run+="; $b --test-threads 2$quoted || rc=1"
done
exec "$HUSK_SRC/target/debug/husk-node" sh "$run; exit \$rc"
