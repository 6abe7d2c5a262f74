#!/usr/bin/env bash
# Runs every husk test: formatting and lints, unit tests, and the root integration tests of the
# runtime core (real namespaces, cgroups, mounts). Installs what it needs first.
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
echo "==> fuzzing: every target of fuzz/ for ${FUZZ_SECONDS:-30}s from the checked-in seeds (fails on a crash)"
"$HUSK_SRC/scripts/fuzz.sh" 2>&1 | tee -a "$log"
echo "==> the shim and CRI suites again, on containerd 2.x"
ctd2=$(containerd2)
"$ctd2" --version
HUSK_CONTAINERD="$ctd2" cargo test --locked -p husk-e2e --test ctr_shim --test cri --test cri_security \
    --test cri_namespaces --test cri_storage --test cri_streaming -- --test-threads 4 2>&1 | tee -a "$log"
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
