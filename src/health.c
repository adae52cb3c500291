/*
 * health: see include/health.h.
 */
#include "health.h"

#include "client.h"
#include "conn.h"
#include "log.h"
#include "pgtenant.h"
#include "pool.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { HC_IDLE = 0, HC_CONNECTING, HC_QUERYING } HcState;

typedef struct HealthConn {
	Backend *backend;
	Replica *replica; /* NULL: the primary */
	PGconn *conn;
	HcState state;
	struct event *ev;
	int ev_fd;
	short ev_what;
	usec_t started;
} HealthConn;

static struct event *round_ev;

static const char *const state_names[] = {"unknown", "up", "down", "lagging"};

const char *health_state_name(int state)
{
	return state >= 0 && state < (int)ARRAY_SIZE(state_names) ? state_names[state] : "unknown";
}

static void hc_on_event(evutil_socket_t fd, short what, void *arg);

/* Points the connection's event at its (possibly new) socket for reading or writing. */
static void hc_watch(HealthConn *h, short what)
{
	int fd = PQsocket(h->conn);
	if (h->ev && (h->ev_fd != fd || h->ev_what != what)) {
		event_free(h->ev);
		h->ev = NULL;
	}
	if (!h->ev && fd >= 0) {
		h->ev = event_new(g_base, fd, what, hc_on_event, h);
		h->ev_fd = fd;
		h->ev_what = what;
	}
	if (h->ev) {
		struct timeval tv = {(time_t)(g_cfg->health_check_period / USEC_PER_SEC) + 1, 0};
		event_add(h->ev, &tv);
	}
}

static void hc_drop(HealthConn *h)
{
	if (h->ev) {
		event_free(h->ev);
		h->ev = NULL;
	}
	if (h->conn) {
		PQfinish(h->conn);
		h->conn = NULL;
	}
	h->state = HC_IDLE;
}

static void check_replicas(Backend *be);
static void recheck_soon(void);

/* Copies the first line of a libpq message (the rest is libpq's commentary). */
static void copy_error(char *dst, size_t len, const char *why)
{
	strlcpy_safe(dst, why && *why ? why : "health check failed", len);
	dst[strcspn(dst, "\n")] = '\0';
	size_t n = strlen(dst);
	while (n > 0 && dst[n - 1] == ' ')
		dst[--n] = '\0';
}

/*
 * A failed check makes the primary down unless a server login to it succeeded
 * while the check ran (the check's failure is then its own: contradicted).
 */
static void primary_failed(HealthConn *h, const char *why)
{
	Backend *be = h->backend;
	be->primary_checked = time_wall_usec();
	if (be->primary_reached_at && be->primary_reached_at >= h->started)
		return;
	copy_error(be->primary_error, sizeof(be->primary_error), why);
	if (be->primary_state != REPLICA_DOWN)
		log_warning("primary %s:%d of backend %s is down: %s", be->host, be->port, be->name,
		            be->primary_error);
	be->primary_state = REPLICA_DOWN;
}

static void mark_down(HealthConn *h, const char *why)
{
	if (h->replica) {
		if (h->replica->state != REPLICA_DOWN)
			log_warning("replica %s:%d of backend %s is down: %s", h->replica->host,
			            h->replica->port, h->backend->name, why);
		h->replica->state = REPLICA_DOWN;
		h->replica->last_check = time_wall_usec();
	} else {
		primary_failed(h, why);
	}
	hc_drop(h);
	if (!h->replica)
		check_replicas(h->backend);
}

static uint64_t parse_lsn(const char *s)
{
	unsigned int hi = 0, lo = 0;
	if (!s || sscanf(s, "%X/%X", &hi, &lo) != 2)
		return 0;
	return ((uint64_t)hi << 32) | lo;
}

static void take_result(HealthConn *h, PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		mark_down(h, PQresultErrorMessage(res));
		return;
	}
	if (!h->replica) {
		h->backend->primary_lsn_prev = h->backend->primary_lsn;
		h->backend->primary_prev_at = h->backend->primary_checked;
		h->backend->primary_lsn = parse_lsn(PQgetvalue(res, 0, 0));
		if (h->backend->primary_state == REPLICA_DOWN)
			log_info("primary %s:%d of backend %s is up", h->backend->host,
			         h->backend->port, h->backend->name);
		h->backend->primary_state = REPLICA_UP;
		h->backend->primary_error[0] = '\0';
		h->backend->primary_checked = time_wall_usec();
		check_replicas(h->backend);
		return;
	}
	Replica *r = h->replica;
	bool in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	uint64_t replay = parse_lsn(PQgetvalue(res, 0, 1));
	double behind = PQgetisnull(res, 0, 2) ? 0.0 : atof(PQgetvalue(res, 0, 2));
	ReplicaState before = r->state;

	r->last_check = time_wall_usec();
	if (!in_recovery) {
		r->state = REPLICA_DOWN; /* promoted or misconfigured: it is no replica */
		if (before != REPLICA_DOWN)
			log_warning("replica %s:%d of backend %s is not in recovery: no reads",
			            r->host, r->port, h->backend->name);
		return;
	}
	/*
	 * Caught up with the primary's last known position: no lag, however old the
	 * last commit. Past what the primary had one round ago: behind by less than
	 * a round (an idle primary writes WAL without commits, so the time since the
	 * last replayed commit would be a false lag). Otherwise the replay timestamp
	 * tells how far behind it is.
	 */
	usec_t ts_lag = (usec_t)(behind * (double)USEC_PER_SEC);
	bool unbounded = false;
	if (h->backend->primary_lsn && replay >= h->backend->primary_lsn) {
		r->lag_us = 0;
	} else if (h->backend->primary_lsn_prev && replay >= h->backend->primary_lsn_prev) {
		usec_t bound = r->last_check - h->backend->primary_prev_at;
		r->lag_us = ts_lag < bound ? ts_lag : (bound > 0 ? bound : 0);
	} else {
		r->lag_us = ts_lag;
		unbounded = true;
	}
	r->state = r->lag_us > g_cfg->max_replica_lag ? REPLICA_LAGGING : REPLICA_UP;
	/*
	 * Lagging by the age of its last commit alone (no earlier primary position
	 * it has passed, as in the first round): look again within a second rather
	 * than a whole health_check_period, by when there is one to compare with.
	 */
	if (unbounded && r->state == REPLICA_LAGGING)
		recheck_soon();
	if (r->state != before)
		log_info("replica %s:%d of backend %s is %s (lag %lld ms)", r->host, r->port,
		         h->backend->name, health_state_name(r->state),
		         (long long)(r->lag_us / USEC_PER_MS));
}

static void send_probe(HealthConn *h)
{
	const char *sql =
	        h->replica
	                ? "SELECT pg_catalog.pg_is_in_recovery(), "
	                  "pg_catalog.pg_last_wal_replay_lsn(), "
	                  "EXTRACT(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp())"
	                : "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN "
	                  "pg_catalog.pg_last_wal_replay_lsn() ELSE "
	                  "pg_catalog.pg_current_wal_flush_lsn() END";
	if (!PQsendQuery(h->conn, sql)) {
		mark_down(h, PQerrorMessage(h->conn));
		return;
	}
	h->state = HC_QUERYING;
	h->started = g_now;
	PQflush(h->conn);
	hc_watch(h, EV_READ);
}

static void hc_on_event(evutil_socket_t fd, short what, void *arg)
{
	HealthConn *h = arg;
	time_update();
	if (what & EV_TIMEOUT) {
		Backend *be = h->backend;
		bool primary = !h->replica;
		mark_down(h, "health check timed out");
		/* no answer at all, not an error of the check's own: the primary hangs, and so
		 * will its pools' logins in progress */
		if (primary && be->primary_state == REPLICA_DOWN)
			pool_primary_down(be, be->primary_error);
		return;
	}
	if (h->state == HC_CONNECTING) {
		switch (PQconnectPoll(h->conn)) {
		case PGRES_POLLING_READING:
			hc_watch(h, EV_READ);
			return;
		case PGRES_POLLING_WRITING:
			hc_watch(h, EV_WRITE);
			return;
		case PGRES_POLLING_OK:
			PQsetnonblocking(h->conn, 1);
			send_probe(h);
			return;
		default:
			mark_down(h, PQerrorMessage(h->conn));
			return;
		}
	}
	if (h->state != HC_QUERYING)
		return;
	if (!PQconsumeInput(h->conn)) {
		mark_down(h, PQerrorMessage(h->conn));
		return;
	}
	while (!PQisBusy(h->conn)) {
		PGresult *res = PQgetResult(h->conn);
		if (!res) {
			hc_drop(h); /* the next round logs in again: that is part of the check */
			return;
		}
		take_result(h, res);
		PQclear(res);
		if (!h->conn)
			return; /* marked down */
	}
	hc_watch(h, EV_READ);
}

static void hc_begin(HealthConn *h)
{
	if (h->state != HC_IDLE)
		return; /* the previous round is still running; its timeout handles a hung one */
	hc_drop(h);
	char port[16];
	snprintf(port, sizeof(port), "%d", h->replica ? h->replica->port : h->backend->port);
	const char *host = h->replica ? h->replica->host : h->backend->host;
	const char *user = h->backend->user ? h->backend->user : "postgres";
	const char *password = h->backend->password;
	if (!password && g_auth)
		password = authfile_lookup(g_auth, user);
	/* the same TLS demands as the pool's own connections */
	static const char *const sslmodes[] = {"disable", "prefer", "require", "verify-ca",
	                                       "verify-full"};
	int mode = (int)h->backend->server_tls_mode;
	const char *keys[] = {"host",
	                      "port",
	                      "dbname",
	                      "user",
	                      "password",
	                      "application_name",
	                      "connect_timeout",
	                      "sslmode",
	                      "sslrootcert",
	                      NULL};
	const char *vals[] = {host,
	                      port,
	                      h->backend->dbname ? h->backend->dbname : "postgres",
	                      user,
	                      password ? password : "",
	                      "pgtenant health check",
	                      "5",
	                      sslmodes[mode >= 0 && mode < 5 ? mode : 0],
	                      g_cfg->server_tls_ca_file && *g_cfg->server_tls_ca_file
	                              ? g_cfg->server_tls_ca_file
	                              : NULL,
	                      NULL};
	if (!vals[8])
		keys[8] = NULL; /* no CA file: leave libpq's default */
	h->conn = PQconnectStartParams(keys, vals, 0);
	if (!h->conn || PQstatus(h->conn) == CONNECTION_BAD) {
		mark_down(h, h->conn ? PQerrorMessage(h->conn) : "out of memory");
		return;
	}
	h->state = HC_CONNECTING;
	h->started = g_now;
	hc_watch(h, EV_WRITE);
}

static HealthConn *hc_for(Backend *be, Replica *r)
{
	HealthConn **slot = r ? &r->health : &be->health;
	if (!*slot) {
		HealthConn *h = xcalloc(1, sizeof(*h));
		h->backend = be;
		h->replica = r;
		*slot = h;
	}
	return *slot;
}

static void check_replicas(Backend *be)
{
	for (int i = 0; i < be->n_replicas; i++) {
		Replica *r = be->replicas[i];
		if (r->configured)
			hc_begin(hc_for(be, r));
		else if (r->health)
			hc_drop(r->health);
	}
}

static void stop_backend(Backend *be, void *arg);

static bool backend_configured(const Backend *be)
{
	for (int i = 0; g_cfg && i < g_cfg->n_backends; i++)
		if (strcmp(g_cfg->backends[i].name, be->name) == 0)
			return true;
	return false;
}

/*
 * A round probes the primary first and its replicas once the primary has
 * answered (or failed): each replica's replay position is then compared with
 * a primary position read just before it, so an idle primary never makes a
 * caught-up replica look behind by the age of its last commit.
 */
static void check_backend(Backend *be, void *arg)
{
	(void)arg;
	if (!backend_configured(be)) {
		stop_backend(be, NULL); /* removed by a reload: its pools only drain */
		return;
	}
	HealthConn *h = hc_for(be, NULL);
	if (h->state != HC_IDLE) {
		check_replicas(be); /* a hung primary probe must not hold the replicas' checks */
		return;
	}
	hc_begin(h);
}

static void on_round(evutil_socket_t fd, short what, void *arg)
{
	time_update();
	pool_foreach_backend(check_backend, NULL);
	struct timeval tv = {(time_t)(g_cfg->health_check_period / USEC_PER_SEC),
	                     (suseconds_t)(g_cfg->health_check_period % USEC_PER_SEC)};
	evtimer_add(round_ev, &tv);
}

static void recheck_soon(void)
{
	if (round_ev && g_cfg->health_check_period > USEC_PER_SEC) {
		struct timeval tv = {1, 0};
		evtimer_add(round_ev, &tv);
	}
}

void health_start(void)
{
	if (!round_ev)
		round_ev = evtimer_new(g_base, on_round, NULL);
	on_round(-1, 0, NULL);
}

static void stop_backend(Backend *be, void *arg)
{
	(void)arg;
	if (be->health)
		hc_drop(be->health);
	for (int i = 0; i < be->n_replicas; i++)
		if (be->replicas[i]->health)
			hc_drop(be->replicas[i]->health);
}

void health_stop(void)
{
	if (round_ev) {
		event_free(round_ev);
		round_ev = NULL;
	}
	pool_foreach_backend(stop_backend, NULL);
}

/* ---------------------------------------------------------------------------------------
 * The primary's state as clients and operators see it.
 */

void health_primary_reached(Backend *be)
{
	be->primary_reached_at = g_now;
	if (be->primary_state == REPLICA_DOWN)
		log_info("primary %s:%d of backend %s is up: a server connection logged in",
		         be->host, be->port, be->name);
	be->primary_state = REPLICA_UP;
	be->primary_error[0] = '\0';
}

static const Pool *failing_primary_pool(const Backend *be)
{
	const List *it;
	list_for_each(it, &g_pools)
	{
		const Pool *p = list_entry(it, Pool, node);
		if (p->backend == be && !p->replica && p->failing)
			return p;
	}
	return NULL;
}

bool health_primary_up(const Backend *be)
{
	if (be->primary_state != REPLICA_UNKNOWN)
		return be->primary_state == REPLICA_UP;
	return failing_primary_pool(be) == NULL;
}

const char *health_primary_error(const Backend *be)
{
	if (be->primary_state == REPLICA_DOWN && be->primary_error[0])
		return be->primary_error;
	if (be->primary_state == REPLICA_UP)
		return NULL; /* a pool's own failure shows in SHOW POOLS */
	const Pool *p = failing_primary_pool(be);
	return p && p->last_error[0] ? p->last_error : NULL;
}

bool health_pool_unreachable(const Pool *p, bool in_backoff)
{
	return !p->replica && p->failing && p->backend->primary_state == REPLICA_DOWN &&
	       (!in_backoff || g_now < p->next_connect_at);
}

void health_refuse(Client *c, const Pool *p)
{
	char msg[512];
	/* the pool's own login error first: it is what this client's connection met */
	const char *why = p->last_error[0] ? p->last_error : health_primary_error(p->backend);
	snprintf(msg, sizeof(msg), "backend \"%s\" is not reachable: %s", p->backend->name,
	         why ? why : "its health check failed");
	client_wait_failed(c, "57P03", msg);
}
