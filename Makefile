# kmodinit — see README.md. Every target works from a fresh clone after `make deps`.

SHELL := /bin/bash
MUSL  := x86_64-unknown-linux-musl
# The Debian kernel that `make deps` installs (the newest one with headers).
KVER  ?= $(shell ls -1 /lib/modules 2>/dev/null | while read v; do [ -e /lib/modules/$$v/build ] && echo $$v; done | sort -V | tail -1)
BUILD := build
INIT  := $(BUILD)/init
INIT_FAULTS := $(BUILD)/init-faults
INIT_TINY := $(BUILD)/init-tiny
MKIMAGE := target/release/kmodinit-mkimage
# Installed without Recommends (they pull QEMU's GUI stack: ~520 packages
# instead of ~170 on a fresh bookworm), so everything the build and the
# tests use is listed, also what a Depends brings today:
# - seabios: bios-256k.bin and vgabios-stdvga.bin, which QEMU opens to boot
#   with -kernel; qemu-system-data: linuxboot_dma.bin and kvmvapic.bin;
#   ipxe-qemu: efi-e1000.rom of the default NIC (initramfs/tests/boot.rs);
# - libc6-dev (only a Recommends of gcc): cargo links host binaries and the
#   static gnu fallback of /init against it;
# - swtpm: the software TPM of tests/tests/measure.rs (each boot starts it
#   on an empty state); swtpm-tools: swtpm_setup and swtpm_ioctl, to
#   provision or poke a state by hand when a measure test fails.
DEB_PKGS := qemu-system-x86 qemu-system-data seabios ipxe-qemu f2fs-tools swtpm swtpm-tools \
            linux-image-amd64 linux-headers-amd64 busybox-static \
            e2fsprogs dosfstools kmod cpio file libarchive-tools zstd xz-utils gdisk make gcc libc6-dev

.PHONY: init-tiny-faults all host deps tiny-deps bpo-kernel init init-faults init-tiny mkimage image demo fixtures test test-unit test-e2e lint bench fuzz clean \
        fuzz-deps fuzz-corpus fuzz-smoke loom

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
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	@$(MAKE) --no-print-directory tiny-deps
	@$(MAKE) --no-print-directory bpo-kernel

# The pinned nightly of `make init-tiny`, with rust-src (for -Z build-std)
# and the musl target. Pinned by date so the tiny build is reproducible and
# its size comparable run to run; bump it deliberately, checking that
# init-tiny still builds, boots and stays under its size target.
TINY_TOOLCHAIN := nightly-2026-05-20
tiny-deps:
	@rustup toolchain list | grep -q '^$(TINY_TOOLCHAIN)' && \
	  rustup +$(TINY_TOOLCHAIN) component list --installed 2>/dev/null | grep -q '^rust-src' && \
	  rustup +$(TINY_TOOLCHAIN) target list --installed 2>/dev/null | grep -qx $(MUSL) || \
	  rustup toolchain install $(TINY_TOOLCHAIN) --profile minimal -c rust-src -t $(MUSL)

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

# The static PID 1 on stable Rust. musl target; `file` must say "statically
# linked". Default features: manifest errors with JSON paths, no module
# decoders (images hold `.ko` files, see initramfs/README.md); add
# `--features xz,zstd,gzip` for images that keep compressed modules on a
# kernel that cannot decompress them. Sizes: init/SIZE.md.
init:
	cargo build --release -p kmodinit-init --target $(MUSL)
	@mkdir -p $(BUILD)
	cp target/$(MUSL)/release/init $(INIT)
	@file $(INIT) | grep -q 'static' || { echo "error: $(INIT) is not static"; exit 1; }
	@ls -l $(INIT) | awk '{printf "built %s: %d bytes (%.0f KiB)\n", $$9, $$5, $$5/1024}'

# The test-only /init of tests/tests/panics.rs: `kmodinit.fault=` injects
# panics (feature fault-injection, init/src/fault.rs). Its own target
# dir, so the product's target/$(MUSL)/release/kmodinit (what `make init`
# copies) is never swapped for it. Measured: after an edit both rebuild in
# ~9 s (the kmodinit crate only); a shared dir only saves the first build's
# dependencies (~8 s, once).
init-faults:
	CARGO_TARGET_DIR=target/faults cargo build --release -p kmodinit-init --target $(MUSL) --features fault-injection
	@mkdir -p $(BUILD)
	cp target/faults/$(MUSL)/release/init $(INIT_FAULTS)
	@file $(INIT_FAULTS) | grep -q 'static' || { echo "error: $(INIT_FAULTS) is not static"; exit 1; }

# The smallest /init (init/SIZE.md): the same code on the pinned nightly,
# std rebuilt for size (-Z build-std, optimize_for_size: no backtrace
# symbolizer) with panic = "abort", so PID 1's panic hook still explains a
# panic and carries out on_failure (init/SIZE.md: immediate-abort would
# save 87 KiB and lose that), no unwind tables, no caller locations in panic
# data, no decoders and manifest errors without JSON paths
# (--no-default-features), linked
# by the toolchain's rust-lld with identical code folding (--icf=all:
# -11 KiB). The release profile's opt-level z,
# fat LTO and one codegen unit apply. Own target dir, so the stable build's
# cache is never swapped. RUSTFLAGS replaces .cargo/config.toml's, hence
# relocation-model=static again.
TINY_RUSTFLAGS := -C relocation-model=static -C target-feature=+crt-static \
	-C link-self-contained=yes -C force-unwind-tables=no \
	-Zunstable-options -Zlocation-detail=none \
	-Clinker-features=+lld -Clink-self-contained=+linker -Clink-arg=-Wl,--icf=all
init-tiny: tiny-deps
	RUSTFLAGS="$(TINY_RUSTFLAGS)" CARGO_TARGET_DIR=target/tiny CARGO_PROFILE_RELEASE_PANIC=abort \
	  cargo +$(TINY_TOOLCHAIN) build --release -p kmodinit-init --target $(MUSL) --no-default-features \
	  -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
	@mkdir -p $(BUILD)
	cp target/tiny/$(MUSL)/release/init $(INIT_TINY)
	@file $(INIT_TINY) | grep -q 'static' || { echo "error: $(INIT_TINY) is not static"; exit 1; }
	@ls -l $(INIT_TINY) | awk '{printf "built %s: %d bytes (%.0f KiB)\n", $$9, $$5, $$5/1024}'

# The fault-injection twin of init-tiny (tests/tests/tiny.rs: a panic in
# the loader child of the tiny build). Same target dir: std is built once.
INIT_TINY_FAULTS := $(BUILD)/init-tiny-faults
init-tiny-faults: tiny-deps
	RUSTFLAGS="$(TINY_RUSTFLAGS)" CARGO_TARGET_DIR=target/tiny CARGO_PROFILE_RELEASE_PANIC=abort \
	  cargo +$(TINY_TOOLCHAIN) build --release -p kmodinit-init --target $(MUSL) --no-default-features --features fault-injection \
	  -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
	@mkdir -p $(BUILD)
	cp target/tiny/$(MUSL)/release/init $(INIT_TINY_FAULTS)

# The host tool (target/release/kmodinit: build, plan, report,
# manifest-from-host) and the image builder under its own name.
HOST := target/release/kmodinit
mkimage host:
	cargo build --release -p kmodinit -p kmodinit-mkimage

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
demo: init host
	cargo run -q --release -p kmodinit-qemu --bin kmodinit-demo -- --init $(INIT) --mkimage $(MKIMAGE)

# QEMU boots (each test is #[ignore]d so `cargo test` alone stays fast).
test-e2e: init init-faults init-tiny init-tiny-faults host fixtures
	cargo test -p kmodinit-e2e --no-fail-fast -- --ignored --test-threads=2

test: lint test-unit test-e2e

clean:
	cargo clean
	rm -rf $(BUILD)

# Boots kmodinit and baseline images under QEMU (TCG, -smp 2), BENCH_RUNS runs
# each (default 5; BENCH_CASES=1,2,3,4,5 picks cases); writes
# bench/results/latest.md (summary at its top) and the timeline SVGs; README
# is left alone (kmodinit-bench --readme README.md writes its section).
# Then the pool-width sweep (fixed widths against the adaptive pool, 3 runs;
# bench/results/sweep.md): about 8 more minutes on a quiet host.
bench: init host
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
