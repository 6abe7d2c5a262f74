#!/usr/bin/env bash
# Runs runtime/tests/systemd.rs — the systemd cgroup driver through the `husk` CLI with
# --systemd-cgroup and through its D-Bus client — inside the node guest (a systemd + cgroup v2
# QEMU guest, e2e/src/node), where the guest's systemd, runc 1.1 and sid's runc are. Extra
# arguments go to the test binary (a test name filter, --nocapture, ...).
source "$(dirname "$0")/lib.sh"
need_root
ensure_guest_tools
cd "$HUSK_SRC"
cargo build --locked --quiet -p husk-runtime --bin husk
cargo build --locked --quiet -p husk-e2e --bin husk-node
bin=$(cargo test --locked --quiet -p husk-runtime --features node-tests --test systemd --no-run \
        --message-format=json | grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "systemd-guest: no test binary" >&2; exit 1; }
# The guest has no busybox of its own; it sees the workspace (read-only) at the same path.
mkdir -p target/husk-guest
cp -f "$(command -v busybox)" target/husk-guest/busybox
quoted=$(printf ' %q' "$@")
exec "$HUSK_SRC/target/debug/husk-node" sh \
    "cd $HUSK_SRC/runtime && HUSK_TEST_TMPDIR=/var/tmp HUSK_BUSYBOX=$HUSK_SRC/target/husk-guest/busybox $bin --test-threads 2$quoted"
