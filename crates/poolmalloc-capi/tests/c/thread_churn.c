/* Threads created and ended in a loop leak nothing: once they are gone, every block they cached
 * is back in the pools (blocks in use return to where they were). */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"

static void *work(void *arg) {
    (void)arg;
    void *p[300];
    for (int i = 0; i < 300; i++) p[i] = malloc(1 + (i * 13) % 500);
    for (int i = 0; i < 300; i++) free(p[i]);
    return NULL;
}

static long blocks_in_use(void) {
    char json[16384];
    served_json(json, sizeof json);
    /* Sum "blocks_out" over the classes. */
    long total = 0;
    for (const char *at = strstr(json, "\"blocks_out\":"); at; at = strstr(at + 1, "\"blocks_out\":"))
        total += strtol(at + strlen("\"blocks_out\":"), NULL, 10);
    return total;
}

int main(void) {
    /* Warm up as many threads at once as the loop runs: glibc keeps the stacks (and their TLS
     * vectors, from malloc) of ended threads for reuse. */
    pthread_t warm[4];
    for (int i = 0; i < 4; i++) pthread_create(&warm[i], NULL, work, NULL);
    for (int i = 0; i < 4; i++) pthread_join(warm[i], NULL);
    long before = blocks_in_use();
    for (int round = 0; round < 100; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, work, NULL) == 0);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    long after = blocks_in_use();
    CHECK(before > 0);
    CHECK(after == before);
    if (after != before) fprintf(stderr, "blocks in use: %ld before, %ld after\n", before, after);
    return check_finish("thread_churn");
}
