/*
 * migrate: versioned SQL files applied to every tenant (see migrate.h).
 *
 * Jobs are threads, each with at most one libpq connection open at a time,
 * taken from a shared queue of targets. A job may only open a connection to
 * a backend while fewer than min(--jobs, pool_size) are open to it, so a
 * migration never takes more of a backend than the pooler could; a job whose
 * next target needs another backend closes its connection first. A job keeps
 * its connection for the next target with the same login (schema tenants of
 * one database share it), so 1,000 schemas cost --jobs connections.
 *
 * Every target's run holds a session advisory lock on its history (two
 * runners never migrate one tenant at once; different tenants never wait for
 * each other). Every file runs in a transaction of its own, with the tenant's
 * state committed on the session first, unless its first line says
 * "-- pgtenant: no-transaction".
 */
#include "migrate.h"

#include "pktbuf.h"
#include "sqllex.h"
#include "tenant.h"
#include "audit.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define APP_NAME          "pgtenant migrate"
#define LOCK_RETRIES      3
#define NO_TX_MARKER      "-- pgtenant: no-transaction"
#define EXIT_FAILED       1
#define EXIT_USAGE        2
#define ADVISORY_LOCK_KEY "pgtenant migrate"

/* ---------------------------------------------------------------- files */

MigrateNameResult migrate_parse_name(const char *name, MigrateFile *f)
{
	size_t len = strlen(name);
	memset(f, 0, sizeof(*f));
	if (name[0] != 'V' || len < 4 || strcmp(name + len - 4, ".sql") != 0)
		return MIGRATE_NAME_IGNORED;
	const char *sep = strstr(name, "__");
	if (!sep || sep == name + 1 || sep + 2 >= name + len - 4)
		return MIGRATE_NAME_BAD;

	/* version: digits in parts separated by '.' or '_' (Flyway reads V1_2 as 1.2) */
	Buf norm;
	buf_init(&norm);
	const char *p = name + 1;
	while (p < sep) {
		const char *start = p;
		uint64_t v = 0;
		while (p < sep && *p >= '0' && *p <= '9') {
			if (p - start >= 18)
				goto bad;
			v = v * 10 + (uint64_t)(*p - '0');
			p++;
		}
		if (p == start || f->n_parts == MIGRATE_VERSION_PARTS)
			goto bad;
		f->parts[f->n_parts++] = v;
		buf_printf(&norm, "%s%llu", f->n_parts > 1 ? "." : "", (unsigned long long)v);
		if (p < sep) {
			if (*p != '.' && *p != '_')
				goto bad;
			if (++p == sep)
				goto bad;
		}
	}
	buf_append(&norm, "", 1);
	f->version = (char *)norm.data;
	f->name = xstrdup(name);
	const char *d = sep + 2;
	f->description = xstrndup(d, (size_t)(name + len - 4 - d));
	for (char *c = f->description; *c; c++)
		if (*c == '_')
			*c = ' ';
	return MIGRATE_NAME_OK;
bad:
	buf_free(&norm);
	f->n_parts = 0;
	return MIGRATE_NAME_BAD;
}

int migrate_version_cmp(const MigrateFile *a, const MigrateFile *b)
{
	int n = a->n_parts > b->n_parts ? a->n_parts : b->n_parts;
	for (int i = 0; i < n; i++) {
		uint64_t x = i < a->n_parts ? a->parts[i] : 0, y = i < b->n_parts ? b->parts[i] : 0;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

int32_t migrate_checksum(const char *data, size_t len)
{
	const unsigned char *p = (const unsigned char *)data, *end = p + len;
	uint32_t crc = 0;
	if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
		p += 3;
	/* lines end at \n, \r or \r\n (Java's readLine), the ends themselves left out */
	while (p < end) {
		const unsigned char *line = p;
		while (p < end && *p != '\n' && *p != '\r')
			p++;
		crc = crc32_update(crc, line, (size_t)(p - line));
		if (p < end && *p == '\r')
			p++;
		if (p < end && *p == '\n' && (p == line || p[-1] != '\n'))
			p++;
	}
	return (int32_t)crc;
}

bool migrate_is_no_transaction(const char *data, size_t len)
{
	size_t n = 0, m = strlen(NO_TX_MARKER);
	while (n < len && data[n] != '\n' && data[n] != '\r')
		n++;
	while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
		n--;
	return n == m && memcmp(data, NO_TX_MARKER, m) == 0;
}

void migrate_file_free(MigrateFile *f)
{
	free(f->name);
	free(f->version);
	free(f->description);
	free(f->sql);
}

static int cmp_files(const void *a, const void *b)
{
	return migrate_version_cmp(a, b);
}

static bool read_whole(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	Buf b;
	char chunk[8192];
	size_t n;
	if (!fp) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&b, chunk, n);
	bool ok = !ferror(fp);
	fclose(fp);
	if (!ok) {
		snprintf(err, errlen, "%s: read error", path);
		buf_free(&b);
		return false;
	}
	*outlen = b.len;
	buf_append(&b, "", 1);
	*out = (char *)b.data;
	return true;
}

/* The folder's versioned files in version order; false + err on a bad name or a duplicate. */
static bool load_files(const char *dir, MigrateFile **out, int *n_out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	MigrateFile *v = NULL;
	int n = 0, cap = 0;
	bool ok = true;

	if (!d) {
		snprintf(err, errlen, "migrations folder %s: %s", dir, strerror(errno));
		return false;
	}
	while (ok && (de = readdir(d)) != NULL) {
		MigrateFile f;
		MigrateNameResult r = migrate_parse_name(de->d_name, &f);
		if (r == MIGRATE_NAME_IGNORED)
			continue;
		if (r == MIGRATE_NAME_BAD) {
			snprintf(err, errlen,
			         "%s/%s: not a migration name (V<version>__<description>.sql)", dir,
			         de->d_name);
			ok = false;
			break;
		}
		size_t plen = strlen(dir) + strlen(de->d_name) + 2;
		char *path = xmalloc(plen);
		snprintf(path, plen, "%s/%s", dir, de->d_name);
		ok = read_whole(path, &f.sql, &f.sql_len, err, errlen);
		free(path);
		if (!ok) {
			migrate_file_free(&f);
			break;
		}
		f.checksum = migrate_checksum(f.sql, f.sql_len);
		f.no_transaction = migrate_is_no_transaction(f.sql, f.sql_len);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, sizeof(*v) * (size_t)cap);
		}
		v[n++] = f;
	}
	closedir(d);
	if (ok && n > 1) {
		qsort(v, (size_t)n, sizeof(*v), cmp_files);
		for (int i = 1; i < n && ok; i++)
			if (migrate_version_cmp(&v[i - 1], &v[i]) == 0) {
				snprintf(err, errlen, "%s: %s and %s have the same version", dir,
				         v[i - 1].name, v[i].name);
				ok = false;
			}
	}
	if (!ok) {
		for (int i = 0; i < n; i++)
			migrate_file_free(&v[i]);
		free(v);
		return false;
	}
	*out = v;
	*n_out = n;
	return true;
}

/* ---------------------------------------------------------------- targets */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_login(const MigrateTarget *a, const MigrateTarget *b)
{
	return a->backend_index == b->backend_index && same_str(a->host, b->host) &&
	       a->port == b->port && same_str(a->dbname, b->dbname) && same_str(a->user, b->user) &&
	       same_str(a->password, b->password);
}

static void add_member(MigrateTarget *t, const char *name)
{
	t->members = xrealloc(t->members, sizeof(char *) * (size_t)(t->n_members + 1));
	t->members[t->n_members++] = xstrdup(name);
}

void migrate_target_add(MigrateTargets *ts, const MigrateTarget *t)
{
	if (t->mode == TENANT_MODE_SHARED) {
		for (int i = 0; i < ts->n; i++) {
			MigrateTarget *o = &ts->v[i];
			/* one history per backend database: the first member's login serves all */
			if (o->mode == TENANT_MODE_SHARED && o->backend_index == t->backend_index &&
			    same_str(o->dbname, t->dbname)) {
				for (int m = 0; m < t->n_members; m++)
					add_member(o, t->members[m]);
				return;
			}
		}
	}
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? ts->cap * 2 : 16;
		ts->v = xrealloc(ts->v, sizeof(*ts->v) * (size_t)ts->cap);
	}
	MigrateTarget *n = &ts->v[ts->n++];
	*n = *t;
	n->name = xstrdup(t->name);
	n->host = dup_or_null(t->host);
	n->dbname = dup_or_null(t->dbname);
	n->user = dup_or_null(t->user);
	n->password = dup_or_null(t->password);
	n->sslmode = dup_or_null(t->sslmode);
	n->sslrootcert = dup_or_null(t->sslrootcert);
	n->schema = dup_or_null(t->schema);
	n->search_path = dup_or_null(t->search_path);
	n->tenant_guc = dup_or_null(t->tenant_guc);
	n->members = NULL;
	n->n_members = 0;
	for (int m = 0; m < t->n_members; m++)
		add_member(n, t->members[m]);
}

static void target_free(MigrateTarget *t)
{
	free(t->name);
	free(t->host);
	free(t->dbname);
	free(t->user);
	free(t->password);
	free(t->sslmode);
	free(t->sslrootcert);
	free(t->schema);
	free(t->search_path);
	free(t->tenant_guc);
	for (int m = 0; m < t->n_members; m++)
		free(t->members[m]);
	free(t->members);
}

void migrate_targets_free(MigrateTargets *ts)
{
	for (int i = 0; i < ts->n; i++)
		target_free(&ts->v[i]);
	free(ts->v);
	memset(ts, 0, sizeof(*ts));
}

/* The target of tc (a [tenant] section, or a template's tenant): the login the pooler would use
 * for its server connections, and where its history lives. */
static bool add_conf_target(const Config *cfg, const AuthFile *auth, const TenantConf *tc,
                            MigrateTargets *out, char *err, size_t errlen)
{
	const ConfigKey *tls_key = config_find_key(SECTION_GLOBAL, "server_tls_mode");
	const BackendConf *bc = config_tenant_backend(cfg, tc);
	MigrateTarget t = {0};
	char *member = tc->name;
	char name[CONFIG_NAME_MAX * 3 + 16];
	Buf path = {0};

	if (!bc) {
		snprintf(err, errlen, "tenant %s: no backend", tc->name);
		return false;
	}
	t.mode = tc->mode;
	t.backend_index = tc->backend_index;
	t.host = bc->host;
	t.port = bc->port;
	t.user = (char *)config_tenant_server_user(cfg, tc);
	t.password = t.user ? (char *)config_tenant_server_password(cfg, tc) : NULL;
	if (!t.password && t.user && auth)
		t.password = (char *)authfile_lookup(auth, t.user);
	if (t.password && auth_secret_kind(t.password) != SECRET_PLAIN)
		t.password = NULL; /* a verifier is no password: let libpq find one */
	t.dbname = (char *)(tc->mode == TENANT_MODE_DATABASE ? config_tenant_dbname(cfg, tc)
	                                                     : bc->dbname);
	t.sslmode = (char *)tls_key->enum_names[config_backend_server_tls_mode(cfg, bc)];
	t.sslrootcert = cfg->server_tls_ca_file;
	t.members = &member;
	t.n_members = 1;
	t.name = tc->name;
	if (tc->mode == TENANT_MODE_SCHEMA) {
		t.schema = (char *)config_tenant_schema(tc);
		tenant_search_path(tc, &path);
		buf_append(&path, "", 1);
		t.search_path = (char *)path.data;
	} else if (tc->mode == TENANT_MODE_SHARED) {
		snprintf(name, sizeof(name), "shared:%s/%s", bc->name,
		         t.dbname ? t.dbname : "(user)");
		t.name = name;
		t.tenant_guc = cfg->tenant_guc;
	}
	migrate_target_add(out, &t);
	buf_free(&path);
	return true;
}

bool migrate_tenant_targets(const Config *cfg, const AuthFile *auth, MigrateTargets *out, char *err,
                            size_t errlen)
{
	for (int i = 0; i < cfg->n_tenants; i++)
		if (!add_conf_target(cfg, auth, &cfg->tenants[i], out, err, errlen))
			return false;
	return true;
}

static PGconn *connect_to(const MigrateTarget *t, char *err, size_t errlen);

/* Does a [tenant] section take name, or the schema or database tc (a template's tenant) has? */
static bool section_takes(const Config *cfg, const TenantConf *tc)
{
	for (int i = 0; i < cfg->n_tenants; i++) {
		const TenantConf *o = &cfg->tenants[i];
		if (strcmp(o->name, tc->name) == 0)
			return true;
		if (o->mode != tc->mode || o->backend_index != tc->backend_index)
			continue;
		if (tc->mode == TENANT_MODE_SCHEMA &&
		    strcmp(config_tenant_schema(o), config_tenant_schema(tc)) == 0 &&
		    same_str(config_tenant_dbname(cfg, o), config_tenant_dbname(cfg, tc)))
			return true;
		if (tc->mode == TENANT_MODE_DATABASE &&
		    same_str(config_tenant_dbname(cfg, o), config_tenant_dbname(cfg, tc)))
			return true;
	}
	return false;
}

/* The tenant name that pattern ("t_{tenant}") gives object (a schema or database) for, or
 * false. */
static bool tenant_of_object(const char *pattern, const char *object, char *name, size_t size)
{
	const char *var = strstr(pattern, "{tenant}");
	size_t pre = (size_t)(var - pattern), post = strlen(var + 8), len = strlen(object);

	if (len <= pre + post || strncmp(object, pattern, pre) != 0 ||
	    strcmp(object + len - post, var + 8) != 0 || len - pre - post >= size)
		return false;
	memcpy(name, object + pre, len - pre - post);
	name[len - pre - post] = '\0';
	return true;
}

static int count_var(const char *s)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, "{tenant}")) != NULL; p += 8)
		n++;
	return n;
}

/*
 * The tenants a [template] serves that exist now. Schema mode lists the schemas of the
 * backend's database and database mode the backend's databases that the template's
 * pattern makes; each name the template's match accepts, that has no section and that
 * no earlier template takes, is a target as the pooler would serve it. A pattern
 * without {tenant} (every tenant in one schema or database) and shared mode (one
 * history per backend database) give one target.
 */
static bool migrate_template_targets(const Config *cfg, const AuthFile *auth, MigrateTargets *out,
                                     char *err, size_t errlen)
{
	for (int i = 0; i < cfg->n_templates; i++) {
		const TenantConf *tp = &cfg->templates[i];
		const char *pattern = tp->mode == TENANT_MODE_SCHEMA
		                              ? (tp->schema ? tp->schema : "{tenant}")
		                      : tp->mode == TENANT_MODE_DATABASE ? tp->dbname
		                                                         : NULL;
		if (!pattern || count_var(pattern) == 0) {
			TenantConf *tc = tenant_conf_from_template(tp, tp->name);
			bool ok = add_conf_target(cfg, auth, tc, out, err, errlen);
			tenant_conf_free(tc);
			if (!ok)
				return false;
			continue;
		}
		if (count_var(pattern) > 1) {
			snprintf(err, errlen,
			         "template %s: {tenant} appears more than once in \"%s\": its "
			         "tenants "
			         "cannot be listed",
			         tp->name, pattern);
			return false;
		}
		/* list what exists, logged in as the template's tenants would be */
		MigrateTargets probe = {0};
		TenantConf *pc = tenant_conf_from_template(tp, tp->name);
		bool ok = add_conf_target(cfg, auth, pc, &probe, err, errlen);
		tenant_conf_free(pc);
		if (!ok)
			return false;
		MigrateTarget *lt = &probe.v[0];
		if (tp->mode == TENANT_MODE_DATABASE) {
			const BackendConf *bc = config_tenant_backend(cfg, tp);
			free(lt->dbname);
			lt->dbname = xstrdup(bc && bc->dbname ? bc->dbname : "postgres");
		}
		PGconn *c = connect_to(lt, err, errlen);
		migrate_targets_free(&probe);
		if (!c)
			return false;
		PGresult *r = PQexec(c, tp->mode == TENANT_MODE_SCHEMA
		                                ? "SELECT nspname FROM pg_catalog.pg_namespace"
		                                : "SELECT datname FROM pg_catalog.pg_database "
		                                  "WHERE datallowconn AND NOT datistemplate");
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "template %s: listing its tenants: %s", tp->name,
			         PQerrorMessage(c));
			PQclear(r);
			PQfinish(c);
			return false;
		}
		for (int row = 0; row < PQntuples(r) && ok; row++) {
			char name[CONFIG_NAME_MAX + 1];
			if (!tenant_of_object(pattern, PQgetvalue(r, row, 0), name, sizeof(name)) ||
			    !config_valid_name(name) || config_template_for(cfg, name) != tp)
				continue;
			TenantConf *tc = tenant_conf_from_template(tp, name);
			/* the history a section's tenant keeps there is migrated as that tenant's
			 */
			if (!section_takes(cfg, tc))
				ok = add_conf_target(cfg, auth, tc, out, err, errlen);
			tenant_conf_free(tc);
		}
		PQclear(r);
		PQfinish(c);
		if (!ok)
			return false;
	}
	return true;
}

/* Where targets come from, in order: [tenant] sections, then what templates serve. */
static const MigrateTargetSource migrate_sources[] = {migrate_tenant_targets,
                                                      migrate_template_targets};

/* ---------------------------------------------------------------- options, results */

typedef enum { ACT_STATUS = 0, ACT_RUN, ACT_VALIDATE } Action;
static const char *const action_names[] = {"status", "run", "validate"};

typedef struct Options {
	Action action;
	const char *config;
	char *dir;
	char **tenants;
	int n_tenants;
	int jobs;
	bool dry_run;
	bool json;
	bool pause_traffic;
	usec_t lock_timeout;
	usec_t statement_timeout;
} Options;

typedef enum { RES_OK = 0, RES_FAILED } ResStatus;

typedef struct Result {
	ResStatus status;
	char *error;          /* one line */
	char *failed_version; /* the file a run stopped at */
	Buf applied;          /* versions this run applied (or would apply, dry run), comma list */
	Buf pending;          /* versions not applied */
	Buf changed;          /* applied versions whose file changed (validate) */
	Buf report;           /* status lines */
	char *current;        /* highest successfully applied version */
	int n_applied, n_pending, n_changed;
	usec_t usec;
} Result;

typedef struct Runner {
	const Options *opt;
	const Config *cfg;
	const AuthFile *auth;
	MigrateTarget *targets;
	int n_targets;
	MigrateFile *files;
	int n_files;
	Result *results;
	bool *claimed;
	int *login_id; /* targets with equal ids log in the same way (a connection serves both) */
	int *open;     /* connections open per backend */
	int *limit;    /* min(jobs, pool_size) per backend */
	int *finished; /* target indexes in the order they finished, n_done of them */
	int n_done, n_failed, max_open_seen;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	usec_t start;
} Runner;

typedef struct Job {
	Runner *r;
	PGconn *conn;
	int login; /* login_id of conn, -1 when none */
	int backend;
	bool used; /* conn served a target already: reset its session first */
	PGconn *admin;
} Job;

static void set_error(Result *res, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void set_error(Result *res, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line: libpq's messages end in newlines and may carry DETAIL lines */
	for (char *c = msg; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == ' ')
		msg[--n] = '\0';
	free(res->error);
	res->error = xstrdup(msg);
	res->status = RES_FAILED;
}

static void list_add(Buf *b, const char *v)
{
	if (b->len)
		buf_puts(b, ", ");
	buf_puts(b, v);
}

static const char *buf_str(Buf *b)
{
	if (!b->data)
		return "";
	buf_append(b, "", 1);
	b->len--;
	return (const char *)b->data;
}

/* ---------------------------------------------------------------- SQL helpers */

/* Runs sql; on failure fills err with the message and sqlstate with its code ("" unknown). */
static bool exec_ok(PGconn *c, const char *sql, PGresult **out, char *err, size_t errlen,
                    char sqlstate[6])
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (sqlstate)
		sqlstate[0] = '\0';
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
		if (out)
			*out = res;
		else
			PQclear(res);
		return true;
	}
	if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
		snprintf(err, errlen, "COPY to or from the client is not supported in a migration");
		PQclear(res);
		/* leave the copy state: libpq needs the end of it before the next query */
		if (st == PGRES_COPY_IN)
			PQputCopyEnd(c, "COPY is not supported in a migration");
		while ((res = PQgetResult(c)) != NULL)
			PQclear(res);
		return false;
	}
	const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : NULL;
	if (!msg || !*msg)
		msg = PQerrorMessage(c);
	if (sqlstate && code)
		strlcpy_safe(sqlstate, code, 6);
	snprintf(err, errlen, "%s%s%s%s", msg, code ? " (SQLSTATE " : "", code ? code : "",
	         code ? ")" : "");
	PQclear(res);
	return false;
}

static void append_literal(Buf *b, PGconn *c, const char *s)
{
	char *q = PQescapeLiteral(c, s, strlen(s));
	buf_puts(b, q ? q : "NULL");
	PQfreemem(q);
}

static void append_ident(Buf *b, PGconn *c, const char *s)
{
	char *q = PQescapeIdentifier(c, s, strlen(s));
	buf_puts(b, q ? q : "\"\"");
	PQfreemem(q);
}

/* The history table, qualified: the tenant's schema, or public. */
static void history_name(Buf *b, PGconn *c, const MigrateTarget *t)
{
	append_ident(b, c, t->schema ? t->schema : "public");
	buf_puts(b, "." MIGRATE_HISTORY_TABLE);
}

/* Notices (IF NOT EXISTS skips, a migration's RAISE NOTICE) would break the one-line error. */
static void ignore_notice(void *arg, const char *message)
{
}

static PGconn *connect_to(const MigrateTarget *t, char *err, size_t errlen)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", t->port);
	const char *keys[11], *vals[11];
	int n = 0;
	const char *pairs[][2] = {{"host", t->host},
	                          {"port", port},
	                          {"dbname", t->dbname},
	                          {"user", t->user},
	                          {"password", t->password},
	                          {"application_name", APP_NAME},
	                          {"connect_timeout", "15"},
	                          {"sslmode", t->sslmode},
	                          {"sslrootcert", t->sslrootcert}};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		if (pairs[i][1]) {
			keys[n] = pairs[i][0];
			vals[n++] = pairs[i][1];
		}
	keys[n] = NULL;
	vals[n] = NULL;
	PGconn *c = PQconnectdbParams(keys, vals, 0);
	PQsetNoticeProcessor(c, ignore_notice, NULL);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to %s:%d: %s", t->host ? t->host : "",
		         t->port, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* ---------------------------------------------------------------- history */

typedef struct History {
	PGresult *rows; /* version, checksum, success, description */
	bool exists;
} History;

static int history_find(const History *h, const char *version)
{
	if (!h->rows)
		return -1;
	for (int i = 0; i < PQntuples(h->rows); i++)
		if (strcmp(PQgetvalue(h->rows, i, 0), version) == 0)
			return i;
	return -1;
}

static bool history_applied(const History *h, int row)
{
	return row >= 0 && strcmp(PQgetvalue(h->rows, row, 2), "t") == 0;
}

static bool history_read(PGconn *c, const MigrateTarget *t, History *h, char *err, size_t errlen)
{
	Buf sql, name;
	PGresult *res = NULL;
	bool ok;

	memset(h, 0, sizeof(*h));
	buf_init(&name);
	history_name(&name, c, t);
	buf_append(&name, "", 1);
	buf_init(&sql);
	buf_puts(&sql, "SELECT pg_catalog.to_regclass(");
	append_literal(&sql, c, (const char *)name.data);
	buf_puts(&sql, ") IS NOT NULL");
	buf_append(&sql, "", 1);
	ok = exec_ok(c, (const char *)sql.data, &res, err, errlen, NULL);
	if (ok) {
		h->exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	if (ok && h->exists) {
		buf_reset(&sql, 0);
		buf_printf(&sql, "SELECT version, checksum, success, description FROM %s",
		           (const char *)name.data);
		buf_append(&sql, "", 1);
		ok = exec_ok(c, (const char *)sql.data, &h->rows, err, errlen, NULL);
	}
	buf_free(&sql);
	buf_free(&name);
	return ok;
}

static bool history_create(PGconn *c, const MigrateTarget *t, char *err, size_t errlen)
{
	Buf sql;
	buf_init(&sql);
	buf_puts(&sql, "CREATE TABLE IF NOT EXISTS ");
	history_name(&sql, c, t);
	buf_puts(&sql,
	         " (version text PRIMARY KEY, description text NOT NULL, script text NOT NULL,"
	         " checksum integer NOT NULL,"
	         " applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
	         " duration_ms integer NOT NULL, success boolean NOT NULL)");
	buf_append(&sql, "", 1);
	bool ok = exec_ok(c, (const char *)sql.data, NULL, err, errlen, NULL);
	buf_free(&sql);
	return ok;
}

/* Records f's outcome (a failure after its transaction was rolled back, in one of its own). */
static bool history_record(PGconn *c, const MigrateTarget *t, const MigrateFile *f, usec_t usec,
                           bool success, const char *tail, char *err, size_t errlen)
{
	Buf sql;
	buf_init(&sql);
	buf_puts(&sql, "INSERT INTO ");
	history_name(&sql, c, t);
	buf_puts(&sql, " (version, description, script, checksum, duration_ms, success) VALUES (");
	append_literal(&sql, c, f->version);
	buf_puts(&sql, ", ");
	append_literal(&sql, c, f->description);
	buf_puts(&sql, ", ");
	append_literal(&sql, c, f->name);
	buf_printf(&sql, ", %d, %lld, %s) ON CONFLICT (version) DO UPDATE SET", (int)f->checksum,
	           (long long)(usec / 1000), success ? "true" : "false");
	buf_puts(&sql, " description = excluded.description, script = excluded.script,"
	               " checksum = excluded.checksum, applied_at = excluded.applied_at,"
	               " duration_ms = excluded.duration_ms, success = excluded.success");
	if (tail)
		buf_puts(&sql, tail);
	buf_append(&sql, "", 1);
	bool ok = exec_ok(c, (const char *)sql.data, NULL, err, errlen, NULL);
	buf_free(&sql);
	return ok;
}

/* ---------------------------------------------------------------- one target */

/* Puts the tenant's state in force on the session: search_path (checked) or the tenant GUC. */
static bool apply_state(Job *j, const MigrateTarget *t, char *err, size_t errlen)
{
	Buf sql;
	bool ok;

	buf_init(&sql);
	if (j->used)
		buf_puts(&sql, "RESET ALL; "); /* nothing of the previous tenant carries over */
	if (t->mode == TENANT_MODE_SCHEMA) {
		/* the pooler's check: a missing schema fails (3F000), never falls through to public
		 */
		buf_puts(&sql, "SELECT pg_catalog.set_config('search_path', ");
		append_literal(&sql, j->conn, t->search_path);
		buf_puts(&sql, ", false), ");
		Buf ident;
		buf_init(&ident);
		append_ident(&ident, j->conn, t->schema);
		buf_append(&ident, "", 1);
		append_literal(&sql, j->conn, (const char *)ident.data);
		buf_free(&ident);
		buf_puts(&sql, "::pg_catalog.regnamespace");
	} else if (t->mode == TENANT_MODE_SHARED) {
		buf_puts(&sql, "SELECT pg_catalog.set_config(");
		append_literal(&sql, j->conn, t->tenant_guc);
		buf_puts(&sql, ", '', false)");
	} else {
		buf_puts(&sql, "SELECT 1");
	}
	buf_append(&sql, "", 1);
	ok = exec_ok(j->conn, (const char *)sql.data, NULL, err, errlen, NULL);
	buf_free(&sql);
	j->used = true;
	return ok;
}

static bool advisory_lock(Job *j, const MigrateTarget *t, bool lock, bool *got, char *err,
                          size_t errlen)
{
	Buf sql;
	PGresult *res = NULL;
	buf_init(&sql);
	buf_printf(&sql,
	           "SELECT pg_catalog.%s(pg_catalog.hashtext('" ADVISORY_LOCK_KEY
	           "'), pg_catalog.hashtext(",
	           lock ? "pg_try_advisory_lock" : "pg_advisory_unlock");
	append_literal(&sql, j->conn, t->schema ? t->schema : "");
	buf_puts(&sql, "))");
	buf_append(&sql, "", 1);
	bool ok = exec_ok(j->conn, (const char *)sql.data, &res, err, errlen, NULL);
	buf_free(&sql);
	if (ok) {
		if (got)
			*got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	return ok;
}

static void sleep_usec(usec_t us)
{
	struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void format_timeouts(Buf *sql, const char *scope, const Options *o)
{
	buf_printf(sql, "SET %slock_timeout = %lld; SET %sstatement_timeout = %lld", scope,
	           (long long)(o->lock_timeout / 1000), scope,
	           (long long)(o->statement_timeout / 1000));
}

/* Splits a no-transaction file into its statements (each runs on its own). */
static bool split_statements(const MigrateFile *f, size_t **starts, size_t **lens, int *n)
{
	SqlLexer lx;
	SqlToken tok;
	size_t begin = 0;
	bool any = false;
	int cap = 0;

	*n = 0;
	*starts = NULL;
	*lens = NULL;
	sqllex_init(&lx, f->sql, f->sql_len);
	for (;;) {
		SqlTokType ty = sqllex_next(&lx, &tok);
		if (ty == SQLTOK_ERROR)
			return false;
		bool end = ty == SQLTOK_EOF || (ty == SQLTOK_SEMI && tok.depth == 0);
		if (!end) {
			if (!any)
				begin = tok.offset;
			any = true;
			continue;
		}
		if (any) {
			if (*n == cap) {
				cap = cap ? cap * 2 : 8;
				*starts = xrealloc(*starts, sizeof(size_t) * (size_t)cap);
				*lens = xrealloc(*lens, sizeof(size_t) * (size_t)cap);
			}
			(*starts)[*n] = begin;
			(*lens)[*n] = (ty == SQLTOK_EOF ? f->sql_len : tok.offset) - begin;
			(*n)++;
		}
		any = false;
		if (ty == SQLTOK_EOF)
			return true;
	}
}

/* Runs one statement (or the whole file), retrying when a lock was not granted in time. */
static bool exec_retrying(Job *j, const char *sql, const char *before, char *err, size_t errlen)
{
	char state[6];
	for (int attempt = 0;; attempt++) {
		if (before && !exec_ok(j->conn, before, NULL, err, errlen, NULL))
			return false;
		if (exec_ok(j->conn, sql, NULL, err, errlen, state))
			return true;
		if (before) {
			char ignored[256];
			exec_ok(j->conn, "ROLLBACK", NULL, ignored, sizeof(ignored), NULL);
		}
		if (strcmp(state, "55P03") != 0 || attempt == LOCK_RETRIES)
			return false;
		sleep_usec((usec_t)500000 << attempt); /* 0.5 s, 1 s, 2 s */
	}
}

/* Applies f; false with err when it failed (rolled back unless no-transaction). */
static bool apply_file(Job *j, const MigrateTarget *t, const MigrateFile *f, char *err,
                       size_t errlen)
{
	const Options *o = j->r->opt;
	usec_t t0 = time_mono_usec();
	Buf setup;
	bool ok = true;
	char rb[8];

	buf_init(&setup);
	if (!f->no_transaction) {
		buf_puts(&setup, "BEGIN; ");
		format_timeouts(&setup, "LOCAL ", o);
		buf_append(&setup, "", 1);
		ok = exec_retrying(j, f->sql, (const char *)setup.data, err, errlen);
		if (ok)
			ok = history_record(j->conn, t, f, time_mono_usec() - t0, true, "; COMMIT",
			                    err, errlen);
		if (!ok && PQtransactionStatus(j->conn) != PQTRANS_IDLE)
			exec_ok(j->conn, "ROLLBACK", NULL, rb, sizeof(rb), NULL);
	} else {
		size_t *starts, *lens;
		int n;
		format_timeouts(&setup, "", o);
		buf_append(&setup, "", 1);
		ok = exec_ok(j->conn, (const char *)setup.data, NULL, err, errlen, NULL);
		if (ok && !split_statements(f, &starts, &lens, &n)) {
			snprintf(err, errlen, "unterminated string, comment or quoted name");
			ok = false;
		} else if (ok) {
			for (int i = 0; i < n && ok; i++) {
				char *stmt = xstrndup(f->sql + starts[i], lens[i]);
				ok = exec_retrying(j, stmt, NULL, err, errlen);
				free(stmt);
			}
			free(starts);
			free(lens);
		}
		if (ok)
			ok = exec_ok(j->conn, "RESET lock_timeout; RESET statement_timeout", NULL,
			             err, errlen, NULL) &&
			     history_record(j->conn, t, f, time_mono_usec() - t0, true, NULL, err,
			                    errlen);
	}
	buf_free(&setup);
	if (!ok) {
		char ignored[256];
		if (PQstatus(j->conn) == CONNECTION_OK)
			history_record(j->conn, t, f, time_mono_usec() - t0, false, NULL, ignored,
			               sizeof(ignored));
	}
	return ok;
}

static bool admin_command(Job *j, const char *cmd, const char *tenant, char *err, size_t errlen)
{
	const Config *cfg = j->r->cfg;
	if (!j->admin) {
		char port[16], host[256];
		const char *user_list = cfg->admin_users ? cfg->admin_users : "";
		char user[128];
		size_t n = strcspn(user_list, ",");
		while (n > 0 && user_list[n - 1] == ' ')
			n--;
		while (*user_list == ' ' && n > 0) {
			user_list++;
			n--;
		}
		if (n == 0 || n >= sizeof(user)) {
			snprintf(err, errlen, "--pause-traffic needs admin_users in the ini");
			return false;
		}
		memcpy(user, user_list, n);
		user[n] = '\0';
		if (cfg->unix_socket_dir && *cfg->unix_socket_dir) {
			strlcpy_safe(host, cfg->unix_socket_dir, sizeof(host));
		} else {
			const char *la = cfg->listen_addr ? cfg->listen_addr : "127.0.0.1";
			size_t hl = strcspn(la, ",");
			if (hl == 0 || hl >= sizeof(host) || (hl == 1 && la[0] == '*'))
				strlcpy_safe(host, "127.0.0.1", sizeof(host));
			else {
				memcpy(host, la, hl);
				host[hl] = '\0';
			}
		}
		snprintf(port, sizeof(port), "%d", cfg->listen_port);
		const char *password = j->r->auth ? authfile_lookup(j->r->auth, user) : NULL;
		if (password && auth_secret_kind(password) != SECRET_PLAIN)
			password = NULL;
		const char *keys[] = {"host",     "port", "dbname", "user", "application_name",
		                      "password", NULL};
		const char *vals[] = {host, port, cfg->admin_db, user, APP_NAME, password, NULL};
		j->admin = PQconnectdbParams(keys, vals, 0);
		if (PQstatus(j->admin) != CONNECTION_OK) {
			snprintf(err, errlen, "cannot reach the pgtenant console at %s:%s: %s",
			         host, port, PQerrorMessage(j->admin));
			PQfinish(j->admin);
			j->admin = NULL;
			return false;
		}
	}
	char sql[CONFIG_NAME_MAX + 32];
	/* tenant names are letters, digits, _ and - (the config checks): no quoting needed */
	snprintf(sql, sizeof(sql), "%s %s", cmd, tenant);
	return exec_ok(j->admin, sql, NULL, err, errlen, NULL);
}

static void set_traffic(Job *j, const MigrateTarget *t, bool pause, Result *res)
{
	char err[1024];
	for (int m = 0; m < t->n_members; m++)
		if (!admin_command(j, pause ? "PAUSE" : "RESUME", t->members[m], err,
		                   sizeof(err))) {
			if (res->status == RES_OK)
				set_error(res, "%s %s: %s", pause ? "PAUSE" : "RESUME",
				          t->members[m], err);
			if (pause)
				return;
		}
}

static void report_line(Result *res, const MigrateTarget *t, const MigrateFile *f,
                        const char *version, const char *desc, const char *state)
{
	buf_printf(&res->report, "%-20s %-10s %-30s %s\n", t->name, f ? f->version : version,
	           f ? f->description : desc, state);
}

/* Reads the history and does the action for one target. */
static void target_work(Job *j, const MigrateTarget *t, Result *res)
{
	Runner *r = j->r;
	const Options *o = r->opt;
	char err[2048];
	History h = {0};
	bool locked = false, paused = false;
	bool writes = o->action == ACT_RUN && !o->dry_run;

	if (!apply_state(j, t, err, sizeof(err))) {
		set_error(res, "%s", err);
		return;
	}
	if (writes) {
		if (!advisory_lock(j, t, true, &locked, err, sizeof(err))) {
			set_error(res, "%s", err);
			return;
		}
		if (!locked) {
			set_error(res, "another pgtenant migrate is migrating it; run again later");
			return;
		}
		if (!history_create(j->conn, t, err, sizeof(err))) {
			set_error(res, "cannot create the history table: %s", err);
			goto out;
		}
	}
	if (!history_read(j->conn, t, &h, err, sizeof(err))) {
		set_error(res, "cannot read the history: %s", err);
		goto out;
	}

	for (int i = 0; i < r->n_files; i++) {
		const MigrateFile *f = &r->files[i];
		int row = history_find(&h, f->version);
		bool applied = history_applied(&h, row);
		if (applied) {
			bool same = atoi(PQgetvalue(h.rows, row, 1)) == f->checksum;
			free(res->current);
			res->current = xstrdup(f->version);
			if (!same) {
				res->n_changed++;
				list_add(&res->changed, f->version);
			}
			if (o->action == ACT_STATUS)
				report_line(res, t, f, NULL, NULL,
				            same ? "applied" : "applied, file changed since");
			continue;
		}
		res->n_pending++;
		list_add(&res->pending, f->version);
		if (o->action == ACT_STATUS)
			report_line(res, t, f, NULL, NULL, row >= 0 ? "failed" : "pending");
		if (o->action != ACT_RUN || res->status != RES_OK)
			continue;
		if (o->dry_run) {
			list_add(&res->applied, f->version);
			res->n_applied++;
			continue;
		}
		if (o->pause_traffic && !paused) {
			paused = true;
			set_traffic(j, t, true, res);
			if (res->status != RES_OK)
				continue;
		}
		if (!apply_file(j, t, f, err, sizeof(err))) {
			set_error(res, "%s failed: %s", f->name, err);
			res->failed_version = xstrdup(f->version);
			continue;
		}
		res->n_pending--;
		res->n_applied++;
		list_add(&res->applied, f->version);
		free(res->current);
		res->current = xstrdup(f->version);
	}
	/* applied versions whose file is gone */
	for (int row = 0; h.rows && row < PQntuples(h.rows); row++) {
		bool found = false;
		for (int i = 0; i < r->n_files && !found; i++)
			found = strcmp(r->files[i].version, PQgetvalue(h.rows, row, 0)) == 0;
		if (!found && o->action == ACT_STATUS)
			report_line(res, t, NULL, PQgetvalue(h.rows, row, 0),
			            PQgetvalue(h.rows, row, 3),
			            strcmp(PQgetvalue(h.rows, row, 2), "t") == 0
			                    ? "applied, no file"
			                    : "failed, no file");
	}
	if (o->action == ACT_VALIDATE && res->n_changed > 0)
		set_error(res, "checksum changed: %s", buf_str(&res->changed));
out:
	if (paused)
		set_traffic(j, t, false, res);
	if (locked && PQstatus(j->conn) == CONNECTION_OK)
		advisory_lock(j, t, false, NULL, err, sizeof(err));
	PQclear(h.rows);
}

/* ---------------------------------------------------------------- jobs */

static void job_close(Job *j)
{
	if (!j->conn)
		return;
	PQfinish(j->conn);
	j->conn = NULL;
	j->login = -1;
	j->used = false;
	pthread_mutex_lock(&j->r->mu);
	j->r->open[j->backend]--;
	pthread_cond_broadcast(&j->r->cv);
	pthread_mutex_unlock(&j->r->mu);
}

/*
 * The next target this job may work on, claimed (under mu): one its open
 * connection serves, else one whose backend has a connection to spare. -1
 * when none is left. *slot is set when a new connection was counted.
 */
static int job_claim(Job *j, bool *slot)
{
	Runner *r = j->r;
	*slot = false;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		int pick = -1;
		bool left = false;
		for (int i = 0; i < r->n_targets; i++) {
			if (r->claimed[i])
				continue;
			left = true;
			if (j->conn && r->login_id[i] == j->login) {
				pick = i;
				break;
			}
			int b = r->targets[i].backend_index;
			if (pick < 0 && !j->conn && r->open[b] < r->limit[b])
				pick = i;
		}
		if (!left) {
			pthread_mutex_unlock(&r->mu);
			return -1;
		}
		if (pick < 0 && j->conn) {
			/* nothing more for this connection: give its backend slot back */
			pthread_mutex_unlock(&r->mu);
			job_close(j);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		if (pick >= 0) {
			r->claimed[pick] = true;
			if (!j->conn) {
				int b = r->targets[pick].backend_index;
				r->open[b]++;
				if (r->open[b] > r->max_open_seen)
					r->max_open_seen = r->open[b];
				*slot = true;
			}
			pthread_mutex_unlock(&r->mu);
			return pick;
		}
		pthread_cond_wait(&r->cv, &r->mu);
	}
}

static void *job_main(void *arg)
{
	Job *j = arg;
	Runner *r = j->r;
	char err[1024];
	bool slot;
	int i;

	while ((i = job_claim(j, &slot)) >= 0) {
		const MigrateTarget *t = &r->targets[i];
		Result *res = &r->results[i];
		usec_t t0 = time_mono_usec();
		if (slot) {
			j->backend = t->backend_index;
			j->conn = connect_to(t, err, sizeof(err));
			if (!j->conn) {
				set_error(res, "%s", err);
				pthread_mutex_lock(&r->mu);
				r->open[t->backend_index]--;
				pthread_cond_broadcast(&r->cv);
				pthread_mutex_unlock(&r->mu);
			} else {
				j->login = r->login_id[i];
			}
		}
		if (j->conn) {
			target_work(j, t, res);
			if (PQstatus(j->conn) != CONNECTION_OK)
				job_close(j);
		}
		res->usec = time_mono_usec() - t0;
		pthread_mutex_lock(&r->mu);
		r->finished[r->n_done++] = i;
		if (res->status != RES_OK)
			r->n_failed++;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
	job_close(j);
	if (j->admin)
		PQfinish(j->admin);
	buf_cache_drain(); /* this thread's block stack (pktbuf.c) dies with it */
	return NULL;
}

/* ---------------------------------------------------------------- output */

static void progress_draw(Runner *r, bool final)
{
	double secs = (double)(time_mono_usec() - r->start) / 1e6;
	int done = r->n_done, n = r->n_targets, width = 30;
	int fill = n ? done * width / n : width;
	double rate = secs > 0 ? done / secs : 0;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = '\0';
	fprintf(stderr, "\r[%s] %d/%d  ok %d  failed %d  left %d  %.1f/s  ETA %.0fs ", bar, done, n,
	        done - r->n_failed, r->n_failed, n - done, rate,
	        rate > 0 ? (n - done) / rate : 0.0);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

static void print_plain(const Runner *r, int i)
{
	const MigrateTarget *t = &r->targets[i];
	const Result *res = &r->results[i];
	const Options *o = r->opt;
	Buf *applied = (Buf *)&res->applied, *pending = (Buf *)&res->pending;
	const char *at = res->current ? res->current : "(none)";

	if (res->status != RES_OK) {
		/* a failure is one line on stderr (CREATE TENANT reads it) */
		fprintf(stderr, "pgtenant migrate: %s: %s\n", t->name, res->error);
		return;
	}
	if (o->json)
		return;
	if (o->action == ACT_RUN && o->dry_run)
		printf("%s: at %s, would apply %s\n", t->name, at,
		       res->n_applied ? buf_str(applied) : "nothing");
	else if (o->action == ACT_RUN && res->n_applied)
		printf("%s: applied %s in %.0f ms, now at %s\n", t->name, buf_str(applied),
		       (double)res->usec / 1000.0, at);
	else if (o->action == ACT_RUN)
		printf("%s: up to date at %s\n", t->name, at);
	else if (o->action == ACT_VALIDATE)
		printf("%s: valid, at %s, %d pending%s%s\n", t->name, at, res->n_pending,
		       res->n_pending ? ": " : "", buf_str(pending));
}

static void json_list(Buf *out, const char *key, Buf *list)
{
	buf_printf(out, ",\"%s\":[", key);
	const char *s = buf_str(list);
	bool first = true;
	while (*s) {
		size_t n = strcspn(s, ",");
		buf_printf(out, "%s\"%.*s\"", first ? "" : ",", (int)n, s);
		first = false;
		s += n;
		while (*s == ',' || *s == ' ')
			s++;
	}
	buf_puts(out, "]");
}

static void print_json(Runner *r, double secs)
{
	Buf out;
	buf_init(&out);
	buf_printf(&out,
	           "{\"action\":\"%s\",\"dry_run\":%s,\"targets\":%d,\"ok\":%d,\"failed\":%d,"
	           "\"seconds\":%.3f,\"max_connections_per_backend\":%d,\"results\":[",
	           action_names[r->opt->action], r->opt->dry_run ? "true" : "false", r->n_targets,
	           r->n_targets - r->n_failed, r->n_failed, secs, r->max_open_seen);
	for (int i = 0; i < r->n_targets; i++) {
		const MigrateTarget *t = &r->targets[i];
		Result *res = &r->results[i];
		buf_puts(&out, i ? ",{\"tenant\":" : "{\"tenant\":");
		audit_json_string(&out, t->name);
		buf_puts(&out, ",\"members\":[");
		for (int m = 0; m < t->n_members; m++) {
			if (m)
				buf_puts(&out, ",");
			audit_json_string(&out, t->members[m]);
		}
		buf_printf(&out, "],\"mode\":\"%s\",\"status\":\"%s\",\"version\":",
		           tenant_mode_name(t->mode), res->status == RES_OK ? "ok" : "failed");
		if (res->current)
			audit_json_string(&out, res->current);
		else
			buf_puts(&out, "null");
		json_list(&out, r->opt->dry_run ? "would_apply" : "applied", &res->applied);
		json_list(&out, "pending", &res->pending);
		json_list(&out, "checksum_changed", &res->changed);
		buf_puts(&out, ",\"failed_version\":");
		if (res->failed_version)
			audit_json_string(&out, res->failed_version);
		else
			buf_puts(&out, "null");
		buf_puts(&out, ",\"error\":");
		if (res->error)
			audit_json_string(&out, res->error);
		else
			buf_puts(&out, "null");
		buf_printf(&out, ",\"ms\":%.1f}", (double)res->usec / 1000.0);
	}
	buf_puts(&out, "]}\n");
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
}

/* ---------------------------------------------------------------- command line */

static void usage(FILE *fp)
{
	fprintf(fp,
	        "Usage: pgtenant migrate CONFIG.ini [status|run|validate] [options]\n\n"
	        "  status             every tenant's versions: applied, pending, failed (default)\n"
	        "  run                apply pending migrations to every tenant\n"
	        "  validate           report applied files whose checksum changed (exit 1)\n\n"
	        "Options:\n"
	        "  --dir DIR              the migrations folder (default: migrations_dir)\n"
	        "  --tenant NAME          only this tenant (repeatable)\n"
	        "  --jobs N               tenants at a time (default 4); never more\n"
	        "                         connections to a backend than its pool_size\n"
	        "  --dry-run              show what run would apply, change nothing\n"
	        "  --lock-timeout DUR     lock_timeout of each migration (default 5s; a\n"
	        "                         migration that times out is retried 3 times)\n"
	        "  --statement-timeout DUR  statement_timeout of each statement (default 0: off)\n"
	        "  --pause-traffic        PAUSE each tenant in the running pgtenant while its\n"
	        "                         migrations run, RESUME it afterwards\n"
	        "  --json                 a JSON summary on stdout instead of lines\n"
	        "  -h, --help             this help\n");
}

static bool parse_args(int argc, char **argv, Options *o, char *err, size_t errlen)
{
	static const struct option opts[] = {{"dir", required_argument, NULL, 'D'},
	                                     {"tenant", required_argument, NULL, 't'},
	                                     {"jobs", required_argument, NULL, 'j'},
	                                     {"dry-run", no_argument, NULL, 'n'},
	                                     {"json", no_argument, NULL, 'J'},
	                                     {"pause-traffic", no_argument, NULL, 'P'},
	                                     {"lock-timeout", required_argument, NULL, 'L'},
	                                     {"statement-timeout", required_argument, NULL, 'S'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	int opt;
	char *end;
	o->jobs = 4;
	o->lock_timeout = 5 * 1000000;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'D':
			free(o->dir);
			o->dir = xstrdup(optarg);
			break;
		case 't':
			o->tenants =
			        xrealloc(o->tenants, sizeof(char *) * (size_t)(o->n_tenants + 1));
			o->tenants[o->n_tenants++] = optarg;
			break;
		case 'j':
			o->jobs = (int)strtol(optarg, &end, 10);
			if (*end || o->jobs < 1 || o->jobs > 1000) {
				snprintf(err, errlen, "--jobs: a number from 1 to 1000, not \"%s\"",
				         optarg);
				return false;
			}
			break;
		case 'n':
			o->dry_run = true;
			break;
		case 'J':
			o->json = true;
			break;
		case 'P':
			o->pause_traffic = true;
			break;
		case 'L':
		case 'S':
			if (!config_parse_duration(optarg, opt == 'L' ? &o->lock_timeout
			                                              : &o->statement_timeout)) {
				snprintf(err, errlen, "--%s: not a duration: \"%s\"",
				         opt == 'L' ? "lock-timeout" : "statement-timeout", optarg);
				return false;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return false;
		}
	}
	if (optind >= argc) {
		snprintf(err, errlen, "no CONFIG.ini given");
		return false;
	}
	o->config = argv[optind++];
	if (optind < argc) {
		const char *a = argv[optind++];
		int k;
		for (k = 0; k < 3 && strcmp(a, action_names[k]) != 0; k++)
			;
		if (k == 3) {
			snprintf(err, errlen, "unknown action \"%s\" (status, run or validate)", a);
			return false;
		}
		o->action = (Action)k;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind]);
		return false;
	}
	if (o->dry_run && o->action != ACT_RUN) {
		snprintf(err, errlen, "--dry-run goes with run");
		return false;
	}
	return true;
}

/* Keeps the targets --tenant names (a shared tenant's group by any member). */
static bool select_targets(MigrateTargets *ts, const Options *o, char *err, size_t errlen)
{
	if (o->n_tenants == 0)
		return true;
	bool *keep = xcalloc((size_t)ts->n + 1, sizeof(bool));
	for (int k = 0; k < o->n_tenants; k++) {
		bool found = false;
		for (int i = 0; i < ts->n; i++) {
			bool match = strcmp(ts->v[i].name, o->tenants[k]) == 0;
			for (int m = 0; m < ts->v[i].n_members && !match; m++)
				match = strcmp(ts->v[i].members[m], o->tenants[k]) == 0;
			if (match)
				keep[i] = found = true;
		}
		if (!found) {
			snprintf(err, errlen, "tenant \"%s\" does not exist", o->tenants[k]);
			free(keep);
			return false;
		}
	}
	int n = 0;
	for (int i = 0; i < ts->n; i++) {
		if (keep[i])
			ts->v[n++] = ts->v[i];
		else
			target_free(&ts->v[i]);
	}
	ts->n = n;
	free(keep);
	return true;
}

static int fail(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;
	fputs("pgtenant migrate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int run_targets(Runner *r)
{
	const Options *o = r->opt;
	int n_jobs = o->jobs < r->n_targets ? o->jobs : r->n_targets;
	Job *jobs = xcalloc((size_t)n_jobs + 1, sizeof(Job));
	pthread_t *threads = xcalloc((size_t)n_jobs + 1, sizeof(pthread_t));
	bool tty = isatty(2) && o->action == ACT_RUN;
	int printed = 0;

	r->start = time_mono_usec();
	for (int k = 0; k < n_jobs; k++) {
		jobs[k].r = r;
		jobs[k].login = -1;
		pthread_create(&threads[k], NULL, job_main, &jobs[k]);
	}
	/* a line per target as it finishes (status: a table at the end); the bar every 200 ms */
	pthread_mutex_lock(&r->mu);
	while (printed < r->n_targets) {
		while (printed < r->n_done) {
			int i = r->finished[printed++];
			pthread_mutex_unlock(&r->mu); /* a finished result no longer changes */
			if (o->json || o->action != ACT_STATUS) {
				if (tty)
					fputs("\r\033[K", stderr);
				print_plain(r, i);
				fflush(stdout);
			}
			pthread_mutex_lock(&r->mu);
		}
		if (tty)
			progress_draw(r, false);
		if (printed == r->n_targets)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	for (int k = 0; k < n_jobs; k++)
		pthread_join(threads[k], NULL);
	if (tty)
		progress_draw(r, true);
	double secs = (double)(time_mono_usec() - r->start) / 1e6;

	int bad = 0;
	if (o->action == ACT_STATUS && !o->json)
		printf("%-20s %-10s %-30s %s\n", "TENANT", "VERSION", "DESCRIPTION", "STATE");
	for (int i = 0; i < r->n_targets; i++) {
		Result *res = &r->results[i];
		if (res->status != RES_OK)
			bad++;
		if (o->action == ACT_STATUS && !o->json) {
			if (res->report.len)
				fwrite(res->report.data, 1, res->report.len, stdout);
			print_plain(r, i);
		}
	}
	if (o->json)
		print_json(r, secs);
	else if (o->action != ACT_STATUS || bad)
		printf("%s: %d tenants, %d ok, %d failed, %.2f s\n", action_names[o->action],
		       r->n_targets, r->n_targets - bad, bad, secs);
	free(jobs);
	free(threads);
	return bad ? EXIT_FAILED : 0;
}

int migrate_main(int argc, char **argv)
{
	Options o = {0};
	ConfigErrors errs = {0};
	char err[1024] = "";
	MigrateTargets ts = {0};
	Runner r = {0};
	Config *cfg = NULL;
	AuthFile *auth = NULL;
	int rc = EXIT_USAGE;

	/* every way out goes through `out`, which frees what was made (nothing leaks) */
	if (!parse_args(argc, argv, &o, err, sizeof(err))) {
		if (*err)
			fail("%s", err);
		usage(stderr);
		goto out;
	}
	time_update();
	cfg = config_load(o.config, &errs);
	if (!cfg) {
		for (int i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		config_errors_free(&errs);
		goto out;
	}
	if (cfg->auth_file && *cfg->auth_file &&
	    !(auth = authfile_load(cfg->auth_file, err, sizeof(err)))) {
		rc = fail("%s", err);
		goto out;
	}
	if (!o.dir) {
		if (!cfg->migrations_dir) {
			rc = fail("no migrations folder: give --dir or set migrations_dir in %s",
			          o.config);
			goto out;
		}
		o.dir = config_relative_path(cfg, cfg->migrations_dir);
	}
	for (size_t s = 0; s < sizeof(migrate_sources) / sizeof(migrate_sources[0]); s++)
		if (!migrate_sources[s](cfg, auth, &ts, err, sizeof(err))) {
			rc = fail("%s", err);
			goto out;
		}
	if (!select_targets(&ts, &o, err, sizeof(err)) ||
	    !load_files(o.dir, &r.files, &r.n_files, err, sizeof(err))) {
		rc = fail("%s", err);
		goto out;
	}
	r.opt = &o;
	r.cfg = cfg;
	r.auth = auth;
	r.targets = ts.v;
	r.n_targets = ts.n;
	r.results = xcalloc((size_t)ts.n + 1, sizeof(Result));
	r.claimed = xcalloc((size_t)ts.n + 1, sizeof(bool));
	r.finished = xcalloc((size_t)ts.n + 1, sizeof(int));
	r.login_id = xcalloc((size_t)ts.n + 1, sizeof(int));
	r.open = xcalloc((size_t)cfg->n_backends + 1, sizeof(int));
	r.limit = xcalloc((size_t)cfg->n_backends + 1, sizeof(int));
	for (int b = 0; b < cfg->n_backends; b++) {
		int ps = cfg->backends[b].pool_size;
		r.limit[b] = ps > 0 && ps < o.jobs ? ps : o.jobs;
	}
	for (int i = 0; i < ts.n; i++) {
		r.login_id[i] = i;
		for (int k = 0; k < i; k++)
			if (same_login(&ts.v[k], &ts.v[i])) {
				r.login_id[i] = r.login_id[k];
				break;
			}
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	rc = run_targets(&r);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);

	for (int i = 0; i < ts.n; i++) {
		Result *res = &r.results[i];
		free(res->error);
		free(res->failed_version);
		free(res->current);
		buf_free(&res->applied);
		buf_free(&res->pending);
		buf_free(&res->changed);
		buf_free(&res->report);
	}
out:
	for (int i = 0; i < r.n_files; i++)
		migrate_file_free(&r.files[i]);
	free(r.files);
	free(r.results);
	free(r.claimed);
	free(r.finished);
	free(r.login_id);
	free(r.open);
	free(r.limit);
	migrate_targets_free(&ts);
	free(o.dir);
	free(o.tenants);
	if (auth)
		authfile_free(auth);
	if (cfg)
		config_free(cfg);
	return rc;
}
