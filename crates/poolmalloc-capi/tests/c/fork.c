/* fork from a multi-threaded parent whose threads allocate all the time: the child can allocate
 * (every allocator lock was taken before fork and released in both processes). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static atomic_int stop;

static void *churn(void *arg) {
    (void)arg;
    void *held[64] = {0};
    unsigned i = 0;
    while (!atomic_load(&stop)) {
        unsigned k = i++ % 64;
        free(held[k]);
        held[k] = malloc(8 + (i * 37) % 600);
    }
    for (int k = 0; k < 64; k++) free(held[k]);
    return NULL;
}

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int n = 0; n < 50; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            /* The child: allocate across classes and the large path, then exit. */
            void *p[200];
            for (int i = 0; i < 200; i++) {
                p[i] = malloc(1 + i * 7);
                if (!p[i]) _exit(2);
                memset(p[i], i, 1 + i * 7);
            }
            void *big = malloc(1 << 20);
            for (int i = 0; i < 200; i++) free(p[i]);
            free(big);
            _exit(big ? 0 : 3);
        }
        int status = 0;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return check_finish("fork");
}
