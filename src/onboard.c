/*
 * onboard: see include/onboard.h.
 *
 * CREATE TENANT: validate -> create the schema or database (not in shared
 * mode, nor when it is a template's tenant without one) -> write the section
 * to include_dir/NAME.ini (not for a template's tenant) -> `pgtenant migrate
 * CONFIG run --tenant NAME` when migrations_dir is set -> RELOAD -> answer.
 * The section is written before the migration so that the migration finds
 * the tenant in the configuration; it is live only after the RELOAD.
 *
 * DROP TENANT: validate -> disable and wait for its clients (their current
 * transaction ends them; after shutdown_timeout they are killed) -> move the
 * section aside and RELOAD -> drop the schema or database (DROP DATA) ->
 * delete the moved section. A failure puts the section back and enables the
 * tenant again.
 *
 * Steps chain through callbacks: each ends by calling the next, or fail().
 */
#include "onboard.h"

#include "admin.h"
#include "auth.h"
#include "client.h"
#include "conn.h"
#include "control.h"
#include "log.h"
#include "param.h"
#include "pgjob.h"
#include "pgtenant.h"
#include "pktbuf.h"
#include "template.h"
#include "tenant.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATEMENT_TIMEOUT (300 * USEC_PER_SEC)

typedef struct Onboard {
	OnboardRequest *req;
	Client *console; /* NULL once it has gone */
	const BackendConf *backend;
	TenantMode mode;
	char *section;  /* CREATE: the file's text; NULL for a template's tenant */
	char *path;     /* include_dir/NAME.ini */
	char *aside;    /* DROP: where the section waits until the data is gone */
	char *make_sql; /* CREATE: the schema or database; NULL: nothing to create */
	char *undo_sql; /* its undo, which is also DROP DATA's statement */
	char *db;       /* where those statements run */
	char *role;
	PgJob *job;
	bool made_data, wrote_file, moved_file, was_disabled;
	Tenant *tenant; /* DROP */
	const char *step;
	char err_state[6];
	char err[900];
	pid_t child;
	int child_fd;
	struct event *ev; /* the child's output, or the wait for clients */
	Buf child_out;
	usec_t deadline;
} Onboard;

static Onboard *running;

void onboard_request_free(OnboardRequest *req)
{
	if (!req)
		return;
	for (int i = 0; i < req->n_with; i++) {
		free(req->with_keys[i]);
		free(req->with_values[i]);
	}
	free(req);
}

static void onboard_free(Onboard *o)
{
	if (o->ev)
		event_free(o->ev);
	if (o->child_fd >= 0)
		close(o->child_fd);
	pgjob_close(o->job);
	buf_free(&o->child_out);
	onboard_request_free(o->req);
	free(o->section);
	free(o->path);
	free(o->aside);
	free(o->make_sql);
	free(o->undo_sql);
	free(o->db);
	free(o->role);
	free(o);
}

void onboard_forget_console(Client *c)
{
	if (running && running->console == c)
		running->console = NULL;
}

/* The command is over: its answer (unless the console left), and the slot is free. */
static void finish(Onboard *o, bool ok, const char *tag)
{
	if (ok)
		log_info("%s %s: done", tag, o->req->name);
	else
		log_warning("%s", o->err);
	if (o->console) {
		if (ok)
			admin_command_done(o->console, tag);
		else
			admin_command_failed(o->console, o->err_state, o->err);
	}
	if (running == o)
		running = NULL;
	onboard_free(o);
}

static void set_error(Onboard *o, const char *sqlstate, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void set_error(Onboard *o, const char *sqlstate, const char *fmt, ...)
{
	char msg[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(o->err_state, sizeof(o->err_state), "%s", sqlstate ? sqlstate : "XX000");
	snprintf(o->err, sizeof(o->err), "%s TENANT %s failed at step \"%s\": %s",
	         o->req->drop ? "DROP" : "CREATE", o->req->name, o->step, msg);
}

static void run_sql(Onboard *o, const char *sql, PgJobDone done)
{
	if (!o->job) {
		const BackendConf *b = o->backend;
		const char *password = b->password;
		if (!password && g_auth)
			password = authfile_lookup(g_auth, o->role);
		o->job = pgjob_open(g_cfg, b, o->db, o->role, password, "pgtenant onboard");
	}
	pgjob_run(o->job, sql, NULL, STATEMENT_TIMEOUT, done, o);
}

/* ------------------------------------------------------------------ CREATE */

static void create_undone(void *arg, int ntuples, const char *sqlstate, const char *error)
{
	Onboard *o = arg;
	size_t n = strlen(o->err);

	if (error)
		snprintf(o->err + n, sizeof(o->err) - n, "; undoing it failed too: %s", error);
	else
		snprintf(o->err + n, sizeof(o->err) - n, "; what it had created was dropped");
	finish(o, false, "CREATE TENANT");
}

/* A step failed (set_error said how): undo the ones before it, then answer. */
static void create_fail(Onboard *o)
{
	if (o->wrote_file && unlink(o->path) != 0 && errno != ENOENT) {
		size_t n = strlen(o->err);
		snprintf(o->err + n, sizeof(o->err) - n, "; could not remove %s: %s", o->path,
		         strerror(errno));
	}
	if (o->made_data) {
		run_sql(o, o->undo_sql, create_undone);
		return;
	}
	finish(o, false, "CREATE TENANT");
}

static void create_reload(Onboard *o)
{
	ConfigErrors errs = {0};

	template_cache_drop(o->req->name);
	if (!o->section) { /* a template's tenant: served from its next login */
		finish(o, true, "CREATE TENANT");
		return;
	}
	o->step = "reload";
	if (!control_reload(&errs)) {
		set_error(o, "F0000", "%s",
		          errs.n ? errs.msgs[0] : "the configuration was refused");
		config_errors_free(&errs);
		create_fail(o);
		return;
	}
	config_errors_free(&errs);
	Tenant *t = tenant_lookup(o->req->name);
	if (!t || t->tmpl) {
		set_error(o, "XX000", "the tenant is not in the reloaded configuration");
		create_fail(o);
		return;
	}
	finish(o, true, "CREATE TENANT");
}

static void child_reaped(Onboard *o, int status)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		create_reload(o);
		return;
	}
	/* the last line it printed says why */
	buf_append(&o->child_out, "", 1);
	char *text = (char *)o->child_out.data, *end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		*--end = '\0';
	char *last = strrchr(text, '\n');
	last = last ? last + 1 : text;
	if (WIFEXITED(status))
		set_error(o, "58000", "pgtenant migrate exited with status %d%s%.300s",
		          WEXITSTATUS(status), *last ? ": " : "", last);
	else
		set_error(o, "58000", "pgtenant migrate was killed by signal %d", WTERMSIG(status));
	create_fail(o);
}

static void on_child_output(evutil_socket_t fd, short what, void *arg)
{
	Onboard *o = arg;
	char chunk[4096];
	ssize_t n;
	int status;

	time_update();
	if (what & EV_READ) {
		n = read(fd, chunk, sizeof(chunk));
		if (n > 0) {
			if (o->child_out.len < 65536)
				buf_append(&o->child_out, chunk, (size_t)n);
			return;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* end of output: the child is exiting; reaped on the next timeouts */
		event_free(o->ev);
		o->ev = event_new(g_base, -1, EV_PERSIST, on_child_output, o);
		struct timeval tv = {0, 20000};
		event_add(o->ev, &tv);
		close(o->child_fd);
		o->child_fd = -1;
	}
	pid_t r = waitpid(o->child, &status, WNOHANG);
	if (r == 0)
		return;
	event_free(o->ev);
	o->ev = NULL;
	if (r < 0) {
		set_error(o, "58000", "waiting for pgtenant migrate: %s", strerror(errno));
		create_fail(o);
		return;
	}
	child_reaped(o, status);
}

/* `pgtenant migrate CONFIG run --tenant NAME`, this very binary, watched from the loop. */
static void create_migrate(Onboard *o)
{
	char exe[PATH_MAX];
	int fds[2];
	ssize_t n;

	if (!g_cfg->migrations_dir || !*g_cfg->migrations_dir) {
		create_reload(o);
		return;
	}
	o->step = "migrate";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0 || pipe2(fds, O_CLOEXEC) != 0) {
		set_error(o, "58000", "cannot start pgtenant migrate: %s", strerror(errno));
		create_fail(o);
		return;
	}
	exe[n] = '\0';
	pid_t pid = fork();
	if (pid < 0) {
		set_error(o, "58000", "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		create_fail(o);
		return;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		closefrom(3); /* listeners and clients stay with the proxy */
		execl(exe, exe, "migrate", g_cfg->path, "run", "--tenant", o->req->name,
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	o->child = pid;
	o->child_fd = fds[0];
	fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
	o->ev = event_new(g_base, fds[0], EV_READ | EV_PERSIST, on_child_output, o);
	event_add(o->ev, NULL);
	log_info("CREATE TENANT %s: running %s migrate %s run --tenant %s", o->req->name, exe,
	         g_cfg->path, o->req->name);
}

/* Written whole under a hidden name, then renamed: a reload sees all of it or nothing. */
static bool write_atomically(const char *path, const char *text, char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/');
	char tmp[PATH_MAX];
	struct stat st;
	int fd;

	if (slash)
		snprintf(tmp, sizeof(tmp), "%.*s/.%s.tmp", (int)(slash - path), path, slash + 1);
	else
		snprintf(tmp, sizeof(tmp), ".%s.tmp", path);
	if (lstat(path, &st) == 0) {
		snprintf(err, errlen, "%s already exists", path);
		return false;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return false;
	}
	size_t len = strlen(text);
	bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	int saved = errno;
	if (close(fd) != 0 && ok) {
		ok = false;
		saved = errno;
	}
	if (ok && rename(tmp, path) != 0) {
		ok = false;
		saved = errno;
	}
	if (!ok) {
		unlink(tmp);
		snprintf(err, errlen, "%s: %s", path, strerror(saved));
	}
	return ok;
}

static void create_write(Onboard *o)
{
	char err[PATH_MAX + 200];

	if (!o->section) {
		create_migrate(o);
		return;
	}
	o->step = "write section";
	if (!write_atomically(o->path, o->section, err, sizeof(err))) {
		set_error(o, "58030", "%s", err);
		create_fail(o);
		return;
	}
	o->wrote_file = true;
	create_migrate(o);
}

static void create_made(void *arg, int ntuples, const char *sqlstate, const char *error)
{
	Onboard *o = arg;

	if (error) {
		set_error(o, sqlstate, "%s", error);
		create_fail(o);
		return;
	}
	o->made_data = true;
	create_write(o);
}

/* ------------------------------------------------------------------ DROP */

static void drop_restore(Onboard *o)
{
	ConfigErrors errs = {0};

	if (o->moved_file) {
		if (rename(o->aside, o->path) == 0)
			control_reload(&errs);
		config_errors_free(&errs);
	}
	Tenant *t = tenant_lookup(o->req->name);
	if (t && !o->was_disabled)
		control_enable(t);
	finish(o, false, "DROP TENANT");
}

static void drop_done(Onboard *o)
{
	if (o->moved_file)
		unlink(o->aside);
	template_cache_drop(o->req->name);
	if (o->tenant && o->tenant->tmpl)
		tenant_evict_soon(o->tenant);
	finish(o, true, "DROP TENANT");
}

static void drop_data_done(void *arg, int ntuples, const char *sqlstate, const char *error)
{
	Onboard *o = arg;

	if (error) {
		set_error(o, sqlstate, "%s; the tenant was put back", error);
		drop_restore(o);
		return;
	}
	drop_done(o);
}

static void drop_after_clients(Onboard *o)
{
	ConfigErrors errs = {0};

	if (o->path) {
		o->step = "remove section";
		if (rename(o->path, o->aside) != 0) {
			set_error(o, "58030", "%s: %s", o->path, strerror(errno));
			drop_restore(o);
			return;
		}
		o->moved_file = true;
		if (!control_reload(&errs)) {
			set_error(o, "F0000", "%s",
			          errs.n ? errs.msgs[0] : "the configuration was refused");
			config_errors_free(&errs);
			drop_restore(o);
			return;
		}
		config_errors_free(&errs);
	}
	if (o->req->drop_data && o->undo_sql) {
		o->step = "drop data";
		run_sql(o, o->undo_sql, drop_data_done);
		return;
	}
	drop_done(o);
}

static void on_wait_clients(evutil_socket_t fd, short what, void *arg)
{
	Onboard *o = arg;

	time_update();
	if (o->tenant->n_clients > 0 && g_now < o->deadline)
		return;
	if (o->tenant->n_clients > 0) {
		log_warning("DROP TENANT %s: clients still connected after shutdown_timeout: "
		            "closed",
		            o->req->name);
		control_kill(o->tenant);
	}
	event_free(o->ev);
	o->ev = NULL;
	drop_after_clients(o);
}

/* ------------------------------------------------------------------ start */

static void quote_ident(Buf *b, const char *s)
{
	param_quote_ident(b, s);
}

/* The statements that make and unmake the tenant's data (none in shared mode). */
static void data_statements(Onboard *o, const TenantConf *tc)
{
	Buf make, undo;
	const char *owner = config_tenant_server_user(g_cfg, tc);

	if (o->mode == TENANT_MODE_SHARED)
		return;
	if (owner && o->backend->user && strcmp(owner, o->backend->user) == 0)
		owner = NULL; /* the connecting role owns what it creates */
	buf_init(&make);
	buf_init(&undo);
	if (o->mode == TENANT_MODE_SCHEMA) {
		const char *schema = config_tenant_schema(tc);
		buf_puts(&make, "CREATE SCHEMA ");
		quote_ident(&make, schema);
		if (owner) {
			buf_puts(&make, " AUTHORIZATION ");
			quote_ident(&make, owner);
		}
		buf_puts(&undo, "DROP SCHEMA ");
		quote_ident(&undo, schema);
		buf_puts(&undo, " CASCADE");
		o->step = "create schema";
	} else {
		const char *db = config_tenant_dbname(g_cfg, tc);
		buf_puts(&make, "CREATE DATABASE ");
		quote_ident(&make, db);
		if (g_cfg->tenant_template_db && *g_cfg->tenant_template_db) {
			buf_puts(&make, " TEMPLATE ");
			quote_ident(&make, g_cfg->tenant_template_db);
		}
		if (owner) {
			buf_puts(&make, " OWNER ");
			quote_ident(&make, owner);
		}
		buf_puts(&undo, "DROP DATABASE ");
		quote_ident(&undo, db);
		buf_puts(&undo, " WITH (FORCE)");
		o->step = "create database";
	}
	buf_append(&make, "", 1);
	buf_append(&undo, "", 1);
	o->make_sql = (char *)make.data;
	o->undo_sql = (char *)undo.data;
}

/* Where the statements run, as whom: the backend's role, in its database (database mode: postgres).
 */
static void connect_target(Onboard *o, const TenantConf *tc, const char *console_user)
{
	const BackendConf *b = o->backend;

	o->role = xstrdup(b->user ? b->user : console_user);
	if (o->mode == TENANT_MODE_DATABASE)
		o->db = xstrdup("postgres");
	else
		o->db = xstrdup(b->dbname ? b->dbname : o->role);
}

static bool value_ok(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

/* The section of MODE m BACKEND b WITH (...), and its TenantConf for the data step. */
static bool explicit_section(Onboard *o, TenantConf *tc, char *err, size_t errlen)
{
	OnboardRequest *req = o->req;
	Buf b;

	buf_init(&b);
	buf_printf(&b, "; written by CREATE TENANT; removed by DROP TENANT\n[tenant %s]\n",
	           req->name);
	buf_printf(&b, "mode = %s\nbackend = %s\n", tenant_mode_name((TenantMode)req->mode),
	           req->backend);
	bool has_db = false;
	for (int i = 0; i < req->n_with; i++) {
		const char *k = req->with_keys[i], *v = req->with_values[i];
		const ConfigKey *key = config_find_key(SECTION_TENANT, k);
		if (!key || strcasecmp(k, "mode") == 0 || strcasecmp(k, "backend") == 0) {
			snprintf(err, errlen,
			         "\"%s\" is not a key WITH may set (keys of [tenant] "
			         "sections besides mode and backend)",
			         k);
			buf_free(&b);
			return false;
		}
		if (!value_ok(v) || strchr(v, ';') || strchr(v, '#')) {
			snprintf(err, errlen,
			         "the value of %s may not hold control characters, ; or #",
			         key->name);
			buf_free(&b);
			return false;
		}
		buf_printf(&b, "%s = %s\n", key->name, v);
		if (strcmp(key->name, "schema") == 0)
			tc->schema = req->with_values[i];
		else if (strcmp(key->name, "dbname") == 0)
			tc->dbname = req->with_values[i], has_db = true;
		else if (strcmp(key->name, "server_user") == 0)
			tc->server_user = req->with_values[i];
	}
	/* database mode: the tenant's own database, named after it unless WITH names one */
	if (req->mode == TENANT_MODE_DATABASE && !has_db) {
		buf_printf(&b, "dbname = %s\n", req->name);
		tc->dbname = req->name;
	}
	buf_append(&b, "", 1);
	o->section = (char *)b.data;
	return true;
}

static const BackendConf *find_backend(const char *name)
{
	for (int i = 0; i < g_cfg->n_backends; i++)
		if (strcmp(g_cfg->backends[i].name, name) == 0)
			return &g_cfg->backends[i];
	return NULL;
}

static bool start_create(Onboard *o, char *state, char *err, size_t errlen)
{
	OnboardRequest *req = o->req;
	const TenantConf *tmpl = NULL;
	TenantConf tc;
	TenantConf *from_tmpl = NULL;
	Tenant *t = tenant_lookup(req->name);

	if (t && !t->tmpl) {
		snprintf(state, 6, "42710");
		snprintf(err, errlen, "tenant \"%s\" already exists", req->name);
		return false;
	}
	if (req->mode < 0) {
		tmpl = config_template_for(g_cfg, req->name);
		if (req->tmpl[0] && (!tmpl || strcmp(tmpl->name, req->tmpl) != 0)) {
			bool known = false;
			for (int i = 0; i < g_cfg->n_templates; i++)
				known = known || strcmp(g_cfg->templates[i].name, req->tmpl) == 0;
			snprintf(state, 6, "%s", known ? "22023" : "42704");
			if (known)
				snprintf(
				        err, errlen,
				        "template \"%s\" does not serve \"%s\" (its match does not "
				        "accept the name, or an earlier template's does)",
				        req->tmpl, req->name);
			else
				snprintf(err, errlen, "template \"%s\" does not exist", req->tmpl);
			return false;
		}
		if (!tmpl) {
			snprintf(state, 6, "42601");
			snprintf(err, errlen,
			         "no template matches \"%s\": give TEMPLATE, or MODE and BACKEND",
			         req->name);
			return false;
		}
		if (req->n_with) {
			snprintf(state, 6, "0A000");
			snprintf(err, errlen,
			         "WITH is for MODE ... BACKEND ...: a template's tenant "
			         "takes its template's settings");
			return false;
		}
		from_tmpl = tenant_conf_from_template(tmpl, req->name);
		tc = *from_tmpl;
		o->backend = config_tenant_backend(g_cfg, from_tmpl);
		o->mode = tc.mode;
	} else {
		char *dir = config_include_path(g_cfg);
		if (!dir) {
			snprintf(state, 6, "55000");
			snprintf(err, errlen,
			         "CREATE TENANT ... MODE writes the tenant's section "
			         "into include_dir, which is not set");
			return false;
		}
		size_t len = strlen(dir) + strlen(req->name) + 6;
		o->path = xmalloc(len);
		snprintf(o->path, len, "%s/%s.ini", dir, req->name);
		free(dir);
		o->backend = find_backend(req->backend);
		if (!o->backend) {
			snprintf(state, 6, "42704");
			snprintf(err, errlen, "backend \"%s\" does not exist", req->backend);
			return false;
		}
		memset(&tc, 0, sizeof(tc));
		tc.name = req->name;
		tc.mode = (TenantMode)req->mode;
		tc.backend_index = (int)(o->backend - g_cfg->backends);
		o->mode = tc.mode;
		if (!explicit_section(o, &tc, err, errlen)) {
			snprintf(state, 6, "22023");
			return false;
		}
	}
	connect_target(o, &tc, o->console ? o->console->user : "postgres");
	data_statements(o, &tc);
	tenant_conf_free(from_tmpl);
	return true;
}

static bool start_drop(Onboard *o, char *state, char *err, size_t errlen)
{
	OnboardRequest *req = o->req;
	Tenant *t = tenant_lookup(req->name);

	if (!t) {
		snprintf(state, 6, "42704");
		snprintf(err, errlen, "tenant \"%s\" does not exist", req->name);
		return false;
	}
	if (t->tmpl && !req->drop_data) {
		snprintf(state, 6, "55000");
		snprintf(err, errlen,
		         "tenant \"%s\" is served by template \"%s\" and has no section to remove: "
		         "DROP TENANT %s DROP DATA removes its data",
		         req->name, t->tmpl->name, req->name);
		return false;
	}
	if (!t->tmpl) {
		char *dir = config_include_path(g_cfg);
		size_t len = (dir ? strlen(dir) : 0) + strlen(req->name) + 16;
		o->path = xmalloc(len);
		snprintf(o->path, len, "%s/%s.ini", dir ? dir : "", req->name);
		free(dir);
		if (strcmp(t->conf->file, o->path) != 0) {
			snprintf(state, 6, "55000");
			snprintf(err, errlen,
			         "tenant \"%s\" is defined at %s:%d, not in a file of its own in "
			         "include_dir: remove its section by hand",
			         req->name, t->conf->file, t->conf->line);
			return false;
		}
		o->aside = xmalloc(len + 16);
		const char *slash = strrchr(o->path, '/');
		snprintf(o->aside, len + 16, "%.*s/.%s.dropped", (int)(slash - o->path), o->path,
		         slash + 1);
	}
	o->tenant = t;
	o->mode = t->conf->mode;
	o->backend = config_tenant_backend(g_cfg, t->conf);
	connect_target(o, t->conf, o->console ? o->console->user : "postgres");
	data_statements(o, t->conf);
	o->was_disabled = t->disabled;
	return true;
}

void onboard_start(Client *c, OnboardRequest *req)
{
	char state[6] = "", err[600];
	Onboard *o;

	if (running) {
		admin_command_failed(c, "55006",
		                     "another CREATE TENANT or DROP TENANT is running; try again "
		                     "when it has finished");
		onboard_request_free(req);
		return;
	}
	if (!config_valid_name(req->name) ||
	    (g_cfg->admin_db && strcmp(req->name, g_cfg->admin_db) == 0)) {
		snprintf(err, sizeof(err),
		         "invalid tenant name \"%.100s\" (letters, digits, _ and -, at most %d "
		         "characters; not admin_db)",
		         req->name, CONFIG_NAME_MAX);
		admin_command_failed(c, "42602", err);
		onboard_request_free(req);
		return;
	}
	o = xcalloc(1, sizeof(*o));
	o->req = req;
	o->console = c;
	o->child_fd = -1;
	buf_init(&o->child_out);
	o->step = "check";
	if (!(req->drop ? start_drop : start_create)(o, state, err, sizeof(err))) {
		snprintf(o->err_state, sizeof(o->err_state), "%s", state);
		snprintf(o->err, sizeof(o->err), "%s", err);
		finish(o, false, req->drop ? "DROP TENANT" : "CREATE TENANT");
		return;
	}
	running = o;
	log_info("%s TENANT %s: started", req->drop ? "DROP" : "CREATE", req->name);
	if (!req->drop) {
		if (o->make_sql)
			run_sql(o, o->make_sql, create_made);
		else
			create_write(o);
		return;
	}
	o->step = "disable";
	control_disable(o->tenant);
	o->deadline = g_now + g_cfg->shutdown_timeout;
	o->ev = event_new(g_base, -1, EV_PERSIST, on_wait_clients, o);
	struct timeval tv = {0, 100000};
	event_add(o->ev, &tv);
}
