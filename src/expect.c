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

static inline bool is_unit(uint8_t kind)
{
	return kind == EX_SYNC || kind == EX_QUERY || kind == EX_FUNCALL;
}

static inline Expect *at(const ExpectQueue *q, uint32_t i)
{
	return &q->items[(q->head + i) & (q->cap - 1)];
}

void expect_init(ExpectQueue *q)
{
	memset(q, 0, sizeof(*q));
}

void expect_free(ExpectQueue *q)
{
	for (uint32_t i = 0; i < q->n; i++)
		free(at(q, i)->name);
	free(q->items);
	memset(q, 0, sizeof(*q));
}

ExpectKind expect_kind_of(uint8_t t)
{
	switch (t) {
	case 'P':
		return EX_PARSE;
	case 'B':
		return EX_BIND;
	case 'D':
		return EX_DESCRIBE;
	case 'E':
		return EX_EXECUTE;
	case 'C':
		return EX_CLOSE;
	case 'S':
		return EX_SYNC;
	case 'Q':
		return EX_QUERY;
	case 'F':
		return EX_FUNCALL;
	case 'c':
	case 'f':
		return EX_COPY_END;
	default:
		return EX_NONE;
	}
}

void expect_push(ExpectQueue *q, const Expect *e)
{
	if (e->kind == EX_COPY_END)
		q->copy_in = false;
	else if (e->kind == EX_SYNC && q->copy_in)
		return; /* PostgreSQL ignores a Sync in copy-in mode */
	if (q->n == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 16;
		Expect *items = xmalloc(sizeof(Expect) * cap);
		for (uint32_t i = 0; i < q->n; i++)
			items[i] = *at(q, i);
		free(q->items);
		q->items = items;
		q->cap = cap;
		q->head = 0;
	}
	*at(q, q->n) = *e;
	q->n++;
	if (is_unit(e->kind)) {
		q->units++;
		q->units_pushed++;
		if (e->client)
			q->client_units++;
	}
	assert(q->client_units <= q->units && q->units <= q->n);
}

void expect_pop(ExpectQueue *q, Expect *out)
{
	assert(q->n > 0);
	*out = *at(q, 0);
	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
	if (is_unit(out->kind)) {
		assert(q->units > 0);
		q->units--;
		q->units_done++;
		if (out->client) {
			assert(q->client_units > 0);
			q->client_units--;
		}
	}
}

Expect *expect_head(ExpectQueue *q)
{
	while (q->n && at(q, 0)->kind == EX_COPY_END) {
		Expect dummy;
		expect_pop(q, &dummy);
		free(dummy.name);
	}
	return q->n ? at(q, 0) : NULL;
}

Expect *expect_last(ExpectQueue *q)
{
	return q->n ? at(q, q->n - 1) : NULL;
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
		if (at(q, i)->kind == EX_SYNC)
			return true;
	return false;
}

ExpectMatch expect_match(ExpectQueue *q, uint8_t type)
{
	if (type == 'N' || type == 'A' || type == 'S')
		return XM_ASYNC;
	assert(!q->skip_pending || !expect_head(q) || expect_head(q)->kind == EX_SYNC);
	Expect *h = expect_head(q);
	if (!h)
		return XM_BAD;
	uint8_t k = h->kind;
	bool simple = k == EX_QUERY || k == EX_FUNCALL;
	switch (type) {
	case '1':
		return k == EX_PARSE ? XM_DONE : XM_BAD;
	case '2':
		return k == EX_BIND ? XM_DONE : XM_BAD;
	case '3':
		return k == EX_CLOSE ? XM_DONE : XM_BAD;
	case 't':
		return k == EX_DESCRIBE ? XM_PART : XM_BAD;
	case 'T':
		return k == EX_DESCRIBE ? XM_DONE : k == EX_QUERY ? XM_PART : XM_BAD;
	case 'n':
		return k == EX_DESCRIBE ? XM_DONE : XM_BAD;
	case 'D':
	case 'd':
	case 'c':
	case 'H':
	case 'G':
	case 'W':
		return k == EX_EXECUTE || k == EX_QUERY ? XM_PART : XM_BAD;
	case 'C':
	case 'I':
		return k == EX_EXECUTE ? XM_DONE : k == EX_QUERY ? XM_PART : XM_BAD;
	case 's':
		return k == EX_EXECUTE ? XM_DONE : XM_BAD;
	case 'V':
		return k == EX_FUNCALL ? XM_PART : XM_BAD;
	case 'E':
		q->copy_in = false;
		/* a Query's error ends its statements, a Sync's (a failed implicit COMMIT) comes
		 * before its ReadyForQuery: both still owe that ReadyForQuery */
		return simple || k == EX_SYNC ? XM_PART : XM_SKIP;
	case 'Z':
		return simple || k == EX_SYNC ? XM_DONE : XM_BAD;
	default:
		return XM_BAD;
	}
}

void expect_copy_in(ExpectQueue *q)
{
	/* Syncs already queued behind the COPY, up to the client's CopyDone/CopyFail, go unanswered
	 */
	uint32_t keep = 1;
	for (uint32_t i = 1; i < q->n; i++) {
		Expect *e = at(q, i);
		if (e->kind == EX_COPY_END) {
			/* the rest stays as it is */
			for (uint32_t j = i; j < q->n; j++)
				*at(q, keep++) = *at(q, j);
			q->n = keep;
			return;
		}
		if (e->kind == EX_SYNC) {
			q->units--;
			q->units_pushed--;
			if (e->client)
				q->client_units--;
			continue;
		}
		*at(q, keep++) = *e;
	}
	q->n = q->n ? keep : 0;
	q->copy_in = true;
}
