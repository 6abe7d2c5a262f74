#!/usr/bin/env python3
"""How long the kernel makes a runtime wait to move a new process into a new cgroup.

Every container start on a cgroup v1 node, and every runtime that migrates its init on a v2
node (runc; husk with the systemd driver, where systemd moves the helper into the scope), writes
a pid into `cgroup.procs`. The first such write after a quiet moment waits for the writer side
of the kernel's global `cgroup_threadgroup_rwsem` — an RCU grace period unless the cgroup2 tree
is mounted with `favordynmods` (Documentation/admin-guide/cgroup-v2.rst, "favordynmods").

This measures it for the mount options the node has now, as a runtime sees it: a fresh process,
fresh cgroups in every hierarchy (v1: each mounted controller hierarchy; v2: the unified tree),
a pause between samples so each write starts from a quiet lock. It changes no mount option.
Usage (root): scripts/cgroup-migration-wait.py [SAMPLES]   (default 15)
"""
import os
import subprocess
import sys
import time


def hierarchies():
    """(mount point, fs type) of each cgroup hierarchy, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype = post.split()[0]
            if fstype in ("cgroup", "cgroup2"):
                out.append((pre.split()[4], fstype))
    v1 = [m for m, t in out if t == "cgroup"]
    # On a hybrid node the (empty) v2 tree takes no part in a v1 runtime's placement.
    return v1 if v1 else [m for m, t in out if t == "cgroup2"]


def main():
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    hs = hierarchies()
    first, whole = [], []
    for i in range(samples):
        p = subprocess.Popen(["sleep", "30"])
        dirs = []
        try:
            for h in hs:
                d = os.path.join(h, f"husk-migration-wait-{os.getpid()}-{i}")
                os.mkdir(d)
                dirs.append(d)
                if os.path.exists(os.path.join(d, "cpuset.cpus")) and not os.path.exists(
                    os.path.join(h, "cgroup.controllers")
                ):
                    # A v1 cpuset takes no task until it has cpus and mems.
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        with open(os.path.join(h, f)) as src, open(os.path.join(d, f), "w") as dst:
                            dst.write(src.read())
            time.sleep(0.3)
            t0 = time.perf_counter()
            for n, d in enumerate(dirs):
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(p.pid))
                if n == 0:
                    first.append((time.perf_counter() - t0) * 1000)
            whole.append((time.perf_counter() - t0) * 1000)
        finally:
            p.kill()
            p.wait()
            for d in dirs:
                for _ in range(100):
                    try:
                        os.rmdir(d)
                        break
                    except OSError:
                        time.sleep(0.01)
    first.sort()
    whole.sort()
    mid = len(first) // 2
    print(
        f"{len(hs)} hierarch{'y' if len(hs) == 1 else 'ies'} ({', '.join(hs)}), {samples} samples: "
        f"first cgroup.procs write p50 {first[mid]:.2f} ms (min {first[0]:.2f}, max {first[-1]:.2f}); "
        f"all of them p50 {whole[mid]:.2f} ms"
    )


if __name__ == "__main__":
    main()
