/* A tiny checker shared by the C test programs: counts passes and failures, prints each failure
 * with its line, and ends with the "N passed, N failed" line the test harness reads. */
#ifndef CHECK_H
#define CHECK_H
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond) {                                                                     \
            check_passed++;                                                             \
        } else {                                                                        \
            check_failed++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

/* The preloaded library's JSON stats, through dlsym (the program is built against glibc). */
static size_t served_json(char *buf, size_t size) {
    size_t (*stats_json)(char *, size_t) =
        (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "poolmalloc_stats_json");
    if (!stats_json) {
        buf[0] = 0;
        return 0;
    }
    return stats_json(buf, size);
}

/* A number after "key": in the JSON stats (first occurrence), or -1. */
static long json_number(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    return at ? strtol(at + strlen(pattern), NULL, 10) : -1;
}

static int check_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}
#endif
