/*
 * common: allocation wrappers that abort on exhaustion, and the clock.
 * g_now is refreshed once per event-loop turn; timeouts compare against it
 * so hot paths never call clock_gettime themselves.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

usec_t g_now;

usec_t time_mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

usec_t time_wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

void time_update(void)
{
	g_now = time_mono_usec();
}

static void out_of_memory(size_t n)
{
	fprintf(stderr, "pgtenant: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		out_of_memory(n);
	return p;
}

void *xaligned(size_t align, size_t n)
{
	size_t size = (n + align - 1) / align * align; /* aligned_alloc wants a multiple */
	void *p = aligned_alloc(align, size ? size : align);
	if (!p)
		out_of_memory(size);
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		out_of_memory(count * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		out_of_memory(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

typedef struct Retired {
	void *p;
	void (*release)(void *);
} Retired;

static Retired *retired;
static size_t n_retired, cap_retired;

void retire(void *p, void (*release)(void *))
{
	if (!p)
		return;
	if (n_retired == cap_retired) {
		cap_retired = cap_retired ? cap_retired * 2 : 16;
		retired = xrealloc(retired, sizeof(Retired) * cap_retired);
	}
	retired[n_retired].p = p;
	retired[n_retired].release = release ? release : free;
	n_retired++;
}

void retired_free_all(void)
{
	while (n_retired > 0) {
		n_retired--;
		retired[n_retired].release(retired[n_retired].p);
	}
	free(retired);
	retired = NULL;
	cap_retired = 0;
}

size_t strlcpy_safe(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}
