/*
 * expect: see include/expect.h.
 *
 * A ring of small entries per server connection; it grows to the deepest
 * pipeline a client sends and keeps that memory, so the hot path allocates
 * nothing.
 */
#include "expect.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void expect_init(ExpectQueue *q)
{
	memset(q, 0, sizeof(*q));
}

void expect_free(ExpectQueue *q)
{
	for (uint32_t i = 0; i < q->n; i++)
		free(expect_at(q, i)->name);
	free(q->items);
	memset(q, 0, sizeof(*q));
}

void expect_grow(ExpectQueue *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : 16;
	Expect *items = xmalloc(sizeof(Expect) * cap);
	for (uint32_t i = 0; i < q->n; i++)
		items[i] = *expect_at(q, i);
	free(q->items);
	q->items = items;
	q->cap = cap;
	q->head = 0;
}

void expect_skip(ExpectQueue *q, void (*on_skip)(void *arg, Expect *e), void *arg)
{
	Expect *h;
	while ((h = expect_head(q)) != NULL && h->kind != EX_SYNC) {
		Expect e;
		expect_pop(q, &e);
		on_skip(arg, &e);
		free(e.name);
	}
	q->skip_pending = h == NULL;
}

bool expect_skipping(const ExpectQueue *q)
{
	return q->skip_pending && !expect_has_sync(q);
}

bool expect_has_sync(const ExpectQueue *q)
{
	for (uint32_t i = 0; i < q->n; i++)
		if (expect_at(q, i)->kind == EX_SYNC)
			return true;
	return false;
}

void expect_copy_in(ExpectQueue *q)
{
	/* Syncs queued behind the COPY and written before the client's CopyDone/CopyFail go
	 * unanswered; with no CopyDone written yet, so do the ones still to come */
	Expect *h = expect_head(q);
	bool ended = h && q->copy_end_seq > h->seq;
	uint32_t keep = 1;
	for (uint32_t i = 1; i < q->n; i++) {
		Expect *e = expect_at(q, i);
		if (e->kind == EX_SYNC && (!ended || e->seq < q->copy_end_seq)) {
			q->units--;
			q->units_pushed--;
			q->client_units -= e->client;
			continue;
		}
		*expect_at(q, keep++) = *e;
	}
	if (q->n)
		q->n = keep;
	q->copy_in = !ended;
}
