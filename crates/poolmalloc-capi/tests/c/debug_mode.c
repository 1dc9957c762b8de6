/* Debug mode from C (run with POOLMALLOC_DEBUG=1).
 * `debug_mode fill` checks the fills, pads and sizes of small and large blocks; each other
 * argument plants one fault, which the library must report on one line and abort on: the
 * program prints "survived" if not. */
#include "check.h"
#include <malloc.h>
#include <stdint.h>

/* Not inlined: GCC would rightly flag the reads of the pads around a block. */
__attribute__((noinline)) static int all(const unsigned char *p, size_t n, unsigned char byte) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != byte)
            return 0;
    return 1;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "fill";
    unsigned char *p = malloc(40);
    /* Past the small threshold: from the C library, laid out and tracked by poolmalloc. */
    unsigned char *big = malloc(100000);
    if (!strcmp(what, "fill")) {
        CHECK(p && all(p, 40, 0xCD));
        CHECK(all(p - 16, 16, 0xFD) && all(p + 40, 16, 0xFD));
        CHECK(malloc_usable_size(p) == 40);
        memset(p, 7, 40);
        unsigned char *q = realloc(p, 100);
        CHECK(q && all(q, 40, 7) && all(q + 40, 60, 0xCD));
        CHECK(malloc_usable_size(q) == 100);
        free(q);
        /* The freed block sits in the thread cache: still mapped, now dead. */
        CHECK(all(q + 16, 84, 0xDD));
        unsigned char *z = calloc(10, 3);
        CHECK(z && all(z, 30, 0) && all(z + 30, 16, 0xFD));
        free(z);
        CHECK(big && all(big, 100000, 0xCD));
        CHECK(all(big - 16, 16, 0xFD) && all(big + 100000, 16, 0xFD));
        CHECK(malloc_usable_size(big) == 100000);
        memset(big, 9, 100000);
        unsigned char *bigger = realloc(big, 200000);
        CHECK(bigger && all(bigger, 100000, 9) && all(bigger + 100000, 100000, 0xCD));
        CHECK(all(bigger + 200000, 16, 0xFD));
        free(bigger);
        unsigned char *aligned = aligned_alloc(4096, 5000);
        CHECK(aligned && (uintptr_t)aligned % 4096 == 0 && all(aligned - 16, 16, 0xFD));
        CHECK(malloc_usable_size(aligned) == 5000 && all(aligned + 5000, 16, 0xFD));
        free(aligned);
        printf("%d passed, %d failed\n", check_passed, check_failed);
        return check_failed != 0;
    }
    if (!strcmp(what, "double")) {
        free(p);
        free(p);
    } else if (!strcmp(what, "interior")) {
        free(p + 8);
    } else if (!strcmp(what, "large-double")) {
        free(big);
        free(big);
    } else if (!strcmp(what, "foreign")) {
        /* Never read: no table entry, no recent free. */
        long on_stack[8];
        free(&on_stack[2]);
    } else {
        /* Through a volatile pointer: GCC rightly rejects the out-of-bounds writes otherwise. */
        unsigned char *volatile planted = p;
        if (!strcmp(what, "overflow"))
            planted[40] = 1;
        else if (!strcmp(what, "underflow"))
            planted[-1] = 0;
        if (!strcmp(what, "large-overflow")) {
            unsigned char *volatile planted_big = big;
            planted_big[100000] = 1;
            free(big);
        }
        free(p);
    }
    printf("survived %s\n", what);
    return 1;
}
