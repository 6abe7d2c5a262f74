#!/usr/bin/env bash
# Runs every husk test: formatting and lints, unit tests, the root integration tests of the
# runtime core (real namespaces, cgroups, mounts), the e2e suites through containerd on this
# host, then the guest stage: the same shim and CRI suites inside a systemd + cgroup v2 node
# (a QEMU guest, e2e/src/node). Installs what it needs first.
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
    cargo fmt --manifest-path fuzz/Cargo.toml --all --check
    stage "cargo clippy -D warnings"
    cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
    stage "release and static builds"
    build_release
    build_static
    stage "cargo build (debug binaries the e2e tests drive)"
    cargo build --locked --workspace --quiet
    stage "cargo test (unit, root integration, e2e through containerd)"
    cargo test --locked --workspace -- --test-threads 4 2>&1 | tee "$log"
    stage "fuzzing: every target of fuzz/ for ${FUZZ_SECONDS:-20} s from the checked-in corpus (fails on a crash)"
    "$HUSK_SRC/scripts/fuzz.sh" 2>&1 | tee -a "$log"
    stage "the shim and CRI suites again, on containerd 2.x"
    ctd2=$(containerd2)
    "$ctd2" --version
    HUSK_CONTAINERD="$ctd2" cargo test --locked -p husk-e2e --test ctr_shim --test ctr_runc_parity \
        --test cri --test cri_security --test cri_namespaces --test cri_storage --test cri_streaming \
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
stage "done"
# One closing line over every test binary, host and guest (the guest stage counts through its
# own "node guest: N passed, M failed" line, which leaves out husk's listed expected failures).
awk '/^test result:/ || / passed.* in [0-9.]+s/ || /^node guest: [0-9]+ passed/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
