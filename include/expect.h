/*
 * expect: the queue of replies a server connection owes (PgBouncer's
 * outstanding-request list is the model).
 *
 * Every message pgtenant writes to a server that PostgreSQL answers — the
 * client's own, rewritten ones, and pgtenant's own statements — pushes one
 * Expect, in wire order. Every reply is matched against the head: the reply
 * path never guesses what PostgreSQL did, it reads it off the queue. The
 * queue models the two places where PostgreSQL does not answer message by
 * message:
 *   - after an ErrorResponse to an extended-protocol message, PostgreSQL
 *     skips every message up to the next Sync (Query and FunctionCall
 *     included): those entries are skipped, never answered;
 *   - in copy-in mode PostgreSQL ignores Sync (and Flush): Syncs written
 *     between the COPY and the client's CopyDone/CopyFail owe nothing.
 *
 * Invariants (asserted): units == number of Sync/Query/FunctionCall entries
 * queued; client_units <= units; an entry is popped exactly once, as done
 * or as skipped.
 */
#ifndef PGTENANT_EXPECT_H
#define PGTENANT_EXPECT_H

#include "common.h"

typedef enum {
	EX_NONE = 0,
	EX_PARSE,    /* ParseComplete */
	EX_BIND,     /* BindComplete */
	EX_DESCRIBE, /* [ParameterDescription] RowDescription | NoData */
	EX_EXECUTE,  /* DataRow* then CommandComplete | EmptyQueryResponse | PortalSuspended (or
	                COPY) */
	EX_CLOSE,    /* CloseComplete */
	EX_SYNC,     /* ReadyForQuery */
	EX_QUERY,    /* anything, then ReadyForQuery */
	EX_FUNCALL,  /* FunctionCallResponse, then ReadyForQuery */
	EX_COPY_END, /* the client's CopyDone/CopyFail: owes nothing, marks where copy-in ends (not
	                queued) */
} ExpectKind;

typedef struct Expect {
	uint8_t kind;   /* ExpectKind */
	uint8_t action; /* what the reply path does with the replies (server.c) */
	uint8_t prep;   /* prepare.c's reply kind */
	uint8_t why;    /* prepare.c: why a stand-in reports an error */
	bool client;    /* the client's own unit end (Sync/Query/FunctionCall it sent) */
	uint32_t seq;   /* push ordinal (copy-in: which Syncs came before the CopyDone) */
	void *stmt;     /* prepare.c: the statement concerned */
	char *name;     /* prepare.c: the client name a Parse binds (owned) */
} Expect;

typedef struct ExpectQueue {
	Expect *items;
	uint32_t head, n, cap; /* cap: a power of two */
	uint32_t units;        /* Sync/Query/FunctionCall entries queued: ReadyForQuery owed */
	uint32_t client_units; /* ... of them the client's own */
	uint32_t seq;          /* next push ordinal */
	uint32_t copy_end_seq; /* push ordinal after the client's last CopyDone/CopyFail */
	uint64_t units_pushed; /* ordinals of batches (prepare.c): units pushed so far */
	uint64_t units_done;   /* ... and answered or skipped */
	bool copy_in;          /* the server is in copy-in mode and the client has not ended it */
	bool skip_pending; /* an error made PostgreSQL skip to the next Sync: what is queued before
	                    * the first queued Sync (if none yet, what comes) is skipped too */
} ExpectQueue;

/* How a reply relates to the head of the queue. */
typedef enum {
	XM_ASYNC = 0, /* NoticeResponse, NotificationResponse, ParameterStatus: any time */
	XM_PART,      /* part of the head's answer; the head stays */
	XM_DONE,      /* the head's answer is complete: pop it */
	XM_SKIP, /* an error ends the head; PostgreSQL skips what follows up to the next Sync */
	XM_BAD,  /* nothing asked for this: the connection is out of step */
} ExpectMatch;

void expect_init(ExpectQueue *q);
void expect_free(ExpectQueue *q);
/* Makes room for one more entry (the slow path of expect_push). */
void expect_grow(ExpectQueue *q);
/* The server entered copy-in mode (CopyInResponse): Syncs queued before the client's CopyDone owe
 * nothing. */
void expect_copy_in(ExpectQueue *q);
/*
 * PostgreSQL skips what it reads up to the next Sync (after an error to an
 * extended-protocol message): pops the entries before the first queued Sync,
 * calling on_skip for each; with no Sync queued the skip goes on
 * (q->skip_pending) and takes entries queued later, on the next call.
 */
void expect_skip(ExpectQueue *q, void (*on_skip)(void *arg, Expect *e), void *arg);
/* Will PostgreSQL skip what is written now (a skip pending and no Sync queued to end it)? */
bool expect_skipping(const ExpectQueue *q);
/* Is there a Sync entry queued (so a skip ends by itself)? */
bool expect_has_sync(const ExpectQueue *q);

static inline bool expect_empty(const ExpectQueue *q)
{
	return q->n == 0;
}

static inline Expect *expect_at(const ExpectQueue *q, uint32_t i)
{
	return &q->items[(q->head + i) & (q->cap - 1)];
}

/* The oldest entry that still owes a reply, or NULL. */
static inline Expect *expect_head(const ExpectQueue *q)
{
	return q->n ? &q->items[q->head] : NULL;
}

/* The last entry pushed, or NULL. */
static inline Expect *expect_last(const ExpectQueue *q)
{
	return q->n ? expect_at(q, q->n - 1) : NULL;
}

static inline bool expect_is_unit(uint8_t kind)
{
	return kind == EX_SYNC || kind == EX_QUERY || kind == EX_FUNCALL;
}

/* Message type (frontend) to the kind of answer it gets; EX_NONE: none (Flush, CopyData). */
static inline ExpectKind expect_kind_of(uint8_t t)
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

/*
 * Queues what a message just written will be answered with. A Sync written during
 * copy-in owes nothing; a CopyDone/CopyFail owes nothing and ends copy-in.
 */
static inline void expect_push(ExpectQueue *q, uint8_t kind, uint8_t action, bool client,
                               void *stmt)
{
	if (kind == EX_COPY_END) {
		q->copy_in = false;
		q->copy_end_seq = q->seq;
		return;
	}
	if (kind == EX_SYNC && q->copy_in)
		return; /* PostgreSQL ignores a Sync in copy-in mode */
	if (q->n == q->cap)
		expect_grow(q);
	Expect *e = expect_at(q, q->n);
	e->kind = kind;
	e->action = action;
	e->prep = e->why = 0;
	e->client = client;
	e->seq = q->seq++;
	e->stmt = stmt;
	e->name = NULL;
	q->n++;
	if (expect_is_unit(kind)) {
		q->units++;
		q->units_pushed++;
		q->client_units += client;
	}
}

/* Takes the head off the queue (its name is the caller's to free, or already freed). */
static inline void expect_drop(ExpectQueue *q)
{
	Expect *h = &q->items[q->head];
	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
	if (expect_is_unit(h->kind)) {
		q->units--;
		q->units_done++;
		q->client_units -= h->client;
	}
}

/* Takes the head off the queue into *out; the caller owns out->name. */
static inline void expect_pop(ExpectQueue *q, Expect *out)
{
	*out = q->items[q->head];
	expect_drop(q);
}

/* What a reply of this type means for the head h (fatal errors are the caller's business). */
static inline ExpectMatch expect_match(ExpectQueue *q, const Expect *h, uint8_t type)
{
	if (type == 'N' || type == 'A' || type == 'S')
		return XM_ASYNC;
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

#endif
