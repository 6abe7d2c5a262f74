#!/usr/bin/env bash
# The main job: install what is missing, build husk, start a private containerd with the husk
# runtime, and run two containers side by side through it — one that is a single static binary
# with no OS inside, and a busybox userland — showing what each holds, its output and its exit
# code. Everything is torn down at the end.
source "$(dirname "$0")/lib.sh"
need_root
ensure_packages
ensure_rust
build_release
exec "$HUSK_SRC/target/release/husk-demo"
