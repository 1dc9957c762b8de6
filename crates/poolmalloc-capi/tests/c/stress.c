/* After mimalloc's test-stress: threads allocate cookie-checked blocks, free their own and swap
 * blocks through a shared slot array (so many frees are cross-thread); every round the threads
 * end and new ones start. Built against the system malloc, run with LD_PRELOAD. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

#define THREADS 8
#define ROUNDS 10
#define SLOTS 4096
#define OPS 20000

static _Atomic(uintptr_t) slots[SLOTS];
static atomic_long corrupt;

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uintptr_t alloc_items(uint64_t *rng) {
    uint64_t r = next(rng) % 100;
    size_t words = r == 0 ? 64 + next(rng) % 1000 : r < 10 ? 16 + next(rng) % 48 : 1 + next(rng) % 15;
    uint64_t *p = malloc(words * 8);
    if (!p) {
        atomic_fetch_add(&corrupt, 1);
        return 0;
    }
    uint64_t cookie = (uintptr_t)p ^ 0x5a5a5a5a5a5a5a5aull;
    p[0] = words;
    for (size_t i = 1; i < words; i++) p[i] = cookie ^ i;
    return (uintptr_t)p;
}

static void free_items(uintptr_t x) {
    if (!x) return;
    uint64_t *p = (uint64_t *)x;
    uint64_t cookie = x ^ 0x5a5a5a5a5a5a5a5aull;
    size_t words = p[0];
    if (words == 0 || words > 1100) {
        atomic_fetch_add(&corrupt, 1);
        return;
    }
    for (size_t i = 1; i < words; i++) {
        if (p[i] != (cookie ^ i)) {
            atomic_fetch_add(&corrupt, 1);
            break;
        }
    }
    free(p);
}

static void *worker(void *arg) {
    uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    uintptr_t mine[512];
    size_t n = 0;
    for (int i = 0; i < OPS; i++) {
        uint64_t r = next(&rng) % 8;
        if (r < 4 && n < 512) {
            mine[n++] = alloc_items(&rng);
        } else if (r < 6 && n > 0) {
            size_t k = next(&rng) % n;
            free_items(mine[k]);
            mine[k] = mine[--n];
        } else if (n > 0) {
            size_t k = next(&rng) % n;
            uintptr_t theirs = atomic_exchange(&slots[next(&rng) % SLOTS], mine[k]);
            mine[k] = mine[--n];
            free_items(theirs);
        }
    }
    while (n > 0) free_items(mine[--n]);
    return NULL;
}

int main(void) {
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(round * THREADS + i + 1)) == 0);
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < SLOTS; i++) free_items(atomic_exchange(&slots[i], 0));
    CHECK(atomic_load(&corrupt) == 0);
    char json[16384];
    CHECK(served_json(json, sizeof json) > 0);
    CHECK(json_number(json, "mapped_ever") >= 1);
    CHECK(json_number(json, "identity_holds") == -1 || strstr(json, "\"identity_holds\":true") != NULL);
    return check_finish("stress");
}
