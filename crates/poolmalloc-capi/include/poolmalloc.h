/* poolmalloc: a small-object allocator with per-thread caches, as a C library.
 *
 * Link with -lpoolmalloc_capi, or preload it:  LD_PRELOAD=libpoolmalloc_capi.so program
 * The malloc family follows glibc's contract (see the notes on each); poolmalloc serves requests
 * of up to 512 bytes from its pools and hands larger or over-aligned ones to the C library.
 *
 * Environment: POOLMALLOC_STATS=1 prints the stats report to stderr at exit; POOLMALLOC_STATS=json
 * prints it as JSON. Any other value is named in a one-line warning and ignored.
 */
#ifndef POOLMALLOC_H
#define POOLMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every block of 16 bytes or more is 16-byte aligned. malloc(0) returns a distinct block. */
void *malloc(size_t size);
/* free(NULL) does nothing; free keeps errno. */
void free(void *ptr);
/* NULL with errno = ENOMEM when nmemb * size overflows. */
void *calloc(size_t nmemb, size_t size);
/* realloc(NULL, n) = malloc(n); realloc(p, 0) frees p and returns NULL (glibc's choice);
 * on failure NULL with errno = ENOMEM, and p stays valid. */
void *realloc(void *ptr, size_t size);
void *reallocarray(void *ptr, size_t nmemb, size_t size);
/* EINVAL (out untouched) unless alignment is a power of two multiple of sizeof(void *). */
int posix_memalign(void **out, size_t alignment, size_t size);
/* NULL with errno = EINVAL unless alignment is a power of two. */
void *aligned_alloc(size_t alignment, size_t size);
/* An alignment that is not a power of two is rounded up to one (glibc). */
void *memalign(size_t alignment, size_t size);
void *valloc(size_t size);
void *pvalloc(size_t size);
size_t malloc_usable_size(void *ptr);

/* The stats report (as sys._debugmallocstats() shows it, and more) on stderr. */
void poolmalloc_stats_print(void);
/* The stats as JSON into buf (NUL-terminated, truncated to size - 1 bytes); returns the length
 * of the whole JSON text, so a call with size 0 asks how big a buffer to pass. */
size_t poolmalloc_stats_json(char *buf, size_t size);
/* The fragmentation snapshot as JSON, the same way: which pools pin memory (by occupancy band,
 * per class and per arena), the most wasteful pools, and what freeing would give back. */
size_t poolmalloc_fragmentation_json(char *buf, size_t size);
/* Gives this thread's pools back (their remote frees taken in) and unmaps empty arenas beyond
 * the reserve; returns the number of arenas unmapped. */
size_t poolmalloc_collect(void);

#ifdef __cplusplus
}
#endif

#endif /* POOLMALLOC_H */
