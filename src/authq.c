/*
 * authq: see include/authq.h.
 *
 * One AuthqRequest per lookup in flight: its libpq connection, the event on
 * that connection's socket (re-created when libpq changes sockets while
 * connecting) and a timeout. It ends in exactly one of: finish() (answer
 * cached, done called, freed) or authq_cancel() (freed, done never called).
 *
 * The cache is an open-addressing table keyed by host, port, database and
 * user; entries expire after AUTHQ_CACHE_TTL. When it is full, expired
 * entries go first, then the oldest one. Secrets are wiped when dropped.
 */
#include "authq.h"

#include "auth.h"
#include "conn.h"
#include "log.h"
#include "pgjob.h"
#include "pgtenant.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

struct AuthqRequest {
	PGconn *pg;
	struct event *io;
	struct event *timeout;
	bool connecting; /* PQconnectPoll phase; then the queries */
	bool expiry;     /* auth_query answered; now the VALID UNTIL check runs */
	char *key;       /* cache key */
	char *user;
	char *query;
	char *secret; /* read from the answer so far */
	char error[300];
	AuthqDone done;
	void *arg;
};

typedef struct CacheEntry {
	char *key;
	char *secret; /* NULL: no usable secret (no such user, no password, expired) */
	usec_t expires;
} CacheEntry;

static CacheEntry cache[AUTHQ_CACHE_MAX * 2]; /* at most half full */
static int cache_count;

static uint64_t key_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void entry_drop(CacheEntry *e)
{
	if (e->secret) {
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
	}
	free(e->key);
	memset(e, 0, sizeof(*e));
}

/* Rebuilds the table without the entries rejected by keep (open addressing has no tombstones). */
static void cache_filter(bool (*keep)(const CacheEntry *e, void *arg), void *arg)
{
	static CacheEntry moved[AUTHQ_CACHE_MAX * 2];
	size_t n = ARRAY_SIZE(cache);
	int count = 0;

	memset(moved, 0, sizeof(moved));
	for (size_t i = 0; i < n; i++) {
		if (!cache[i].key)
			continue;
		if (!keep(&cache[i], arg)) {
			entry_drop(&cache[i]);
			continue;
		}
		size_t j = key_hash(cache[i].key) & (n - 1);
		while (moved[j].key)
			j = (j + 1) & (n - 1);
		moved[j] = cache[i];
		count++;
	}
	memcpy(cache, moved, sizeof(cache));
	cache_count = count;
}

static bool expires_after(const CacheEntry *e, void *arg)
{
	return e->expires > *(const usec_t *)arg;
}

static CacheEntry *cache_slot(const char *key)
{
	size_t n = ARRAY_SIZE(cache), i = key_hash(key) & (n - 1);
	while (cache[i].key && strcmp(cache[i].key, key) != 0)
		i = (i + 1) & (n - 1);
	return &cache[i];
}

static void cache_put(const char *key, const char *secret)
{
	CacheEntry *e = cache_slot(key);

	if (!e->key && cache_count >= AUTHQ_CACHE_MAX) {
		usec_t now = g_now, oldest = INT64_MAX;
		cache_filter(expires_after, &now);
		if (cache_count >= AUTHQ_CACHE_MAX) {
			for (size_t i = 0; i < ARRAY_SIZE(cache); i++)
				if (cache[i].key && cache[i].expires < oldest)
					oldest = cache[i].expires;
			cache_filter(expires_after, &oldest);
		}
		e = cache_slot(key);
	}
	if (e->key) {
		entry_drop(e);
		cache_count--;
	}
	e->key = xstrdup(key);
	e->secret = secret ? xstrdup(secret) : NULL;
	e->expires = g_now + AUTHQ_CACHE_TTL;
	cache_count++;
}

void authq_cache_clear(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(cache); i++)
		if (cache[i].key)
			entry_drop(&cache[i]);
	cache_count = 0;
}

bool authq_enabled(const Config *cfg)
{
	return cfg->auth_user && *cfg->auth_user;
}

static void drop_secret(AuthqRequest *r)
{
	if (r->secret) {
		OPENSSL_cleanse(r->secret, strlen(r->secret));
		free(r->secret);
		r->secret = NULL;
	}
}

static void request_free(AuthqRequest *r)
{
	if (r->io)
		event_free(r->io);
	if (r->timeout)
		event_free(r->timeout);
	if (r->pg)
		PQfinish(r->pg);
	drop_secret(r);
	free(r->key);
	free(r->user);
	free(r->query);
	free(r);
}

void authq_cancel(AuthqRequest *r)
{
	if (r)
		request_free(r);
}

/* The answer: cached (a failed lookup is not), handed over, and the request freed. */
static void finish(AuthqRequest *r, const char *secret, const char *error)
{
	if (!error)
		cache_put(r->key, secret);
	else
		log_warning("auth_query for user \"%s\" failed: %s", r->user, error);
	r->done(r->arg, secret, error);
	request_free(r);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket to be readable or writable (libpq may have a new socket). */
static bool wait_for(AuthqRequest *r, bool write)
{
	return pgjob_watch(&r->io, r->pg, write, on_io, r);
}

/*
 * Whatever auth_query says, a password past the role's VALID UNTIL is none
 * (CVE-2025-2291). pg_roles is readable by every role, unlike pg_authid.
 */
static const char expiry_query[] =
        "SELECT pg_catalog.now() > rolvaliduntil FROM pg_catalog.pg_roles WHERE rolname = $1";

/* auth_query's first row: usename, passwd[, expired]; the expiry check's: expired. */
static void read_answer(AuthqRequest *r, const PGresult *res)
{
	if (r->expiry) {
		if (PQntuples(res) >= 1 && PQnfields(res) >= 1 && !PQgetisnull(res, 0, 0) &&
		    PQgetvalue(res, 0, 0)[0] == 't') {
			log_info("auth_query: the password of user \"%s\" has expired", r->user);
			drop_secret(r);
		}
		return;
	}
	if (r->secret || PQntuples(res) < 1 || PQnfields(res) < 2 || PQgetisnull(res, 0, 1))
		return;
	if (PQnfields(res) >= 3 && !PQgetisnull(res, 0, 2) && PQgetvalue(res, 0, 2)[0] == 't') {
		log_info("auth_query: the password of user \"%s\" has expired", r->user);
		return;
	}
	if (*PQgetvalue(res, 0, 1))
		r->secret = xstrdup(PQgetvalue(res, 0, 1));
}

static void set_error(AuthqRequest *r, const char *msg)
{
	if (!r->error[0]) {
		snprintf(r->error, sizeof(r->error), "%s", msg && *msg ? msg : "unknown error");
		r->error[strcspn(r->error, "\n")] = '\0';
	}
}

/* Sends, then reads every result; the answer is final once libpq has no more. */
static void query_step(AuthqRequest *r)
{
	PGresult *res;

	if (PQflush(r->pg) > 0) {
		if (!wait_for(r, true))
			finish(r, NULL, "lost the connection");
		return;
	}
	if (!PQconsumeInput(r->pg)) {
		set_error(r, PQerrorMessage(r->pg));
		finish(r, NULL, r->error);
		return;
	}
	while (!PQisBusy(r->pg)) {
		res = PQgetResult(r->pg);
		if (!res && !r->error[0] && r->secret && !r->expiry) {
			const char *params[1] = {r->user};
			r->expiry = true;
			if (!PQsendQueryParams(r->pg, expiry_query, 1, NULL, params, NULL, NULL,
			                       0)) {
				set_error(r, PQerrorMessage(r->pg));
				finish(r, NULL, r->error);
			} else {
				query_step(r);
			}
			return;
		}
		if (!res) {
			if (r->error[0])
				finish(r, NULL, r->error);
			else
				finish(r, r->secret, NULL);
			return;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			read_answer(r, res);
		else
			set_error(r, PQresultErrorMessage(res));
		PQclear(res);
	}
	if (!wait_for(r, false))
		finish(r, NULL, "lost the connection");
}

static void connect_step(AuthqRequest *r)
{
	const char *params[1] = {r->user};

	switch (PQconnectPoll(r->pg)) {
	case PGRES_POLLING_READING:
		if (!wait_for(r, false))
			finish(r, NULL, "lost the connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!wait_for(r, true))
			finish(r, NULL, "lost the connection");
		return;
	case PGRES_POLLING_OK:
		r->connecting = false;
		if (PQsetnonblocking(r->pg, 1) != 0 ||
		    !PQsendQueryParams(r->pg, r->query, 1, NULL, params, NULL, NULL, 0)) {
			set_error(r, PQerrorMessage(r->pg));
			finish(r, NULL, r->error);
			return;
		}
		query_step(r);
		return;
	default:
		set_error(r, PQerrorMessage(r->pg));
		finish(r, NULL, r->error);
		return;
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	AuthqRequest *r = arg;

	time_update();
	if (r->connecting)
		connect_step(r);
	else
		query_step(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	time_update();
	finish(arg, NULL, "timed out");
}

/* auth_user's password: plain text from auth_file, else the backend's own when it is that role. */
static const char *auth_user_password(const Config *cfg, const BackendConf *b)
{
	const char *s = g_auth ? authfile_lookup(g_auth, cfg->auth_user) : NULL;
	if (s && auth_secret_kind(s) == SECRET_PLAIN)
		return s;
	if (b->user && b->password && strcmp(b->user, cfg->auth_user) == 0)
		return b->password;
	return NULL;
}

AuthqRequest *authq_lookup(const Config *cfg, const BackendConf *b, const char *dbname,
                           const char *user, AuthqDone done, void *arg)
{
	char key[512], port[16], timeout_s[16];
	const char *keys[12], *vals[12];
	int n = 0;
	AuthqRequest *r;
	CacheEntry *e;

	snprintf(key, sizeof(key), "%s\n%d\n%s\n%s", b->host, b->port, dbname, user);
	e = cache_slot(key);
	if (e->key && e->expires > g_now) {
		done(arg, e->secret, NULL);
		return NULL;
	}

	r = xcalloc(1, sizeof(*r));
	r->key = xstrdup(key);
	r->user = xstrdup(user);
	r->query = xstrdup(cfg->auth_query);
	r->done = done;
	r->arg = arg;
	r->connecting = true;

	snprintf(port, sizeof(port), "%d", b->port);
	snprintf(timeout_s, sizeof(timeout_s), "%lld",
	         (long long)(cfg->server_connect_timeout + USEC_PER_SEC - 1) / USEC_PER_SEC);
	keys[n] = "host", vals[n++] = b->host;
	if (pgjob_is_address(b->host)) /* no name to resolve: libpq would do it blocking */
		keys[n] = "hostaddr", vals[n++] = b->host;
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = dbname;
	keys[n] = "user", vals[n++] = cfg->auth_user;
	keys[n] = "password", vals[n++] = auth_user_password(cfg, b);
	/* fixed, whatever the client sent or the role's defaults say (CVE-2025-12819) */
	keys[n] = "options", vals[n++] = "-c search_path=pg_catalog";
	keys[n] = "application_name", vals[n++] = "pgtenant auth_query";
	keys[n] = "sslmode", vals[n++] = pgjob_sslmode(config_backend_server_tls_mode(cfg, b));
	keys[n] = "sslrootcert", vals[n++] = cfg->server_tls_ca_file;
	keys[n] = "connect_timeout", vals[n++] = timeout_s;
	keys[n] = NULL, vals[n] = NULL;
	/* libpq reads no environment for a key given here; NULL values mean "not given" */
	r->pg = PQconnectStartParams(keys, vals, 0);
	r->timeout = evtimer_new(g_base, on_timeout, r);
	struct timeval tv = {(time_t)(cfg->server_connect_timeout / USEC_PER_SEC),
	                     (suseconds_t)(cfg->server_connect_timeout % USEC_PER_SEC)};
	if (!r->pg || PQstatus(r->pg) == CONNECTION_BAD || !r->timeout ||
	    evtimer_add(r->timeout, &tv) != 0 || !wait_for(r, true)) {
		set_error(r, r->pg ? PQerrorMessage(r->pg) : "out of memory");
		log_warning("auth_query for user \"%s\" failed: %s", user, r->error);
		request_free(r);
		done(arg, NULL, "could not start the auth_query connection");
		return NULL;
	}
	return r;
}

/* ------------------------------------------------------------- unknown users */

static void fake_hmac(const char *label, const char *user, uint8_t out[32])
{
	static uint8_t process_key[32];
	static bool keyed;
	unsigned int len = 32;

	if (!keyed) {
		if (RAND_bytes(process_key, sizeof(process_key)) != 1)
			memset(process_key, 0x5a, sizeof(process_key));
		keyed = true;
	}
	uint8_t msg[256];
	size_t la = strlen(label), lu = strnlen(user, sizeof(msg) - la - 1);
	memcpy(msg, label, la);
	msg[la] = 0;
	memcpy(msg + la + 1, user, lu);
	if (!HMAC(EVP_sha256(), process_key, sizeof(process_key), msg, la + 1 + lu, out, &len))
		memset(out, 0x3c, 32);
}

void authq_fake_verifier(const char *user, char *out, size_t outlen)
{
	uint8_t salt[32], stored[32], server[32];
	char b64_salt[48], b64_stored[48], b64_server[48];

	fake_hmac("salt", user, salt);
	fake_hmac("stored", user, stored);
	fake_hmac("server", user, server);
	EVP_EncodeBlock((unsigned char *)b64_salt, salt, 16);
	EVP_EncodeBlock((unsigned char *)b64_stored, stored, 32);
	EVP_EncodeBlock((unsigned char *)b64_server, server, 32);
	/* PostgreSQL's own iteration count, so the exchange looks like any verifier of pg_shadow's
	 */
	snprintf(out, outlen, "SCRAM-SHA-256$4096:%s$%s:%s", b64_salt, b64_stored, b64_server);
}
