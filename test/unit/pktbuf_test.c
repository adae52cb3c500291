/*
 * pktbuf: buffers built in several threads at once (pgtenant migrate's jobs) never share a
 * block, and a thread's block stack is drained when it ends.
 */
#include "pktbuf.h"
#include "unit.h"

#include <pthread.h>
#include <stdlib.h>

#define THREADS 4
#define ROUNDS  20000

static void *build(void *arg)
{
	long id = (long)arg, bad = 0;
	char want[64];

	for (int i = 0; i < ROUNDS; i++) {
		Buf a, b;
		int n = snprintf(want, sizeof(want), "thread %ld round %d", id, i);
		buf_init(&a);
		buf_init(&b);
		buf_puts(&a, want);
		buf_puts(&b, "other");
		buf_puts(&a, " end");
		if (a.len != (size_t)n + 4 || memcmp(a.data, want, (size_t)n) != 0 ||
		    memcmp(a.data + n, " end", 4) != 0 || b.len != 5 ||
		    memcmp(b.data, "other", 5) != 0)
			bad++;
		buf_free(&b);
		buf_free(&a);
	}
	buf_cache_drain();
	return (void *)bad;
}

static void test_threads_never_share_a_block(void)
{
	pthread_t t[THREADS];
	long bad = 0;

	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, build, (void *)i) == 0);
	for (int i = 0; i < THREADS; i++) {
		void *r;
		CHECK(pthread_join(t[i], &r) == 0);
		bad += (long)r;
	}
	CHECK_MSG(bad == 0, "%ld buffers were written over by another thread", bad);
}

int main(void)
{
	test_threads_never_share_a_block();
	return unit_finish("pktbuf");
}
