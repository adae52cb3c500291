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
	EX_COPY_END, /* the client's CopyDone/CopyFail: no reply of its own; where copy-in ends */
} ExpectKind;

typedef struct Expect {
	uint8_t kind;   /* ExpectKind */
	uint8_t action; /* what the reply path does with the replies (server.c) */
	uint8_t prep;   /* prepare.c's reply kind */
	uint8_t why;    /* prepare.c: why a stand-in reports an error */
	bool client;    /* the client's own unit end (Sync/Query/FunctionCall it sent) */
	void *stmt;     /* prepare.c: the statement concerned */
	char *name;     /* prepare.c: the client name a Parse binds (owned) */
} Expect;

typedef struct ExpectQueue {
	Expect *items;
	uint32_t head, n, cap;
	uint32_t units;        /* Sync/Query/FunctionCall entries queued: ReadyForQuery owed */
	uint32_t client_units; /* ... of them the client's own */
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
/* Queues what a message just written will be answered with. A Sync written during copy-in owes
 * nothing. */
void expect_push(ExpectQueue *q, const Expect *e);
static inline bool expect_empty(const ExpectQueue *q)
{
	return q->n == 0;
}
/* The oldest entry that still owes a reply (entries that owe none are dropped on the way), or NULL.
 */
Expect *expect_head(ExpectQueue *q);
/* What a reply of this type means (fatal errors are the caller's business). */
ExpectMatch expect_match(ExpectQueue *q, uint8_t type);
/* Takes the head off the queue; the caller owns out->name. */
void expect_pop(ExpectQueue *q, Expect *out);
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
/* The last entry pushed, or NULL. */
Expect *expect_last(ExpectQueue *q);
/* Message type (frontend) to the kind of answer it gets; EX_NONE: none (Flush, CopyData). */
ExpectKind expect_kind_of(uint8_t frontend_type);

#endif
