#!/usr/bin/env bash
# Instructions per operation for the pair and churn workloads, for every allocator, counted by
# valgrind (cachegrind). Counts, unlike times, repeat on a noisy machine.
#
#   benches/instructions.sh [allocator ...]      (default: every allocator of the table)
#   benches/instructions.sh --c                   (the C library's rows only)
#
# Each figure is (I(n2) - I(n1)) / (ops(n2) - ops(n1)): two runs that differ only in their number
# of operations, so start-up, set-up and warm-up cancel out. One op is one alloc + one free (churn:
# of a random size 8..=512, freed in random order). The `bump` column is the do-nothing
# allocator (a pointer bump, free does nothing): the workload's own loop (indexing, tagging and
# checking the block); "net" is an allocator's count minus it.
#
# The C library's rows: `benches/c_pair.c` (malloc + free of 48 bytes, the loop included) under
# glibc and under the release library preloaded in each mode (POOLMALLOC_SECURE, _DEBUG).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

c_only=false
if [ "${1:-}" = --c ]; then
    c_only=true
    shift
fi
allocators=("$@")
if [ ${#allocators[@]} -eq 0 ]; then
    allocators=(poolmalloc poolmalloc-heap system jemalloc mimalloc snmalloc rpmalloc)
fi

cargo build --release --quiet -p poolmalloc-cli --bin poolmalloc
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/poolmalloc"

# instructions <case> <allocator> <n>: total instructions of one run; nothing when the run did
# not finish under valgrind (snmalloc aborts there: its platform layer refuses valgrind's mmap).
instructions() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bin" __count "$1" "$2" "$3" 2>&1 >/dev/null |
        awk '/Process terminating/ { failed = 1 }
             /I *refs:/ { gsub(",", "", $NF); refs = $NF }
             END { if (!failed) print refs }'
}

# ops <case> <allocator> <n>: the operations such a run performs.
ops() {
    "$bin" __count "$1" "$2" "$3"
}

# per_op <case> <allocator> <n1> <n2>
per_op() {
    local i1 i2 o1 o2
    i1=$(instructions "$1" "$2" "$3")
    i2=$(instructions "$1" "$2" "$4")
    o1=$(ops "$1" bump "$3")
    o2=$(ops "$1" bump "$4")
    if [ -z "$i1" ] || [ -z "$i2" ]; then
        echo "instructions.sh: $2 does not run under valgrind ($1)" >&2
        echo "n/a"
        return
    fi
    awk -v a="$i1" -v b="$i2" -v x="$o1" -v y="$o2" 'BEGIN { printf "%.1f", (b - a) / (y - x) }'
}

# c_pair_instructions <n> [env ...]: total instructions of `c_pair n` under `env`.
c_pair_instructions() {
    local n=$1
    shift
    env "$@" valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$c_pair" "$n" 2>&1 >/dev/null |
        awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}

# c_rows: per pair, for glibc and the preloaded library in each mode.
c_rows() {
    cargo build --release --quiet -p poolmalloc-capi
    c_pair="$target_dir/release/c_pair"
    cc -O2 -o "$c_pair" benches/c_pair.c
    local lib="$target_dir/release/libpoolmalloc_capi.so" name a b
    printf '\n%s\n' "C library: malloc + free of 48 bytes per pair, loop included (benches/c_pair.c)"
    for name in glibc plain secure debug; do
        local env=()
        case $name in
            glibc) ;;
            plain) env=(LD_PRELOAD="$lib") ;;
            secure) env=(LD_PRELOAD="$lib" POOLMALLOC_SECURE=1) ;;
            debug) env=(LD_PRELOAD="$lib" POOLMALLOC_DEBUG=1) ;;
        esac
        a=$(c_pair_instructions 100000 "${env[@]}")
        b=$(c_pair_instructions 300000 "${env[@]}")
        awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN { printf "%-10s %8.1f\n", n, (b - a) / 200000 }'
    done
}

if $c_only; then
    c_rows
    exit 0
fi

printf '%s\n' "instructions per op (alloc + free), valgrind $(valgrind --version | sed 's/valgrind-//'), $(uname -m)"
printf '%-10s %8s' case bump
for a in "${allocators[@]}"; do printf ' %22s' "$a (net)"; done
printf '\n'
for case in pair-16 pair-64 pair-256 pair-alone-16 pair-alone-64 pair-alone-256 churn; do
    if [ "$case" = churn ]; then n1=1; n2=3; else n1=100000; n2=300000; fi
    loop=$(per_op "$case" bump "$n1" "$n2")
    printf '%-10s %8s' "$case" "$loop"
    for a in "${allocators[@]}"; do
        total=$(per_op "$case" "$a" "$n1" "$n2")
        if [ "$total" = n/a ]; then
            printf ' %22s' "n/a"
            continue
        fi
        net=$(awk -v t="$total" -v l="$loop" 'BEGIN { printf "%.1f", t - l }')
        printf ' %22s' "$total ($net)"
    done
    printf '\n'
done
c_rows
