/*
 * router: read routing (SPEC §5). One decision per batch — a Query, or
 * extended-protocol messages up to their Sync — made before the client takes
 * a server, from the statements' classification by sqllex. Unsure means the
 * primary: unparsable text, a Flush mid-batch, session state, SERIALIZABLE,
 * anything inside a read-write transaction.
 */
#ifndef PGTENANT_ROUTER_H
#define PGTENANT_ROUTER_H

#include "types.h"

typedef enum {
	ROUTE_PRIMARY = 0,
	ROUTE_REPLICA,
	ROUTE_WAIT,
	ROUTE_DEFER_BEGIN, /* answer BEGIN here; choose the server with the first statement */
	ROUTE_LOCAL_END,   /* COMMIT of a transaction that never reached a server */
	ROUTE_LOCAL_ROLLBACK
} Route;

/*
 * Decides where the batch at the head of the client's input goes and points
 * c->pool at that pool (its home pool or a replica's). ROUTE_WAIT: the batch
 * is not complete yet. ROUTE_DEFER_BEGIN / ROUTE_LOCAL_*: client.c answers
 * the message itself.
 */
Route router_route_batch(Client *c);

#endif
