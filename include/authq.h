/*
 * authq: auth_query — the secret of a user missing from auth_file, looked up
 * on the tenant's backend and database as auth_user (PgBouncer's auth_user /
 * auth_query), without ever stalling the event loop.
 *
 * A lookup is a non-blocking libpq connection driven by libevent
 * (PQconnectStartParams/PQconnectPoll, PQsendQueryParams), bounded by
 * server_connect_timeout. The connection runs with search_path = pg_catalog
 * whatever the client or the role's defaults say (CVE-2025-12819), the
 * default query is schema-qualified, and a password past its VALID UNTIL is
 * no secret (CVE-2025-2291). Answers — "no such user" too — are cached for
 * AUTHQ_CACHE_TTL, at most AUTHQ_CACHE_MAX of them, so a flood of logins
 * does not become a flood of lookups.
 */
#ifndef PGTENANT_AUTHQ_H
#define PGTENANT_AUTHQ_H

#include "common.h"
#include "config.h"

#define AUTHQ_CACHE_TTL (30 * USEC_PER_SEC)
#define AUTHQ_CACHE_MAX 4096

typedef struct AuthqRequest AuthqRequest;

/*
 * Called once per lookup that was not cancelled: secret is the user's
 * (md5…, SCRAM-SHA-256$…, or plain), or NULL when there is none — no such
 * user, no password, expired — or when the lookup failed (error says why;
 * NULL otherwise). The strings live only during the call.
 */
typedef void (*AuthqDone)(void *arg, const char *secret, const char *error);

/* Is auth_query in use (auth_user set)? */
bool authq_enabled(const Config *cfg);

/*
 * Looks up user's secret on backend b, database dbname. Answers from the
 * cache at once (calling done before returning, and returning NULL), or
 * starts a lookup and returns its handle; done is called from the event loop.
 */
AuthqRequest *authq_lookup(const Config *cfg, const BackendConf *b, const char *dbname,
                           const char *user, AuthqDone done, void *arg);
/* Abandons a lookup (its client went away): done is never called. */
void authq_cancel(AuthqRequest *r);

/*
 * The made-up secret of a user auth_query does not know: a well-formed SCRAM
 * verifier derived from the user name and a per-process key, so an unknown
 * user costs what a known one does and is asked the same questions.
 */
void authq_fake_verifier(const char *user, char *out, size_t outlen);

/* Drops every cached answer (RELOAD: auth_user, auth_query or a backend may have changed). */
void authq_cache_clear(void);

#endif
