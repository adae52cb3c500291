/*
 * Small definitions every module uses: time in microseconds, array sizes,
 * allocation that aborts on out-of-memory (a pooler that cannot allocate a
 * few bytes cannot continue safely; PgBouncer takes the same stance for its
 * core objects).
 */
#ifndef PGTENANT_COMMON_H
#define PGTENANT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int64_t usec_t;

#define USEC_PER_SEC      1000000LL
#define USEC_PER_MS       1000LL
#define ARRAY_SIZE(a)     (sizeof(a) / sizeof((a)[0]))
#define MUST_CHECK        __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

#ifndef PGTENANT_VERSION
#define PGTENANT_VERSION "0.1.0"
#endif

/* Monotonic clock, and the cached "now" of the current event-loop turn. */
usec_t time_mono_usec(void);
usec_t time_wall_usec(void);
extern usec_t g_now;
void time_update(void);

void *xmalloc(size_t n);
/* n bytes at an address that is a multiple of align (a power of two); free() frees them. */
void *xaligned(size_t align, size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/*
 * Objects that may still be pointed at after a reload (old configurations,
 * removed tenants, old tenant-state strings) are kept here rather than freed:
 * reloads are rare, so the cost is small, and nothing dangles. retired_free_all
 * releases them at exit.
 */
void retire(void *p, void (*release)(void *));
void retired_free_all(void);

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t strlcpy_safe(char *dst, const char *src, size_t size);

#endif
