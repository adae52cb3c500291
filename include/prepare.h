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
#include "types.h"

typedef struct PreparedStmt PreparedStmt;
typedef struct PrepClient PrepClient;
typedef struct PrepServer PrepServer;

typedef enum {
	PREP_PASS = 0,    /* forward the message unchanged */
	PREP_REWRITTEN,   /* pgtenant wrote its own version to the server */
	PREP_ANSWERED,    /* answered locally (DEALLOCATE with no server) */
	PREP_REFUSED      /* over the per-client limit: error queued, skip to Sync */
} PrepResult;

/*
 * Handles a client Parse/Bind/Describe/Close (and a DEALLOCATE Query) in
 * transaction mode. s may be NULL only for 'Q'. body/len is the message body.
 */
PrepResult prep_client_message(Client *c, ServerConn *s, uint8_t type, const uint8_t *body, size_t len);
/*
 * A named Parse followed directly by Sync from a client without a server
 * (libpq's PQprepare): recorded and answered without taking a server; the
 * statement is parsed on whichever server first runs it. This keeps a client
 * that prepares synchronously from needing a connection its siblings hold.
 */
bool prep_client_parse_only(Client *c, const uint8_t *body, size_t len);
/* The query text of the client's named statement, or NULL. */
const char *prep_client_query(const Client *c, const char *name);
/* Counts a ReadyForQuery-producing message (Query, Sync, FunctionCall) sent to s. */
void prep_server_sent_sync(ServerConn *s);

/* Server replies: return true when the message is dropped (pgtenant's own or replaced). */
bool prep_server_parse_complete(ServerConn *s);
bool prep_server_close_complete(ServerConn *s, Client *c);
void prep_server_error(ServerConn *s);
void prep_server_ready(ServerConn *s);

/* The server lost every prepared statement (DISCARD ALL) or is going away. */
void prep_server_reset(ServerConn *s);
void prep_server_free(ServerConn *s);
void prep_client_free(Client *c);

typedef struct PrepStats {
	uint64_t parses_sent; /* Parse messages sent to servers for client statements */
	uint64_t hits;        /* Parse/Bind/Describe that found the statement already prepared */
	uint64_t evictions;
	int statements;       /* distinct statements known */
} PrepStats;

extern PrepStats g_prep_stats;

#endif
