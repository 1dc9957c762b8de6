/* Medium blocks (513 B..32 KiB) through the preloaded library: served from its own pools (the
 * stats count them), malloc_usable_size exact (the class's block size), realloc in place within a
 * class and moved (contents kept) across classes, aligned requests, frees from another thread,
 * and everything back to the OS once freed. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

#include "check.h"

#define BLOCKS 3000

/* The medium class sizes: four per doubling from 640 to 32768 (each step a quarter of the
 * largest power of two not above the size before it). */
static size_t class_size(size_t n) {
    size_t size = 640;
    while (size < n) {
        size_t pow2 = 1;
        while (pow2 * 2 <= size) pow2 *= 2;
        size += pow2 / 4;
    }
    return size;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static int intact(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static void *free_all(void *arg) {
    void **blocks = arg;
    for (size_t i = 0; i < BLOCKS; i++) free(blocks[i]);
    return NULL;
}

static long medium_pools_in_use(void) {
    static char json[1 << 16];
    served_json(json, sizeof json);
    /* Classes 64 and up are medium: count their pools from the per-class entries. */
    long pools = 0;
    for (const char *at = json; (at = strstr(at, "{\"class\":")) != NULL; at++) {
        long class = strtol(at + 9, NULL, 10);
        if (class >= 64) pools += json_number(at, "pools_used") + json_number(at, "pools_full");
    }
    return pools;
}

int main(void) {
    /* Exact usable sizes, every size class boundary and its neighbours. */
    size_t sizes[] = {513, 640, 641, 768, 1000, 1024, 1025, 4096, 4097, 10000, 16384, 20481, 32768};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL && (uintptr_t)p % 16 == 0);
        CHECK(malloc_usable_size(p) == class_size(sizes[i]));
        fill(p, sizes[i], (unsigned)i);
        CHECK(intact(p, sizes[i], (unsigned)i));
        free(p);
    }

    /* Realloc: in place within the class, moved with its bytes across classes. */
    unsigned char *p = malloc(700);
    fill(p, 700, 3);
    CHECK(realloc(p, 768) == p);
    unsigned char *q = realloc(p, 5000);
    CHECK(q != NULL && q != p && intact(q, 700, 3));
    CHECK(malloc_usable_size(q) == class_size(5000));
    unsigned char *r = realloc(q, 600);
    CHECK(r != NULL && intact(r, 600, 3));
    free(r);

    /* Aligned requests a medium class honours (up to 64), and one it does not. */
    void *a64 = memalign(64, 3000);
    CHECK(a64 != NULL && (uintptr_t)a64 % 64 == 0);
    CHECK(malloc_usable_size(a64) >= 3000);
    void *a4k = aligned_alloc(4096, 8192);
    CHECK(a4k != NULL && (uintptr_t)a4k % 4096 == 0);
    free(a64);
    free(a4k);

    /* Many blocks: counted in the medium pools; freed by another thread; all of it goes back. */
    static void *blocks[BLOCKS];
    uint64_t rng = 88172645463325252ull;
    for (size_t i = 0; i < BLOCKS; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t n = 513 + rng % (32768 - 512);
        blocks[i] = malloc(n);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 0xAB, n);
    }
    CHECK(medium_pools_in_use() >= 100);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_all, blocks) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* This thread still owns the pools; a fresh allocation takes the remote frees back. */
    for (int round = 0; round < 2; round++) {
        void *again[BLOCKS];
        for (size_t i = 0; i < BLOCKS; i++) again[i] = malloc(2000);
        for (size_t i = 0; i < BLOCKS; i++) free(again[i]);
    }
    /* The thread keeps one emptied pool of each kind until it collects. */
    size_t (*collect)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "poolmalloc_collect");
    CHECK(collect != NULL);
    if (collect) collect();
    static char json[1 << 16];
    served_json(json, sizeof json);
    CHECK(json_number(json, "live") == 0);
    CHECK(medium_pools_in_use() == 0);
    return check_finish("medium");
}
