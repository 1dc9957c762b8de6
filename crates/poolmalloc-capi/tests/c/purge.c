/* Memory back to the OS in time, with no call from the program: blocks freed, then the program
 * only reads its resident set (with system calls, no malloc) until the purger thread has given
 * the pages back. Modes (argv[1]):
 *   release  free everything, then wait: RSS back, by a thread named "poolmalloc bg";
 *   fork     the same in a child forked after the parent's purger started: the child's own;
 *   calls    (POOLMALLOC_PURGER=calls, POOLMALLOC_PURGE_DELAY_MS=300) no second thread ever;
 *            later calls give memory back. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { BLOCKS = 200000, POLL_MS = 5, WAIT_MS = 2000 };
static void *blocks[BLOCKS];

/* Resident bytes, read with open/read: no allocator call. */
static long rss(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = buf;
    while (*p && *p != ' ') p++;
    return strtol(p, NULL, 10) * sysconf(_SC_PAGESIZE);
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Threads of this process, and how many are named `name` (no allocator call but opendir's,
 * made before the wait). */
static int threads(const char *name, int *named) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    *named = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        n++;
        char path[64], comm[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t k = read(fd, comm, sizeof comm - 1);
            close(fd);
            if (k > 0 && strncmp(comm, name, strlen(name)) == 0) (*named)++;
        }
    }
    if (d) closedir(d);
    return n;
}

/* Allocates and touches BLOCKS small and medium blocks, frees them all; returns the peak's
 * resident bytes above `base`. */
static long churn_once(long base) {
    for (int i = 0; i < BLOCKS; i++) {
        size_t size = (i % 16 == 0) ? 600 + (i * 131) % 8000 : 8 + (i * 37) % 500;
        blocks[i] = malloc(size);
        memset(blocks[i], 1, size);
    }
    long peak = rss() - base;
    for (int i = 0; i < BLOCKS; i++) free(blocks[i]);
    return peak;
}

/* Waits, without allocator calls, until RSS is within 2 % of the peak above `base`; the
 * milliseconds it took, or -1. */
static long released_ms(long base, long peak) {
    for (long ms = 0; ms <= WAIT_MS; ms += POLL_MS) {
        if (rss() - base <= peak / 50) return ms;
        sleep_ms(POLL_MS);
    }
    return -1;
}

static void release(void) {
    long base = rss();
    long peak = churn_once(base);
    CHECK(peak > 16L << 20);
    long ms = released_ms(base, peak);
    printf("released %ld ms after the last free (peak %ld MiB)\n", ms, peak >> 20);
    CHECK(ms >= 0);
    int named, n = threads("poolmalloc bg", &named);
    CHECK(named == 1);
    CHECK(n == 2);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "release";
    memset(blocks, 0, sizeof blocks);
    if (strcmp(mode, "release") == 0) {
        release();
    } else if (strcmp(mode, "fork") == 0) {
        release();
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            int named;
            threads("poolmalloc bg", &named);
            CHECK(named == 0); /* the parent's purger did not come along */
            release();         /* the child's own does the work */
            printf("child: %d passed, %d failed\n", check_passed, check_failed);
            fflush(stdout);
            _exit(check_failed ? 1 : 0);
        }
        int status = 0;
        CHECK(waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else if (strcmp(mode, "calls") == 0) {
        long base = rss();
        long peak = churn_once(base);
        CHECK(peak > 16L << 20);
        /* Run with a 300 ms delay (c_programs.rs): the frees end before a pass is due, and the
         * sleep outlasts two delays, which a purger thread would have used. */
        sleep_ms(700);
        int named, n = threads("poolmalloc bg", &named);
        CHECK(n == 1 && named == 0);
        CHECK(rss() - base > peak / 2); /* nothing gave it back while the program slept */
        /* Later calls that take and give back pools (a few: their own memory is warm too) run
         * the passes that are due: the first marks what waits, one a delay later gives it back. */
        for (int round = 0; round < 100 && rss() - base > peak / 50; round++) {
            for (int i = 0; i < 256; i++) blocks[i] = malloc(512);
            for (int i = 0; i < 256; i++) free(blocks[i]);
            sleep_ms(10);
        }
        CHECK(rss() - base <= peak / 50);
        n = threads("poolmalloc bg", &named);
        CHECK(n == 1);
    } else {
        fprintf(stderr, "purge: unknown mode %s\n", mode);
        return 2;
    }
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}
