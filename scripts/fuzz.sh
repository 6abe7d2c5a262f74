#!/usr/bin/env bash
# Fuzzes husk's parsers and decoders with libFuzzer (the targets in fuzz/, through
# libfuzzer-sys): one build of every target, then each runs for FUZZ_SECONDS (default 20) from
# its checked-in corpus (fuzz/corpus/<target>). Fails on the first crash, panic, hang (> 10 s
# on one input) or out-of-memory, naming the input (kept in fuzz/artifacts/<target>/) and the
# command that replays it.
#   FUZZ_SECONDS=600 FUZZ_TARGETS=config scripts/fuzz.sh   # longer, one target
#   FUZZ_MERGE=1 scripts/fuzz.sh    # also add the inputs that found new coverage to the corpus
# The coverage instrumentation is the flags cargo-fuzz passes for `-s none` (all stable rustc
# options): no cargo-fuzz to install, no nightly. Without a sanitizer: husk's code is safe Rust,
# and libseccomp, the C it calls, is not instrumented either way. Build output stays in
# fuzz/target.
source "$(dirname "$0")/lib.sh"
ensure_packages
ensure_rust
cd "$HUSK_SRC"
seconds=${FUZZ_SECONDS:-20}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin="$HUSK_SRC/fuzz/target/$triple/release"
# All targets unless FUZZ_TARGETS names some ([[bin]] names in fuzz/Cargo.toml).
targets=${FUZZ_TARGETS:-$(sed -n '/^\[\[bin\]\]/,/^$/s/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml)}
# --target: the flags reach the targets and their dependencies, never build scripts or proc
# macros. --cfg fuzzing is what libfuzzer-sys and fuzz-aware crates key on.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing"
echo "==> building the fuzz targets (fuzz/target)"
build_start=$SECONDS
cargo build --locked --quiet --release --manifest-path fuzz/Cargo.toml --target "$triple" \
    --target-dir fuzz/target $(printf -- '--bin %s ' $targets)
echo "built in $((SECONDS - build_start)) s"
work=$(mktemp -d /tmp/husk-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for t in $targets; do
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    # The first corpus directory receives what the run finds; the checked-in corpus stays as
    # it is (unless FUZZ_MERGE=1, below).
    if "$bin/$t" "$work/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "${dict[@]}" >"$work/$t.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
        cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
        echo "fuzz $t: ${seconds} s, ${runs:-?} inputs, ${cov:-cov: ?}, no crash"
    else
        tail -40 "$work/$t.log"
        input=$(grep -o "fuzz/artifacts/$t/[a-z]*-[0-9a-f]*" "$work/$t.log" | tail -1)
        echo "husk: fuzz target $t failed on ${input:-an input (see above)}" >&2
        echo "  replay: fuzz/target/$triple/release/$t ${input:-<input>}" >&2
        echo "  then turn it into a unit test in the crate it hit and add it to fuzz/corpus/$t" >&2
        exit 1
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        before=$(ls "fuzz/corpus/$t" | wc -l)
        "$bin/$t" -merge=1 "fuzz/corpus/$t" "$work/$t" "${dict[@]}" >"$work/$t.merge.log" 2>&1
        echo "  fuzz/corpus/$t: $before -> $(ls "fuzz/corpus/$t" | wc -l) inputs"
    fi
done
