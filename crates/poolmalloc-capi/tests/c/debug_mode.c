/* Debug mode from C (library built with `--features debug`, run with POOLMALLOC_DEBUG=1).
 * `debug_mode fill` checks the fills, pads and sizes; each other argument plants one fault, which
 * the library must report on one line and abort on: the program prints "survived" if not. */
#include "check.h"
#include <malloc.h>

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
        printf("%d passed, %d failed\n", check_passed, check_failed);
        return check_failed != 0;
    }
    if (!strcmp(what, "double")) {
        free(p);
        free(p);
    } else if (!strcmp(what, "interior")) {
        free(p + 8);
    } else {
        /* Through a volatile pointer: GCC rightly rejects the out-of-bounds writes otherwise. */
        unsigned char *volatile planted = p;
        if (!strcmp(what, "overflow"))
            planted[40] = 1;
        else if (!strcmp(what, "underflow"))
            planted[-1] = 0;
        free(p);
    }
    printf("survived %s\n", what);
    return 1;
}
