/*
 * config: value parsers, whole files in a temporary directory, the
 * defaults promised by SPEC §2, every validation rule, and a 10,000-tenant
 * load. Files are written fresh per case so each case reads on its own.
 */
#include "config.h"
#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static void write_file(const char *name, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void write_file(const char *name, const char *fmt, ...)
{
	char path[512];
	FILE *fp;
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	if (!fp) {
		perror(path);
		exit(2);
	}
	va_start(ap, fmt);
	vfprintf(fp, fmt, ap);
	va_end(ap);
	fclose(fp);
}

static const char *tmp_path(const char *name)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static void make_subdir(const char *name)
{
	mkdir(tmp_path(name), 0700);
}

/* Is there an error exactly equal to FILE:LINE: msg (msg may be a prefix)? */
static bool has_error(const ConfigErrors *errs, const char *file, int line, const char *msg)
{
	char want[1024];

	/* line 0: a problem of the whole file, reported without a line ("FILE: message") */
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", tmp_path(file), line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", tmp_path(file), msg);
	for (int i = 0; i < errs->n; i++)
		if (strncmp(errs->msgs[i], want, strlen(want)) == 0)
			return true;
	return false;
}

static bool any_error_contains(const ConfigErrors *errs, const char *needle)
{
	for (int i = 0; i < errs->n; i++)
		if (strstr(errs->msgs[i], needle))
			return true;
	return false;
}

static void dump_errors(const ConfigErrors *errs)
{
	for (int i = 0; i < errs->n; i++)
		fprintf(stderr, "    %s\n", errs->msgs[i]);
}

/* Loads tmpdir/name; expects failure and returns the errors. */
static ConfigErrors load_bad(const char *name)
{
	ConfigErrors errs;
	Config *cfg = config_load(tmp_path(name), &errs);

	CHECK_MSG(cfg == NULL, "%s loaded but should not have", name);
	config_free(cfg);
	return errs;
}

static Config *load_good(const char *name)
{
	ConfigErrors errs;
	Config *cfg = config_load(tmp_path(name), &errs);

	CHECK_MSG(cfg != NULL, "%s failed to load", name);
	if (!cfg)
		dump_errors(&errs);
	config_errors_free(&errs);
	return cfg;
}

#define MINIMAL                                                                                    \
	"[pgtenant]\n"                                                                             \
	"tenant_users = *\n"                                                                       \
	"\n"                                                                                       \
	"[backend main]\n"                                                                         \
	"host = 127.0.0.1\n"

/* ---------------------------------------------------------------------- */

static void test_durations_parse_with_every_unit(void)
{
	static const struct {
		const char *text;
		bool ok;
		usec_t want;
	} cases[] = {
	        {"0", true, 0},
	        {"30", true, 30 * USEC_PER_SEC},
	        {"30s", true, 30 * USEC_PER_SEC},
	        {"500ms", true, 500 * USEC_PER_MS},
	        {"250us", true, 250},
	        {"2min", true, 120 * USEC_PER_SEC},
	        {"1h", true, 3600 * USEC_PER_SEC},
	        {"1.5s", true, 1500 * USEC_PER_MS},
	        {" 10 s ", true, 10 * USEC_PER_SEC},
	        {"10MS", true, 10 * USEC_PER_MS},
	        {"0.25", true, 250 * USEC_PER_MS},
	        {"", false, 0},
	        {"s", false, 0},
	        {"abc", false, 0},
	        {"-1", false, 0},
	        {"-5s", false, 0},
	        {"10x", false, 0},
	        {"10m", false, 0},
	        {"10 sec", false, 0},
	        {"1e3", false, 0},
	        {".", false, 0},
	        {"10s5", false, 0},
	        {"10s 5ms", false, 0},
	        {"inf", false, 0},
	        {"nan", false, 0},
	        {"0x10", false, 0},
	        {"99999999999999h", false, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		usec_t v = -42;
		bool ok = config_parse_duration(cases[i].text, &v);
		CHECK_MSG(ok == cases[i].ok, "duration \"%s\": ok=%d", cases[i].text, ok);
		if (ok && cases[i].ok)
			CHECK_MSG(v == cases[i].want, "duration \"%s\" = %lld, want %lld",
			          cases[i].text, (long long)v, (long long)cases[i].want);
	}
}

static void test_sizes_parse_1024_based(void)
{
	static const struct {
		const char *text;
		bool ok;
		int64_t want;
	} cases[] = {
	        {"0", true, 0},
	        {"100", true, 100},
	        {"1kB", true, 1024},
	        {"1kb", true, 1024},
	        {"1.5kB", true, 1536},
	        {"64MB", true, 64LL * 1024 * 1024},
	        {"1GB", true, 1024LL * 1024 * 1024},
	        {" 2 GB ", true, 2LL * 1024 * 1024 * 1024},
	        {"", false, 0},
	        {"kB", false, 0},
	        {"1TB", false, 0},
	        {"1k", false, 0},
	        {"-1", false, 0},
	        {"-1kB", false, 0},
	        {"1 kB x", false, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int64_t v = -42;
		bool ok = config_parse_size(cases[i].text, &v);
		CHECK_MSG(ok == cases[i].ok, "size \"%s\": ok=%d", cases[i].text, ok);
		if (ok && cases[i].ok)
			CHECK_MSG(v == cases[i].want, "size \"%s\" = %lld, want %lld",
			          cases[i].text, (long long)v, (long long)cases[i].want);
	}
}

static void test_booleans_take_every_spelling(void)
{
	static const struct {
		const char *text;
		bool ok;
		bool want;
	} cases[] = {
	        {"yes", true, true},      {"no", true, false},    {"on", true, true},
	        {"off", true, false},     {"true", true, true},   {"false", true, false},
	        {"1", true, true},        {"0", true, false},     {"YES", true, true},
	        {"Off", true, false},     {" true ", true, true}, {"", false, false},
	        {"y", false, false},      {"2", false, false},    {"yess", false, false},
	        {"enable", false, false},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool v = !cases[i].want;
		bool ok = config_parse_bool(cases[i].text, &v);
		CHECK_MSG(ok == cases[i].ok, "bool \"%s\": ok=%d", cases[i].text, ok);
		if (ok && cases[i].ok)
			CHECK_MSG(v == cases[i].want, "bool \"%s\" = %d", cases[i].text, v);
	}
}

static void test_list_contains_matches_trimmed_items_and_star(void)
{
	static const struct {
		const char *list;
		const char *user;
		bool want;
	} cases[] = {
	        {"app, report ,admin", "report", true},
	        {"app,report", "rep", false},
	        {"app", "app", true},
	        {"*", "anyone", true},
	        {"a, *", "b", true},
	        {"", "app", false},
	        {" , ", "app", false},
	        {NULL, "app", false},
	        {"app.acme", "app", false},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(config_list_contains(cases[i].list, cases[i].user) == cases[i].want,
		          "\"%s\" in \"%s\"", cases[i].user,
		          cases[i].list ? cases[i].list : "(null)");
}

static void test_minimal_file_loads_and_resolves_inherited_values(void)
{
	Config *cfg;

	write_file("minimal.ini",
	           MINIMAL "\n[tenant acme]\nmode = schema\nbackend = main\n"
	                   "\n[tenant beta]\nmode = database\nbackend = main\n"
	                   "dbname = beta_db\nquery_timeout = 5s\npool_mode = session\n");
	cfg = load_good("minimal.ini");
	if (!cfg)
		return;
	CHECK(cfg->n_backends == 1);
	CHECK(cfg->n_tenants == 2);
	CHECK_STREQ(cfg->backends[0].host, "127.0.0.1");
	CHECK(cfg->backends[0].port == 5432);
	CHECK(cfg->backends[0].pool_size == 20); /* resolved from default_pool_size */
	CHECK(config_backend_replica_pool_size(&cfg->backends[0]) == 20);
	CHECK(config_backend_server_tls_mode(cfg, &cfg->backends[0]) == SERVER_TLS_DISABLE);
	CHECK(cfg->backends[0].dbname == NULL);

	const TenantConf *acme = &cfg->tenants[0], *beta = &cfg->tenants[1];
	CHECK_STREQ(acme->name, "acme");
	CHECK(acme->mode == TENANT_MODE_SCHEMA);
	CHECK(acme->backend_index == 0);
	CHECK_STREQ(config_tenant_schema(acme), "acme");
	CHECK_STREQ(config_tenant_shared_schemas(acme), "public");
	CHECK_STREQ(config_tenant_id(acme), "acme");
	CHECK_STREQ(config_tenant_users(cfg, acme), "*");
	CHECK(config_tenant_pool_size(cfg, acme) == 5);
	CHECK(config_tenant_pool_mode(cfg, acme) == POOL_MODE_TRANSACTION);
	CHECK(config_tenant_query_timeout(cfg, acme) == 0);
	CHECK(config_tenant_query_wait_timeout(cfg, acme) == 120 * USEC_PER_SEC);
	CHECK(config_tenant_idle_transaction_timeout(cfg, acme) == 0);
	CHECK(config_tenant_client_idle_timeout(cfg, acme) == 0);
	CHECK(config_tenant_read_routing(cfg, acme) == READ_ROUTING_OFF);
	CHECK(acme->weight == 1 && acme->reserved_conns == 0 && acme->max_client_conn == 0);
	CHECK(acme->rate_limit == 0 && !acme->disabled);
	CHECK(config_tenant_server_user(cfg, acme) == NULL);
	CHECK_STREQ(acme->file, tmp_path("minimal.ini"));
	CHECK(acme->line == 7);

	CHECK(beta->mode == TENANT_MODE_DATABASE);
	CHECK(config_tenant_pool_size(cfg, beta) == 20); /* database mode: backend's */
	CHECK_STREQ(config_tenant_dbname(cfg, beta), "beta_db");
	CHECK(config_tenant_query_timeout(cfg, beta) == 5 * USEC_PER_SEC);
	CHECK(config_tenant_pool_mode(cfg, beta) == POOL_MODE_SESSION);
	config_free(cfg);
}

/* SPEC §2, written out independently of config_keys[] so a wrong table default fails. */
static void test_every_default_matches_spec(void)
{
	static const struct {
		const char *key;
		const char *shown;
	} spec[] = {
	        {"listen_addr", "127.0.0.1"},
	        {"listen_port", "6432"},
	        {"unix_socket_dir", ""},
	        {"pool_mode", "transaction"},
	        {"auth_type", "scram-sha-256"},
	        {"auth_file", ""},
	        {"admin_users", ""},
	        {"stats_users", ""},
	        {"admin_db", "pgtenant"},
	        {"tenant_from", "user, database"},
	        {"tenant_users", ""},
	        {"tenant_pool_size", "5"},
	        {"tenant_separator", "."},
	        {"sni_suffix", ""},
	        {"max_client_conn", "10000"},
	        {"default_pool_size", "20"},
	        {"max_packet_size", "1GB"},
	        {"query_timeout", "0"},
	        {"query_wait_timeout", "120s"},
	        {"idle_transaction_timeout", "0"},
	        {"client_idle_timeout", "0"},
	        {"client_login_timeout", "60s"},
	        {"server_connect_timeout", "15s"},
	        {"server_idle_timeout", "600s"},
	        {"server_lifetime", "3600s"},
	        {"server_reset_query", "DISCARD ALL"},
	        {"server_check_query", "select 1"},
	        {"server_check_delay", "30s"},
	        {"server_login_retry", "5s"},
	        {"tcp_keepalive", "yes"},
	        {"tcp_user_timeout", "0"},
	        {"listen_backlog", "128"},
	        {"so_reuseport", "no"},
	        {"stats_period", "60s"},
	        {"auth_user", ""},
	        /* schema-qualified, unlike SPEC's text: an unqualified name let a search_path pick
	         * the table (CVE-2025-12819) */
	        {"auth_query", "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename=$1"},
	        {"metrics_tenant_limit", "100"},
	        {"shutdown_timeout", "30s"},
	        {"tenant_guc", "app.tenant_id"},
	        {"read_routing", "off"},
	        {"max_replica_lag", "10s"},
	        {"read_your_writes", "10s"}, /* = max_replica_lag */
	        {"read_only_functions", ""},
	        {"health_check_period", "5s"},
	        {"max_prepared_statements", "200"},
	        {"max_client_prepared_statements", "1000"}, /* pgtenant's own addition */
	        /* statement statistics and the slow log (issue 17) */
	        {"query_stats", "no"},
	        {"query_stats_max", "100"},
	        {"query_stats_memory", "64MB"},
	        {"log_min_duration", "off"},
	        {"tls_mode", "disable"},
	        {"tls_cert_file", ""},
	        {"tls_key_file", ""},
	        {"tls_ca_file", ""},
	        {"server_tls_mode", "disable"},
	        {"server_tls_ca_file", ""},
	        {"metrics_listen", ""},
	        {"log_file", ""},
	        {"pid_file", ""},
	        {"log_connections", "yes"},
	        {"log_disconnections", "yes"},
	        {"audit_log", ""},
	        {"include_dir", ""},
	        {"migrations_dir", ""},
	};
	static const char *const backend_keys[] = {
	        "host",
	        "port",
	        "dbname",
	        "user",
	        "password",
	        "pool_size",
	        "min_pool_size",
	        "replicas",
	        "replica_pool_size",
	        "server_tls_mode",
	};
	static const char *const tenant_keys[] = {
	        "mode",
	        "backend",
	        "schema",
	        "shared_schemas",
	        "tenant_id",
	        "dbname",
	        "users",
	        "server_user",
	        "server_password",
	        "pool_size",
	        "reserved_conns",
	        "max_client_conn",
	        "weight",
	        "rate_limit",
	        "pool_mode",
	        "query_timeout",
	        "query_wait_timeout",
	        "idle_transaction_timeout",
	        "client_idle_timeout",
	        "read_routing",
	        "log_min_duration",
	        "disabled",
	};
	Config *cfg;
	int n_global = 0;

	write_file("defaults.ini", MINIMAL);
	cfg = load_good("defaults.ini");
	if (!cfg)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(spec); i++) {
		const ConfigKey *k = config_find_key(SECTION_GLOBAL, spec[i].key);
		char buf[256];
		CHECK_MSG(k != NULL, "global key %s missing", spec[i].key);
		if (!k)
			continue;
		config_format_value(cfg, k, buf, sizeof(buf));
		if (strcmp(spec[i].key, "tenant_users") == 0)
			continue; /* MINIMAL sets it */
		CHECK_MSG(strcmp(buf, spec[i].shown) == 0, "%s = \"%s\", SPEC says \"%s\"",
		          spec[i].key, buf, spec[i].shown);
	}
	for (int i = 0; i < config_n_keys; i++)
		if (config_keys[i].section == SECTION_GLOBAL)
			n_global++;
	CHECK_MSG(n_global == (int)ARRAY_SIZE(spec), "%d global keys, SPEC lists %zu", n_global,
	          ARRAY_SIZE(spec));
	for (size_t i = 0; i < ARRAY_SIZE(backend_keys); i++)
		CHECK_MSG(config_find_key(SECTION_BACKEND, backend_keys[i]) != NULL,
		          "backend key %s missing", backend_keys[i]);
	for (size_t i = 0; i < ARRAY_SIZE(tenant_keys); i++)
		CHECK_MSG(config_find_key(SECTION_TENANT, tenant_keys[i]) != NULL,
		          "tenant key %s missing", tenant_keys[i]);

	/* the raw fields, as other modules read them */
	CHECK(cfg->listen_port == 6432);
	CHECK(cfg->pool_mode == POOL_MODE_TRANSACTION);
	CHECK(cfg->auth_type == AUTH_SCRAM);
	CHECK(cfg->n_tenant_from == 2 && cfg->tenant_from[0] == TENANT_SRC_USER &&
	      cfg->tenant_from[1] == TENANT_SRC_DATABASE);
	CHECK(cfg->max_packet_size == 1024LL * 1024 * 1024);
	CHECK(cfg->query_wait_timeout == 120 * USEC_PER_SEC);
	CHECK(cfg->server_lifetime == 3600 * USEC_PER_SEC);
	CHECK(cfg->tcp_keepalive && !cfg->so_reuseport);
	CHECK(cfg->read_your_writes == -1 && config_read_your_writes(cfg) == 10 * USEC_PER_SEC);
	CHECK(cfg->auth_file == NULL && cfg->unix_socket_dir == NULL);
	CHECK(cfg->log_connections && cfg->log_disconnections);
	CHECK(cfg->tls_mode == TLS_DISABLE && cfg->server_tls_mode == SERVER_TLS_DISABLE);

	/* a table default must read back as itself, through the same parsers */
	for (int i = 0; i < config_n_keys; i++) {
		const ConfigKey *k = &config_keys[i];
		char buf[256];
		CHECK_MSG(k->def != NULL && k->help != NULL && k->help[0], "%s: def/help", k->name);
		if (k->section != SECTION_GLOBAL || k->inherit ||
		    strcmp(k->name, "tenant_users") == 0)
			continue;
		config_format_value(cfg, k, buf, sizeof(buf));
		CHECK_MSG(strcmp(buf, k->def) == 0, "%s: shown \"%s\", default text \"%s\"",
		          k->name, buf, k->def);
	}
	config_free(cfg);
}

static void test_values_of_every_type_are_stored(void)
{
	Config *cfg;

	write_file("values.ini", "[pgtenant]\n"
	                         "listen_addr = *\n"
	                         "listen_port = 7000\n"
	                         "pool_mode = Session ; inline comment\n"
	                         "tenant_from = options, sni\n"
	                         "tenant_users = app, report\n"
	                         "max_packet_size = 64MB\n"
	                         "query_timeout = 1500ms\n"
	                         "so_reuseport = on\n"
	                         "read_your_writes = 0\n"
	                         "auth_query = SELECT usename, passwd FROM users WHERE usename=$1\n"
	                         "   server_check_query = select 2\n"
	                         "\n"
	                         "[backend main]\n"
	                         "host = /var/run/postgresql\n"
	                         "port = 5433\n"
	                         "pool_size = 30\n"
	                         "replicas = r1:6000, r2, [::1]:6001\n"
	                         "server_tls_mode = verify-full\n"
	                         "\n"
	                         "[tenant acme]\n"
	                         "mode = shared\n"
	                         "backend = main\n"
	                         "rate_limit = 12.5\n"
	                         "weight = 3\n"
	                         "shared_schemas =\n"
	                         "users = app\n"
	                         "disabled = true\n");
	cfg = load_good("values.ini");
	if (!cfg)
		return;
	CHECK_STREQ(cfg->listen_addr, "*");
	CHECK(cfg->listen_port == 7000);
	CHECK(cfg->pool_mode == POOL_MODE_SESSION);
	CHECK(cfg->n_tenant_from == 2 && cfg->tenant_from[0] == TENANT_SRC_OPTIONS &&
	      cfg->tenant_from[1] == TENANT_SRC_SNI);
	CHECK(cfg->max_packet_size == 64LL * 1024 * 1024);
	CHECK(cfg->query_timeout == 1500 * USEC_PER_MS);
	CHECK(cfg->so_reuseport);
	CHECK(config_read_your_writes(cfg) == 0);
	CHECK_STREQ(cfg->auth_query, "SELECT usename, passwd FROM users WHERE usename=$1");
	CHECK_STREQ(cfg->server_check_query, "select 2");

	const BackendConf *b = &cfg->backends[0];
	CHECK_STREQ(b->host, "/var/run/postgresql");
	CHECK(b->pool_size == 30);
	CHECK(b->n_replicas == 3);
	if (b->n_replicas == 3) {
		CHECK_STREQ(b->replicas[0].host, "r1");
		CHECK(b->replicas[0].port == 6000);
		CHECK_STREQ(b->replicas[1].host, "r2");
		CHECK(b->replicas[1].port == 5433); /* the backend's */
		CHECK_STREQ(b->replicas[2].host, "::1");
		CHECK(b->replicas[2].port == 6001);
	}
	CHECK(config_backend_server_tls_mode(cfg, b) == SERVER_TLS_VERIFY_FULL);
	{
		char buf[128];
		const char *shown = buf;
		config_format_field(config_find_key(SECTION_BACKEND, "replicas"), b, buf,
		                    sizeof(buf));
		CHECK_STREQ(shown, "r1:6000, r2:5433, [::1]:6001");
		config_format_value(cfg, config_find_key(SECTION_GLOBAL, "tenant_from"), buf,
		                    sizeof(buf));
		CHECK_STREQ(shown, "options, sni");
	}

	const TenantConf *t = &cfg->tenants[0];
	CHECK(t->mode == TENANT_MODE_SHARED);
	CHECK(t->rate_limit == 12.5);
	CHECK(t->weight == 3);
	CHECK_STREQ(config_tenant_shared_schemas(t), ""); /* explicitly none */
	CHECK_STREQ(config_tenant_users(cfg, t), "app");
	CHECK(t->disabled);
	config_free(cfg);
}

static void test_misspelt_key_is_reported_with_its_line(void)
{
	ConfigErrors errs;

	write_file("misspelt.ini", MINIMAL "pool_sise = 5\n"
	                                   "\n"
	                                   "[pgtenant]\n");
	/* line 6 is in [backend main]: pool_size is a near miss there */
	errs = load_bad("misspelt.ini");
	CHECK(has_error(
	        &errs, "misspelt.ini", 6,
	        "unknown key \"pool_sise\" in [backend main]; did you mean \"pool_size\"?"));
	config_errors_free(&errs);

	write_file("misspelt2.ini", "; comment\n[pgtenant]\n"
	                            "listen_port = 6432\n"
	                            "pool_sise = 5\n"
	                            "tenant_users = *\n");
	errs = load_bad("misspelt2.ini");
	CHECK(errs.n == 1);
	CHECK(has_error(&errs, "misspelt2.ini", 4, "unknown key \"pool_sise\" in [pgtenant]"));
	CHECK(any_error_contains(&errs, "\"pool_size\" is a key of"));
	if (errs.n != 1)
		dump_errors(&errs);
	config_errors_free(&errs);
}

static void test_bad_section_headers_are_reported_even_without_keys(void)
{
	static const struct {
		const char *header;
		const char *msg;
	} cases[] = {
	        {"[bogus]", "unknown section [bogus]"},
	        {"[tenant bad name!]", "invalid tenant name \"bad name!\""},
	        {"[backend]", "section [backend] needs a name"},
	        {"[tenant]", "section [tenant] needs a name"},
	        {"[pgtenant extra]", "unknown section [pgtenant extra]"},
	        {"[]", "unknown section []"},
	        {"[tenant abc", "section header without closing ']'"},
	        {"[tenant "
	         "a234567890123456789012345678901234567890123456789012345678901234]",
	         "invalid tenant name"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ConfigErrors errs;
		write_file("section.ini", MINIMAL "%s\nsome_key = 1\n", cases[i].header);
		errs = load_bad("section.ini");
		CHECK_MSG(has_error(&errs, "section.ini", 6, cases[i].msg), "header %s",
		          cases[i].header);
		/* keys under a bad header are not reported again */
		CHECK_MSG(errs.n == 1, "header %s: %d errors", cases[i].header, errs.n);
		config_errors_free(&errs);
	}
	/* a 63-character name is fine */
	write_file("longname.ini",
	           MINIMAL "[tenant "
	                   "a23456789012345678901234567890123456789012345678901234567890123]\n"
	                   "mode = shared\nbackend = main\n");
	Config *cfg = load_good("longname.ini");
	if (cfg)
		CHECK(strlen(cfg->tenants[0].name) == 63);
	config_free(cfg);
}

static void test_bad_values_say_what_is_expected(void)
{
	static const struct {
		const char *line;
		const char *msg;
	} cases[] = {
	        {"pool_mode = sessions",
	         "bad value \"sessions\" for pool_mode: expected session or transaction"},
	        {"auth_type = password", "bad value \"password\" for auth_type: expected one of "
	                                 "trust, md5, scram-sha-256 or "
	                                 "cert"},
	        {"read_routing = always", "bad value \"always\" for read_routing"},
	        {"server_tls_mode = verify", "bad value \"verify\" for server_tls_mode"},
	        {"listen_port = 70000",
	         "bad value \"70000\" for listen_port: expected an integer from 1 to 65535"},
	        {"listen_port = 0", "bad value \"0\" for listen_port"},
	        {"default_pool_size = -3", "bad value \"-3\" for default_pool_size"},
	        {"max_client_conn = lots", "bad value \"lots\" for max_client_conn"},
	        {"query_timeout = 10 parsecs",
	         "bad value \"10 parsecs\" for query_timeout: expected a duration"},
	        {"max_packet_size = 1TB", "bad value \"1TB\" for max_packet_size: expected a size"},
	        {"max_packet_size = 10", "max_packet_size must be from 1kB to 1GB"},
	        {"tcp_keepalive = maybe", "bad value \"maybe\" for tcp_keepalive: expected yes/no"},
	        {"tenant_from = user, user", "tenant source \"user\" is listed twice"},
	        {"tenant_from = user, cookie", "\"cookie\" is no tenant source"},
	        {"tenant_from =", "tenant_from needs at least one source"},
	        {"admin_db =", "admin_db may not be empty"},
	        {"stats_period = 10ms", "stats_period must be at least 1s"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ConfigErrors errs;
		write_file("value.ini", MINIMAL "[pgtenant]\n%s\n", cases[i].line);
		errs = load_bad("value.ini");
		CHECK_MSG(has_error(&errs, "value.ini", 7, cases[i].msg), "%s", cases[i].line);
		if (errs.n != 1)
			dump_errors(&errs);
		config_errors_free(&errs);
	}
}

static void test_tenant_and_backend_rules(void)
{
	static const struct {
		const char *body; /* appended to MINIMAL; line 6 onwards */
		int line;
		const char *msg;
	} cases[] = {
	        {"[tenant t]\nmode = shared\nbackend = nowhere\n", 8,
	         "tenant \"t\": backend \"nowhere\" is not defined"},
	        {"[tenant t]\nbackend = main\n", 6, "tenant \"t\": mode is required"},
	        {"[tenant t]\nmode = schema\n", 6, "tenant \"t\": backend is required"},
	        {"[backend other]\nport = 5433\n", 6, "backend \"other\": host is required"},
	        {"[backend other]\nhost =\n", 7, "host may not be empty"},
	        {"[tenant t]\nmode = shared\nbackend =\n", 8, "backend may not be empty"},
	        {"[tenant t]\nmode = shared\nbackend = main\nweight = 0\n", 9,
	         "bad value \"0\" for weight"},
	        {"[tenant t]\nmode = shared\nbackend = main\npool_size = -1\n", 9,
	         "bad value \"-1\" for pool_size"},
	        {"[tenant t]\nmode = shared\nbackend = main\nreserved_conns = -2\n", 9,
	         "bad value \"-2\" for reserved_conns"},
	        {"[tenant t]\nmode = shared\nbackend = main\nreserved_conns = 6\n", 9,
	         "tenant \"t\": reserved_conns 6 is more than its pool_size 5"},
	        {"[tenant t]\nmode = shared\nbackend = main\nmode = schema\n", 9,
	         "duplicate key \"mode\" in [tenant t] (first set at line 7)"},
	        {"[tenant pgtenant]\nmode = shared\nbackend = main\n", 6,
	         "tenant \"pgtenant\" has the name of admin_db"},
	        {"[tenant t]\nmode = shared\nbackend = main\nusers = ,\n", 6,
	         "tenant \"t\": no user may connect (set users or tenant_users)"},
	        {"[tenant t]\nmode = shared\nbackend = main\n[tenant t]\nmode = schema\nbackend = "
	         "main\n",
	         9, "tenant \"t\" is already defined at "},
	        {"[backend main]\nhost = other\n", 6, "backend \"main\" is already defined at "},
	        {"[backend b2]\nhost = h\nreplicas = r1:99999\n", 8, "\"r1:99999\": port must be"},
	        {"[backend b2]\nhost = h\nreplicas = r1,,r2\n", 8, "empty entry"},
	        {"[backend b2]\nhost = h\npool_size = 2\nmin_pool_size = 3\n", 6,
	         "backend \"b2\": min_pool_size 3 is larger than pool_size 2"},
	        {"[tenant t]\nmode = sharded\nbackend = main\n", 7,
	         "bad value \"sharded\" for mode: "
	         "expected one of shared, "
	         "schema or database"},
	        {"[tenant t]\nmode = shared\nbackend = main\nschema =\n", 9,
	         "schema may not be empty"},
	        {"[tenant t]\nmode = shared\nbackend = main\nrate_limit = fast\n", 9,
	         "bad value \"fast\" for rate_limit"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ConfigErrors errs;
		write_file("rule.ini", MINIMAL "%s", cases[i].body);
		errs = load_bad("rule.ini");
		CHECK_MSG(has_error(&errs, "rule.ini", cases[i].line, cases[i].msg), "case %zu: %s",
		          i, cases[i].msg);
		if (!has_error(&errs, "rule.ini", cases[i].line, cases[i].msg))
			dump_errors(&errs);
		config_errors_free(&errs);
	}

	/* no tenant_users and no users: nobody can reach the tenant */
	ConfigErrors errs;
	write_file("nousers.ini", "[backend main]\nhost = h\n[tenant x]\nmode = schema\nbackend = "
	                          "main\n");
	errs = load_bad("nousers.ini");
	CHECK(has_error(&errs, "nousers.ini", 3,
	                "tenant \"x\": no user may connect (set users or tenant_users)"));
	config_errors_free(&errs);
}

static void test_global_rules(void)
{
	static const struct {
		const char *body;
		int line;
		const char *msg;
	} cases[] = {
	        {"auth_type = cert\ntls_mode = require\ntls_cert_file = c\ntls_key_file = k\n", 7,
	         "auth_type = cert needs tls_ca_file"},
	        {"auth_type = cert\ntls_ca_file = ca\n", 7,
	         "auth_type = cert needs tls_mode = allow or require"},
	        {"tls_mode = require\ntls_cert_file = c\n", 7,
	         "tls_mode = allow or require needs tls_cert_file and tls_key_file"},
	        {"tls_mode = allow\n", 7, "tls_mode = allow or require needs"},
	        {"tenant_users = app\n", 7,
	         "duplicate key \"tenant_users\" in [pgtenant] (first set "
	         "at line 2)"},
	        {"include_dir = /nonexistent-pgtenant-dir\n", 7,
	         "include_dir \"/nonexistent-pgtenant-dir\": No such file or directory"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ConfigErrors errs;
		write_file("global.ini", MINIMAL "[pgtenant]\n%s", cases[i].body);
		errs = load_bad("global.ini");
		CHECK_MSG(has_error(&errs, "global.ini", cases[i].line, cases[i].msg), "%s",
		          cases[i].msg);
		if (!has_error(&errs, "global.ini", cases[i].line, cases[i].msg))
			dump_errors(&errs);
		config_errors_free(&errs);
	}

	/* certificate auth with everything it needs loads */
	write_file("cert.ini", MINIMAL "[pgtenant]\nauth_type = cert\ntls_mode = require\n"
	                               "tls_cert_file = c\ntls_key_file = k\ntls_ca_file = ca\n");
	config_free(load_good("cert.ini"));
}

static void test_syntax_problems_are_all_reported(void)
{
	char longline[400];
	ConfigErrors errs;

	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	memcpy(longline, "auth_query = ", 13);
	write_file("syntax.ini",
	           "listen_port = 1\n"   /* 1: outside any section */
	           MINIMAL               /* 2-6 */
	           "just words\n"        /* 7 */
	           "= value\n"           /* 8 */
	           "[pgtenant]\n"        /* 9 */
	           "%s\n"                /* 10 */
	           "admin_db = x ; ok\n" /* 11 */
	           "bogus_key = 1\n",    /* 12 */
	           longline);
	errs = load_bad("syntax.ini");
	CHECK(has_error(&errs, "syntax.ini", 1, "key \"listen_port\" outside any section"));
	CHECK(has_error(&errs, "syntax.ini", 7, "expected \"key = value\", got \"just words\""));
	CHECK(has_error(&errs, "syntax.ini", 8, "missing key name"));
	CHECK(has_error(&errs, "syntax.ini", 10, "line longer than 198 characters"));
	CHECK(has_error(&errs, "syntax.ini", 12, "unknown key \"bogus_key\" in [pgtenant]"));
	CHECK_MSG(errs.n == 5, "%d errors", errs.n);
	if (errs.n != 5)
		dump_errors(&errs);
	config_errors_free(&errs);

	/* CRLF line ends and a UTF-8 byte order mark are fine */
	write_file("crlf.ini", "\xEF\xBB\xBF[pgtenant]\r\ntenant_users = *\r\n[backend main]\r\n"
	                       "host = h\r\n[tenant a]\r\nmode = shared\r\nbackend = main\r\n");
	Config *cfg = load_good("crlf.ini");
	if (cfg)
		CHECK_STREQ(cfg->backends[0].host, "h");
	config_free(cfg);

	/* a missing main file is one error, not a crash */
	errs = load_bad("does-not-exist.ini");
	CHECK(errs.n == 1 && has_error(&errs, "does-not-exist.ini", 0, "could not open"));
	config_errors_free(&errs);
}

static void test_multiple_errors_are_all_reported_in_file_order(void)
{
	ConfigErrors errs;

	write_file("many.ini", MINIMAL        /* 1-5 */
	           "pool_sise = 5\n"          /* 6 */
	           "[bogus]\n"                /* 7 */
	           "[tenant a]\n"             /* 8 */
	           "mode = sharded\n"         /* 9 */
	           "backend = nowhere\n"      /* 10 */
	           "[pgtenant]\n"             /* 11 */
	           "listen_port = 99999\n"    /* 12 */
	           "query_timeout = soon\n"); /* 13 */
	errs = load_bad("many.ini");
	CHECK(has_error(&errs, "many.ini", 6, "unknown key \"pool_sise\" in [backend main]"));
	CHECK(has_error(&errs, "many.ini", 7, "unknown section [bogus]"));
	/* a bad mode is reported once, not also as a missing one */
	CHECK(has_error(&errs, "many.ini", 9, "bad value \"sharded\" for mode"));
	CHECK(has_error(&errs, "many.ini", 10, "tenant \"a\": backend \"nowhere\" is not defined"));
	CHECK(has_error(&errs, "many.ini", 12, "bad value \"99999\" for listen_port"));
	CHECK(has_error(&errs, "many.ini", 13, "bad value \"soon\" for query_timeout"));
	CHECK_MSG(errs.n == 6, "%d errors", errs.n);
	for (int i = 1; i < errs.n; i++) {
		int a = atoi(strchr(errs.msgs[i - 1] + strlen(tmp_path("many.ini")), ':') + 1);
		int b = atoi(strchr(errs.msgs[i] + strlen(tmp_path("many.ini")), ':') + 1);
		CHECK_MSG(a <= b, "errors out of order: %s / %s", errs.msgs[i - 1], errs.msgs[i]);
	}
	if (errs.n != 6)
		dump_errors(&errs);
	config_errors_free(&errs);
}

static void test_include_dir_is_read_in_name_order_relative_to_main_file(void)
{
	Config *cfg;

	make_subdir("inc");
	make_subdir("inc/conf.d");
	write_file("inc/main.ini", "[pgtenant]\ntenant_users = *\ninclude_dir = conf.d\n"
	                           "[backend main]\nhost = h\n"
	                           "[tenant first]\nmode = shared\nbackend = main\n");
	write_file("inc/conf.d/20-b.ini", "[tenant b]\nmode = schema\nbackend = other\n");
	write_file("inc/conf.d/10-a.ini", "[tenant a]\nmode = schema\nbackend = main\n"
	                                  "[backend other]\nhost = h2\n");
	write_file("inc/conf.d/3-c.ini", "[tenant c]\nmode = database\nbackend = main\n");
	write_file("inc/conf.d/notes.txt", "this is not ini\n");
	write_file("inc/conf.d/.hidden.ini", "garbage\n");
	cfg = load_good("inc/main.ini");
	if (!cfg)
		return;
	CHECK(cfg->n_tenants == 4);
	if (cfg->n_tenants == 4) {
		CHECK_STREQ(cfg->tenants[0].name, "first");
		CHECK_STREQ(cfg->tenants[1].name, "a"); /* 10-a.ini */
		CHECK_STREQ(cfg->tenants[2].name, "b"); /* 20-b.ini */
		CHECK_STREQ(cfg->tenants[3].name, "c"); /* 3-c.ini: byte order, not numeric */
		CHECK_STREQ(cfg->tenants[2].file, tmp_path("inc/conf.d/20-b.ini"));
		CHECK(cfg->tenants[2].backend_index == 1); /* defined in an earlier file */
	}
	CHECK(cfg->n_files == 4);
	config_free(cfg);
}

static void test_duplicate_tenant_across_files_names_both_places(void)
{
	ConfigErrors errs;
	char want[512];

	make_subdir("dup");
	make_subdir("dup/d");
	write_file("dup/main.ini", "[pgtenant]\ntenant_users = *\ninclude_dir = d\n"
	                           "[backend main]\nhost = h\n");
	write_file("dup/d/a.ini", "\n[tenant acme]\nmode = shared\nbackend = main\n");
	write_file("dup/d/b.ini", "[tenant other]\nmode = shared\nbackend = main\n\n"
	                          "[tenant acme]\nmode = schema\nbackend = main\n");
	write_file("dup/d/c.ini", "[pgtenant]\ninclude_dir = elsewhere\n");
	errs = load_bad("dup/main.ini");
	snprintf(want, sizeof(want), "tenant \"acme\" is already defined at %s:2",
	         tmp_path("dup/d/a.ini"));
	CHECK(has_error(&errs, "dup/d/b.ini", 5, want));
	CHECK(has_error(&errs, "dup/d/c.ini", 2,
	                "duplicate key \"include_dir\" in [pgtenant] "
	                "(first set at "));
	CHECK_MSG(errs.n == 2, "%d errors", errs.n);
	if (errs.n != 2)
		dump_errors(&errs);
	config_errors_free(&errs);
}

static void test_reserved_conns_of_a_shared_pool_must_fit(void)
{
	ConfigErrors errs;
	Config *cfg;

	/* backend pool 10; a+b+c reserve 12 in the same pool; d has its own role */
	write_file("reserved.ini",
	           "[pgtenant]\ntenant_users = *\ntenant_pool_size = 8\n"
	           "[backend main]\nhost = h\npool_size = 10\n"                      /* 4-6 */
	           "[tenant a]\nmode = shared\nbackend = main\nreserved_conns = 4\n" /* 7-10 */
	           "[tenant b]\nmode = schema\nbackend = main\nreserved_conns = 6\n" /* 11-14 */
	           "[tenant c]\nmode = schema\nbackend = main\nreserved_conns = 2\n" /* 15-18 */
	           "[tenant d]\nmode = schema\nbackend = main\nserver_user = d\n"
	           "reserved_conns = 8\n");
	errs = load_bad("reserved.ini");
	CHECK(has_error(&errs, "reserved.ini", 18,
	                "tenant \"c\": reserved_conns of the 3 tenants sharing backend \"main\"'s "
	                "pool (clients' own roles) add up to 12, more than its pool_size 10"));
	CHECK_MSG(errs.n == 1, "%d errors", errs.n);
	if (errs.n != 1)
		dump_errors(&errs);
	config_errors_free(&errs);

	/* the same reservations fit once c moves to its own role */
	write_file("reserved2.ini",
	           "[pgtenant]\ntenant_users = *\ntenant_pool_size = 8\n"
	           "[backend main]\nhost = h\npool_size = 10\nuser = app\n"
	           "[tenant a]\nmode = shared\nbackend = main\nreserved_conns = 4\n"
	           "[tenant b]\nmode = schema\nbackend = main\nreserved_conns = 6\n"
	           "[tenant c]\nmode = schema\nbackend = main\nreserved_conns = 2\n"
	           "server_user = c\n");
	cfg = load_good("reserved2.ini");
	if (cfg) {
		CHECK_STREQ(config_tenant_server_user(cfg, &cfg->tenants[0]), "app");
		CHECK_STREQ(config_tenant_server_user(cfg, &cfg->tenants[2]), "c");
	}
	config_free(cfg);
}

static void test_set_global_changes_only_reloadable_keys(void)
{
	Config *cfg;
	char err[256];

	write_file("set.ini", MINIMAL);
	cfg = load_good("set.ini");
	if (!cfg)
		return;
	CHECK(config_set_global(cfg, "query_timeout", "5s", err, sizeof(err)));
	CHECK(cfg->query_timeout == 5 * USEC_PER_SEC);
	CHECK(config_set_global(cfg, "admin_users", "alice, bob", err, sizeof(err)));
	CHECK_STREQ(cfg->admin_users, "alice, bob");
	CHECK(config_set_global(cfg, "admin_users", "carol", err, sizeof(err)));
	CHECK_STREQ(cfg->admin_users, "carol");
	CHECK(config_set_global(cfg, "POOL_MODE", "session", err, sizeof(err)));
	CHECK(cfg->pool_mode == POOL_MODE_SESSION);
	CHECK(config_set_global(cfg, "tenant_from", "sni", err, sizeof(err)));
	CHECK(cfg->n_tenant_from == 1 && cfg->tenant_from[0] == TENANT_SRC_SNI);

	CHECK(!config_set_global(cfg, "listen_port", "7000", err, sizeof(err)));
	CHECK(strstr(err, "cannot be changed while running") != NULL);
	CHECK(cfg->listen_port == 6432);
	CHECK(!config_set_global(cfg, "pool_mode", "bogus", err, sizeof(err)));
	CHECK(strstr(err, "expected session or transaction") != NULL);
	CHECK(cfg->pool_mode == POOL_MODE_SESSION);
	CHECK(!config_set_global(cfg, "tls_mode", "require", err, sizeof(err)));
	CHECK(strstr(err, "tls_cert_file") != NULL);
	CHECK(cfg->tls_mode == TLS_DISABLE);
	CHECK(!config_set_global(cfg, "query_timout", "1s", err, sizeof(err)));
	CHECK(strstr(err, "did you mean \"query_timeout\"") != NULL);
	CHECK(!config_set_global(cfg, "include_dir", "/tmp", err, sizeof(err)));
	CHECK(!config_set_global(cfg, "host", "x", err, sizeof(err)));
	config_free(cfg);
}

/* Backends without a pool_size follow default_pool_size, also when it is SET. */
static void test_set_default_pool_size_reaches_inheriting_backends(void)
{
	Config *cfg;
	char err[256];

	write_file("setpool.ini", "[pgtenant]\ntenant_users = *\ndefault_pool_size = 10\n"
	                          "[backend a]\nhost = 127.0.0.1\nmin_pool_size = 2\n"
	                          "[backend b]\nhost = 127.0.0.1\npool_size = 7\n"
	                          "[tenant t]\nmode = database\nbackend = a\n");
	cfg = load_good("setpool.ini");
	if (!cfg)
		return;
	CHECK(cfg->backends[0].pool_size == 10 && cfg->backends[1].pool_size == 7);
	CHECK(config_set_global(cfg, "default_pool_size", "4", err, sizeof(err)));
	CHECK(cfg->backends[0].pool_size == 4);
	CHECK(cfg->backends[1].pool_size == 7); /* its own setting stays */
	CHECK(config_tenant_pool_size(cfg, &cfg->tenants[0]) == 4);
	/* below the inheriting backend's min_pool_size: refused, nothing changes */
	CHECK(!config_set_global(cfg, "default_pool_size", "1", err, sizeof(err)));
	CHECK(strstr(err, "min_pool_size") != NULL);
	CHECK(cfg->default_pool_size == 4 && cfg->backends[0].pool_size == 4);
	config_free(cfg);
}

static bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && (strstr(p, "valgrind") || strstr(p, "vgpreload"));
}

static void test_ten_thousand_tenants_load_quickly(void)
{
	const int files = 10, per_file = 1000;
	struct timespec t0, t1;
	Config *cfg;
	double secs;

	make_subdir("big");
	make_subdir("big/tenants.d");
	write_file("big/main.ini", "[pgtenant]\ntenant_users = *\ninclude_dir = tenants.d\n"
	                           "[backend main]\nhost = h\npool_size = 100000\n");
	for (int f = 0; f < files; f++) {
		char name[64], path[512];
		FILE *fp;
		snprintf(name, sizeof(name), "big/tenants.d/%02d.ini", f);
		snprintf(path, sizeof(path), "%s", tmp_path(name));
		fp = fopen(path, "w");
		if (!fp)
			return;
		for (int i = 0; i < per_file; i++)
			fprintf(fp,
			        "[tenant t%05d]\nmode = %s\nbackend = main\nreserved_conns = 1\n"
			        "; tenant number %d\n\n",
			        f * per_file + i, i % 2 ? "schema" : "shared", i);
		fclose(fp);
	}
	/* CPU time, not wall time: other jobs on a busy machine must not fail this */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	cfg = load_good("big/main.ini");
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (cfg) {
		CHECK(cfg->n_tenants == files * per_file);
		CHECK_STREQ(cfg->tenants[files * per_file - 1].name, "t09999");
	}
	config_free(cfg);
	if (!under_valgrind())
		/* typically ~0.05s; the bound leaves room for a loaded CI machine or ASAN */
		CHECK_MSG(secs < 1.0, "10,000 tenants took %.3fs", secs);
	printf("config: 10,000 tenants loaded in %.3fs of CPU\n", secs);

	/* one duplicate among them is found, with both places */
	write_file("big/tenants.d/99.ini", "[tenant t04321]\nmode = shared\nbackend = main\n");
	ConfigErrors errs = load_bad("big/main.ini");
	CHECK(errs.n == 1 && strstr(errs.msgs[0], "tenant \"t04321\" is already defined at") &&
	      strstr(errs.msgs[0], "04.ini:"));
	config_errors_free(&errs);
}

/* The shipped example must load and mention every key. */
static void test_example_file_and_man_page_cover_every_key(void)
{
	static const char *const docs[] = {"etc/pgtenant.ini", "man/pgtenant.ini.5"};

	for (size_t d = 0; d < ARRAY_SIZE(docs); d++) {
		FILE *fp = fopen(docs[d], "r");
		char *text;
		long len;

		if (!fp) {
			printf("config: %s not found (run from the repository root); skipped\n",
			       docs[d]);
			continue;
		}
		fseek(fp, 0, SEEK_END);
		len = ftell(fp);
		fseek(fp, 0, SEEK_SET);
		text = calloc(1, (size_t)len + 1);
		if (fread(text, 1, (size_t)len, fp) != (size_t)len)
			len = 0;
		fclose(fp);
		for (int i = 0; i < config_n_keys; i++) {
			char pat[128];
			const char *name = config_keys[i].name;
			bool found;
			if (d == 0) {
				/* "key =" or "; key =" at a line start */
				snprintf(pat, sizeof(pat), "\n%s =", name);
				found = strstr(text, pat) != NULL;
				snprintf(pat, sizeof(pat), "\n;%s =", name);
				found = found || strstr(text, pat);
				snprintf(pat, sizeof(pat), "\n; %s =", name);
				found = found || strstr(text, pat);
			} else {
				snprintf(pat, sizeof(pat), ".B %s", name);
				found = strstr(text, pat) != NULL;
				snprintf(pat, sizeof(pat), "\\fB%s\\fR", name);
				found = found || strstr(text, pat);
			}
			CHECK_MSG(found, "%s does not mention key %s", docs[d], name);
		}
		free(text);
	}

	ConfigErrors errs;
	Config *cfg = config_load("etc/pgtenant.ini", &errs);
	if (cfg || errs.n != 1 || !strstr(errs.msgs[0], "could not open")) {
		CHECK_MSG(cfg != NULL, "etc/pgtenant.ini does not load");
		if (!cfg)
			dump_errors(&errs);
	}
	config_free(cfg);
	config_errors_free(&errs);
}

int main(void)
{
	char cmd[300];

	snprintf(tmpdir, sizeof(tmpdir), "%s/pgtenant-config-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}

	test_durations_parse_with_every_unit();
	test_sizes_parse_1024_based();
	test_booleans_take_every_spelling();
	test_list_contains_matches_trimmed_items_and_star();
	test_minimal_file_loads_and_resolves_inherited_values();
	test_every_default_matches_spec();
	test_values_of_every_type_are_stored();
	test_misspelt_key_is_reported_with_its_line();
	test_bad_section_headers_are_reported_even_without_keys();
	test_bad_values_say_what_is_expected();
	test_tenant_and_backend_rules();
	test_global_rules();
	test_syntax_problems_are_all_reported();
	test_multiple_errors_are_all_reported_in_file_order();
	test_include_dir_is_read_in_name_order_relative_to_main_file();
	test_duplicate_tenant_across_files_names_both_places();
	test_reserved_conns_of_a_shared_pool_must_fit();
	test_set_global_changes_only_reloadable_keys();
	test_set_default_pool_size_reaches_inheriting_backends();
	test_ten_thousand_tenants_load_quickly();
	test_example_file_and_man_page_cover_every_key();

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return unit_finish("config");
}
