/*
 * prepare: named prepared statements in transaction mode (SPEC §4).
 *
 * A client's statement names are its own: pgtenant maps each (client, name)
 * to a shared PreparedStmt keyed by query text, parameter types and tenant
 * state, and gives it a server-side name "pgt_<id>". Whichever server runs a
 * Bind or Describe of it gets the Parse first (pipelined, its ParseComplete
 * dropped) unless it already has it; each server keeps at most
 * max_prepared_statements, closing the least recently used.
 *
 * Replies are matched to requests in order: every Parse and Close sent to a
 * server is queued with what to do with its ParseComplete / CloseComplete
 * (pass it on, drop it, or turn it into another reply). An ErrorResponse
 * makes PostgreSQL skip the rest of the batch, so the queued entries of that
 * batch are dropped with it.
 */
#ifndef PGTENANT_PREPARE_H
#define PGTENANT_PREPARE_H

#include "common.h"
#include "expect.h"
#include "types.h"

typedef struct PreparedStmt PreparedStmt;
typedef struct PrepClient PrepClient;
typedef struct PrepServer PrepServer;

typedef enum {
	PREP_PASS = 0,  /* forward the message unchanged */
	PREP_REWRITTEN, /* pgtenant wrote its own version to the server */
	PREP_ANSWERED,  /* answered locally (DEALLOCATE with no server) */
	PREP_REFUSED    /* over the per-client limit: error queued, skip to Sync */
} PrepResult;

/*
 * Handles a client Parse/Bind/Describe/Close (and a DEALLOCATE Query) in
 * transaction mode. s may be NULL only for 'Q'. body/len is the message body;
 * flags are sql_analyze's of a Parse's text (what running it leaves behind).
 * Whatever it writes to s it queues the replies of (server_expect_own).
 */
PrepResult prep_client_message(Client *c, ServerConn *s, uint8_t type, const uint8_t *body,
                               size_t len, unsigned flags);
/* Could the Query text body be a DEALLOCATE (prep_client_message's 'Q' case)? Its first
 * letter, after whitespace, is a d: every other Query passes without a call. */
static inline bool prep_query_may_deallocate(const uint8_t *body, size_t len)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
		i++;
	return i < len && (body[i] | 0x20) == 'd';
}
/*
 * A named Parse followed directly by Sync from a client without a server
 * (libpq's PQprepare): recorded and answered without taking a server; the
 * statement is parsed on whichever server first runs it. This keeps a client
 * that prepares synchronously from needing a connection its siblings hold.
 */
bool prep_client_parse_only(Client *c, const uint8_t *body, size_t len);
/* The query text of the client's named statement, or NULL. */
const char *prep_client_query(const Client *c, const char *name);

/* The reply to a Parse or Close prepare.c wrote (Expect.action EA_PREP): true to drop it. */
bool prep_on_reply(ServerConn *s, Client *c, const Expect *e, uint8_t type);
/* PostgreSQL skipped that Parse or Close (an error earlier in its batch). */
void prep_on_skipped(ServerConn *s, const Expect *e);
/* An ErrorResponse to a Bind/Describe/Execute of stmt (a stale plan is prepared afresh). */
void prep_server_error(ServerConn *s, void *stmt, const uint8_t *body, size_t len);

/* Does s hold statements under pgtenant's names? */
bool prep_server_holds(const ServerConn *s);
/*
 * Marks used[i] when a statement still registered was prepared under tenant
 * state states[i] (states sorted by address): that state text must stay.
 */
void prep_states_in_use(const char *const *states, int n, bool *used);
/* The server lost every prepared statement (DISCARD ALL, DEALLOCATE ALL) or is going away. */
void prep_server_reset(ServerConn *s);
void prep_server_free(ServerConn *s);
void prep_client_free(Client *c);

typedef struct PrepStats {
	uint64_t parses_sent; /* Parse messages sent to servers for client statements */
	uint64_t hits;        /* Parse/Bind/Describe that found the statement already prepared */
	uint64_t evictions;
	int statements; /* distinct statements known */
} PrepStats;

extern PrepStats g_prep_stats;

#endif
