#!/bin/sh
# Turns the mmdebstrap'd trixie root in $1 into the husk test node. Run on the host by
# e2e/src/node/image.rs with HUSK_NODE_PUBKEY (root's authorized key) and HUSK_NODE_DEBS (a
# directory of .debs to unpack, not install: each <name>.deb goes to /opt/<name>).
set -eu
root=$1
echo husk-node > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 husk-node\n' > "$root/etc/hosts"
: > "$root/etc/fstab"
# QEMU user networking: the guest is 10.0.2.15, the host 10.0.2.2 (restrict=on: reaches nothing).
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    > "$root/etc/systemd/network/10-user.network"
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Test beds start their own containerd; the packaged one would only take memory and CPU.
chroot "$root" systemctl disable containerd.service >/dev/null 2>&1 || true
# Nothing periodic may wake up in the middle of a test run.
for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
         logrotate.timer man-db.timer systemd-tmpfiles-clean.timer; do
    chroot "$root" systemctl mask "$t" >/dev/null 2>&1
done
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' > "$root/etc/systemd/journald.conf.d/husk.conf"
printf '9p\n9pnet_virtio\noverlay\nbridge\nveth\n' > "$root/etc/modules-load.d/husk.conf"
# root logs in with the cache's key only.
mkdir -p -m 700 "$root/root/.ssh"
echo "$HUSK_NODE_PUBKEY" > "$root/root/.ssh/authorized_keys"
chmod 600 "$root/root/.ssh/authorized_keys"
printf 'PasswordAuthentication no\nUseDNS no\n' > "$root/etc/ssh/sshd_config.d/husk.conf"
# Other containerd and runc lines, unpacked beside the installed ones.
for deb in "$HUSK_NODE_DEBS"/*.deb; do
    dpkg-deb -x "$deb" "$root/opt/$(basename "$deb" .deb)"
done
mkdir -p "$root/husk-out"
