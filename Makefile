# kmodinit — see README.md. Every target works from a fresh clone after `make deps`.

SHELL := /bin/bash
MUSL  := x86_64-unknown-linux-musl
# The Debian kernel that `make deps` installs (the newest one with headers).
KVER  ?= $(shell ls -1 /lib/modules 2>/dev/null | while read v; do [ -e /lib/modules/$$v/build ] && echo $$v; done | sort -V | tail -1)
BUILD := build
INIT  := $(BUILD)/init
MKIMAGE := target/release/kmodinit-mkimage
DEB_PKGS := qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static \
            e2fsprogs kmod cpio file libarchive-tools zstd xz-utils gdisk make gcc

.PHONY: all deps init mkimage image demo fixtures test test-unit test-e2e lint bench fuzz clean \
        fuzz-deps fuzz-corpus fuzz-smoke loom

all: init mkimage

# Idempotent: apt-get runs only when a package is missing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "Debian packages: all present"; fi
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

# The static PID 1. musl target; `file` must say "statically linked".
init:
	cargo build --release -p kmodinit --target $(MUSL)
	@mkdir -p $(BUILD)
	cp target/$(MUSL)/release/kmodinit $(INIT)
	@file $(INIT) | grep -q 'static' || { echo "error: $(INIT) is not static"; exit 1; }
	@ls -l $(INIT) | awk '{printf "built %s: %d bytes (%.0f KiB)\n", $$9, $$5, $$5/1024}'

mkimage:
	cargo build --release -p kmodinit-mkimage

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-unit:
	cargo test --workspace

# The fixture kernel modules (tests/fixtures/*.c + the generated benchmark
# farm), built against the installed headers and staged with depmod into
# build/fixtures/stage. Skipped when nothing changed.
fixtures:
	cargo run -q -p kmodinit-e2e --bin kmodinit-fixtures -- --farm

# The README's first command: build /init and the image, make a root disk,
# boot it under QEMU (TCG) and show the module timeline and the real init.
demo: init mkimage
	cargo run -q --release -p kmodinit-qemu --bin kmodinit-demo -- --init $(INIT) --mkimage $(MKIMAGE)

# QEMU boots (each test is #[ignore]d so `cargo test` alone stays fast).
test-e2e: init mkimage fixtures
	cargo test -p kmodinit-e2e --no-fail-fast -- --ignored --test-threads=2

test: lint test-unit test-e2e

clean:
	cargo clean
	rm -rf $(BUILD)

# Boots kmodinit and baseline images under QEMU (TCG, -smp 2), BENCH_RUNS runs
# each (default 5; BENCH_CASES=1,2,3,4 picks cases); writes
# bench/results/latest.md, the timeline SVGs and README's benchmark section.
bench: init mkimage
	cargo build --release -p kmodinit-bench
	KVER=$(KVER) target/release/kmodinit-bench

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
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p kmodinit --test loom_coordinator -- --test-threads 1 --nocapture
