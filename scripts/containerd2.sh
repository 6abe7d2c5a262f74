#!/usr/bin/env bash
# Prints the path of a containerd 2.x binary: Debian sid's containerd .deb, downloaded and
# unpacked under /var/cache/husk on first use (never installed; the system's containerd stays).
# Use: HUSK_CONTAINERD=$(scripts/containerd2.sh) scripts/test.sh
source "$(dirname "$0")/lib.sh"
need_root
containerd2
