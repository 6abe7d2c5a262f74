# Shared by demo.sh and test.sh: install what husk needs on a Debian/Ubuntu machine and build.
set -euo pipefail

HUSK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HUSK_SRC

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "husk: this command needs root (it creates namespaces, cgroups and mounts): run it with sudo" >&2
        exit 1
    fi
}

# Debian packages husk builds and tests with. Installed only when missing.
PKGS=(build-essential pkg-config libseccomp-dev protobuf-compiler busybox-static file containerd runc containernetworking-plugins iptables iproute2 crun python3-venv btrfs-progs xfsprogs)

# How long apt may wait for another package manager (unattended-upgrades on a fresh machine)
# to release its locks, in seconds.
APT_LOCK_WAIT=${APT_LOCK_WAIT:-900}

# apt-get "$@", waiting for another package manager instead of failing at once. apt's own
# `-o DPkg::Lock::Timeout=N` waits silently, and only for dpkg's lock (apt-get update does not
# honour it for the package lists' lock, apt 2.6): one loop covers both locks and says what it
# waits for. Output only on failure.
apt_get() {
    local waited=0 out
    while :; do
        if out=$(DEBIAN_FRONTEND=noninteractive apt-get "$@" 2>&1); then
            return 0
        fi
        if grep -q "Could not get lock" <<<"$out" && [ "$waited" -lt "$APT_LOCK_WAIT" ]; then
            if [ "$waited" = 0 ]; then
                echo "==> waiting for another package manager to finish ($(grep -o 'held by process [0-9]* ([^)]*)' <<<"$out" | head -1 || true)); up to ${APT_LOCK_WAIT}s" >&2
            fi
            sleep 5
            waited=$((waited + 5))
            continue
        fi
        echo "$out" >&2
        return 1
    done
}

ensure_packages() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        apt_get update -qq
        apt_get install -y -qq "${missing[@]}"
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "==> installing Debian's Rust toolchain"
        apt_get update -qq && apt_get install -y -qq cargo rustc
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n' 1.80.0 "$v" | sort -V | head -1)" != 1.80.0 ]; then
        echo "husk: rustc $v is too old; husk needs Rust >= 1.80 (install it with rustup)" >&2
        exit 1
    fi
}

# The first build compiles ~300 crates (about 15 minutes on 2 cores): cargo shows its progress
# then; later builds are incremental and quiet.
build_release() {
    local quiet=--quiet
    if [ ! -x "$HUSK_SRC/target/release/containerd-shim-husk-v2" ]; then
        echo "==> building husk (release, first build: about 15 minutes on 2 cores; cargo shows its progress)"
        quiet=
    else
        echo "==> building husk (release)"
    fi
    (cd "$HUSK_SRC" && cargo build --release --locked $quiet)
}

# containerd 2.x: Debian's newest suite (sid) ships it; its .deb is unpacked (not installed)
# under /var/cache/husk so the system's containerd 1.6 stays as it is. Prints the binary path.
containerd2() {
    local cache=/var/cache/husk/apt-sid dest
    mkdir -p "$cache/lists/partial" "$cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > "$cache/sources.list"
    local apt_opts=(-o "Dir::Etc::SourceList=$cache/sources.list" -o Dir::Etc::SourceParts=/dev/null
                    -o "Dir::State::Lists=$cache/lists" -o "Dir::Cache=$cache" -o APT::Sandbox::User=root)
    if ! ls "$cache"/containerd_2.*.deb >/dev/null 2>&1; then
        apt-get "${apt_opts[@]}" update -qq >&2
        (cd "$cache" && apt-get "${apt_opts[@]}" download -qq containerd >&2)
    fi
    local deb
    deb=$(ls "$cache"/containerd_2.*.deb | sort -V | tail -1)
    [ -n "$deb" ] || { echo "husk: could not fetch a containerd 2.x .deb" >&2; return 1; }
    dest="/var/cache/husk/$(basename "$deb" .deb)"
    [ -x "$dest/usr/bin/containerd" ] || dpkg-deb -x "$deb" "$dest"
    echo "$dest/usr/bin/containerd"
}

# Static builds of the binaries that go into the FROM-scratch installer image: glibc's static
# libc (crt-static) and libseccomp.a, so they run on any distribution's host. A separate
# target dir keeps them from invalidating the normal build's cache.
STATIC_BIN_DIR="$HUSK_SRC/target/static/x86_64-unknown-linux-gnu/release"
export STATIC_BIN_DIR
build_static() {
    echo "==> building the static binaries for the installer image"
    (cd "$HUSK_SRC" && RUSTFLAGS="-C target-feature=+crt-static" \
        LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
        cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu \
        --target-dir "$HUSK_SRC/target/static" -p husk-node-installer -p containerd-shim-husk-v2)
}

# The Debian mirror apt uses: the first .../debian URI of its sources under ${1:-/etc/apt}, in
# one-line (.list) or deb822 (.sources) form — newer images have only the latter and no
# sources.list at all —, comments skipped. Prints nothing when there is none.
apt_mirror() {
    local etc=${1:-/etc/apt} f files=()
    for f in "$etc/sources.list" "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '!/^[[:space:]]*#/ { for (i = 1; i <= NF; i++)
        if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' "${files[@]}"
}

# What the systemd + cgroup v2 node guest (e2e/src/node) needs on the host: QEMU, mmdebstrap,
# zstd (trixie's kernel image), mkfs.ext4 and ssh. On Debian 12, bookworm's qemu-system-x86 7.2
# refuses to install beside the image's qemu-utils 10.x from bookworm-backports, so QEMU comes
# from bookworm-backports (the suite is added on the mirror apt already uses when missing).
# Idempotent: installs only what is missing.
ensure_guest_tools() {
    local pkgs=(qemu-system-x86 qemu-utils mmdebstrap zstd e2fsprogs openssh-client debian-archive-keyring)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "==> installing ${missing[*]} (the node guest's tools)"
    local release=() codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$codename" = bookworm ]; then
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            local mirror
            mirror=$(apt_mirror)
            echo "deb ${mirror:-http://deb.debian.org/debian} bookworm-backports main" \
                > /etc/apt/sources.list.d/husk-bookworm-backports.list
        fi
        release=(-t bookworm-backports)
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${release[@]}" "${missing[@]}" >/dev/null
}

# Builds the node-only CLI test binaries (runtime/tests/{cgroup_v2,apparmor,systemd}.rs, feature
# node-tests) and prints their paths; scripts/v2-guest.sh runs them in the node guest.
node_tests_binaries() {
    (cd "$HUSK_SRC" && cargo test --locked --quiet -p husk-runtime --features node-tests --test cgroup_v2 \
        --test apparmor --test systemd --no-run --message-format=json) |
        grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'
}
