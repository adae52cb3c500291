/*
 * Fuzz target: the ini loader (config_load) and the console's SET
 * (config_set_global). The input up to "\n--\n" is written to a file in a
 * private directory and loaded; every problem must come back as a message,
 * never a crash, and a loaded Config must be complete (SPEC §2). The lines
 * after the separator are "key=value" pairs for config_set_global on the
 * loaded Config (or on a minimal valid one when the input did not load),
 * then every global key is formatted as SHOW CONFIG would. Everything is
 * freed: LeakSanitizer reports what the loader forgets on any path.
 */
#include "config.h"

#include "fuzz.h"

static const char minimal_ini[] = "[pgtenant]\n"
                                  "tenant_users = *\n"
                                  "[backend main]\n"
                                  "host = 127.0.0.1\n"
                                  "[tenant acme]\n"
                                  "mode = schema\n"
                                  "backend = main\n";

static void check_loaded(const Config *cfg)
{
	char buf[1024];

	FUZZ_ASSERT(cfg->n_files >= 1);
	for (int i = 0; i < cfg->n_backends; i++) {
		const BackendConf *b = &cfg->backends[i];
		FUZZ_ASSERT(b->name != NULL && b->pool_size >= 0);
		for (int r = 0; r < b->n_replicas; r++)
			FUZZ_ASSERT(b->replicas[r].port > 0 && b->replicas[r].port < 65536);
		(void)config_backend_replica_pool_size(b);
		(void)config_backend_server_tls_mode(cfg, b);
	}
	for (int i = 0; i < cfg->n_tenants; i++) {
		const TenantConf *t = &cfg->tenants[i];
		FUZZ_ASSERT(t->name != NULL);
		FUZZ_ASSERT(t->backend_index >= 0 && t->backend_index < cfg->n_backends);
		(void)config_tenant_pool_mode(cfg, t);
		(void)config_tenant_pool_size(cfg, t);
		(void)config_tenant_query_timeout(cfg, t);
		(void)config_tenant_query_wait_timeout(cfg, t);
		(void)config_tenant_idle_transaction_timeout(cfg, t);
		(void)config_tenant_client_idle_timeout(cfg, t);
		(void)config_tenant_read_routing(cfg, t);
		FUZZ_ASSERT(config_tenant_schema(t) != NULL);
		FUZZ_ASSERT(config_tenant_id(t) != NULL);
		FUZZ_ASSERT(config_tenant_users(cfg, t) != NULL);
		FUZZ_ASSERT(config_tenant_shared_schemas(t) != NULL);
		(void)config_tenant_dbname(cfg, t);
		(void)config_tenant_server_user(cfg, t);
		(void)config_tenant_server_password(cfg, t);
		(void)config_list_contains(config_tenant_users(cfg, t), "app");
	}
	(void)config_read_your_writes(cfg);
	for (int k = 0; k < config_n_keys; k++) {
		const ConfigKey *key = &config_keys[k];
		if (key->section == SECTION_GLOBAL) {
			config_format_value(cfg, key, buf, sizeof(buf));
			FUZZ_ASSERT(memchr(buf, '\0', sizeof(buf)) != NULL);
		} else if (key->section == SECTION_BACKEND && cfg->n_backends > 0) {
			config_format_field(key, &cfg->backends[0], buf, sizeof(buf));
		} else if (key->section == SECTION_TENANT && cfg->n_tenants > 0) {
			config_format_field(key, &cfg->tenants[0], buf, sizeof(buf));
		}
	}
}

/* Applies "key=value" lines (NUL-free, trimmed by nobody: the console passes text as typed). */
static void apply_sets(Config *cfg, const uint8_t *p, size_t n)
{
	char *text = malloc(n + 1), *line, *save = NULL;
	char err[512];
	int n_sets = 0;

	if (!text)
		abort();
	memcpy(text, p, n);
	text[n] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		/* a few SETs cover the code; hundreds only slow the fuzzer (each unknown key
		 * costs an edit distance against every key name) */
		if (++n_sets > 16)
			break;
		*eq = '\0';
		err[0] = '\0';
		if (!config_set_global(cfg, line, eq + 1, err, sizeof(err)))
			FUZZ_ASSERT(err[0] != '\0');
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *ini, *sets;
	size_t ini_len, sets_len;
	ConfigErrors errs = {0};
	Config *cfg;
	const char *path;

	fuzz_split(data, size, &ini, &ini_len, &sets, &sets_len);
	path = fuzz_write_file("fuzz.ini", ini, ini_len);
	cfg = config_load(path, &errs);
	if (cfg) {
		FUZZ_ASSERT(errs.n == 0);
		check_loaded(cfg);
	} else {
		FUZZ_ASSERT(errs.n > 0);
		for (int i = 0; i < errs.n; i++)
			FUZZ_ASSERT(errs.msgs[i] != NULL && strchr(errs.msgs[i], ':') != NULL);
		config_errors_free(&errs);
		if (sets_len == 0)
			goto done;
		path = fuzz_write_file("fuzz.ini", (const uint8_t *)minimal_ini,
		                       sizeof(minimal_ini) - 1);
		cfg = config_load(path, &errs);
		FUZZ_ASSERT(cfg != NULL);
	}
	if (sets_len > 0) {
		apply_sets(cfg, sets, sets_len);
		check_loaded(cfg);
	}
	config_free(cfg);
	config_errors_free(&errs);
done:
	free(ini);
	free(sets);
	return 0;
}
