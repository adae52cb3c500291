/*
 * health: the backend checker (SPEC §5, §8). Every health_check_period each
 * backend's primary and replicas are asked, over a libpq connection made
 * for each round and driven by the event loop (never blocking it), whether
 * they are reachable and accept a new login (a primary whose postmaster
 * hangs serves its running sessions and no new one), whether a replica is in recovery,
 * and how far its replay lags: LSNs are compared with the primary's (an
 * idle primary makes no false lag), and the replay timestamp gives the lag
 * in time when the replica is behind.
 *
 * A primary is down when its last check failed and no server login to it
 * succeeded since; a server login (server.c) counts as up at once. Clients
 * of a primary pool are refused with 57P03 instead of waiting only when both
 * signals agree: the check failed and the pool's own last login failed too
 * (Pool.failing). So a check that fails for reasons of its own (its
 * credentials, its TLS) never turns clients away from a primary their pool
 * reaches, and a primary that comes back is used again after its next
 * passing check or the first server login, whichever comes first.
 *
 * A primary check that gets no answer at all (it times out after
 * health_check_period + 1 s) says more: the primary hangs. Its pools' logins
 * still in progress are ended then (they would wait for server_connect_timeout),
 * so their waiting clients get 57P03 at once; servers already logged in go on.
 */
#ifndef PGTENANT_HEALTH_H
#define PGTENANT_HEALTH_H

#include "common.h"
#include "types.h"

void health_start(void);
void health_stop(void);
const char *health_state_name(int state);

/* A server connection to be's primary logged in: the primary is up. */
void health_primary_reached(Backend *be);
/* Up or down as SHOW BACKENDS and pgtenant_backend_up show it (before the first check: no
 * primary pool failing). */
bool health_primary_up(const Backend *be);
/* Why the primary is down (the check's error, else a failing pool's), or NULL. */
const char *health_primary_error(const Backend *be);
/*
 * Must a client of pool p that needs a new server connection be refused with
 * 57P03 now? Only for a primary pool whose primary failed its check while the
 * pool's own last login failed too; with in_backoff, only while the pool waits
 * out server_login_retry (no connection would be tried for the client anyway).
 */
bool health_pool_unreachable(const Pool *p, bool in_backoff);
/* Sends the client ERROR 57P03 naming p's backend and why it is down (the session goes on). */
void health_refuse(Client *c, const Pool *p);

#endif
