#!/usr/bin/env bash
# Runs every husk test, after installing what it needs:
#   1. cargo fmt --check and clippy -D warnings, over the workspace;
#   2. release and static builds (the demo, the benchmark, the installer image use them);
#   3. cargo test --workspace on this host and Debian's containerd 1.6:
#      - unit tests of every crate;
#      - root integration tests of the runtime core (runtime/tests: lifecycle, runc_parity,
#        cgroup_v2_devices) and of the shim binary (shim/tests) and the installer (charts/installer/tests);
#      - e2e through a private containerd (e2e/tests): ctr_shim, shim_api, shim_options, cri,
#        cri_security, cri_namespaces, cri_storage, cri_streaming, installer, readme (every
#        command block of README.md), scripts (lib.sh waits for apt's locks);
#   4. the shim, Task API and CRI e2e suites again on containerd 2.x (Debian sid's, unpacked);
#   5. the Helm chart, rendered and linted by Helm's own engine (charts/tests, pytest);
#   6. the benchmark in quick mode (it reports; it never fails on speed).
source "$(dirname "$0")/lib.sh"
need_root
ensure_packages
ensure_rust
cd "$HUSK_SRC"
echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
build_release
build_static
echo "==> cargo build (debug binaries the e2e tests drive)"
cargo build --locked --workspace --quiet
echo "==> cargo test (unit, root integration, e2e through containerd)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --workspace -- --test-threads 4 2>&1 | tee "$log"
echo "==> the shim and CRI suites again, on containerd 2.x"
ctd2=$(containerd2)
"$ctd2" --version
# --workspace, as above: with -p husk-e2e cargo resolves features for fewer packages and would
# rebuild ~50 crates.
HUSK_CONTAINERD="$ctd2" cargo test --locked --workspace --test ctr_shim --test shim_api --test shim_options \
    --test cri --test cri_security --test cri_namespaces --test cri_storage --test cri_streaming \
    -- --test-threads 4 2>&1 | tee -a "$log"
echo "==> Helm chart, rendered by Helm's own engine (helm-python-sdk)"
venv=/var/cache/husk/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk pytest pyyaml
(cd "$HUSK_SRC/charts" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee -a "$log"
echo "==> benchmark, quick mode (it reports; it never fails on speed)"
"$HUSK_SRC/target/release/husk-bench" --iterations 2 --out "$(mktemp -d /tmp/husk-bench.XXXXXX)"
# One closing line over every test binary.
awk '/^test result:/ || / passed.* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
