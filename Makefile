# kmodinit — see README.md. Every target works from a fresh clone after `make deps`.

SHELL := /bin/bash
MUSL  := x86_64-unknown-linux-musl
ARM64_TARGET := aarch64-unknown-linux-musl
# The Debian kernel that `make deps` installs (the newest one with headers).
KVER  ?= $(shell ls -1 /lib/modules 2>/dev/null | while read v; do [ -e /lib/modules/$$v/build ] && echo $$v; done | sort -V | tail -1)
BUILD := build
# The architecture /init is built for: empty (or x86_64) is this machine's,
# into build/; `make init ARCH=arm64` (or riscv64) cross-builds into
# build/ARCH/ on this x86-64 machine, linked by the toolchain's rust-lld
# (.cargo/config.toml): no emulated build.
# riscv64: no rust-std of riscv64gc-unknown-linux-musl reaches this machine
# (static.rust-lang.org answers 404 for stable's, the pinned nightly lists
# none), so `make init ARCH=riscv64` too builds std from the pinned
# nightly's rust-src, with the musl runtime of `make riscv64-musl`.
ARCH ?=
INIT_CARGO := cargo
INIT_STD   :=
INIT_DEPS  :=
ifeq ($(ARCH),arm64)
  TARGET := $(ARM64_TARGET)
  OUT    := $(BUILD)/arm64
else ifeq ($(ARCH),riscv64)
  TARGET := riscv64gc-unknown-linux-musl
  OUT    := $(BUILD)/riscv64
  INIT_CARGO  = cargo +$(TINY_TOOLCHAIN)
  INIT_STD   := -Z build-std=std,panic_abort
  INIT_DEPS  := tiny-deps
else ifeq ($(filter-out x86_64 amd64,$(ARCH)),)
  TARGET := $(MUSL)
  OUT    := $(BUILD)
else
  $(error ARCH=$(ARCH): expected x86_64 (the default), arm64 or riscv64)
endif
# The /init crate and its binary, as cargo names them.
INIT_PKG := kmodinit-init
INIT_BIN := init
INIT  := $(OUT)/init
INIT_FAULTS := $(OUT)/init-faults
INIT_TINY := $(OUT)/init-tiny
MKIMAGE := target/release/kmodinit-mkimage
# Installed without Recommends (they pull QEMU's GUI stack: ~520 packages
# instead of ~170 on a fresh bookworm), so everything the build and the
# tests use is listed, also what a Depends brings today:
# - seabios: bios-256k.bin and vgabios-stdvga.bin, which QEMU opens to boot
#   with -kernel; qemu-system-data: linuxboot_dma.bin and kvmvapic.bin;
#   ipxe-qemu: efi-e1000.rom of the default NIC (initramfs/tests/boot.rs);
# - libc6-dev (only a Recommends of gcc): cargo links host binaries and the
#   static gnu fallback of /init against it;
# - cryptsetup-bin: veritysetup, which writes the verity roots of
#   tests/tests/verity.rs (debugfs of e2fsprogs finds a file's block);
# - swtpm: the software TPM of tests/tests/measure.rs (each boot starts it
#   on an empty state); swtpm-tools: swtpm_setup and swtpm_ioctl, to
#   provision or poke a state by hand when a measure test fails.
DEB_PKGS := qemu-system-x86 qemu-system-data seabios ipxe-qemu f2fs-tools swtpm swtpm-tools \
            linux-image-amd64 linux-headers-amd64 busybox-static qemu-system-arm gcc-aarch64-linux-gnu gcc-riscv64-linux-gnu qemu-user \
            e2fsprogs dosfstools kmod cpio file libarchive-tools zstd xz-utils gdisk make gcc libc6-dev \
            cryptsetup-bin debootstrap binutils

.PHONY: init-tiny-faults all host baseline-init deps tiny-deps bpo-kernel arm64-kernel arm64-inits riscv64-musl riscv64-inits init init-faults init-tiny mkimage image demo fixtures test test-unit test-e2e lint bench fuzz clean \
        fuzz-deps fuzz-corpus fuzz-smoke loom deb test-distro

all: init host

# Idempotent: apt-get runs only when a package is missing. With CI=true the
# tests treat a missing prerequisite as a failure (tests/README.md), so
# everything they need must be in DEB_PKGS.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@rustup target list --installed | grep -qx $(ARM64_TARGET) || rustup target add $(ARM64_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	@$(MAKE) --no-print-directory tiny-deps
	@$(MAKE) --no-print-directory bpo-kernel
	@$(MAKE) --no-print-directory tiny-deps ARCH=arm64
	@$(MAKE) --no-print-directory tiny-deps ARCH=riscv64
	@$(MAKE) --no-print-directory arm64-kernel

# The pinned nightly of `make init-tiny`, with rust-src (for -Z build-std)
# and the musl target. Pinned by date so the tiny build is reproducible and
# its size comparable run to run; bump it deliberately, checking that
# init-tiny still builds, boots and stays under its size target.
TINY_TOOLCHAIN := nightly-2026-05-20
#
# For a cross ARCH the nightly's own rust-std of the target is not needed
# (build-std compiles std from rust-src), only the musl C runtime that a
# rust-std ships (`lib/self-contained`: crt objects, libc.a); the archive
# this machine reaches has none for aarch64 at that date, so the stable
# toolchain's (same musl 1.2.5) is copied into the nightly's sysroot once.
tiny-deps:
	@rustup toolchain list | grep -q '^$(TINY_TOOLCHAIN)' && \
	  rustup +$(TINY_TOOLCHAIN) component list --installed 2>/dev/null | grep -q '^rust-src' && \
	  rustup +$(TINY_TOOLCHAIN) target list --installed 2>/dev/null | grep -qx $(MUSL) || \
	  rustup toolchain install $(TINY_TOOLCHAIN) --profile minimal -c rust-src -t $(MUSL)
ifeq ($(ARCH),riscv64)
	@$(MAKE) --no-print-directory riscv64-musl
else ifneq ($(TARGET),$(MUSL))
	@set -e; n=$$(rustc +$(TINY_TOOLCHAIN) --print sysroot)/lib/rustlib/$(TARGET)/lib; \
	if [ ! -f "$$n/self-contained/libc.a" ]; then \
		rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET); \
		s=$$(rustc --print sysroot)/lib/rustlib/$(TARGET)/lib/self-contained; \
		mkdir -p "$$n"; cp -a "$$s" "$$n/"; echo "$(TINY_TOOLCHAIN): musl runtime of $(TARGET) from $$s"; \
	fi
endif

# The musl runtime of riscv64gc-unknown-linux-musl in the pinned nightly's
# sysroot (lib/rustlib/TARGET/lib/self-contained), which a rust-std would
# ship: crt1.o, crti.o, crtn.o, libc.a from Debian's musl-dev of riscv64
# (trixie: bookworm has no riscv64), fetched with a private apt setup
# under $(RISCV64_DIR)/apt as arm64-kernel does, from the mirror this
# machine's apt uses for bookworm (`RISCV64_MIRROR=URI` overrides);
# crtbegin.o, crtend.o and libgcc_eh.a (as libunwind.a: the unwinder std
# links) from gcc-riscv64-linux-gnu. libgcc_eh of that glibc-built gcc
# calls _dl_find_object (glibc ≥ 2.35), which musl lacks: a stub returning
# "not found" is added, so the riscv64 builds print no backtrace (they
# never unwind: panic = "abort"). Idempotent (a stamp file).
RISCV64_DIR := $(BUILD)/riscv64
RISCV64_MIRROR ?=
riscv64-musl:
	@set -euo pipefail; n="$$(rustc +$(TINY_TOOLCHAIN) --print sysroot)/lib/rustlib/riscv64gc-unknown-linux-musl/lib/self-contained"; \
	if [ -f "$$n/kmodinit-stamp" ]; then echo "riscv64 musl runtime: $$(cat "$$n/kmodinit-stamp")"; exit 0; fi; \
	d="$(abspath $(RISCV64_DIR))"; mkdir -p "$$d/apt/lists/partial" "$$d/apt/cache/archives/partial" "$$d/debs"; \
	mirror='$(RISCV64_MIRROR)'; \
	[ -n "$$mirror" ] || mirror=$$(apt-get indextargets --no-release-info \
		--format '$$(TARGET_OF) $$(CREATED_BY) $$(RELEASE) $$(REPO_URI)' 2>/dev/null \
		| awk '$$1 == "deb" && $$2 == "Packages" && $$3 == "bookworm" { print $$4; exit }'); \
	[ -n "$$mirror" ] || { echo "error: no apt source of this machine names bookworm; set RISCV64_MIRROR=URI"; exit 1; }; \
	echo "deb $$mirror trixie main" > "$$d/apt/sources.list"; \
	A=(-o Dir::Etc::sourcelist="$$d/apt/sources.list" -o Dir::Etc::sourceparts=- \
	   -o Dir::State::Lists="$$d/apt/lists" -o Dir::Cache="$$d/apt/cache" \
	   -o APT::Architecture=riscv64 -o APT::Architectures=riscv64 -o APT::Sandbox::User=root -q); \
	apt-get "$${A[@]}" update >"$$d/apt/update.log" 2>&1 || { cat "$$d/apt/update.log"; exit 1; }; \
	rm -f "$$d/debs/"*.deb; (cd "$$d/debs" && apt-get "$${A[@]}" download musl-dev); \
	rm -rf "$$d/musl"; dpkg-deb -x "$$d/debs/"musl-dev_*.deb "$$d/musl"; \
	mkdir -p "$$n"; cp "$$d/musl/usr/lib/riscv64-linux-musl/"{crt1.o,crti.o,crtn.o,Scrt1.o,rcrt1.o,libc.a} "$$n/"; \
	G=riscv64-linux-gnu-gcc; for o in crtbegin.o crtend.o crtbeginS.o crtendS.o; do cp "$$($$G -print-file-name=$$o)" "$$n/"; done; \
	cp "$$($$G -print-file-name=libgcc_eh.a)" "$$n/libunwind.a"; \
	printf 'int _dl_find_object(void *pc, void *result) { (void)pc; (void)result; return -1; }\n' > "$$d/dl_find_object.c"; \
	$$G -O2 -fno-stack-protector -c "$$d/dl_find_object.c" -o "$$d/dl_find_object.o"; \
	riscv64-linux-gnu-ar r "$$n/libunwind.a" "$$d/dl_find_object.o"; \
	echo "$$(basename "$$d/debs/"musl-dev_*.deb) from $$mirror, $$($$G -dumpfullversion)'s crt and libgcc_eh" > "$$n/kmodinit-stamp"; \
	echo "riscv64 musl runtime: $$(cat "$$n/kmodinit-stamp")"

# A second kernel for tests/tests/kernel_decompress.rs: the newest cloud
# kernel of bookworm-backports (6.12 today), whose CONFIG_MODULE_DECOMPRESS
# lets finit_module decompress its .ko.xz modules. Resolved through the
# metapackage, so a version bump in the archive needs no edit here. Fetched
# with a private apt configuration (sources, lists, cache all under
# $(BPO_DIR)/apt): the system's apt setup and dpkg database are untouched,
# nothing is installed. The mirror is the one this machine's own apt sources
# use for $(BPO_BASE) (or, failing that, for its own release, from
# /etc/os-release), as apt itself reads them (`apt-get indextargets`: one-line
# *.list and deb822 *.sources alike), so no host name is written here;
# `make bpo-kernel BPO_MIRROR=URI` overrides it. Extracted to
# $(BPO_DIR)/root (boot/vmlinuz-R, lib/modules/R indexed by `depmod -b`).
# Idempotent: with the newest release already extracted only `apt-get
# update` runs; when the archive cannot be read (or no mirror is found), an
# extracted kernel is kept with a warning.
BPO_DIR    := $(BUILD)/bpo-kernel
BPO_BASE   := bookworm
BPO_SUITE  := $(BPO_BASE)-backports
BPO_META   := linux-image-cloud-amd64
BPO_MIRROR ?=
bpo-kernel:
	@set -euo pipefail; d="$(abspath $(BPO_DIR))"; \
	mkdir -p "$$d/apt/lists/partial" "$$d/apt/cache/archives/partial" "$$d/debs"; \
	log="$$d/apt/update.log"; : >"$$log"; mirror='$(BPO_MIRROR)'; \
	if [ -z "$$mirror" ]; then \
		own=$$( (. /etc/os-release && echo "$${VERSION_CODENAME:-}") 2>/dev/null || true); \
		targets=$$(apt-get indextargets --no-release-info \
			--format '$$(TARGET_OF) $$(CREATED_BY) $$(RELEASE) $$(REPO_URI)' 2>>"$$log" || true); \
		for suite in $(BPO_BASE) $$own; do \
			mirror=$$(awk -v s="$$suite" '$$1 == "deb" && $$2 == "Packages" && $$3 == s { print $$4; exit }' <<<"$$targets"); \
			[ -z "$$mirror" ] || break; \
		done; \
	fi; \
	A=(-o Dir::Etc::sourcelist="$$d/apt/sources.list" -o Dir::Etc::sourceparts=- \
	   -o Dir::State::Lists="$$d/apt/lists" -o Dir::Cache="$$d/apt/cache" \
	   -o APT::Sandbox::User=root -q); \
	if [ -n "$$mirror" ]; then \
		echo "deb $$mirror $(BPO_SUITE) main" > "$$d/apt/sources.list"; \
		apt-get "$${A[@]}" update >>"$$log" 2>&1 || true; \
	else \
		echo "no apt source of this machine names the Debian archive's $(BPO_BASE) suite (apt-get indextargets); set BPO_MIRROR=URI" >>"$$log"; \
		: > "$$d/apt/sources.list"; \
	fi; \
	have=$$(cat "$$d/release" 2>/dev/null || true); \
	pkg=$$(apt-cache "$${A[@]}" depends $(BPO_META) 2>>"$$log" \
		| awk '$$1 == "Depends:" && $$2 ~ /^linux-image-[0-9]/ { print $$2; exit }' || true); \
	if [ -z "$$pkg" ]; then \
		if [ -n "$$have" ] && [ -f "$$d/root/lib/modules/$$have/modules.dep" ]; then \
			echo "warning: cannot resolve $(BPO_META) in $(BPO_SUITE) (see $$log); keeping $(BPO_DIR)/root: $$have"; exit 0; \
		fi; \
		cat "$$log"; echo "error: cannot resolve $(BPO_META) in $(BPO_SUITE) (apt output above)"; exit 1; \
	fi; \
	rel=$${pkg#linux-image-}; \
	if [ "$$have" = "$$rel" ] && [ -f "$$d/root/lib/modules/$$rel/modules.dep" ] && [ -f "$$d/root/boot/vmlinuz-$$rel" ]; then \
		echo "$(BPO_SUITE) kernel from $$mirror: $$rel (already in $(BPO_DIR)/root)"; exit 0; \
	fi; \
	deb=$$(ls "$$d/debs/$${pkg}_"*.deb 2>/dev/null | head -1 || true); \
	if [ -z "$$deb" ]; then \
		rm -f "$$d/debs/"*.deb; \
		(cd "$$d/debs" && apt-get "$${A[@]}" download "$$pkg"); \
		deb=$$(ls "$$d/debs/$${pkg}_"*.deb | head -1); \
	fi; \
	rm -rf "$$d/root.new"; dpkg-deb -x "$$deb" "$$d/root.new"; \
	depmod -b "$$d/root.new" "$$rel"; \
	rm -rf "$$d/root"; mv "$$d/root.new" "$$d/root"; echo "$$rel" > "$$d/release"; \
	echo "$(BPO_SUITE) kernel from $$mirror: $$(basename "$$deb") ($$(du -h "$$deb" | cut -f1)) extracted: $(BPO_DIR)/root/boot/vmlinuz-$$rel," \
	     "$$(find "$$d/root/lib/modules/$$rel" -name '*.ko*' | wc -l) modules in $(BPO_DIR)/root/lib/modules/$$rel"

# Debian's arm64 kernel of the same release as the x86 one ($(KVER) with
# -arm64 for -amd64; the metapackage linux-image-arm64's release when the
# archive no longer has that one), for tests/tests/arm64.rs, `make demo ARCH=arm64` and
# the bench: linux-image-R and busybox-static (the real init's shell) of
# arm64, fetched with this machine's apt sources but private package lists
# and cache for architecture arm64 under $(ARM64_DIR)/apt (the system's apt
# state, dpkg database and /lib/modules are untouched, nothing is
# installed), extracted with `dpkg-deb -x` into $(ARM64_DIR)/root
# (boot/vmlinuz-R, an uncompressed arm64 Image; lib/modules/R indexed by
# `depmod -b`, as the package ships no modules.dep; bin/busybox), with
# linux-headers-R for the fixture modules (cross-built with
# gcc-aarch64-linux-gnu): its `build` link made relative, its kbuild tools
# (host programs: fixdep, modpost) the host's of the same series, and its
# Makefile includes the host's linux-headers-R-common (arch all), both
# installed with linux-headers-amd64 of the same release.
# Idempotent: with R already extracted nothing is fetched.
ARM64_DIR := $(BUILD)/arm64
arm64-kernel:
	@set -euo pipefail; d="$(abspath $(ARM64_DIR))"; \
	rel="$(KVER)"; [ -n "$$rel" ] || { echo "error: no x86 kernel with headers in /lib/modules: run make deps"; exit 1; }; \
	rel="$${rel%-amd64}-arm64"; \
	if [ "$$(cat "$$d/release" 2>/dev/null)" = "$$rel" ] && [ -f "$$d/root/lib/modules/$$rel/modules.dep" ] \
	   && [ -f "$$d/root/boot/vmlinuz-$$rel" ] && [ -x "$$d/root/bin/busybox" ] \
	   && [ -f "$$d/root/lib/modules/$$rel/build/Makefile" ]; then \
		echo "arm64 kernel: $$rel (already in $(ARM64_DIR)/root)"; exit 0; \
	fi; \
	mkdir -p "$$d/apt/lists/partial" "$$d/apt/cache/archives/partial" "$$d/debs"; \
	A=(-o Dir::State::Lists="$$d/apt/lists" -o Dir::Cache="$$d/apt/cache" \
	   -o APT::Architecture=arm64 -o APT::Architectures=arm64 -o APT::Sandbox::User=root -q); \
	apt-get "$${A[@]}" update >"$$d/apt/update.log" 2>&1 || { cat "$$d/apt/update.log"; exit 1; }; \
	if ! apt-cache "$${A[@]}" show "linux-image-$$rel" >/dev/null 2>&1; then \
		new=$$(apt-cache "$${A[@]}" depends linux-image-arm64 2>/dev/null \
			| awk '$$1 == "Depends:" && $$2 ~ /^linux-image-[0-9]/ { sub("^linux-image-", "", $$2); print $$2; exit }'); \
		[ -n "$$new" ] || { echo "error: neither linux-image-$$rel nor linux-image-arm64 in the archive (see $$d/apt/update.log)"; exit 1; }; \
		echo "arm64 kernel: no linux-image-$$rel in the archive; taking linux-image-arm64's $$new"; rel=$$new; \
		if [ "$$(cat "$$d/release" 2>/dev/null)" = "$$rel" ] && [ -f "$$d/root/lib/modules/$$rel/modules.dep" ]; then \
			echo "arm64 kernel: $$rel (already in $(ARM64_DIR)/root)"; exit 0; fi; \
	fi; \
	rm -f "$$d/debs/"*.deb; \
	(cd "$$d/debs" && apt-get "$${A[@]}" download "linux-image-$$rel" "linux-headers-$$rel" busybox-static); \
	rm -rf "$$d/root.new"; for deb in "$$d/debs/"*.deb; do dpkg-deb -x "$$deb" "$$d/root.new"; done; \
	depmod -b "$$d/root.new" "$$rel"; \
	ln -sfn "../../../usr/src/linux-headers-$$rel" "$$d/root.new/lib/modules/$$rel/build"; \
	kb=$$(basename "$$(dirname "$$(readlink "$$d/root.new/usr/src/linux-headers-$$rel/scripts")")"); \
	mkdir -p "$$d/root.new/usr/lib"; ln -sfn "/usr/lib/$$kb" "$$d/root.new/usr/lib/$$kb"; \
	rm -rf "$$d/root"; mv "$$d/root.new" "$$d/root"; echo "$$rel" > "$$d/release"; rm -f "$$d/debs/"*.deb; \
	echo "arm64 kernel $$rel extracted: $(ARM64_DIR)/root/boot/vmlinuz-$$rel," \
	     "$$(find "$$d/root/lib/modules/$$rel" -name '*.ko*' | wc -l) modules; busybox $(ARM64_DIR)/root/bin/busybox"

# The static PID 1 on stable Rust. musl target; `file` must say "statically
# linked". Default features: manifest errors with JSON paths, no module
# decoders (images hold `.ko` files, see initramfs/README.md); add
# `--features xz,zstd,gzip` for images that keep compressed modules on a
# kernel that cannot decompress them. Sizes: init/SIZE.md.
init: $(INIT_DEPS)
	$(INIT_CARGO) build --release -p $(INIT_PKG) --target $(TARGET) $(INIT_STD)
	@mkdir -p $(OUT)
	cp target/$(TARGET)/release/$(INIT_BIN) $(INIT)
	@file $(INIT) | grep -q 'static' || { echo "error: $(INIT) is not static"; exit 1; }
	@ls -l $(INIT) | awk '{printf "built %s: %d bytes (%.0f KiB)\n", $$9, $$5, $$5/1024}'

# The test-only /init of tests/tests/panics.rs: `kmodinit.fault=` injects
# panics (feature fault-injection, init/src/fault.rs). Its own target
# dir, so the product's target/$(TARGET)/release/$(INIT_BIN) (what `make init`
# copies) is never swapped for it. Measured: after an edit both rebuild in
# ~9 s (the kmodinit crate only); a shared dir only saves the first build's
# dependencies (~8 s, once).
init-faults: $(INIT_DEPS)
	CARGO_TARGET_DIR=target/faults $(INIT_CARGO) build --release -p $(INIT_PKG) --target $(TARGET) $(INIT_STD) --features fault-injection
	@mkdir -p $(OUT)
	cp target/faults/$(TARGET)/release/$(INIT_BIN) $(INIT_FAULTS)
	@file $(INIT_FAULTS) | grep -q 'static' || { echo "error: $(INIT_FAULTS) is not static"; exit 1; }

# The smallest /init (init/SIZE.md): the same code on the pinned nightly,
# std rebuilt for size (-Z build-std, optimize_for_size: no backtrace
# symbolizer) with panic = "abort", so PID 1's panic hook still explains a
# panic and carries out on_failure (init/SIZE.md: immediate-abort would
# save 87 KiB and lose that), no unwind tables, no caller locations in panic
# data, no decoders and manifest errors without JSON paths
# (--no-default-features), linked
# by the toolchain's rust-lld (.cargo/config.toml's `linker`) with
# identical code folding (--icf=all: -11 KiB) and without unwind tables
# (init/no-unwind-tables.ld). The release profile's opt-level z,
# fat LTO and one codegen unit apply. Own target dir, so the stable build's
# cache is never swapped. RUSTFLAGS replaces .cargo/config.toml's
# rustflags, hence relocation-model=static and the link arguments again.
TINY_LINK := -Clink-arg=--icf=all -Clink-arg=--no-eh-frame-hdr -Clink-arg=-Tinit/no-unwind-tables.ld
TINY_RUSTFLAGS := -C relocation-model=static -C target-feature=+crt-static \
	-C link-self-contained=yes -C force-unwind-tables=no \
	-Zunstable-options -Zlocation-detail=none $(TINY_LINK)
init-tiny: tiny-deps
	RUSTFLAGS="$(TINY_RUSTFLAGS)" CARGO_TARGET_DIR=target/tiny CARGO_PROFILE_RELEASE_PANIC=abort \
	  cargo +$(TINY_TOOLCHAIN) build --release -p $(INIT_PKG) --target $(TARGET) --no-default-features \
	  -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
	@mkdir -p $(OUT)
	cp target/tiny/$(TARGET)/release/$(INIT_BIN) $(INIT_TINY)
	@file $(INIT_TINY) | grep -q 'static' || { echo "error: $(INIT_TINY) is not static"; exit 1; }
	@ls -l $(INIT_TINY) | awk '{printf "built %s: %d bytes (%.0f KiB)\n", $$9, $$5, $$5/1024}'

# The fault-injection twin of init-tiny (tests/tests/tiny.rs: a panic in
# the loader child of the tiny build). Same target dir: std is built once.
INIT_TINY_FAULTS := $(OUT)/init-tiny-faults
init-tiny-faults: tiny-deps
	RUSTFLAGS="$(TINY_RUSTFLAGS)" CARGO_TARGET_DIR=target/tiny CARGO_PROFILE_RELEASE_PANIC=abort \
	  cargo +$(TINY_TOOLCHAIN) build --release -p $(INIT_PKG) --target $(TARGET) --no-default-features --features fault-injection \
	  -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
	@mkdir -p $(OUT)
	cp target/tiny/$(TARGET)/release/$(INIT_BIN) $(INIT_TINY_FAULTS)

# The host tool (target/release/kmodinit: build, plan, report,
# manifest-from-host) and the image builder under its own name.
HOST := target/release/kmodinit
mkimage host:
	cargo build --release -p kmodinit -p kmodinit-mkimage

# The Debian package: build/kmodinit_VERSION_ARCH.deb (dpkg-deb; contents and
# scripts in debian/, host/README.md "Install on Debian").
deb: host init init-tiny
	bash debian/build-deb.sh target/release/kmodinit $(MKIMAGE) $(INIT) $(INIT_TINY) $(BUILD)

# Debootstraps a bookworm with systemd (cached in build/distro/), installs the
# package in it, lets the kernel's postinst hook build the image, boots it
# under QEMU against initramfs-tools' image of the same system
# (tests/distro/run.sh; tests/README.md).
test-distro: deb
	bash tests/distro/run.sh

# The layout rule of /init (no import cycle between its modules; PID 1's
# side and the loader's never import each other): init/tests/layout.rs.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test -q -p kmodinit-init --test layout

# The decoders are off by default (kmodinit-mkimage stores modules
# decompressed): the second run tests them, and the first the message of a
# build without them.
test-unit:
	cargo test --workspace
	cargo test -p kmodinit-init --features xz,zstd,gzip

# The fixture kernel modules (tests/fixtures/*.c + the generated benchmark
# farm), built against the installed headers and staged with depmod into
# build/fixtures/stage. Skipped when nothing changed.
fixtures:
	cargo run -q -p kmodinit-e2e --bin kmodinit-fixtures -- --farm

# The README's first command: build /init and the image, make a root disk,
# boot it under QEMU (TCG) and show the module timeline and the real init.
# `make demo ARCH=arm64`: the same on QEMU's arm64 virt board, with
# Debian's arm64 kernel (`make arm64-kernel`, run by `make deps`).
demo: init mkimage
	cargo run -q --release -p kmodinit-qemu --bin kmodinit-demo -- --init $(INIT) --mkimage $(MKIMAGE) --arch "$(ARCH)"

# The arm64 /init and its fault-injection twin, for tests/tests/arm64.rs.
arm64-inits:
	@$(MAKE) --no-print-directory init init-faults ARCH=arm64

# riscv64 in `make test`: both builds, each then run once as a plain
# process under qemu-user (musl's and std's start-up, the guard that
# refuses to act outside PID 1: exit 2 with its message). Booting it needs
# a riscv64 kernel with modules, which bookworm lacks (init/SIZE.md).
riscv64-inits:
	@$(MAKE) --no-print-directory init init-tiny ARCH=riscv64
	@for b in $(BUILD)/riscv64/init $(BUILD)/riscv64/init-tiny; do \
		rc=0; out=$$(qemu-riscv64 $$b 2>&1) || rc=$$?; \
		if [ $$rc = 2 ] && grep -q "PID 1" <<<"$$out"; then echo "$$b runs under qemu-riscv64 (not PID 1: refuses, exit 2)"; \
		else echo "error: $$b under qemu-riscv64: exit $$rc: $$out"; exit 1; fi; \
	done

# QEMU boots (each test is #[ignore]d so `cargo test` alone stays fast).
test-e2e: init init-faults init-tiny init-tiny-faults mkimage fixtures arm64-inits
	cargo test -p kmodinit-e2e --no-fail-fast -- --ignored --test-threads=2

test: lint test-unit riscv64-inits test-e2e

clean:
	cargo clean
	rm -rf $(BUILD)

# The /init before the compiled index (it parsed the depmod text and planned
# after PID 1's go), for bench case 7's same-run comparison: BASELINE_REV
# exported with git archive and built as `make init` builds, into
# build/baseline/init (its own target directory).
BASELINE_REV ?= 58042b1
# The source is unpacked outside this tree: cargo merges the .cargo/config.toml
# of every directory above the one it runs in, and this tree's link settings
# are not the baseline's.
BASELINE_SRC := $(or $(TMPDIR),/tmp)/kmodinit-baseline-$(BASELINE_REV)
baseline-init:
	rm -rf $(BASELINE_SRC) && mkdir -p $(BASELINE_SRC)
	git archive $(BASELINE_REV) | tar -x -C $(BASELINE_SRC)
	cd $(BASELINE_SRC) && cargo build --release -p kmodinit-init --target x86_64-unknown-linux-musl --target-dir $(CURDIR)/$(BUILD)/baseline/target
	cp $(BUILD)/baseline/target/x86_64-unknown-linux-musl/release/init $(BUILD)/baseline/init
	@echo "built $(BUILD)/baseline/init from $(BASELINE_REV): $$(stat -c %s $(BUILD)/baseline/init) bytes"

# Boots kmodinit and baseline images under QEMU (TCG, -smp 2), BENCH_RUNS runs
# each (default 5; BENCH_CASES=1,2,3,4,5,6,7 picks cases; 6 is the arm64 boot,
# hence both arm64 builds; 7 compares with baseline-init and needs
# init-tiny); writes
# bench/results/latest.md (summary at its top) and the timeline SVGs; README
# is left alone (kmodinit-bench --readme README.md writes its section).
# Then the pool-width sweep (fixed widths against the adaptive pool, 3 runs;
# bench/results/sweep.md): about 8 more minutes on a quiet host.
bench: init init-tiny host baseline-init
	@$(MAKE) --no-print-directory init init-tiny ARCH=arm64
	cargo build --release -p kmodinit-bench
	KVER=$(KVER) target/release/kmodinit-bench
	KVER=$(KVER) BENCH_RUNS=3 BENCH_CASES=1,2,3 target/release/kmodinit-bench sweep
	@# coldplug's host side on the full index: the walk of /sys/devices and
	@# matching every modalias against the newest tree's modules.alias.
	cargo bench -q -p modules-manifest --bench coldplug | tee bench/results/coldplug-host.txt

# Fuzzing (issue 8). Needs nightly + cargo-fuzz, never used by the product
# build. `make fuzz` runs every target FUZZ_SECONDS and prints execs and
# crashes per target; `make fuzz-smoke` is the short CI run.
FUZZ_SECONDS ?= 120
fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz

fuzz-corpus:
	fuzz/gen-corpus.sh

fuzz: fuzz-deps
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: fuzz-deps
	fuzz/run.sh 20

# loom runs the loader's real coordinator, on-demand pool and worker code in
# every interleaving (up to a preemption bound per case) of small plans
# (init/tests/loom_coordinator.rs; ~3 minutes on 2 cores). Prints how many
# interleavings each case explored; LOOM_MAX_PREEMPTIONS=N explores deeper.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p kmodinit-init --test loom_coordinator -- --test-threads 1 --nocapture
