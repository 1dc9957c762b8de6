/* Misuse under the preloaded library, plain or secure mode. Each argument runs one scenario:
 * - a double free: `same`, `tiny` (an 8-byte block, which has no second word), `thread` (the
 *   block freed by another thread first), `thread-twice` (freed twice by another thread),
 *   `flush` (the pool given back to the core between the frees). Each prints the block's
 *   address ("block 0x...") and must end in the library's report and SIGABRT; it prints
 *   "survived" if not.
 * - `clean`: what must not be reported: a block that holds a freed block's first word (the
 *   "key" a double-free check looks for) freed by its owner, after a flush and by another
 *   thread; a second free by another thread of a block its owner already took back (only the
 *   owner may walk its lists: left alone, never handed out twice). Prints "N passed, N
 *   failed".
 * - `overwrite` (POOLMALLOC_SECURE=1): a write into a free block's link (a 112-byte block of a
 *   fresh pool, whose blocks are handed out in address order), then the allocation that would
 *   follow it: reported, not followed. */
#include "check.h"
#include <pthread.h>
#include <stdint.h>

static void *freed_by_thread(void *p) {
    free(p);
    return NULL;
}

static void *freed_twice_by_thread(void *p) {
    free(p);
    free(p);
    return NULL;
}

static void free_in_thread(void *p, void *(*how)(void *)) {
    pthread_t t;
    pthread_create(&t, NULL, how, p);
    pthread_join(t, NULL);
}

static size_t (*collect)(void);

static void announce(const void *p) {
    printf("block %p\n", p);
    fflush(stdout);
}

/* Distinct pointers among `n` allocations of `size` bytes (all kept until counted), `once`
 * among them at most once. */
static int all_distinct(size_t size, int n, const void *once) {
    void *blocks[512];
    int ok = 1, seen = 0;
    for (int i = 0; i < n; i++) {
        blocks[i] = malloc(size);
        seen += blocks[i] == once;
        for (int j = 0; j < i; j++)
            ok &= blocks[i] != blocks[j];
    }
    ok &= seen <= 1;
    for (int i = 0; i < n; i++)
        free(blocks[i]);
    return ok;
}

/* A freed block's first word copied into a live block of the same class, which is then freed
 * by `how` (NULL: this thread). */
static void clean_free_of_a_key_holder(void (*between)(void), void *(*how)(void *)) {
    char *keep = malloc(40), *freed = malloc(40), *holder = malloc(40);
    memset(holder, 7, 40);
    free(freed);
    memcpy(holder, freed, sizeof(uintptr_t)); /* a read of freed memory, on purpose */
    if (between)
        between();
    if (how)
        free_in_thread(holder, how);
    else
        free(holder);
    CHECK(all_distinct(40, 200, NULL));
    free(keep);
}

static void flush(void) { collect(); }

/* Four 48-byte blocks of one pool (16 KiB pools; others taken on the way are kept). */
static void same_pool(char **blocks) {
    for (;;) {
        for (int i = 0; i < 4; i++)
            blocks[i] = malloc(40);
        uintptr_t pool = (uintptr_t)blocks[0] >> 14;
        if ((uintptr_t)blocks[1] >> 14 == pool && (uintptr_t)blocks[2] >> 14 == pool &&
            (uintptr_t)blocks[3] >> 14 == pool)
            return;
    }
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "clean";
    collect = (size_t (*)(void))dlsym(RTLD_DEFAULT, "poolmalloc_collect");
    if (!collect) {
        fprintf(stderr, "poolmalloc is not preloaded\n");
        return 2;
    }
    if (!strcmp(what, "clean")) {
        clean_free_of_a_key_holder(NULL, NULL);
        clean_free_of_a_key_holder(flush, NULL);
        clean_free_of_a_key_holder(NULL, freed_by_thread);
        /* Another thread frees `twice`; the owner's confirming walk for a key holder of the
         * same pool takes it back from the remote chain; the other thread frees it again. */
        char *b[4];
        same_pool(b);
        char *keep = b[0], *freed = b[1], *holder = b[2], *twice = b[3];
        free(freed);
        memcpy(holder, freed, sizeof(uintptr_t));
        free_in_thread(twice, freed_by_thread);
        free(holder);
        free_in_thread(twice, freed_by_thread);
        CHECK(all_distinct(40, 300, twice));
        free(keep);
        return check_finish("misuse clean");
    }
    if (!strcmp(what, "same") || !strcmp(what, "tiny")) {
        char *p = malloc(!strcmp(what, "tiny") ? 8 : 40);
        announce(p);
        free(p);
        free(p);
    } else if (!strcmp(what, "thread")) {
        char *p = malloc(40);
        announce(p);
        free_in_thread(p, freed_by_thread);
        free(p);
    } else if (!strcmp(what, "thread-twice")) {
        char *keep = malloc(40), *p = malloc(40);
        announce(p);
        free_in_thread(p, freed_twice_by_thread);
        free(keep);
    } else if (!strcmp(what, "flush")) {
        char *keep = malloc(40), *p = malloc(40);
        announce(p);
        free(p);
        flush();
        free(p);
        free(keep);
    } else if (!strcmp(what, "overwrite")) {
        /* A fresh pool's blocks are handed out in address order: the block after `p` is free,
         * on this thread's allocation list. */
        char *p = malloc(100);
        char *next = p + 112;
        announce(next);
        memset(next, 0x41, 8); /* a write into a free block, on purpose */
        char *q = malloc(100);
        char *r = malloc(100);
        printf("q=%p r=%p\n", (void *)q, (void *)r);
    } else {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    printf("survived %s\n", what);
    return 0;
}
