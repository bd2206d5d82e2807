#!/usr/bin/env bash
# `make test-distro`: kmodinit's Debian package on a real Debian system.
#  1. a minimal bookworm with systemd and Debian's kernel (tests/distro/base.sh,
#     cached as build/distro/base.tar); its initramfs-tools image is kept;
#  2. in a chroot: `apt-get install ./kmodinit_….deb` (replaces
#     initramfs-tools), the package's images removed, then
#     `dpkg-reconfigure` of the kernel package: its postinst hook alone
#     builds /boot/initrd.img-RELEASE;
#  3. an ext4 disk of the tree, booted under QEMU (TCG, -m 1024 -smp 2)
#     with that kernel and kmodinit's image, and with initramfs-tools'
#     image, DISTRO_BOOTS times each, interleaved: a oneshot unit after
#     multi-user.target prints what is checked and powers off;
#  4. in the chroot again: the kernel package removed, its image must go.
# A missing prerequisite fails under CI=true, skips otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=build/distro
BOOTS=${DISTRO_BOOTS:-3}
for c in debootstrap qemu-system-x86_64 mkfs.ext4 dpkg-deb chroot; do
    if ! command -v "$c" >/dev/null; then
        [ "${CI:-}" = true ] && { echo "distro: FAIL: $c missing (make deps)"; exit 1; }
        echo "distro: SKIP: $c missing (make deps)"; exit 0
    fi
done
deb=$(ls -t build/kmodinit_*_"$(dpkg --print-architecture)".deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "distro: FAIL: no build/kmodinit_*.deb (make deb)"; exit 1; }
start=$(date +%s)
bash tests/distro/base.sh
R="$D/root"
umount_all() { for m in dev/pts dev proc sys; do mountpoint -q "$R/$m" && umount -l "$R/$m"; done; return 0; }
mount_all() { mount -t proc proc "$R/proc"; mount -t sysfs sys "$R/sys"; mount --bind /dev "$R/dev"; mount --bind /dev/pts "$R/dev/pts"; }
trap umount_all EXIT
umount_all; rm -rf "$R"; mkdir -p "$R"
tar -C "$R" -xf "$D/base.tar"
rel=$(ls "$R/lib/modules" | sort -V | tail -1)
[ -f "$R/boot/initrd.img-$rel" ] || { echo "distro: FAIL: initramfs-tools built no image for $rel"; exit 1; }
cp "$R/boot/vmlinuz-$rel" "$D/vmlinuz"
cp "$R/boot/initrd.img-$rel" "$D/initrd.initramfs-tools"
echo "distro: kernel $rel; initramfs-tools image $(stat -c %s "$D/initrd.initramfs-tools") bytes"

uuid=5b1e7a6c-0d1e-4c1a-9a5e-6b6d1a2b3c4d
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$R/etc/fstab"
echo distro > "$R/etc/hostname"
# The console is the test's: no getty on it.
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
cat > "$R/usr/local/sbin/kmodinit-distro-check" <<'CHECK'
#!/bin/sh
echo "KMT-BEGIN"
echo "KMT-MU $(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target)"
echo "KMT-USERSPACE $(systemctl show -P UserspaceTimestampMonotonic)"
echo "KMT-ACTIVE $(systemctl is-active multi-user.target)"
echo "KMT-FAILED-BEGIN"; systemctl --failed --no-legend --plain --no-pager; echo "KMT-FAILED-END"
[ -f /run/kmodinit/report.json ] && echo "KMT-REPORT-PRESENT"
echo "KMT-RUN $(findmnt -no OPTIONS /run)"
# journald takes "kmodinit:" of the record as its identifier (-t kmodinit).
journalctl -b --no-pager -t kmodinit -o short-monotonic | grep -E "kmodinit(\[[0-9]+\])?: initramfs [0-9]+ ms" | sed 's/^/KMT-JOURNAL /'
if command -v kmodinit >/dev/null && kmodinit report >/tmp/report.txt 2>&1; then
    echo "KMT-KMODINIT-REPORT-OK"; head -5 /tmp/report.txt | sed 's/^/KMT-R /'
fi
echo "KMT-END"
systemctl --no-block poweroff
CHECK
chmod 755 "$R/usr/local/sbin/kmodinit-distro-check"
cat > "$R/etc/systemd/system/kmodinit-distro-check.service" <<'UNIT'
[Unit]
Description=kmodinit distro test: report and power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kmodinit-distro-check
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
ln -sf ../kmodinit-distro-check.service "$R/etc/systemd/system/multi-user.target.wants/kmodinit-distro-check.service"

mount_all
cp "$deb" "$R/tmp/"
echo "distro: apt-get install ./$(basename "$deb") in the chroot"
chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/tmp/$(basename "$deb")" > "$D/install.log" 2>&1 \
    || { tail -30 "$D/install.log"; echo "distro: FAIL: the package does not install"; exit 1; }
if chroot "$R" dpkg-query -W -f='${Status}' initramfs-tools 2>/dev/null | grep -q 'ok installed'; then
    echo "distro: FAIL: initramfs-tools still installed"; exit 1
fi
# Only the kernel's hook may build the image that boots.
rm -f "$R/boot/initrd.img-$rel"
echo "distro: dpkg-reconfigure linux-image-$rel (its postinst runs /etc/kernel/postinst.d)"
chroot "$R" env DEBIAN_FRONTEND=noninteractive dpkg-reconfigure "linux-image-$rel" > "$D/hook.log" 2>&1 \
    || { cat "$D/hook.log"; echo "distro: FAIL: the kernel's postinst failed"; exit 1; }
grep "^kmodinit" "$D/hook.log" | sed 's/^/  hook: /'
[ -s "$R/boot/initrd.img-$rel" ] || { cat "$D/hook.log"; echo "distro: FAIL: the hook built no image"; exit 1; }
cp "$R/boot/initrd.img-$rel" "$D/initrd.kmodinit"
echo "distro: kmodinit image $(stat -c %s "$D/initrd.kmodinit") bytes"
umount_all

echo "distro: ext4 disk of the tree"
rm -f "$D/disk.img"
truncate -s 3G "$D/disk.img"
mkfs.ext4 -q -U "$uuid" -d "$R" "$D/disk.img"

boot() { # $1: kmodinit|initramfs-tools, $2: run number
    local log="$D/boot-$1-$2.log"
    local s=$(date +%s)
    timeout 300 qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -display none -no-reboot -nic none \
        -monitor none -serial "file:$log" -kernel "$D/vmlinuz" -initrd "$D/initrd.$1" \
        -drive "file=$D/disk.img,format=raw,if=virtio" \
        -append "root=UUID=$uuid ro console=ttyS0 panic=-1" || true
    grep -q KMT-END "$log" || { tail -40 "$log"; echo "distro: FAIL: $1 boot $2 did not reach the check (see $log)"; exit 1; }
    local mu=$(sed -n 's/.*KMT-MU \([0-9]*\).*/\1/p' "$log" | head -1)
    echo "distro: $1 boot $2: multi-user.target at $((mu / 1000)) ms ($(( $(date +%s) - s )) s wall)"
    echo "$mu" >> "$D/mu-$1"
}
rm -f "$D/mu-kmodinit" "$D/mu-initramfs-tools"
for i in $(seq 1 "$BOOTS"); do boot kmodinit "$i"; boot initramfs-tools "$i"; done

log="$D/boot-kmodinit-1.log"
fail=0
check() { grep -q "$1" "$log" || { echo "distro: FAIL: $2"; fail=1; }; }
check "KMT-ACTIVE active" "multi-user.target not active"
check "KMT-REPORT-PRESENT" "no /run/kmodinit/report.json"
check "KMT-JOURNAL .*kmodinit.*: initramfs [0-9]* ms" "no 'kmodinit: initramfs' line in the journal"
check "KMT-KMODINIT-REPORT-OK" "kmodinit report failed on the system"
check "KMT-RUN rw,nosuid,nodev,.*mode=755" "/run not mounted mode=755,nodev,nosuid"
failed=$(sed -n '/KMT-FAILED-BEGIN/,/KMT-FAILED-END/p' "$log" | grep -v 'KMT-FAILED' | tr -d '\r' | grep -v '^$' || true)
[ -z "$failed" ] || { echo "distro: FAIL: failed units:"; echo "$failed"; fail=1; }
grep -h "KMT-JOURNAL\|KMT-RUN" "$log" | tr -d '\r' | sed 's/^/  /'
[ "$fail" = 0 ] || exit 1

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
k=$(median "$D/mu-kmodinit"); t=$(median "$D/mu-initramfs-tools")
echo "distro: multi-user.target (kernel start → reached, median of $BOOTS): kmodinit $((k / 1000)) ms, initramfs-tools $((t / 1000)) ms ($(awk -v a="$k" -v b="$t" 'BEGIN { printf "%.2f", a / b }')×)"
echo "distro: images: kmodinit $(stat -c %s "$D/initrd.kmodinit") bytes, initramfs-tools $(stat -c %s "$D/initrd.initramfs-tools") bytes"

mount_all
echo "distro: removing linux-image-$rel in the chroot"
chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "linux-image-$rel" linux-image-amd64 > "$D/remove.log" 2>&1 \
    || { tail -30 "$D/remove.log"; echo "distro: FAIL: kernel removal failed"; exit 1; }
grep "^kmodinit" "$D/remove.log" | sed 's/^/  hook: /'
umount_all
[ ! -e "$R/boot/initrd.img-$rel" ] || { echo "distro: FAIL: /boot/initrd.img-$rel is still there"; exit 1; }
echo "distro: PASS ($(( $(date +%s) - start )) s)"
