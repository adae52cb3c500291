/*
 * control: see include/control.h. Everything here works through the same
 * lists and hand-out functions as the data path, so a paused tenant's
 * clients simply stay on their pool's waiting list, and a disabled or
 * removed tenant's clients are closed at the point the data path releases
 * their server (transaction end) — never in the middle of a transaction.
 */
#include "control.h"

#include "admin.h"
#include "audit.h"
#include "authq.h"
#include "metrics.h"
#include "client.h"
#include "listener.h"
#include "log.h"
#include "pgtenant.h"
#include "pool.h"
#include "server.h"
#include "template.h"
#include "tenant.h"
#include "tls.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef enum { WAIT_PAUSE, WAIT_CLOSE } WaitKind;

/* A console client waiting for PAUSE or WAIT_CLOSE to complete. */
typedef struct Waiter {
	struct Waiter *next;
	WaitKind kind;
	Client *console;
	Tenant *tenant; /* NULL: all */
} Waiter;

static Waiter *waiters;
static bool paused_all;

static void add_waiter(WaitKind kind, Tenant *t, Client *console)
{
	Waiter *w = xcalloc(1, sizeof(*w));
	w->kind = kind;
	w->tenant = t;
	w->console = console;
	w->next = waiters;
	waiters = w;
}

void control_forget_console(Client *console)
{
	for (Waiter **pp = &waiters; *pp;) {
		if ((*pp)->console == console) {
			Waiter *w = *pp;
			*pp = w->next;
			free(w);
		} else {
			pp = &(*pp)->next;
		}
	}
}

bool control_waits_on(const Tenant *t)
{
	for (const Waiter *w = waiters; w; w = w->next)
		if (w->tenant == t)
			return true;
	return false;
}

bool control_is_paused(const Tenant *t)
{
	return paused_all || (t && t->paused);
}

/* Clients of a tenant that is going away: idle ones now, others when their transaction ends. */
static void evict_idle_clients(Tenant *t, const char *sqlstate, const char *msg)
{
	List *it, *tmp;
	list_for_each_safe(it, &g_idle_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		if (c->tenant == t)
			client_fatal(c, sqlstate, msg, NULL);
	}
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		list_for_each_safe(it, &p->waiting, tmp)
		{
			Client *c = list_entry(it, Client, node);
			if (c->tenant == t) {
				pool_unwait(c);
				client_fatal(c, sqlstate, msg, NULL);
			}
		}
	}
}

bool control_reload(ConfigErrors *errs)
{
	char err[512] = "";
	Config *cfg = config_load(g_cfg->path ? g_cfg->path : "", errs);
	if (!cfg) {
		log_error("reload failed; the old configuration stays in force:");
		for (int i = 0; i < errs->n; i++)
			log_error("  %s", errs->msgs[i]);
		metrics_count_reload(false);
		audit_reload(false, errs->n);
		return false;
	}
	AuthFile *af = NULL;
	if (cfg->auth_file && *cfg->auth_file) {
		af = authfile_load(cfg->auth_file, err, sizeof(err));
		if (!af) {
			errs->msgs = xrealloc(errs->msgs, sizeof(char *) * (size_t)(errs->n + 1));
			errs->msgs[errs->n++] = xstrdup(err);
			config_free(cfg);
			log_error("reload failed; the old configuration stays in force: %s", err);
			metrics_count_reload(false);
			audit_reload(false, errs->n);
			return false;
		}
	}
	/* New certificates and keys serve new connections; open ones keep their session. */
	if (!tls_configure(cfg, err, sizeof(err))) {
		errs->msgs = xrealloc(errs->msgs, sizeof(char *) * (size_t)(errs->n + 1));
		errs->msgs[errs->n++] = xstrdup(err);
		config_free(cfg);
		if (af)
			authfile_free(af);
		log_error("reload failed; the old configuration stays in force: %s", err);
		metrics_count_reload(false);
		audit_reload(false, errs->n);
		return false;
	}

	/* Remember every tenant object before the rebuild, to find the ones that went away. */
	int n_old = 0, cap = 64;
	Tenant **old = xmalloc(sizeof(Tenant *) * (size_t)cap);
	{
		List *lists[] = {&g_idle_clients, &g_active_clients};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			List *it;
			list_for_each(it, lists[i])
			{
				Client *c = list_entry(it, Client, node);
				if (!c->tenant)
					continue;
				if (n_old == cap) {
					cap *= 2;
					old = xrealloc(old, sizeof(Tenant *) * (size_t)cap);
				}
				old[n_old++] = c->tenant;
			}
		}
	}

	/* Backends whose address changed: their open connections drain (closed when released). */
	for (int i = 0; i < cfg->n_backends; i++) {
		Backend *be = pool_backend(cfg->backends[i].name);
		if (be && (strcmp(be->host, cfg->backends[i].host) != 0 ||
		           be->port != cfg->backends[i].port)) {
			List *pit;
			list_for_each(pit, &g_pools)
			{
				Pool *p = list_entry(pit, Pool, node);
				if (p->backend == be)
					pool_mark_all_dirty(p);
			}
		}
	}
	/* Restart-only keys keep their running values; the file's wait (SHOW CONFIG's pending). */
	if (config_hold_restart_keys(cfg, g_cfg) > 0) {
		char names[512];
		config_pending_names(names, sizeof(names));
		log_warning("reload: %s changed in the file; restart pgtenant to apply", names);
	}
	/* The old Config is kept: removed tenants' objects still point into it. */
	retire(g_cfg, (void (*)(void *))config_free);
	g_cfg = cfg;
	g_cfg_epoch++;
	/* The old auth file is kept too: logins in progress hold its secrets (LoginCtx). */
	retire(g_auth, (void (*)(void *))authfile_free);
	g_auth = af;
	pool_backends_build(cfg);
	tenant_registry_build(cfg);
	template_cache_drop(NULL); /* templates may have changed what exists where */
	pool_reservations_build();
	authq_cache_clear(); /* auth_user, auth_query or a backend may have changed */
	log_open(cfg->log_file);

	for (int i = 0; i < n_old; i++) {
		Tenant *t = old[i];
		if (t->removed)
			evict_idle_clients(t, "57P01",
			                   "terminating connection: the tenant was removed from "
			                   "the configuration");
		else if (t->disabled)
			evict_idle_clients(t, "55000",
			                   "terminating connection: the tenant was disabled");
	}
	free(old);
	log_info("configuration reloaded: %d backends, %d tenants", cfg->n_backends,
	         cfg->n_tenants);
	audit_open(cfg->audit_log);
	metrics_count_reload(true);
	audit_reload(true, 0);
	return true;
}

static bool tenant_quiet(Tenant *t)
{
	if (t)
		return t->n_servers == 0;
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		if (!list_empty(&p->active))
			return false;
	}
	return true;
}

static bool dirty_gone(Tenant *t)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		if (t && t->pool != p)
			continue;
		List *lists[] = {&p->idle, &p->active, &p->busy};
		for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
			List *it;
			list_for_each(it, lists[i])
			{
				if (list_entry(it, ServerConn, node)->dirty)
					return false;
			}
		}
	}
	return true;
}

void control_maintain(void)
{
	for (Waiter **pp = &waiters; *pp;) {
		Waiter *w = *pp;
		bool done = w->kind == WAIT_PAUSE ? tenant_quiet(w->tenant) : dirty_gone(w->tenant);
		if (!done) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		admin_command_done(w->console, w->kind == WAIT_PAUSE ? "PAUSE" : "WAIT_CLOSE");
		free(w);
	}
}

void control_pause(Tenant *t, Client *console)
{
	if (t)
		t->paused = true;
	else
		paused_all = true;
	add_waiter(WAIT_PAUSE, t, console);
	control_maintain();
}

static void kick_all_pools(void)
{
	List *pit;
	list_for_each(pit, &g_pools) pool_kick(list_entry(pit, Pool, node));
}

static void unpause(Tenant *t, void *arg)
{
	(void)arg;
	t->paused = false;
}

void control_resume(Tenant *t)
{
	if (t) {
		t->paused = false;
	} else {
		/* RESUME without a name ends every pause, also those given per tenant */
		paused_all = false;
		tenant_foreach(unpause, NULL);
	}
	kick_all_pools();
}

void control_disable(Tenant *t)
{
	t->disabled = true;
	evict_idle_clients(t, "55000", "terminating connection: the tenant was disabled");
}

void control_enable(Tenant *t)
{
	t->disabled = false;
}

void control_kill(Tenant *t)
{
	List *lists[] = {&g_idle_clients, &g_active_clients};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		List *it, *tmp;
		list_for_each_safe(it, lists[i], tmp)
		{
			Client *c = list_entry(it, Client, node);
			if (c->tenant != t)
				continue;
			if (c->server)
				c->server->dirty = true; /* mid-transaction: never reused */
			client_fatal(c, "57P01", "terminating connection due to KILL of the tenant",
			             NULL);
		}
	}
	evict_idle_clients(t, "57P01", "terminating connection due to KILL of the tenant");
	if (t->pool && t->conf->mode == TENANT_MODE_DATABASE)
		pool_mark_all_dirty(t->pool);
}

void control_reconnect(Tenant *t)
{
	List *pit;
	list_for_each(pit, &g_pools)
	{
		Pool *p = list_entry(pit, Pool, node);
		if (!t || t->pool == p)
			pool_mark_all_dirty(p);
	}
}

void control_wait_close(Tenant *t, Client *console)
{
	add_waiter(WAIT_CLOSE, t, console);
	control_maintain();
}

void control_shutdown(void)
{
	if (g_shutdown) {
		log_info("second shutdown request: closing everything now");
		event_base_loopbreak(g_base);
		return;
	}
	log_info("shutting down: waiting up to %lld ms for running transactions",
	         (long long)(g_cfg->shutdown_timeout / USEC_PER_MS));
	g_shutdown = true;
	g_shutdown_deadline = g_now + g_cfg->shutdown_timeout;
	listener_stop();
	client_close_idle_for_shutdown();
}
