#!/usr/bin/env bash
# Runs the `ops` fuzz target for a bounded time (seconds, default 300) on the nightly toolchain,
# with AddressSanitizer (cargo-fuzz's default) and poolmalloc's `asan` feature, then minimises the
# corpus it grew: corpus/ops is kept in the repository, so each run starts where the last ended.
# The hardening is on: secure mode (poolmalloc's `secure` feature) and the double-free check.
# `run.sh SECONDS debug` runs it in debug mode (poolmalloc's `debug` feature) instead.
# Needs `cargo install cargo-fuzz`. A failure leaves its input in artifacts/ops/ and exits non-zero;
# replay it with `cargo +nightly fuzz run ops artifacts/ops/<file>`, show it with `cargo +nightly
# fuzz fmt ops artifacts/ops/<file>`.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
case "${2:-}" in
    "") features=() ;;
    debug) features=(--features debug) ;;
    *) echo "usage: $0 [seconds] [debug]" >&2; exit 2 ;;
esac
# -max_len keeps inputs (and the kept corpus) small; 4 GiB allows many 1 MiB blocks.
cargo +nightly fuzz run "${features[@]}" ops -- -max_total_time="$seconds" -max_len=2048 -rss_limit_mb=4096 \
    -print_final_stats=1
cargo +nightly fuzz cmin "${features[@]}" ops -- -max_len=2048 -rss_limit_mb=4096
echo "corpus: $(ls corpus/ops | wc -l) inputs, $(du -sh corpus/ops | cut -f1)"
