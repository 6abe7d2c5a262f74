#!/usr/bin/env bash
# Run inside the node guest by `scripts/v2-guest.sh measure`: the time of `husk create`
# (and of `husk exec` into the container) with the container process born in its cgroup through
# clone3(CLONE_INTO_CGROUP) and with the older path (the helper moved through cgroup.procs,
# HUSK_NO_CLONE_INTO_CGROUP=1), N rounds interleaved. Prints means and medians in ms, and the
# time from spawning the init helper to the process being forked (husk's debug log,
# `since_spawn_us`), the part of create/exec the cgroup placement is in.
set -euo pipefail
: "${HUSK:?}" "${BUSYBOX:?}" "${N:=40}"
work=$(mktemp -d /var/tmp/husk-measure.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/sys" \
    "$work/bundle/rootfs/dev" "$work/bundle/rootfs/tmp"
cp "$BUSYBOX" "$work/bundle/rootfs/bin/busybox"
for a in sh sleep true cat; do ln -sf busybox "$work/bundle/rootfs/bin/$a"; done
cd "$work/bundle"
"$HUSK" spec
sed -i 's/"terminal": true/"terminal": false/; s/^\( *\)"sh"$/\1"sleep", "600"/' config.json
declare -A create exec
for i in $(seq 1 "$N"); do
    for mode in born moved; do
        env=()
        [ "$mode" = moved ] && env=(HUSK_NO_CLONE_INTO_CGROUP=1)
        id="m-$mode-$i"
        t0=$(date +%s%N)
        log=(--log "$work/$mode.log" --log-format json --debug)
        env "${env[@]}" "$HUSK" "${log[@]}" --root "$work/state" create --bundle . "$id" >/dev/null
        t1=$(date +%s%N)
        "$HUSK" --root "$work/state" start "$id"
        t2=$(date +%s%N)
        env "${env[@]}" "$HUSK" "${log[@]}" --root "$work/state" exec "$id" true
        t3=$(date +%s%N)
        "$HUSK" --root "$work/state" delete --force "$id"
        create[$mode]+="$(( (t1 - t0) / 1000 )) "
        exec[$mode]+="$(( (t3 - t2) / 1000 )) "
    done
done
stats() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "mean %.1f ms, median %.1f ms (n=%d)", s/NR/1000, a[int((NR+1)/2)]/1000, NR}'; }
uname -r
grep -o 'favordynmods' /proc/mounts | head -1 || echo "cgroup2 mounted without favordynmods"
for mode in born moved; do
    echo "husk create, $mode: $(echo "${create[$mode]}" | stats)"
    echo "husk exec,   $mode: $(echo "${exec[$mode]}" | stats)"
    for what in "container init forked" "exec process forked"; do
        v=$(grep "\"$what\"" "$work/$mode.log" | grep -o '"since_spawn_us":[0-9]*' | cut -d: -f2 | tr '\n' ' ')
        echo "  helper spawned -> ${what#* }: $(echo "$v" | stats)"
    done
done
