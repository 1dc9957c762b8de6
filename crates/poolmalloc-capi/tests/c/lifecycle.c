/* The orders in which a program's threads and processes start and end, around the allocator:
 * each subcommand runs one and prints a line that must be the same under glibc's malloc and
 * under the preloaded library (the harness compares output and exit status, within a time
 * limit, so a hang fails the test). Under poolmalloc each also checks, through its stats, that
 * no exited thread is still counted (its cache drained, its state gone from the live list). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

int atfork_lib_held(void); /* libatfork_lib.so, linked */

/* Under poolmalloc: after this thread's cache is flushed, no thread owns a pool — every other
 * thread has ended, so a pool counted as owned would be a dead thread's. */
static void no_dead_thread(const char *what) {
    size_t (*collect)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "poolmalloc_collect");
    if (!collect) return;
    collect();
    static char json[1 << 16];
    if (served_json(json, sizeof json) == 0) return;
    long owned = 0;
    for (const char *at = json; (at = strstr(at, "\"pools_owned\":")) != NULL; at++)
        owned += strtol(at + strlen("\"pools_owned\":"), NULL, 10);
    if (owned != 0 || !strstr(json, "\"identity_holds\":true")) {
        printf("%s: %ld pools still owned by ended threads\n", what, owned);
        exit(1);
    }
}

static atomic_int stop;

static void *churn(void *arg) {
    (void)arg;
    void *held[32] = {0};
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        unsigned k = i % 32;
        free(held[k]);
        held[k] = malloc(16 + (i * 53) % 700);
    }
    for (int k = 0; k < 32; k++) free(held[k]);
    return NULL;
}

static int wait_child(pid_t pid) {
    int status = -1;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Forks from a threaded parent whose linked library's fork handlers allocate (ATFORK_ALLOC). */
static void fork_handlers(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, NULL);
    int ok = 0;
    for (int n = 0; n < 20; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p = malloc(100);
            int fine = p != NULL && atfork_lib_held() == 0;
            free(p);
            _exit(fine ? 0 : 1);
        }
        ok += wait_child(pid);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(atfork_lib_held() == 0);
    no_dead_thread("fork-handlers");
    printf("fork-handlers: %d of 20 children exited 0\n", ok);
}

static pthread_key_t key;

/* A thread's first allocator call: freeing a block another thread made, from a key
 * destructor, then a block of its own. */
static void free_in_destructor(void *block) {
    free(block);
    void *p = malloc(200);
    memset(p, 1, 200);
    free(p);
}

static void *set_key(void *block) {
    pthread_setspecific(key, block);
    return NULL;
}

static void key_destructor(void) {
    pthread_key_create(&key, free_in_destructor);
    int threads = 0;
    for (int round = 0; round < 20; round++) {
        pthread_t t[16];
        for (int i = 0; i < 16; i++) {
            void *block = malloc(64);
            memset(block, i, 64);
            threads += pthread_create(&t[i], NULL, set_key, block) == 0;
        }
        for (int i = 0; i < 16; i++) pthread_join(t[i], NULL);
        no_dead_thread("key-destructor");
    }
    printf("key-destructor: %d threads\n", threads);
}

/* A C++ `thread_local` destructor, registered as the C++ runtime does. */
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;

static void tls_dtor(void *arg) {
    free(arg);
    free(malloc(300));
}

static void *with_tls_dtor(void *allocate_first) {
    if (allocate_first) free(malloc(40));
    __cxa_thread_atexit_impl(tls_dtor, malloc(24), &__dso_handle);
    return NULL;
}

static void tls_destructor(void) {
    int threads = 0;
    for (int round = 0; round < 8; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            threads += pthread_create(&t[i], NULL, with_tls_dtor, (void *)(long)(i % 2)) == 0;
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        no_dead_thread("tls-destructor");
    }
    printf("tls-destructor: %d threads\n", threads);
}

/* After main: an atexit handler and an ELF destructor allocate and free, while a thread that
 * still runs keeps allocating. */
static int at_exit_mode;

static void at_exit(void) {
    char *p = malloc(5000);
    memset(p, 2, 5000);
    free(p);
    printf("atexit: ran\n");
    fflush(stdout);
}

__attribute__((destructor)) static void elf_destructor(void) {
    if (!at_exit_mode) return;
    void *blocks[100];
    for (int i = 0; i < 100; i++) blocks[i] = malloc(8 + i);
    for (int i = 0; i < 100; i++) free(blocks[i]);
    printf("destructor: ran\n");
    fflush(stdout);
}

static void after_main(void) {
    at_exit_mode = 1;
    atexit(at_exit);
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    pthread_detach(t);
    printf("after-main: returning\n");
    fflush(stdout);
}

/* Threads start and end while another thread forks. */
static void *short_lived(void *arg) {
    (void)arg;
    free(malloc(64));
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

static void exit_while_fork(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, spawner, NULL);
    int ok = 0;
    for (int n = 0; n < 40; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            pthread_t c;
            int fine = pthread_create(&c, NULL, short_lived, NULL) == 0;
            fine = fine && pthread_join(c, NULL) == 0;
            free(malloc(128));
            _exit(fine ? 0 : 1);
        }
        ok += wait_child(pid);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    no_dead_thread("exit-while-fork");
    printf("exit-while-fork: %d of 40 children exited 0\n", ok);
}

/* fork from a thread that is not the main one; the child allocates and starts a thread. */
static void *forker(void *arg) {
    int *ok = arg;
    for (int n = 0; n < 10; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *held[50];
            for (int i = 0; i < 50; i++) held[i] = malloc(32 + i * 9);
            pthread_t c;
            int fine = pthread_create(&c, NULL, short_lived, NULL) == 0;
            fine = fine && pthread_join(c, NULL) == 0;
            for (int i = 0; i < 50; i++) free(held[i]);
            _exit(fine ? 0 : 1);
        }
        *ok += wait_child(pid);
    }
    return NULL;
}

static void fork_from_thread(void) {
    pthread_t churner, t;
    pthread_create(&churner, NULL, churn, NULL);
    int ok = 0;
    pthread_create(&t, NULL, forker, &ok);
    pthread_join(t, NULL);
    atomic_store(&stop, 1);
    pthread_join(churner, NULL);
    no_dead_thread("fork-from-thread");
    printf("fork-from-thread: %d of 10 children exited 0\n", ok);
}

/* pthread_exit from a key destructor, the thread's first allocator call just before. */
static void exit_in_destructor(void *block) {
    free(block);
    free(malloc(90));
    pthread_exit(NULL);
}

static void pthread_exit_in_destructor(void) {
    pthread_key_create(&key, exit_in_destructor);
    int threads = 0;
    for (int round = 0; round < 10; round++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            threads += pthread_create(&t[i], NULL, set_key, malloc(56)) == 0;
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        no_dead_thread("pthread-exit-in-destructor");
    }
    printf("pthread-exit-in-destructor: %d threads\n", threads);
}

/* dlopen and dlclose of a library that allocates in its constructor and destructor. */
static void dlopen_close(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/libctor_lib.so", dir);
    int rounds = 0;
    for (int n = 0; n < 20; n++) {
        void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            printf("dlopen: %s\n", dlerror());
            return;
        }
        int (*sum)(void) = (int (*)(void))dlsym(lib, "ctor_lib_sum");
        CHECK(sum && sum() == 63 * 64 / 2);
        rounds += dlclose(lib) == 0;
    }
    no_dead_thread("dlopen");
    printf("dlopen: %d rounds\n", rounds);
}

/* dlopen of the library itself, not preloaded: glibc refuses it (its thread-local word is
   initial-exec, and a library loaded after start-up has no static TLS for it) or it serves the
   calls made through the handle; never a crash. */
static void dlopen_self(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        printf("dlopen-self: refused: %s\n", dlerror());
        return;
    }
    void *(*lib_malloc)(size_t) = (void *(*)(size_t))dlsym(lib, "malloc");
    void (*lib_free)(void *) = (void (*)(void *))dlsym(lib, "free");
    CHECK(lib_malloc && lib_free);
    int served = 0;
    for (int i = 0; i < 1000; i++) {
        void *p = lib_malloc(48);
        served += p != NULL;
        lib_free(p);
    }
    printf("dlopen-self: served %d\n", served);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "fork-handlers")) fork_handlers();
    else if (!strcmp(what, "key-destructor")) key_destructor();
    else if (!strcmp(what, "tls-destructor")) tls_destructor();
    else if (!strcmp(what, "after-main")) after_main();
    else if (!strcmp(what, "exit-while-fork")) exit_while_fork();
    else if (!strcmp(what, "fork-from-thread")) fork_from_thread();
    else if (!strcmp(what, "pthread-exit-in-destructor")) pthread_exit_in_destructor();
    else if (!strcmp(what, "dlopen") && argc > 2) dlopen_close(argv[2]);
    else if (!strcmp(what, "dlopen-self") && argc > 2) dlopen_self(argv[2]);
    else {
        fprintf(stderr, "usage: lifecycle ORDER [DIR]\n");
        return 2;
    }
    return check_failed == 0 ? 0 : 1;
}
