#!/usr/bin/env bash
# Runs every fuzz target (or those named after the seconds) for SECONDS each,
# one after the other, and prints one line per target: executions, seconds,
# exec/s, crashes. Exit status 1 if any target crashed.
#   fuzz/run.sh SECONDS [TARGET...]
# Environment: FUZZ_JOBS (parallel targets, default 1), FUZZ_NICE (default 10),
# FUZZ_RUNS (stop each target after this many executions, SECONDS still caps
# the time: FUZZ_RUNS=10000000 is the issue's "10 million per parser"),
# FUZZ_SANITIZER (default none: every target is safe Rust, where AddressSanitizer
# finds nothing the language does not already stop, at a third of the speed;
# set "address" to use it anyway), FUZZ_TRACE_COMPARES (default 1; 0 builds
# without libFuzzer's comparison tracing, in target/no-cmp: about 3 times the
# executions per second, since tracing every compare is 70 % of the time in
# the byte loops of the decoders and the alias matcher, at the price of
# weaker guidance to new comparisons; for long runs on a corpus grown with
# tracing on).
set -u
cd "$(dirname "$0")"
secs=${1:-120}; shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
nice_lvl=${FUZZ_NICE:-10}
mkdir -p logs

# Build once, with debug assertions: an arithmetic overflow is a bug even if
# the release profile would wrap silently.
san=${FUZZ_SANITIZER:-none}
build=(--debug-assertions --sanitizer "$san")
if [ "${FUZZ_TRACE_COMPARES:-1}" = 0 ]; then
    build+=(--no-trace-compares --target-dir target/no-cmp)
fi
nice -n "$nice_lvl" cargo +nightly fuzz build "${build[@]}" || exit 2

[ -d corpus ] || ./gen-corpus.sh

run_one() {
    local t=$1
    local opts=()
    case $t in
        manifest) opts=(-dict=json.dict) ;;
        cmdline) opts=(-dict=dicts/cmdline.dict) ;;
        modprobe_d) opts=(-dict=dicts/modprobe_d.dict) ;;
        # A module's headers and a .modinfo fit; whole modules are seeds.
        modinfo) opts=(-max_len=16384) ;;
        # The whole 45 KB file is a seed; mutating inputs that long would
        # run 40 times slower than the record windows that find the bugs.
        depmod_modinfo) opts=(-dict=dicts/depmod.dict -max_len=4096) ;;
        depmod_*) opts=(-dict=dicts/depmod.dict) ;;
        # Superblocks and GPT entries sit past libFuzzer's 4 KiB default.
        rootdev) opts=(-max_len=24576) ;;
        # A dm-mod.create= value may be 4 KiB, then four more options.
        dm) opts=(-max_len=8192) ;;
    esac
    mkdir -p "corpus/$t" "artifacts/$t"
    local extra=()
    [ -n "${FUZZ_RUNS:-}" ] && opts+=(-runs="$FUZZ_RUNS")
    for d in "seeds/$t" "regressions/$t"; do [ -d "$d" ] && extra+=("$d"); done
    # -timeout: an input taking 10 s is a hang, reported like a crash.
    # -rss_limit_mb: the decompressors' 64 MiB cap must hold far below this.
    nice -n "$nice_lvl" cargo +nightly fuzz run "${build[@]}" "$t" \
        "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=1024 "${opts[@]}" >"logs/$t.log" 2>&1
    echo $? >"logs/$t.rc"
}

jobs=${FUZZ_JOBS:-1}
for t in "${targets[@]}"; do
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait

status=0
printf '%-18s %14s %8s %10s %8s\n' target execs seconds exec/s crashes
for t in "${targets[@]}"; do
    log=logs/$t.log
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}')
    # libFuzzer stops at the first crash: 0 or 1 per run.
    rc=$(cat "logs/$t.rc")
    crashes=0
    [ "$rc" = 0 ] || { crashes=1; status=1; }
    # A crash ends the run early: no "Done" line, so no duration.
    printf '%-18s %14s %8s %10s %8s\n' "$t" "${execs:-?}" "${took:--}" "${rate:-?}" "$crashes"
    if [ "$rc" != 0 ]; then
        ls -1 "artifacts/$t"/ 2>/dev/null | sed "s|^|    artifact: fuzz/artifacts/$t/|"
        grep -m1 'panicked at' "$log" | sed 's/^/    /'
    fi
done
exit $status
