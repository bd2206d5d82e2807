#!/usr/bin/env bash
# Generates the seed corpora under fuzz/corpus/<target>/ from real data:
# slices of a kernel's depmod index (default: the running kernel's, or
# MODDIR=/lib/modules/RELEASE), the example manifests, the host's
# /proc/cmdline and compressed copies of real module files. Idempotent: files
# are named by content hash. The corpora are generated, not committed; the
# few hand-written seeds live in fuzz/seeds/<target>/.
set -eu
cd "$(dirname "$0")"
MODDIR=${MODDIR:-}
if [ -z "$MODDIR" ]; then
    for d in /lib/modules/$(uname -r) $(ls -d /lib/modules/* 2>/dev/null | sort -V | tail -1); do
        [ -f "$d/modules.dep" ] && { MODDIR=$d; break; }
    done
fi

put() { # put TARGET < data
    local t=$1 tmp
    mkdir -p "corpus/$t"
    tmp=$(mktemp)
    cat >"$tmp"
    mv "$tmp" "corpus/$t/seed-$(sha1sum "$tmp" | cut -c1-16)"
}

# Windows of 1..64 lines at spread-out offsets of one depmod file.
slices() { # slices FILE TARGET
    local f=$1 t=$2 n start len
    n=$(wc -l <"$f")
    [ "$n" -gt 0 ] || return 0
    for len in 1 2 5 16 64; do
        for frac in 0 13 29 47 61 83 97; do
            start=$(( n * frac / 100 + 1 ))
            sed -n "${start},$(( start + len - 1 ))p" "$f" | put "$t"
        done
    done
}

if [ -n "$MODDIR" ]; then
    echo "depmod seeds from $MODDIR"
    slices "$MODDIR/modules.dep" depmod_dep
    slices "$MODDIR/modules.alias" depmod_alias
    slices "$MODDIR/modules.softdep" depmod_softdep
    slices "$MODDIR/modules.builtin" depmod_builtin
    # The whole small files, as they are.
    put depmod_softdep <"$MODDIR/modules.softdep"
    put depmod_builtin <"$MODDIR/modules.builtin"
    if [ -f "$MODDIR/modules.builtin.modinfo" ]; then
        # The whole file (45 KB on Debian 6.1: every record kind, non-alias
        # ones included), its alias records, and windows of 16 records.
        put depmod_modinfo <"$MODDIR/modules.builtin.modinfo"
        tr '\0' '\n' <"$MODDIR/modules.builtin.modinfo" >corpus.tmp
        grep '^[^.]*\.alias=' corpus.tmp | tr '\n' '\0' | put depmod_modinfo
        n=$(wc -l <corpus.tmp)
        for frac in 0 13 29 47 61 83 97; do
            start=$(( n * frac / 100 + 1 ))
            sed -n "${start},$(( start + 15 ))p" corpus.tmp | tr '\n' '\0' | put depmod_modinfo
        done
        rm -f corpus.tmp
    fi
    # The lines a virtio + ext4 boot needs, together.
    grep -E '/(ext4|jbd2|mbcache|crc16|virtio[a-z_]*|crc32c[a-z_-]*)\.ko' "$MODDIR/modules.dep" | put depmod_dep

    # Real module files, compressed the ways distributions do it.
    for m in kernel/lib/crc16.ko kernel/fs/mbcache.ko; do
        f=$MODDIR/$m
        [ -f "$f" ] || continue
        head -c 4096 "$f" >corpus.tmp
        for src in "$f" corpus.tmp; do
            xz --check=crc32 --lzma2=dict=1MiB -c "$src" | put decompress_xz
            xz -c "$src" | put decompress_xz
            zstd -q -19 -c "$src" | put decompress_zstd
            zstd -q -1 -c "$src" | put decompress_zstd
            gzip -9 -n -c "$src" | put decompress_gzip
        done
        rm -f corpus.tmp
    done
    # Small real module files whole, for the .modinfo reader.
    for m in kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/drivers/block/virtio_blk.ko; do
        [ -f "$MODDIR/$m" ] && put modinfo <"$MODDIR/$m"
    done
else
    echo "no depmod index found: depmod and decompress seeds skipped" >&2
fi

# The host's modprobe.d files, as they are.
for f in /etc/modprobe.d/*.conf /lib/modprobe.d/*.conf; do
    [ -f "$f" ] && put modprobe_d <"$f"
done

# Decompression bombs: 2 MiB of zeros, over the 1 MiB cap the targets use.
head -c $((2 << 20)) /dev/zero | xz -c | put decompress_xz
head -c $((2 << 20)) /dev/zero | zstd -q -c | put decompress_zstd
head -c $((2 << 20)) /dev/zero | gzip -n -c | put decompress_gzip
# Empty frames.
printf '' | xz -c | put decompress_xz
printf '' | zstd -q -c | put decompress_zstd
printf '' | gzip -n -c | put decompress_gzip

# Manifests: the examples shipped with modules-manifest.
for f in ../modules-manifest/examples/*.json; do
    [ -f "$f" ] && put manifest <"$f"
done

# The command line of the machine we run on, and the shapes DESIGN.md names.
[ -r /proc/cmdline ] && put cmdline </proc/cmdline
for l in \
    'root=/dev/vda1 rootfstype=ext4 ro rootwait quiet' \
    'root=UUID=0b8a7f2e-1c1d-4c7e-9d1f-2a3b4c5d6e7f rootflags=noatime,discard rw' \
    'root=PARTUUID=abcd-02 rootdelay=5 init=/lib/systemd/systemd' \
    'virtio_blk.queue_depth=128 ext4.foo="a b c" modprobe.blacklist=floppy,pcspkr' \
    'kmodinit.manifest=/etc/kmodinit/other.json kmodinit.jobs=8 kmodinit.on_failure=reboot kmodinit.debug' \
    'console=ttyS0 root=LABEL=root -- single --extra "x y"'; do
    printf '%s\n' "$l" | put cmdline
done


# Block devices: the first sectors of real filesystem and partition-table
# images, made in a temporary file (nothing is mounted).
img=$(mktemp)
for mk in "mkfs.ext4 -q -F -L root" "mkfs.ext2 -q -F" "mkfs.vfat -n BOOT" "mkfs.xfs -q -f -L root" "mkfs.btrfs -q -f -L root"; do
    rm -f "$img"; truncate -s 64M "$img"
    command -v ${mk%% *} >/dev/null 2>&1 || continue
    $mk "$img" >/dev/null 2>&1 || continue
    head -c 8192 "$img" | put rootdev
    head -c 69632 "$img" | put rootdev
done
if command -v sgdisk >/dev/null 2>&1; then
    rm -f "$img"; truncate -s 8M "$img"
    sgdisk -q -n 1:2048:+1M -c 1:root -n 2:0:0 "$img" >/dev/null 2>&1 && head -c 24576 "$img" | put rootdev
fi
if command -v sfdisk >/dev/null 2>&1; then
    rm -f "$img"; truncate -s 8M "$img"
    printf 'label: dos\n,1M,83\n,,83\n' | sfdisk -q "$img" >/dev/null 2>&1 && head -c 512 "$img" | put rootdev
fi
rm -f "$img"
for l in UUID=0b8a7f2e-1c1d-4c7e-9d1f-2a3b4c5d6e7f LABEL=root PARTUUID=abcd0123-02 PARTLABEL=root /dev/vda1 /dev/disk/by-uuid/x 8:1; do
    printf '%s\n' "$l" | put rootdev
done
echo "corpora: $(ls corpus | wc -l) targets, $(find corpus -type f | wc -l) files"
