/* A library the lifecycle program dlopens and dlcloses: it allocates in its constructor and
 * frees (and allocates and frees again) in its destructor. */
#include <stdlib.h>
#include <string.h>

static char *kept[64];

__attribute__((constructor)) static void load(void) {
    for (int i = 0; i < 64; i++) {
        kept[i] = malloc(16 + i * 40);
        memset(kept[i], i, 16 + i * 40);
    }
}

__attribute__((destructor)) static void unload(void) {
    for (int i = 0; i < 64; i++) {
        free(kept[i]);
        kept[i] = NULL;
    }
    free(malloc(3000));
}

/* The sum of the first byte of each block: the program checks the library saw its own data. */
int ctor_lib_sum(void) {
    int sum = 0;
    for (int i = 0; i < 64; i++) sum += kept[i][0];
    return sum;
}
