#!/usr/bin/env bash
# Stage 1 of `make test-distro`: a minimal bookworm with systemd and Debian's
# kernel (which pulls initramfs-tools, so /boot/initrd.img-R is its image),
# cached as build/distro/base.tar; reruns reuse it.
# The mirror is the one this machine's apt sources name (apt-get indextargets).
set -euo pipefail
D=${DISTRO_DIR:-build/distro}
mkdir -p "$D"; D=$(cd "$D" && pwd)
[ -f "$D/base.tar" ] && { echo "distro: base cached ($D/base.tar)"; exit 0; }
mirror=${DISTRO_MIRROR:-$(apt-get indextargets --no-release-info \
    --format '$(TARGET_OF) $(CREATED_BY) $(RELEASE) $(REPO_URI)' \
    | awk '$1 == "deb" && $2 == "Packages" && $3 == "bookworm" { print $4; exit }')}
[ -n "$mirror" ] || { echo "distro: no apt source names Debian bookworm (set DISTRO_MIRROR)"; exit 1; }
T="$D/base.tmp"
cleanup() { for m in dev/pts dev proc sys; do mountpoint -q "$T/$m" && umount -l "$T/$m"; done; return 0; }
trap cleanup EXIT
rm -rf "$T"
echo "distro: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod,e2fsprogs,zstd \
    bookworm "$T" "$mirror" >"$D/debootstrap.log" 2>&1 || { tail -30 "$D/debootstrap.log"; exit 1; }
mount -t proc proc "$T/proc"; mount -t sysfs sys "$T/sys"
mount --bind /dev "$T/dev"; mount --bind /dev/pts "$T/dev/pts"
echo "distro: installing linux-image-amd64 (with initramfs-tools)"
chroot "$T" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    linux-image-amd64 initramfs-tools >"$D/kernel.log" 2>&1 || { tail -30 "$D/kernel.log"; exit 1; }
chroot "$T" apt-get clean
cleanup
tar -C "$T" -cf "$D/base.tar.tmp" . && mv "$D/base.tar.tmp" "$D/base.tar"
rm -rf "$T"
echo "distro: base ready"
