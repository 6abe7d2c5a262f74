#!/usr/bin/env python3
"""Writes the checked-in seed corpus of the fuzz targets (fuzz/corpus/<target>/). Seeds are
small real inputs: the specs `husk spec` and `runc spec` print, the shapes containerd's CRI
and kubelet send, RuntimeDefault-like seccomp profiles, mount option lists, shim command
lines, and BootstrapParams / runtime-options Any encoded by hand (field numbers as
proto/containerd/*.proto). Re-run after changing it: python3 fuzz/seeds/make.py"""
import json, os, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "..", "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


# ---- config: config.json -------------------------------------------------------------
def spec_from(cmd):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(cmd + ["spec"], cwd=d, check=True)
        return json.load(open(os.path.join(d, "config.json")))


husk = os.environ.get("HUSK", os.path.join(here, "../../target/debug/husk"))
husk_spec = spec_from([husk])
runc_spec = spec_from(["runc"])
put("config", "husk-spec.json", j(husk_spec))
put("config", "runc-spec.json", j(runc_spec))

seccomp = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["read", "write", "openat", "close", "exit_group", "futex", "mmap",
                   "no_such_syscall"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}

# What containerd's CRI writes for a kubelet container in a pod (namespaces joined by path,
# kubepods cgroup parent, bind mounts of the pod's files, RuntimeDefault-like seccomp).
cri = json.loads(j(husk_spec))
cri["process"].update({
    "args": ["/bin/sh", "-c", "sleep 3600"], "cwd": "/", "oomScoreAdj": 1000,
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=pod", "KUBERNETES_SERVICE_HOST=10.96.0.1"],
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 2000], "umask": 18},
    "noNewPrivileges": True,
})
cri["annotations"] = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-id": "0f" * 32,
    "io.kubernetes.cri.container-name": "main",
    "io.kubernetes.cri.sandbox-namespace": "default",
}
cri["mounts"] += [
    {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/kubelet/pods/x/etc-hosts",
     "options": ["rbind", "rprivate", "rw"]},
    {"destination": "/dev/termination-log", "type": "bind",
     "source": "/var/lib/kubelet/pods/x/containers/main/1", "options": ["rbind", "rprivate", "rw"]},
    {"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind",
     "source": "/var/lib/kubelet/pods/x/volumes/token", "options": ["rbind", "rprivate", "ro"]},
    {"destination": "/data", "type": "bind", "source": "/mnt/data",
     "options": ["rbind", "rslave", "rro", "nosuid"]},
]
cri["linux"].update({
    "cgroupsPath": "/kubepods/burstable/pod0f0f/" + "ab" * 32,
    "namespaces": [{"type": "pid"}, {"type": "ipc", "path": "/proc/1/ns/ipc"},
                   {"type": "uts", "path": "/proc/1/ns/uts"}, {"type": "mount"},
                   {"type": "network", "path": "/proc/1/ns/net"}, {"type": "cgroup"}],
    "resources": {"memory": {"limit": 268435456, "swap": 268435456},
                  "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                  "pids": {"limit": 1024},
                  "devices": [{"allow": False, "access": "rwm"}]},
    "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"},
    "seccomp": seccomp,
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"],
})
put("config", "cri-container.json", j(cri))

userns = json.loads(j(husk_spec))
userns["linux"]["namespaces"].append({"type": "user"})
userns["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
userns["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
userns["linux"]["sysctl"] = {"kernel.shm_rmid_forced": "1", "net/ipv4/conf/eth0.100/forwarding": "1"}
userns["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                              "fileMode": 438, "uid": 0, "gid": 0}]
userns["linux"]["rootfsPropagation"] = "rslave"
userns["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}],
                   "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "true"]}]}
userns["linux"]["personality"] = {"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]}
userns["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
userns["process"]["capabilities"]["bounding"].append("CAP_NOT_A_CAPABILITY")
put("config", "userns-hooks-sysctl.json", j(userns))

# ---- seccomp: linux.seccomp --------------------------------------------------------------
put("seccomp", "runtime-default-like.json", j(seccomp))
put("seccomp", "allow-with-denials.json", j({
    "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                 {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                 {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
                 {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
                 {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                           {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                           {"index": 1, "value": 5, "valueTwo": 7, "op": "SCMP_CMP_GE"}]}]}))
put("seccomp", "notify.json", j({
    "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
    "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}))
put("seccomp", "all-arches.json", j({
    "defaultAction": "SCMP_ACT_KILL",
    "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390X",
                      "SCMP_ARCH_RISCV64", "SCMP_ARCH_MIPS64", "SCMP_ARCH_X86"],
    "syscalls": [{"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}))

# ---- mount_options: one option per line ----------------------------------------------------
for name, opts in {
    "proc": ["nosuid", "noexec", "nodev"],
    "dev-tmpfs": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    "devpts": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    "cri-bind": ["rbind", "rprivate", "rw"],
    "cri-ro-volume": ["rbind", "rslave", "rro", "ro", "nosuid", "nodev", "noexec"],
    "overlay": ["index=off", "workdir=/var/lib/c/w", "upperdir=/var/lib/c/u", "lowerdir=/a:/b"],
    "atime": ["rnoatime", "rrelatime", "rstrictatime", "atime", "remount", "bind"],
    "idmap": ["idmap", "tmpcopyup"],
}.items():
    put("mount_options", name, "\n".join(opts))

# ---- task_payloads: 0 + exec process JSON, 1 + resources JSON ------------------------------
put("task_payloads", "exec-process", b"\x00" + j({
    "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo hi"],
    "env": ["PATH=/bin"], "cwd": "/", "oomScoreAdj": 1000, "noNewPrivileges": True,
    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN"],
                     "permitted": ["CAP_CHOWN"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "consoleSize": {"height": 24, "width": 80}}).encode())
put("task_payloads", "update-resources", b"\x01" + j({
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824, "swappiness": 60},
    "cpu": {"shares": 1024, "quota": 150000, "period": 100000, "cpus": "0-1", "mems": "0"},
    "pids": {"limit": 100}, "blockIO": {"weight": 500},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
    "unified": {"memory.high": "400000000"},
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]}).encode())
put("task_payloads", "update-minimal", b"\x01" + j({"cpu": {"shares": 2}, "memory": {"limit": -1}}).encode())

# ---- shim_args: 0 + NUL-separated argv, 1 + a stdio URI ------------------------------------
for name, argv in {
    "start-16": "-namespace k8s.io -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id abc start",
    "delete": "-namespace default -address /a -publish-binary /b -id x -bundle /run/b -debug delete",
    "serve": "-namespace k8s.io -id abc -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -socket unix:///run/containerd/s/0a",
    "info": "-info",
    "inline": "--debug=false -id=y -v",
}.items():
    put("shim_args", "argv-" + name, b"\x00" + "\0".join(argv.split(" ")).encode())
for name, uri in {
    "fifo": "/run/containerd/io.containerd.grpc.v1.cri/containers/abc/io/1/abc-stdout",
    "file": "file:///var/log/pods/ns_pod_uid/main/0.log",
    "binary": "binary:///usr/bin/logger?tag=web&verbose&level=debug",
    "binary-v2": "binary-v2:///opt/log?a=b",
}.items():
    put("shim_args", "uri-" + name, b"\x01" + uri.encode())


# ---- shim_stdin: protobuf by hand ----------------------------------------------------------
def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


def any_(type_url, value):
    return s(1, type_url) + s(2, value)


# containerd.runc.v1.Options: no_pivot_root(1), systemd_cgroup(6, bool), binary_name(8)
runc_opts = field(1, 0, 1) + field(6, 0, 1) + s(8, "runc")
put("shim_stdin", "options-any", any_("containerd.runc.v1.Options", runc_opts))
put("shim_stdin", "empty", b"")
params = (s(1, "c1") + s(2, "k8s.io") + field(3, 0, -4) + s(4, "2.3.0")
          + s(5, "unix:///run/containerd/containerd.sock.ttrpc")
          + s(6, "unix:///run/containerd/containerd.sock") + s(7, "/usr/bin/containerd")
          + s(8, s(1, any_("types.containerd.io/x", b"\x08\x01"))))
put("shim_stdin", "bootstrap-params", params)
put("shim_stdin", "bootstrap-minimal", s(1, "c1"))

# ---- stdio_copy: arbitrary-shaped; raw text and binary still make useful inputs -------------
put("stdio_copy", "log-lines", "line one\nline two\r\npartial")
put("stdio_copy", "binary", bytes(range(256)) * 4)
put("stdio_copy", "long-line", b"\x01\x02\x00\x10" + b"x" * 3000 + b"\n")


# ---- libFuzzer dictionaries: every key and short string of the JSON seeds --------------------
def strings(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(k)
            strings(x, out)
    elif isinstance(v, list):
        for x in v:
            strings(x, out)
    elif isinstance(v, str) and len(v) <= 40:
        out.add(v)


def dictionary(name, docs, extra=()):
    words = set(extra)
    for d in docs:
        strings(d, words)
    dd = os.path.join(here, "..", "dicts")
    os.makedirs(dd, exist_ok=True)
    with open(os.path.join(dd, name + ".dict"), "w") as f:
        for w in sorted(words):
            f.write(json.dumps(json.dumps(w)) + "\n")


ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ARCH_NATIVE",
       "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
       "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "defaultErrnoRet", "listenerMetadata"]
dictionary("config", [husk_spec, runc_spec, cri, userns],
           ["time", "timeOffsets", "intelRdt", "memoryPolicy", "domainname", "apparmorProfile",
            "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity", "poststop", "/..", ".."])
dictionary("seccomp", [seccomp], ops)
print("seeds written under", os.path.normpath(corpus), file=sys.stderr)
