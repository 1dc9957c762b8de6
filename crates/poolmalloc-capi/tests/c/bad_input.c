/* Every bad-input case of the malloc family gets its documented answer (poolmalloc.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int main(void) {
    char json[8192];
    CHECK(served_json(json, sizeof json) > 0); /* the preloaded poolmalloc answers */

    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    void *c = realloc(NULL, 0);
    CHECK(c != NULL && c != a && c != b);
    free(NULL);
    errno = 0;
    CHECK(realloc(c, 0) == NULL); /* frees c */
    free(a);
    free(b);

    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc((size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(1, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);

    char *p = malloc(40);
    CHECK(p != NULL);
    memset(p, 'x', 40);
    errno = 0;
    CHECK(reallocarray(p, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(p[0] == 'x' && p[39] == 'x'); /* p is still valid */
    char *q = reallocarray(p, 10, 10);
    CHECK(q != NULL && q[39] == 'x');
    free(q);

    void *out = (void *)0x1234;
    CHECK(posix_memalign(&out, 3, 16) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 4, 16) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 0, 16) == EINVAL && out == (void *)0x1234);
    CHECK(posix_memalign(&out, 24, 16) == EINVAL && out == (void *)0x1234);
    errno = 0;
    CHECK(aligned_alloc(3, 16) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(aligned_alloc(48, 96) == NULL && errno == EINVAL);

    /* Alignments from 1 to 2 MiB, small and large sizes. */
    size_t sizes[] = {1, 24, 100, 512, 4000};
    for (size_t align = 1; align <= 2u << 20; align <<= 1) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *x = aligned_alloc(align, sizes[i]);
            CHECK(x != NULL && (uintptr_t)x % align == 0);
            memset(x, 1, sizes[i]);
            free(x);
            void *y = memalign(align, sizes[i]);
            CHECK(y != NULL && (uintptr_t)y % align == 0);
            free(y);
            if (align >= sizeof(void *)) {
                void *z = NULL;
                CHECK(posix_memalign(&z, align, sizes[i]) == 0 && z && (uintptr_t)z % align == 0);
                free(z);
            }
        }
    }
    void *v = valloc(100), *pv = pvalloc(100);
    CHECK(v && (uintptr_t)v % 4096 == 0 && pv && (uintptr_t)pv % 4096 == 0);
    CHECK(malloc_usable_size(pv) >= 4096);
    free(v);
    free(pv);

    /* 16-byte alignment from 16 bytes up; usable size at least what was asked. */
    int misaligned = 0, short_usable = 0;
    for (size_t size = 0; size <= 70000; size += (size < 1100 ? 1 : 97)) {
        void *x = malloc(size);
        if (size >= 16 && (uintptr_t)x % 16 != 0) misaligned++;
        if (malloc_usable_size(x) < size) short_usable++;
        free(x);
    }
    CHECK(misaligned == 0);
    CHECK(short_usable == 0);
    CHECK(malloc_usable_size(NULL) == 0);

    /* free keeps errno, for our blocks and the large path's. */
    void *small = malloc(64), *big = malloc(100000);
    errno = 4321;
    free(small);
    CHECK(errno == 4321);
    free(big);
    CHECK(errno == 4321);

    /* calloc clears blocks that come back dirty from the cache. */
    unsigned char *d = malloc(200);
    memset(d, 0xff, 200);
    free(d);
    unsigned char *z = calloc(1, 200);
    int dirty = 0;
    for (int i = 0; i < 200; i++) dirty |= z[i];
    CHECK(z != NULL && dirty == 0);
    free(z);

    CHECK(served_json(json, sizeof json) > 0);
    CHECK(json_number(json, "mapped_ever") >= 1);
    /* Size 0 asks for the length and writes nothing; a short buffer is cut and terminated. */
    char tiny[8] = "xxxxxxx";
    size_t whole = served_json(NULL, 0);
    CHECK(whole > 100 && served_json(tiny, sizeof tiny) == whole && strcmp(tiny, "{\"class") == 0);
    size_t (*frag_json)(char *, size_t) =
        (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "poolmalloc_fragmentation_json");
    static char frag[1 << 16];
    CHECK(frag_json != NULL && frag_json(frag, sizeof frag) > 2 && frag[0] == '{');
    CHECK(json_number(json, "allocs_total") >= 1); /* the large path counted */
    return check_finish("bad_input");
}
