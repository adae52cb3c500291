/*
 * pool: see include/pool.h.
 *
 * Hand-out: a client that needs a server takes the most recently used idle
 * one (warm caches, and the oldest idle ones age out), or waits FIFO. A
 * server that becomes free goes to the first waiting client whose tenant
 * is below its pool_size, else back to idle. New connections are opened
 * only for waiting clients, within the backend's pool_size, and not while
 * the backend is in its server_login_retry back-off.
 */
#include "pool.h"

#include "client.h"
#include "control.h"
#include "health.h"
#include "log.h"
#include "pgtenant.h"
#include "server.h"
#include "tenant.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

List g_pools = {&g_pools, &g_pools};
static Backend *backends;

static void target_init(PoolTarget *t)
{
	list_init(&t->idle_pools);
	list_init(&t->wait_pools);
}

void pool_backends_build(const Config *cfg)
{
	for (int i = 0; i < cfg->n_backends; i++) {
		const BackendConf *bc = &cfg->backends[i];
		Backend *be = pool_backend(bc->name);
		if (!be) {
			be = xcalloc(1, sizeof(*be));
			target_init(&be->target);
			be->name = xstrdup(bc->name);
			be->next = backends;
			backends = be;
		} else {
			free(be->host);
		}
		be->host = xstrdup(bc->host);
		be->port = bc->port;
		be->pool_size = bc->pool_size > 0 ? bc->pool_size : cfg->default_pool_size;
		be->min_pool_size = bc->min_pool_size;
		be->server_tls_mode = config_backend_server_tls_mode(cfg, bc);
		be->dbname = bc->dbname;
		be->user = bc->user;
		be->password = bc->password;
		for (int r = 0; r < be->n_replicas; r++)
			be->replicas[r]->configured = false;
		for (int r = 0; r < bc->n_replicas; r++) {
			Replica *rep = NULL;
			for (int k = 0; k < be->n_replicas && !rep; k++)
				if (strcmp(be->replicas[k]->host, bc->replicas[r].host) == 0 &&
				    be->replicas[k]->port == bc->replicas[r].port)
					rep = be->replicas[k];
			if (!rep) {
				rep = xcalloc(1, sizeof(*rep));
				target_init(&rep->target);
				rep->host = xstrdup(bc->replicas[r].host);
				rep->port = bc->replicas[r].port;
				be->replicas =
				        xrealloc(be->replicas,
				                 sizeof(Replica *) * (size_t)(be->n_replicas + 1));
				be->replicas[be->n_replicas++] = rep;
			}
			rep->configured = true;
			rep->pool_size = config_backend_replica_pool_size(bc);
		}
	}
}

void pool_foreach_backend(void (*fn)(Backend *be, void *arg), void *arg)
{
	for (Backend *be = backends; be; be = be->next)
		fn(be, arg);
}

Pool *pool_replica_of(Pool *primary, Replica *r)
{
	Pool *p = pool_get(primary->backend, r, primary->dbname, primary->user, primary->password);
	p->has_shared = primary->has_shared;
	p->needs_state = primary->needs_state;
	return p;
}

static bool replica_eligible(const Replica *r)
{
	return r->configured && r->state == REPLICA_UP && r->lag_us <= g_cfg->max_replica_lag;
}

Replica *pool_pick_replica(Backend *be)
{
	Replica *best = NULL;
	/* start the scan one further each time, so replicas tied on load take turns */
	unsigned start = be->replica_turn++;
	for (int k = 0; k < be->n_replicas; k++) {
		Replica *r = be->replicas[(start + (unsigned)k) % (unsigned)be->n_replicas];
		if (replica_eligible(r) && (!best || r->inflight < best->inflight))
			best = r;
	}
	return best;
}

Backend *pool_backend(const char *name)
{
	for (Backend *be = backends; be; be = be->next)
		if (strcmp(be->name, name) == 0)
			return be;
	return NULL;
}

Pool *pool_get(Backend *be, Replica *replica, const char *dbname, const char *user,
               const char *password)
{
	List *it;
	list_for_each(it, &g_pools)
	{
		Pool *p = list_entry(it, Pool, node);
		if (p->backend == be && p->replica == replica && strcmp(p->dbname, dbname) == 0 &&
		    strcmp(p->user, user) == 0) {
			if (password && (!p->password || strcmp(p->password, password) != 0)) {
				free(p->password);
				p->password = xstrdup(password);
			}
			return p;
		}
	}
	Pool *p = xcalloc(1, sizeof(*p));
	p->backend = be;
	p->replica = replica;
	p->dbname = xstrdup(dbname);
	p->user = xstrdup(user);
	p->password = password ? xstrdup(password) : NULL;
	list_init(&p->idle);
	list_init(&p->active);
	list_init(&p->login);
	list_init(&p->busy);
	list_init(&p->waiting);
	list_init(&p->ring);
	list_init(&p->welcome_wait);
	list_init(&p->idle_node);
	list_init(&p->wait_node);
	params_init(&p->welcome);
	list_append(&g_pools, &p->node);
	return p;
}

static int tenant_limit(const Tenant *t)
{
	return t->pool_size;
}

static int list_count(const List *l)
{
	int n = 0;
	const List *it;
	list_for_each(it, l) n++;
	return n;
}

TenantQueue *pool_tenant_queue(Pool *p, Tenant *t)
{
	TenantQueue *q;
	for (q = t->queues; q; q = q->next)
		if (q->pool == p)
			return q;
	q = xcalloc(1, sizeof(*q));
	list_init(&q->ring_node);
	list_init(&q->clients);
	q->tenant = t;
	q->pool = p;
	q->next = t->queues;
	t->queues = q;
	return q;
}

void pool_tenant_linked(Pool *p, Tenant *t)
{
	if (t->n_servers < t->reserved_conns)
		p->reserved_used++;
	t->n_servers++;
	p->n_linked++;
	if (p->replica)
		p->replica->inflight++;
}

void pool_tenant_unlinked(Pool *p, Tenant *t)
{
	t->n_servers--;
	p->n_linked--;
	if (p->replica)
		p->replica->inflight--;
	if (t->n_servers < t->reserved_conns)
		p->reserved_used--;
}

static void add_reservation(Tenant *t, void *arg)
{
	(void)arg;
	if (t->conf->reserved_conns <= 0 || t->removed)
		return;
	Pool *p = tenant_pool_for(t, NULL);
	if (!p)
		return;
	p->reserved_total += t->conf->reserved_conns;
	p->reserved_used +=
	        t->n_servers < t->conf->reserved_conns ? t->n_servers : t->conf->reserved_conns;
}

void pool_reservations_build(void)
{
	List *it;
	list_for_each(it, &g_pools)
	{
		Pool *p = list_entry(it, Pool, node);
		p->reserved_total = 0;
		p->reserved_used = 0;
	}
	tenant_foreach(add_reservation, NULL);
}

/*
 * May a client of t take one more server of p now? Its own pool_size caps it; beyond
 * its reservation it may only use connections nobody else has reserved.
 */
static bool tenant_may_take(const Pool *p, const Tenant *t)
{
	if (t->n_servers >= tenant_limit(t) || control_is_paused(t))
		return false;
	if (t->n_servers < t->reserved_conns)
		return true;
	int unused_reserved = p->reserved_total - p->reserved_used;
	return p->n_linked + unused_reserved < pool_cap(p);
}

/* Does another tenant's session state sit on s (temp tables, LISTEN, SETs)? Then t may not have it
 * yet. */
static inline bool left_by_other(const ServerConn *s, const Tenant *t)
{
	return s->marked_by && s->marked_by != t;
}

/*
 * The idle server to hand to t: one already holding t's state if any, else the
 * most recent one no other tenant left session state on, else the most recent.
 */
static ServerConn *pick_idle(Pool *p, const Tenant *t)
{
	List *it;
	ServerConn *clean = NULL;
	for (it = p->idle.prev; it != &p->idle; it = it->prev) {
		ServerConn *s = list_entry(it, ServerConn, node);
		if (left_by_other(s, t))
			continue;
		if (t->state.sql && s->st_sql == t->state.sql)
			return s;
		if (!clean)
			clean = s;
		if (!t->state.sql)
			break;
	}
	return clean ? clean : list_entry(p->idle.prev, ServerConn, node);
}

/*
 * Another tenant's session state is wiped before t gets s: the reset runs first (its
 * failure closes s) and s comes back through pool_server_ready to a waiting client.
 */
static bool reset_for(ServerConn *s, const Tenant *t)
{
	if (!left_by_other(s, t)) {
		/* server_check_query: a connection idle longer than server_check_delay proves it
		 * still works before anyone gets it (a failing check closes it) */
		const char *q = g_cfg->server_check_query;
		if (!q || !*q || g_now - s->last_used <= g_cfg->server_check_delay)
			return false;
		s->last_used = g_now;
		server_check(s, q);
		return true;
	}
	log_debug("S-%p reset before tenant %s gets it", (void *)s, t->name);
	server_reset(s, "DISCARD ALL", true);
	return true;
}

bool pool_acquire(Client *c)
{
	Pool *p = c->pool;

	if (p->rls_refusal[0] && c->tenant->conf->mode == TENANT_MODE_SHARED) {
		client_wait_failed(c, "42501", p->rls_refusal);
		return false;
	}
	if (p->tls_unverified && p->failing && g_now < p->next_connect_at && list_empty(&p->idle)) {
		/* the backend's certificate did not verify: say so now, not after
		 * query_wait_timeout */
		client_wait_failed(c, "08006", p->last_error);
		return false;
	}
	/* others may wait for what they cannot take (their own limits): they do not hold this
	 * tenant back, but its own earlier waiters go first */
	bool resetting = false;
	if (!list_empty(&p->idle) &&
	    (p->n_waiting == 0 || pool_tenant_queue(p, c->tenant)->n_waiting == 0) &&
	    tenant_may_take(p, c->tenant)) {
		ServerConn *s = pick_idle(p, c->tenant);
		resetting = reset_for(s, c->tenant);
		if (!resetting) {
			stats_waited(c, 0);
			server_link(s, c);
			return true;
		}
	}
	if (!resetting && health_pool_unreachable(p, true)) {
		/* the primary failed its check and the pool's own login too: no hang */
		health_refuse(c, p);
		return false;
	}
	c->wait_start = g_now;
	client_set_state(c, CL_WAITING);
	if (resetting)
		return false;
	pool_maybe_connect(p);
	return false;
}

void pool_unwait(Client *c)
{
	if (c->state == CL_WAITING) {
		c->tenant->stats.wait_time_us += (uint64_t)(g_now - c->wait_start);
		client_set_state(c, CL_IDLE);
	}
}

/*
 * Gives s to the next waiting client in weighted round-robin over tenants
 * (FIFO within a tenant), skipping tenants at their limit or paused.
 */
static bool hand_to_waiter(ServerConn *s)
{
	Pool *p = s->pool;
	int queues = p->n_queues; /* counted, not walked: a thousand tenants may wait */

	for (int i = 0; i < queues && !list_empty(&p->ring); i++) {
		TenantQueue *q = list_entry(p->ring.next, TenantQueue, ring_node);
		int weight = q->tenant->weight;
		if (q->credit <= 0 || !tenant_may_take(p, q->tenant)) {
			/* its turn is over (or it cannot take one now): next tenant */
			q->credit = weight;
			list_del(&q->ring_node);
			list_append(&p->ring, &q->ring_node);
			continue;
		}
		Client *c = list_entry(q->clients.next, Client, queue_node);
		if (reset_for(s, c->tenant))
			return true; /* it comes back clean */
		q->credit--;
		if (q->credit <= 0 || q->n_waiting == 1) {
			q->credit = weight;
			list_del(&q->ring_node);
			list_append(&p->ring, &q->ring_node);
		}
		c->tenant->stats.wait_time_us += (uint64_t)(g_now - c->wait_start);
		c->tenant->stats.waits++;
		stats_waited(c, (uint64_t)(g_now - c->wait_start));
		server_link(s, c);
		client_resume(c);
		return true;
	}
	return false;
}

/*
 * When the longest waiting of p's clients started waiting, for a server or
 * for a fresh server's parameters at login (0: none waits).
 */
static usec_t oldest_wait(Pool *p)
{
	usec_t t = 0;
	if (!list_empty(&p->waiting))
		t = list_entry(p->waiting.next, Client, node)->wait_start;
	if (!list_empty(&p->welcome_wait)) {
		usec_t w = list_entry(p->welcome_wait.next, Client, node)->wait_start;
		if (!t || w < t)
			t = w;
	}
	return t;
}

/*
 * Fairness across the pools of one target (a primary or a replica), which
 * share its pool_size: a pool whose servers keep coming back to its own
 * waiters would otherwise starve a pool (another database or role) that has
 * no server and no room to open one. When the target is full and another
 * pool's oldest waiter has waited hand_over_grace longer than this pool's,
 * the returning server is closed and that pool opens one in its place. The
 * grace bounds how often two saturated pools trade a connection (a login
 * each time) while still serving the starved one in bounded time: in the
 * isolation checker's transaction run (many pools over pool_size 2-3) a
 * 100ms grace cost 60% of the throughput, 1s none measurable.
 */
static const usec_t hand_over_grace = USEC_PER_SEC;
#define HAND_OVER_LOOK 8 /* waiting pools looked at per returning server */

static int pool_wanted(Pool *p, int enough);

static bool hand_over(ServerConn *s)
{
	Pool *p = s->pool;
	if (*pool_target_count(p) < pool_cap(p))
		return false; /* the other pools have room to connect themselves */
	usec_t mine = oldest_wait(p);
	usec_t oldest = mine ? mine - hand_over_grace : g_now;
	PoolTarget *tg = pool_target(p);
	Pool *to = NULL, *looked[HAND_OVER_LOOK];
	int n_looked = 0;
	List *it;
	/* the first few waiting pools, not all of them: those looked at go last, so every
	 * waiting pool comes to the front in turn */
	list_for_each(it, &tg->wait_pools)
	{
		Pool *o = list_entry(it, Pool, wait_node);
		if (o == p)
			continue;
		looked[n_looked++] = o;
		usec_t theirs = oldest_wait(o);
		int logging_in = list_count(&o->login);
		if (theirs && theirs < oldest && pool_wanted(o, logging_in) > logging_in &&
		    !(o->failing && g_now < o->next_connect_at)) {
			oldest = theirs;
			to = o;
		}
		if (n_looked == HAND_OVER_LOOK)
			break;
	}
	/* whether one was chosen or not: a pool further back is looked at next time */
	for (int i = 0; i < n_looked; i++) {
		list_del(&looked[i]->wait_node);
		list_append(&tg->wait_pools, &looked[i]->wait_node);
	}
	if (!to)
		return false;
	server_close(s, "handed over to another pool");
	pool_maybe_connect(to);
	return true;
}

void pool_server_ready(ServerConn *s)
{
	Pool *p = s->pool;

	if (s->dirty || g_shutdown) {
		server_close(s, s->dirty ? "state unknown" : "shutdown");
		return;
	}
	if (s->cancels_in_flight > 0) {
		/* a cancel meant for the last client must not reach the next one's statement */
		server_set_state(s, SV_CANCEL_WAIT);
		return;
	}

	if (g_cfg->server_lifetime > 0 && g_now - s->connect_time > g_cfg->server_lifetime) {
		server_close(s, "server_lifetime reached");
		pool_maybe_connect(p);
		return;
	}
	assert(p->n_wait_all == p->n_waiting + list_count(&p->welcome_wait));
	if (*pool_target_waiting(p) > p->n_wait_all && hand_over(s))
		return;
	if (p->n_queues > 0 && hand_to_waiter(s))
		return;
	s->last_used = g_now;
	server_set_state(s, SV_IDLE);
}

void pool_release(ServerConn *s)
{
	Client *c = s->client;

	server_unlink(s);
	if (c && !c->closing)
		client_set_state(c, CL_IDLE);
	if (s->cancels_in_flight > 0) {
		server_set_state(s, SV_CANCEL_WAIT);
		return;
	}
	pool_server_ready(s);
}

void pool_server_gone(ServerConn *s, bool failed_login, const char *why)
{
	Pool *p = s->pool;

	p->n_servers--;
	(*pool_target_count(p))--;
	if (failed_login) {
		p->failing = true;
		p->next_connect_at = g_now + g_cfg->server_login_retry;
		if (why && !p->last_error[0])
			strlcpy_safe(p->last_error, why, sizeof(p->last_error));
		/* clients waiting for their welcome get it now, with defaults */
		List *it, *tmp;
		list_for_each_safe(it, &p->welcome_wait, tmp)
		{
			Client *c = list_entry(it, Client, node);
			client_welcome(c, NULL);
		}
		if (p->replica) {
			/* a replica that refuses connections gets no reads until a health check
			 * passes; its waiting clients go back to be routed again (to the primary or
			 * another) */
			p->replica->state = REPLICA_DOWN;
			list_for_each_safe(it, &p->waiting, tmp)
			{
				Client *c = list_entry(it, Client, node);
				pool_unwait(c);
				client_resume_routing(c);
			}
		}
	}
}

void pool_set_welcome(Pool *p, const Params *server_params)
{
	List *it, *tmp;

	params_copy(&p->welcome, server_params);
	p->welcome_ready = true;
	p->last_error[0] = '\0';
	list_for_each_safe(it, &p->welcome_wait, tmp)
	{
		Client *c = list_entry(it, Client, node);
		client_welcome(c, &p->welcome);
	}
}

/*
 * How many more server connections p's waiting clients could use now: clients
 * that could take one (not paused, below their limits), less the servers that
 * will serve them anyway: idle ones, busy ones on their way back (a reset or a
 * check running, a cancel in flight; pool_server_ready hands them to the next
 * waiter). Counting only the idle ones opened a server past the tenant's
 * pool_size whenever a client asked while the one it would get was still being
 * reset. Dirty ones are closed when they come back: they serve nobody. The
 * answer is exact up to enough (the callers compare it with the servers
 * logging in); past it, it is some number above enough.
 */
static int pool_wanted(Pool *p, int enough)
{
	int wanted = list_empty(&p->welcome_wait) ? 0 : 1;
	List *it;

	wanted -= list_count(&p->idle);
	list_for_each(it, &p->busy)
	{
		if (!list_entry(it, ServerConn, node)->dirty)
			wanted--;
	}
	/*
	 * The ring adds, never takes away: stop once past enough, which is all the
	 * callers ask (more than those logging in?). A pool with a thousand
	 * tenants waiting paid a thousand steps per waiting client without it.
	 */
	list_for_each(it, &p->ring)
	{
		if (wanted > enough)
			break;
		TenantQueue *q = list_entry(it, TenantQueue, ring_node);
		if (tenant_may_take(p, q->tenant)) {
			int room = tenant_limit(q->tenant) - q->tenant->n_servers;
			wanted += q->n_waiting < room ? q->n_waiting : room;
		}
	}
	return wanted;
}

void pool_maybe_connect(Pool *p)
{
	Backend *be = p->backend;
	ServerConn *room = NULL;
	List *it;

	if (g_shutdown)
		return;
	if (p->failing && g_now < p->next_connect_at)
		return;
	/*
	 * Whether a server could be opened at all comes first: a full target with
	 * no idle server of another pool to close opens nothing, and finding that
	 * out costs nothing, while counting what the waiting tenants want walks
	 * them (a saturated pool with a thousand tenants waiting did, for every
	 * client that started to wait).
	 */
	if (*pool_target_count(p) >= pool_cap(p)) {
		list_for_each(it, &pool_target(p)->idle_pools)
		{
			Pool *o = list_entry(it, Pool, idle_node);
			if (o != p) {
				room = list_entry(o->idle.next, ServerConn, node);
				break;
			}
		}
		if (!room)
			return;
	}
	int connecting = list_count(&p->login);
	int wanted = pool_wanted(p, connecting);
	if (p->n_servers < be->min_pool_size && wanted == 0)
		wanted = be->min_pool_size - p->n_servers;
	if (wanted <= connecting)
		return;
	if (room) {
		/* full: an idle server of another pool on the same target makes room */
		server_close(room, "making room for another pool");
		if (*pool_target_count(p) >= pool_cap(p))
			return;
	}
	server_connect(p);
}

static void fail_waiters(Pool *p)
{
	List *it, *tmp;
	char msg[512];
	bool unreachable = health_pool_unreachable(p, false);

	list_for_each_safe(it, &p->waiting, tmp)
	{
		Client *c = list_entry(it, Client, node);
		usec_t limit = config_tenant_query_wait_timeout(g_cfg, c->tenant->conf);
		if (control_is_paused(c->tenant)) {
			c->wait_start =
			        g_now; /* a paused wait does not count against query_wait_timeout */
			continue;
		}
		if (!unreachable && (limit <= 0 || g_now - c->wait_start < limit))
			continue;
		pool_unwait(c);
		if (unreachable) {
			health_refuse(c, p); /* at once, not after query_wait_timeout */
		} else if (p->failing) {
			snprintf(msg, sizeof(msg), "backend \"%s\" is not reachable: %s",
			         p->backend->name,
			         p->last_error[0] ? p->last_error : "connection failed");
			client_wait_failed(c, "57P03", msg);
		} else {
			snprintf(msg, sizeof(msg),
			         "tenant \"%s\": no server connection became free within "
			         "query_wait_timeout",
			         c->tenant->name);
			c->tenant->stats.refused++;
			client_wait_failed(c, "53300", msg);
		}
	}
}

void pool_primary_down(Backend *be, const char *why)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		List *it, *tmp;
		if (p->backend != be || p->replica || list_empty(&p->login))
			continue;
		/* a login on its way to a primary the check could not reach (one that succeeded
		 * during the check would have contradicted it): servers already in use go on */
		strlcpy_safe(p->last_error, why, sizeof(p->last_error));
		list_for_each_safe(it, &p->login, tmp)
		{
			server_close(list_entry(it, ServerConn, node),
			             "the primary failed its health check");
		}
		fail_waiters(p);
	}
}

void pool_maintain(void)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		List *it, *tmp;

		fail_waiters(p);
		list_for_each_safe(it, &p->login, tmp)
		{
			ServerConn *s = list_entry(it, ServerConn, node);
			if (g_now - s->connect_time > g_cfg->server_connect_timeout) {
				strlcpy_safe(p->last_error, "server_connect_timeout reached",
				             sizeof(p->last_error));
				server_close(s, "server_connect_timeout reached");
			}
		}
		list_for_each_safe(it, &p->idle, tmp)
		{
			ServerConn *s = list_entry(it, ServerConn, node);
			if (g_shutdown) {
				server_close(s, "shutdown");
				continue;
			}
			if (g_cfg->server_lifetime > 0 &&
			    g_now - s->connect_time > g_cfg->server_lifetime) {
				server_close(s, "server_lifetime reached");
				continue;
			}
			if (g_cfg->server_idle_timeout > 0 &&
			    g_now - s->last_used > g_cfg->server_idle_timeout &&
			    p->n_servers > p->backend->min_pool_size)
				server_close(s, "server_idle_timeout reached");
		}
		if (p->n_waiting || !list_empty(&p->welcome_wait))
			pool_maybe_connect(p);
	}
}

void pool_kick(Pool *p)
{
	while (p->n_waiting && !list_empty(&p->idle)) {
		if (!hand_to_waiter(list_entry(p->idle.prev, ServerConn, node)))
			break;
	}
	pool_maybe_connect(p);
}

void pool_mark_all_dirty(Pool *p)
{
	List *lists[] = {&p->active, &p->busy, &p->login};
	List *it, *tmp;
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		list_for_each(it, lists[i]) list_entry(it, ServerConn, node)->dirty = true;
	}
	list_for_each_safe(it, &p->idle, tmp)
	        server_close(list_entry(it, ServerConn, node), "reconnect");
}

void pool_close_all(void)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		List *lists[] = {&p->idle, &p->active, &p->login, &p->busy};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			List *it, *tmp;
			list_for_each_safe(it, lists[i], tmp)
			        server_close(list_entry(it, ServerConn, node), NULL);
		}
	}
}

int pool_total_servers(void)
{
	int n = 0;
	List *it;
	list_for_each(it, &g_pools) n += list_entry(it, Pool, node)->n_servers;
	return n;
}
