#!/usr/bin/env bash
# Fuzzes husk's parsers and decoders with cargo-fuzz (libFuzzer): every target in fuzz/ runs
# for FUZZ_SECONDS (default 30) from the checked-in seeds (fuzz/corpus/<target>), and the
# script fails on the first crash, panic, hang (> 10 s on one input) or out-of-memory, naming
# the input (kept in fuzz/artifacts/<target>/) and the command that replays it.
#   FUZZ_SECONDS=60 scripts/fuzz.sh            # longer runs
#   FUZZ_TARGETS="config seccomp" scripts/fuzz.sh
# cargo-fuzz needs nightly compiler flags: a stable toolchain takes them with RUSTC_BOOTSTRAP=1.
# Targets are built without a sanitizer (-s none: husk's code is safe Rust; the C library it
# calls, libseccomp, is not instrumented either way) and with 16 codegen units, so the build
# stays a few minutes on two cores.
source "$(dirname "$0")/lib.sh"
ensure_rust
ensure_cargo_fuzz
cd "$HUSK_SRC"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-30}
flags=(-s none --codegen-units 16)
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
echo "==> building the fuzz targets"
cargo fuzz build "${flags[@]}"
work=$(mktemp -d /tmp/husk-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
for t in $targets; do
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
    mkdir -p "$work/$t"
    # The first corpus directory receives what the run finds; the checked-in seeds stay as
    # they are.
    if cargo fuzz run "${flags[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" >"$work/$t.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
        cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
        echo "fuzz $t: ${seconds}s, ${runs:-?} inputs, ${cov:-cov: ?}, no crash"
    else
        tail -40 "$work/$t.log"
        input=$(grep -o "fuzz/artifacts/$t/[a-z]*-[0-9a-f]*" "$work/$t.log" | tail -1)
        echo "husk: fuzz target $t failed on ${input:-an input (see above)}" >&2
        echo "  replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $t ${input:-<input>}" >&2
        exit 1
    fi
done
