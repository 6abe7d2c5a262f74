#!/usr/bin/env bash
# Runs every husk test, after installing what it needs:
#   1. cargo fmt --check and clippy -D warnings, over the workspace;
#   2. release and static builds (the demo, the benchmark, the installer image use them);
#   3. cargo test --workspace on this host and Debian's containerd 1.6:
#      - unit tests of every crate;
#      - root integration tests of the runtime core (runtime/tests: lifecycle, runc_parity,
#        cgroup_v2_devices) and of the shim binary (shim/tests) and the installer (charts/installer/tests);
#      - e2e through a private containerd (e2e/tests): ctr_shim, ctr_runc_parity, shim_api,
#        shim_options, cri, cri_security, cri_namespaces, cri_storage, cri_streaming, faults,
#        installer, soak (a short churn soak on husk and runc, failing on any leak or lost exit),
#        readme (every command block of README.md), scripts (lib.sh waits for apt's locks);
#   4. the shim, Task API, CRI and fault-injection e2e suites again on containerd 2.x (Debian sid's, unpacked);
#   5. the Helm chart, rendered and linted by Helm's own engine (charts/tests, pytest);
#   6. the benchmark in quick mode (it reports; it never fails on speed);
#   7. the guest stage: the shim and CRI suites inside a systemd + cgroup v2 node (a QEMU guest,
#      e2e/src/node), on husk and runc, both cgroup drivers, containerd 1.x and 2.x.
#   --full    the guest stage runs its full matrix (every containerd line x both cgroup drivers)
#   --guest   only the guest stage (builds what it needs); for working on the node guest
source "$(dirname "$0")/lib.sh"
full=() guest_only=0
for a in "$@"; do
    case "$a" in
        --full) full=(--full) ;;
        --guest) guest_only=1 ;;
        *) echo "usage: scripts/test.sh [--full] [--guest]" >&2; exit 2 ;;
    esac
done
need_root
ensure_packages
ensure_rust
cd "$HUSK_SRC"
log=$(mktemp)
stage_start=$SECONDS
stage() {
    [ -z "${stage_name:-}" ] || echo "==> ($stage_name: $((SECONDS - stage_start)) s)"
    stage_name=$1 stage_start=$SECONDS
    echo "==> $1"
}
# The guest stage runs in the background while the host stage runs (the emulated guest and
# the host's tests share the 2 cores better than they take turns): everything it needs from
# cargo is built first, its output goes to its own log and is printed when it is done.
guest_log=$HUSK_SRC/target/guest-stage.log  # not under node-results/: husk-node matrix empties that directory
guest_pid=
start_guest_stage() {
    stage "builds for the guest stage (its test binaries, the node-only CLI tests)"
    mkdir -p "$HUSK_SRC/target/node-results"
    cargo build --locked --workspace --quiet
    cargo test --locked --workspace --tests --no-run --message-format=json --quiet \
        > "$HUSK_SRC/target/node-results/test-binaries.json"
    node_bins=$(node_tests_binaries | tr '\n' ' ')
    ensure_guest_tools
    echo "==> guest stage started in the background (a systemd + cgroup v2 node guest under QEMU): the shim and CRI suites (husk-node matrix${full:+ ${full[*]}}), then the CLI's cgroup v2, AppArmor and systemd-driver tests (scripts/v2-guest.sh); its log: $guest_log"
    setsid bash -c '
        set -o pipefail
        start=$SECONDS rc=0
        HUSK_NODE_CARGO_JSON="$1/target/node-results/test-binaries.json" "$1/target/debug/husk-node" matrix "${@:3}" || rc=1
        echo "==> (guest stage, shim and CRI suites: $((SECONDS - start)) s)"
        start=$SECONDS
        HUSK_NODE_TESTS_BINS="$2" "$1/scripts/v2-guest.sh" || rc=1
        echo "==> (guest stage, the CLI node tests: $((SECONDS - start)) s)"
        exit $rc' guest-stage "$HUSK_SRC" "$node_bins" "${full[@]}" > "$guest_log" 2>&1 &
    guest_pid=$!
}
trap 'rm -f "$log"; [ -z "$guest_pid" ] || kill -- -"$guest_pid" 2>/dev/null || true' EXIT
if [ "$guest_only" = 0 ]; then
    stage "cargo fmt --check"
    cargo fmt --all --check
    cargo fmt --manifest-path fuzz/Cargo.toml --all --check
    stage "cargo clippy -D warnings"
    cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
    stage "release and static builds"
    build_release
    build_static
    start_guest_stage
    stage "cargo test (unit, root integration, e2e through containerd)"
    # What only containerd 2.x does (user-namespaced pods, CRI runtime handler features:
    # tests/cri_userns.rs) is tested on it whatever HUSK_CONTAINERD selects.
    ctd2=$(containerd2)
    export HUSK_CONTAINERD2="$ctd2"
    cargo test --locked --workspace -- --test-threads 4 2>&1 | tee "$log"
    stage "fuzzing: every target of fuzz/ for ${FUZZ_SECONDS:-20} s from the checked-in corpus (fails on a crash)"
    "$HUSK_SRC/scripts/fuzz.sh" 2>&1 | tee -a "$log"
    stage "the shim and CRI suites again, on containerd 2.x"
    "$ctd2" --version
    # --workspace, as above: with -p husk-e2e cargo resolves features for fewer packages and would
    # rebuild ~50 crates.
    HUSK_CONTAINERD="$ctd2" cargo test --locked --workspace --test ctr_shim --test ctr_runc_parity \
        --test shim_api --test shim_options --test cri --test cri_security --test cri_namespaces \
        --test cri_storage --test cri_streaming --test faults \
        -- --test-threads 4 2>&1 | tee -a "$log"
    stage "Helm chart, rendered by Helm's own engine (helm-python-sdk)"
    venv=/var/cache/husk/venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk pytest pyyaml
    (cd "$HUSK_SRC/charts" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee -a "$log"
    stage "benchmark, quick mode (it reports; it never fails on speed)"
    "$HUSK_SRC/target/release/husk-bench" --iterations 2 --out "$(mktemp -d /tmp/husk-bench.XXXXXX)"
else
    start_guest_stage
fi
stage "waiting for the guest stage"
guest_rc=0
wait "$guest_pid" || guest_rc=$?
guest_pid=
cat "$guest_log" | tee -a "$log"
[ "$guest_rc" = 0 ] || { echo "==> the guest stage failed (exit $guest_rc)"; exit 1; }
stage "done"
# One closing line over every test binary, host and guest (the guest stage counts through its
# own "node guest: N passed, M failed" line, which leaves out husk's listed expected failures).
awk '/^test result:/ || / passed.* in [0-9.]+s/ || /^node guest: [0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
