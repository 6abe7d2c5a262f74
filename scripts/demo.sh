#!/usr/bin/env bash
# The main job: build husk and run two containers side by side — one that is a single static
# binary with no OS inside, and a busybox userland — showing what each holds, its output and
# its exit code.
source "$(dirname "$0")/lib.sh"
need_root
ensure_packages
ensure_rust
build_release
HUSK="$HUSK_SRC/target/release/husk"
WORK=$(mktemp -d /tmp/husk-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# 1. FROM scratch: one static binary.
mkdir -p "$WORK/scratch/rootfs"
cc -static -Os -s -o "$WORK/scratch/rootfs/hello" "$HUSK_SRC/runtime/tests/fixtures/hello.c"
(cd "$WORK/scratch" && "$HUSK" spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/hello"/' config.json)

# 2. A busybox userland.
mkdir -p "$WORK/busybox/rootfs/bin"
cp /bin/busybox "$WORK/busybox/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$WORK/busybox/rootfs/bin/$a"; done
(cd "$WORK/busybox" && "$HUSK" spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo \"hello from busybox $(busybox | head -1 | cut -d' ' -f2) on kernel $(uname -r)\"; echo \"I am pid $$ on host $(hostname), caps $(grep CapEff /proc/self/status | cut -f2)\"; exit 7"]
json.dump(c, open("config.json", "w"), indent=2)
PY
)

show() {
    local name=$1
    echo
    echo "=== container '$name' ==="
    echo "--- what is inside its rootfs: $(find "$WORK/$name/rootfs" -type f | wc -l) file(s), $(du -sh "$WORK/$name/rootfs" | cut -f1)"
    (cd "$WORK/$name/rootfs" && find . -maxdepth 2 -type f -printf '    %p (%s bytes)\n' | head -5)
    echo "--- its output:"
    set +e
    (cd "$WORK/$name" && "$HUSK" run "demo-$name-$$" | sed 's/^/    /')
    local code=${PIPESTATUS[0]}
    set -e
    echo "--- its exit code: $code"
}
show scratch
show busybox
