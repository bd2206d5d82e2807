#!/usr/bin/env bash
# `make deb`: build/kmodinit_VERSION_ARCH.deb from the built programs, with
# dpkg-deb (root:root, conffiles, maintainer scripts). Arguments: the host
# tool, kmodinit-mkimage, /init, /init-tiny, the output directory.
set -euo pipefail
host=$1 mkimage=$2 init=$3 tiny=$4 out=$5
here=$(cd "$(dirname "$0")" && pwd)
# Maintainer: $DEBFULLNAME <$DEBEMAIL> as dch takes it; a local build without
# them says so (lintian's bogus-mail-host).
maint="${DEBFULLNAME:-kmodinit local build} <${DEBEMAIL:-kmodinit@localhost}>"
version=$(awk -F'"' '/^version/ { print $2; exit }' "$here/../host/Cargo.toml")
arch=$(dpkg --print-architecture)
P="$out/deb-root"
rm -rf "$P"
install -d "$P/DEBIAN" "$P/usr/bin" "$P/usr/lib/kmodinit" "$P/etc/kmodinit" \
    "$P/etc/kernel/postinst.d" "$P/etc/kernel/postrm.d" "$P/usr/share/doc/kmodinit"
install -m 0755 -s "$host" "$P/usr/bin/kmodinit"
install -m 0755 -s "$mkimage" "$P/usr/bin/kmodinit-mkimage"
install -m 0755 "$init" "$P/usr/lib/kmodinit/init"
install -m 0755 "$tiny" "$P/usr/lib/kmodinit/init-tiny"
install -m 0644 "$here/kmodinit.conf" "$P/etc/kmodinit/kmodinit.conf"
install -m 0755 "$here/hooks/postinst.d-kmodinit" "$P/etc/kernel/postinst.d/kmodinit"
install -m 0755 "$here/hooks/postrm.d-kmodinit" "$P/etc/kernel/postrm.d/kmodinit"
install -m 0644 "$here/copyright" "$P/usr/share/doc/kmodinit/copyright"
install -d "$P/usr/share/lintian/overrides"
install -m 0644 "$here/lintian-overrides" "$P/usr/share/lintian/overrides/kmodinit"
install -m 0644 "$here/../README.md" "$P/usr/share/doc/kmodinit/README.md"
install -m 0644 "$here/../host/README.md" "$P/usr/share/doc/kmodinit/host-README.md"
date=$(git -C "$here/.." log -1 --format=%aD 2>/dev/null || date -R)
printf 'kmodinit (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- %s  %s\n' \
    "$version" "$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)" "$maint" "$date" \
    | gzip -9n > "$P/usr/share/doc/kmodinit/changelog.gz"
install -m 0755 "$here/postinst" "$here/postrm" "$P/DEBIAN/"
printf '/etc/kmodinit/kmodinit.conf\n/etc/kernel/postinst.d/kmodinit\n/etc/kernel/postrm.d/kmodinit\n' > "$P/DEBIAN/conffiles"
# libc6 at the newest GLIBC_ symbol version the dynamic host programs use.
glibc=$(objdump -T "$P/usr/bin/kmodinit" "$P/usr/bin/kmodinit-mkimage" \
    | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
depends="libc6 (>= ${glibc:-2.17})"
if objdump -p "$P/usr/bin/kmodinit" | grep -q 'NEEDED.*libgcc_s'; then depends="$depends, libgcc-s1"; fi
size=$(du -sk --exclude=DEBIAN "$P" | cut -f1)
cat > "$P/DEBIAN/control" <<CONTROL
Package: kmodinit
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: $depends
Provides: linux-initramfs-tool
Conflicts: initramfs-tools
Replaces: initramfs-tools
Section: admin
Priority: optional
Description: initramfs with a static Rust PID 1 that loads modules in parallel
 kmodinit builds small initramfs images whose /init mounts the early
 filesystems, loads the kernel modules a JSON manifest names in parallel
 (dependencies first, each exactly once), writes a per-module timing report
 to /run/kmodinit/report.json and hands over to the real init.
 .
 The kernel hooks in /etc/kernel/postinst.d and postrm.d build and remove
 /boot/initrd.img-RELEASE; "kmodinit update" rebuilds them by hand.
CONTROL
deb="$out/kmodinit_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$P" "$deb" >/dev/null
rm -rf "$P"
echo "built $deb ($(stat -c %s "$deb") bytes)"
