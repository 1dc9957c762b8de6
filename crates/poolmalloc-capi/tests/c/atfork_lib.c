/* A shared library the lifecycle program links: its constructor runs before the preloaded
 * allocator's start-up, so its fork handlers are registered first — its prepare handler runs
 * after the allocator's (which has taken every allocator lock), its parent and child handlers
 * before the allocator's. ATFORK_ALLOC says which of them allocate: "prepare", "child",
 * "parent" (a comma-separated list), each thousands of blocks of one size. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 4000
#define SIZE 48

static void *held[BLOCKS];
static int in_prepare, in_child, in_parent;

static void take(void) {
    for (int i = 0; i < BLOCKS; i++) {
        held[i] = malloc(SIZE);
        memset(held[i], 0x5a, SIZE);
    }
}

static void give(void) {
    for (int i = 0; i < BLOCKS; i++) {
        free(held[i]);
        held[i] = NULL;
    }
}

static void prepare(void) {
    if (in_prepare) take();
}

/* Whatever prepare took goes back in both processes; the child and parent handlers then take
 * and give a round of their own. */
static void parent(void) {
    if (in_prepare) give();
    if (in_parent) {
        take();
        give();
    }
}

static void child(void) {
    if (in_prepare) give();
    if (in_child) {
        take();
        give();
    }
}

__attribute__((constructor)) static void register_handlers(void) {
    const char *which = getenv("ATFORK_ALLOC");
    if (which) {
        in_prepare = strstr(which, "prepare") != NULL;
        in_child = strstr(which, "child") != NULL;
        in_parent = strstr(which, "parent") != NULL;
    }
    pthread_atfork(prepare, parent, child);
}

/* Blocks the prepare handler holds (0 outside a fork): the program checks it is empty again. */
int atfork_lib_held(void) {
    int n = 0;
    for (int i = 0; i < BLOCKS; i++) n += held[i] != NULL;
    return n;
}
