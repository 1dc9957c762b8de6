/* The C library's fast path, for benches/instructions.sh: `c_pair N` mallocs and frees one
 * 48-byte block N times (each written, so neither call can be left out). */
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    for (long i = 0; i < n; i++) {
        volatile char *p = malloc(48);
        p[0] = (char)i;
        free((void *)p);
    }
    return 0;
}
