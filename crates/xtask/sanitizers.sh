#!/usr/bin/env bash
# The test suite under the tools that see inside our arenas, one step per argument (default: all):
#   asan      nightly -Zsanitizer=address, poolmalloc's `asan` feature (free blocks poisoned),
#             LeakSanitizer on: the core's and poolmalloc's unit and integration tests
#   valgrind  memcheck over the same tests, poolmalloc's `valgrind` feature (client requests)
#   miri      the core's pure-logic unit tests under Miri (not os_pages, which trims a mapping
#             with a partial munmap, nor the large path's tests: Miri has no memalign)
# Not covered: the C library's preloaded programs under ASan (ASan's runtime must be loaded
# before any preloaded library); debug mode and the loom models (cargo xtask test runs them).
# Each tool builds in its own target directory under target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
triple=$(rustc -vV | sed -n 's/^host: //p')

step() { echo "==> sanitizers: $*" >&2; }

asan() {
    step "ASan: poolmalloc-core, poolmalloc (--features asan)"
    # --target keeps build scripts and proc macros uninstrumented; std stays uninstrumented
    # (no -Zbuild-std), which ASan tolerates: it intercepts malloc and free, not std's code.
    # LeakSanitizer is on (ASan's default on Linux). Arenas are LSan root regions while mapped
    # (core `tools`), so a large-path block (C malloc) referenced only from a pool block (rayon's
    # registry) is live, and a leaked large block is reported. Blocks from our pools are not
    # LSan allocations: a leaked small block is not reported.
    RUSTFLAGS="-Zsanitizer=address" \
        cargo +nightly test --target "$triple" --target-dir target/asan \
        -p poolmalloc-core -p poolmalloc --features poolmalloc/asan --lib --tests
}

valgrind_memcheck() {
    step "valgrind memcheck: poolmalloc-core, poolmalloc (--features valgrind)"
    # Release with debug assertions: memcheck slows code ~30x.
    local runner_var
    runner_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
    (
        export "$runner_var=valgrind --tool=memcheck --error-exitcode=97 --leak-check=no --quiet"
        CARGO_TARGET_DIR=target/valgrind CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
            cargo test --release -p poolmalloc-core -p poolmalloc --features poolmalloc/valgrind \
            --lib --tests
    )
}

miri() {
    step "Miri: poolmalloc-core unit tests"
    CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p poolmalloc-core --lib -- \
        --skip os_pages --skip large_
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan valgrind miri)
for s in "${steps[@]}"; do
    case "$s" in
        asan) asan ;;
        valgrind) valgrind_memcheck ;;
        miri) miri ;;
        *) echo "usage: $0 [asan|valgrind|miri]..." >&2; exit 2 ;;
    esac
done
step "all passed: ${steps[*]}"
