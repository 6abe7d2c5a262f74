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
#        installer, readme (every command block of README.md), scripts (lib.sh waits for apt's locks);
#   4. the shim, Task API and CRI e2e suites again on containerd 2.x (Debian sid's, unpacked);
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
trap 'rm -f "$log"' EXIT
stage_start=$SECONDS
stage() {
    [ -z "${stage_name:-}" ] || echo "==> ($stage_name: $((SECONDS - stage_start)) s)"
    stage_name=$1 stage_start=$SECONDS
    echo "==> $1"
}
if [ "$guest_only" = 0 ]; then
    stage "cargo fmt --check"
    cargo fmt --all --check
    stage "cargo clippy -D warnings"
    cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
    stage "release and static builds"
    build_release
    build_static
    stage "cargo build (debug binaries the e2e tests drive)"
    cargo build --locked --workspace --quiet
    stage "cargo test (unit, root integration, e2e through containerd)"
    # What only containerd 2.x does (user-namespaced pods, CRI runtime handler features:
    # tests/cri_userns.rs) is tested on it whatever HUSK_CONTAINERD selects.
    ctd2=$(containerd2)
    export HUSK_CONTAINERD2="$ctd2"
    cargo test --locked --workspace -- --test-threads 4 2>&1 | tee "$log"
    stage "the shim and CRI suites again, on containerd 2.x"
    "$ctd2" --version
    # --workspace, as above: with -p husk-e2e cargo resolves features for fewer packages and would
    # rebuild ~50 crates.
    HUSK_CONTAINERD="$ctd2" cargo test --locked --workspace --test ctr_shim --test ctr_runc_parity \
        --test shim_api --test shim_options --test cri --test cri_security --test cri_namespaces \
        --test cri_storage --test cri_streaming \
        -- --test-threads 4 2>&1 | tee -a "$log"
    stage "Helm chart, rendered by Helm's own engine (helm-python-sdk)"
    venv=/var/cache/husk/venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk pytest pyyaml
    (cd "$HUSK_SRC/charts" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee -a "$log"
    stage "benchmark, quick mode (it reports; it never fails on speed)"
    "$HUSK_SRC/target/release/husk-bench" --iterations 2 --out "$(mktemp -d /tmp/husk-bench.XXXXXX)"
else
    cargo build --locked --workspace --quiet
fi
stage "guest stage: the shim and CRI suites in a systemd + cgroup v2 node guest (QEMU)"
ensure_guest_tools
"$HUSK_SRC/target/debug/husk-node" matrix "${full[@]}" 2>&1 | tee -a "$log"
stage "guest stage: cgroup v2, AppArmor and the systemd driver through the husk CLI (runtime/tests/{cgroup_v2,apparmor,systemd}.rs)"
"$HUSK_SRC/scripts/v2-guest.sh" 2>&1 | tee -a "$log"
stage "done"
# One closing line over every test binary, host and guest (the guest stage counts through its
# own "node guest: N passed, M failed" line, which leaves out husk's listed expected failures).
awk '/^test result:/ || / passed.* in [0-9.]+s/ || /^node guest: [0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
