/*
 * config: pgtenant.ini and its include_dir, parsed with inih.
 *
 * One table of keys (config_keys[]) drives parsing, validation, --check,
 * SHOW CONFIG and the man page. A load builds a complete new Config or
 * reports every problem as "FILE:LINE: message"; a failed load never
 * touches the configuration in force (RELOAD keeps the old one).
 *
 * Durations are stored in microseconds. Per-tenant overrides use -1 (or
 * NULL for strings) for "inherit the global value"; config_tenant_*()
 * resolve them. A string key left empty is NULL (never ""), in every
 * section; an inheriting tenant string set explicitly empty is "" (so
 * "shared_schemas =" means none, "users =" means nobody).
 * After a successful load every backend's pool_size is resolved, every
 * replica has a port and every tenant's backend_index is valid.
 */
#ifndef PGTENANT_CONFIG_H
#define PGTENANT_CONFIG_H

#include "common.h"

typedef enum { POOL_MODE_SESSION = 0, POOL_MODE_TRANSACTION = 1 } PoolMode;
typedef enum { AUTH_TRUST = 0, AUTH_MD5, AUTH_SCRAM, AUTH_CERT } AuthType;
typedef enum { TENANT_MODE_SHARED = 0, TENANT_MODE_SCHEMA, TENANT_MODE_DATABASE } TenantMode;
typedef enum { READ_ROUTING_OFF = 0, READ_ROUTING_HINT, READ_ROUTING_AUTO } ReadRouting;
typedef enum { TLS_DISABLE = 0, TLS_ALLOW, TLS_REQUIRE } ClientTlsMode;
typedef enum {
	SERVER_TLS_DISABLE = 0,
	SERVER_TLS_PREFER,
	SERVER_TLS_REQUIRE,
	SERVER_TLS_VERIFY_CA,
	SERVER_TLS_VERIFY_FULL
} ServerTlsMode;
typedef enum {
	TENANT_SRC_SNI = 0,
	TENANT_SRC_USER,
	TENANT_SRC_DATABASE,
	TENANT_SRC_OPTIONS
} TenantSource;

#define CONFIG_MAX_TENANT_SOURCES 4
#define CONFIG_DURATION_OFF       (-2) /* a duration key that may be "off" (log_min_duration) */
#define CONFIG_NAME_MAX           63   /* section and tenant names */

typedef struct HostPort {
	char *host;
	int port;
} HostPort;

typedef struct BackendConf {
	char *name;
	char *host;               /* host name, address, or directory of a unix socket */
	int port;                 /* 5432 */
	char *dbname;             /* NULL: same as the client's user name, as libpq does */
	char *user;               /* NULL: the authenticated client user */
	char *password;           /* NULL: from auth_file */
	int pool_size;            /* -1 until resolved: default_pool_size */
	bool pool_size_inherited; /* resolved from default_pool_size: a console SET of it applies */
	int min_pool_size;
	HostPort *replicas;
	int n_replicas;
	int replica_pool_size; /* -1: same as pool_size */
	int server_tls_mode;   /* -1: global */
	const char *file;      /* where the section starts, for messages */
	int line;
} BackendConf;

typedef struct TenantConf {
	char *name;
	TenantMode mode;
	char *backend; /* name of a [backend] section */
	int backend_index;
	char *schema;         /* NULL: name */
	char *shared_schemas; /* NULL: "public" */
	char *tenant_id;      /* NULL: name */
	char *dbname;         /* NULL: backend's */
	char *users;          /* NULL: tenant_users; comma list, "*" = all */
	char *server_user;
	char *server_password;
	int pool_size; /* -1: tenant_pool_size, or backend's pool_size in database mode */
	int reserved_conns;
	int max_client_conn; /* 0: only the global limit */
	int weight;
	double rate_limit; /* statements per second, 0 = off */
	int pool_mode;     /* -1: global */
	usec_t query_timeout, query_wait_timeout, idle_transaction_timeout,
	        client_idle_timeout; /* -1: global */
	int read_routing;            /* -1: global */
	usec_t log_min_duration;     /* -1: global; CONFIG_DURATION_OFF: off */
	bool disabled;
	/* [template NAME] only (is_template): a glob over tenant names, and shared mode's
	 * existence check ($1 = the tenant_id) */
	char *match;
	char *exists_query;
	bool is_template;
	const char *file;
	int line;
} TenantConf;

typedef struct Config {
	/* [pgtenant] */
	char *listen_addr;
	int listen_port;
	char *unix_socket_dir;
	PoolMode pool_mode;
	AuthType auth_type;
	char *auth_file;
	char *admin_users;
	char *stats_users;
	char *admin_db;
	TenantSource tenant_from[CONFIG_MAX_TENANT_SOURCES];
	int n_tenant_from;
	char *tenant_users;
	int tenant_pool_size;
	char *tenant_separator;
	char *sni_suffix;
	int max_client_conn;
	int default_pool_size;
	int64_t max_packet_size; /* bytes */
	usec_t query_timeout;
	usec_t query_wait_timeout;
	usec_t idle_transaction_timeout;
	usec_t client_idle_timeout;
	usec_t client_login_timeout;
	usec_t server_connect_timeout;
	usec_t server_idle_timeout;
	usec_t server_lifetime;
	char *server_reset_query;
	char *server_check_query;
	usec_t server_check_delay;
	usec_t server_login_retry;
	bool tcp_keepalive;
	usec_t tcp_user_timeout;
	int listen_backlog;
	bool so_reuseport;
	usec_t stats_period;
	char *auth_user;
	char *auth_query;
	int metrics_tenant_limit;
	usec_t shutdown_timeout;
	char *tenant_guc;
	ReadRouting read_routing;
	usec_t max_replica_lag;
	usec_t read_your_writes; /* -1: same as max_replica_lag */
	char *read_only_functions;
	usec_t health_check_period;
	int max_prepared_statements;
	int max_client_prepared_statements;
	bool query_stats;           /* statement statistics (SHOW QUERIES) */
	int query_stats_max;        /* statements kept per tenant */
	int64_t query_stats_memory; /* bytes of all statement tables together */
	usec_t log_min_duration;    /* slow statement log; CONFIG_DURATION_OFF = off */
	ClientTlsMode tls_mode;
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_ca_file;
	ServerTlsMode server_tls_mode;
	char *server_tls_ca_file;
	char *metrics_listen;
	char *log_file;
	char *pid_file;
	bool log_connections;
	bool log_disconnections;
	char *audit_log;
	char *include_dir;
	char *migrations_dir; /* as written; config_relative_path() resolves it */
	char *tenant_template_db;
	usec_t template_idle_timeout; /* an implicit tenant without clients leaves memory after */
	usec_t template_cache_ttl;    /* "the tenant exists" is believed this long */
	usec_t template_negative_ttl; /* "it does not" this long */

	BackendConf *backends;
	int n_backends;
	TenantConf *tenants;
	int n_tenants;
	TenantConf *templates; /* [template NAME] sections, in file order (is_template set) */
	int n_templates;

	char *path;   /* the main file as given */
	char **files; /* every file read (main + include_dir), owned; messages point into these */
	int n_files;
} Config;

/* Problems found while loading, each "FILE:LINE: message". */
typedef struct ConfigErrors {
	char **msgs;
	int n;
} ConfigErrors;

typedef enum {
	KEY_STRING,
	KEY_INT,
	KEY_BOOL,
	KEY_DURATION, /* us, ms, s, min, h; bare number = seconds */
	KEY_SIZE,     /* kB, MB, GB; bare number = bytes */
	KEY_DOUBLE,
	KEY_ENUM, /* value names in enum_names, stored as int */
	KEY_TENANT_FROM,
	KEY_HOSTPORT_LIST
} KeyType;

/* SECTION_TEMPLATE holds only the keys a [template] adds to those of [tenant]. */
typedef enum { SECTION_GLOBAL = 0, SECTION_BACKEND, SECTION_TENANT, SECTION_TEMPLATE } SectionKind;

typedef struct ConfigKey {
	const char *name;
	SectionKind section;
	KeyType type;
	size_t offset;   /* into Config, BackendConf or TenantConf */
	const char *def; /* default as text ("" = empty/none), as shown in SHOW CONFIG */
	const char *const *enum_names; /* KEY_ENUM: NULL-terminated, index = stored value */
	bool reloadable;
	const char *help;
	/*
	 * Added: inherit = the key starts unset (-1, or NULL for strings) and
	 * def only describes where the value comes from ("(global)",
	 * "(required)"...), so def is never NULL. min/max bound KEY_INT,
	 * KEY_DURATION (usec), KEY_SIZE and KEY_DOUBLE (min only); for
	 * KEY_STRING min = 1 means "may not be empty".
	 */
	bool inherit;
	int64_t min, max;
} ConfigKey;

extern const ConfigKey config_keys[];
extern const int config_n_keys;

/*
 * Loads path and its include_dir into a new Config. On any problem returns
 * NULL and fills errs (every problem, not just the first). Validation covers
 * unknown sections/keys, bad values, missing required keys, references to
 * missing backends, duplicate sections across files, reserved_conns sums, and
 * tenants no user can reach.
 */
Config *config_load(const char *path, ConfigErrors *errs);
void config_free(Config *cfg);
void config_errors_free(ConfigErrors *errs);

/* Looks a key up; section decides which table part. NULL if unknown. */
const ConfigKey *config_find_key(SectionKind section, const char *name);
/* Formats a key's current value in cfg (global keys) the way SHOW CONFIG prints it. */
void config_format_value(const Config *cfg, const ConfigKey *key, char *out, size_t outlen);

/*
 * A reload cannot apply a restart-only [pgtenant] key (listen_port,
 * metrics_listen, ...): next keeps running's value for each, so the Config
 * in force says what is in force, and the file's other value is remembered
 * as pending until a restart (or a file that agrees again). Returns how many
 * keys are pending.
 */
int config_hold_restart_keys(Config *next, const Config *running);
/* The value the file asks for that waits for a restart, or NULL. */
const char *config_pending_value(const ConfigKey *key);
/* The names of the pending keys, comma-separated, into out ("" when none). */
void config_pending_names(char *out, size_t outlen);
/* Same for any section: base is a Config, BackendConf or TenantConf matching key->section. */
void config_format_field(const ConfigKey *key, const void *base, char *out, size_t outlen);
/* Sets a global key from text (console SET). false + message in err when the value is bad. */
bool config_set_global(Config *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Value parsers, exposed for unit tests. */
bool config_parse_duration(const char *s, usec_t *out);
bool config_parse_size(const char *s, int64_t *out);
bool config_parse_bool(const char *s, bool *out);

/* Resolved per-tenant values (the tenant's override, else the global). */
PoolMode config_tenant_pool_mode(const Config *cfg, const TenantConf *t);
int config_tenant_pool_size(const Config *cfg, const TenantConf *t);
usec_t config_tenant_query_timeout(const Config *cfg, const TenantConf *t);
/* The tenant's slow-statement threshold; negative: off. */
static inline usec_t config_tenant_log_min_duration(const Config *cfg, const TenantConf *t)
{
	return t->log_min_duration != -1 ? t->log_min_duration : cfg->log_min_duration;
}
usec_t config_tenant_query_wait_timeout(const Config *cfg, const TenantConf *t);
usec_t config_tenant_idle_transaction_timeout(const Config *cfg, const TenantConf *t);
usec_t config_tenant_client_idle_timeout(const Config *cfg, const TenantConf *t);
ReadRouting config_tenant_read_routing(const Config *cfg, const TenantConf *t);
const char *config_tenant_schema(const TenantConf *t);
const char *config_tenant_id(const TenantConf *t);
const char *config_tenant_users(const Config *cfg, const TenantConf *t); /* never NULL */
const char *config_tenant_shared_schemas(const TenantConf *t);           /* "public" unless set */
/* NULL: as the backend has it NULL (the client's user name / the client user). */
/* The tenant's [backend] section (NULL only for a configuration that failed validation). */
const BackendConf *config_tenant_backend(const Config *cfg, const TenantConf *t);
const char *config_tenant_dbname(const Config *cfg, const TenantConf *t);
const char *config_tenant_server_user(const Config *cfg, const TenantConf *t);
/* A tenant with its own server_user uses only its own server_password (NULL: auth_file). */
const char *config_tenant_server_password(const Config *cfg, const TenantConf *t);
usec_t config_read_your_writes(const Config *cfg); /* -1 resolves to max_replica_lag */
int config_backend_replica_pool_size(const BackendConf *b);
ServerTlsMode config_backend_server_tls_mode(const Config *cfg, const BackendConf *b);

/* include_dir as the files read from it are named (relative to the main file); NULL: none. */
char *config_include_path(const Config *cfg);
/* The first [template] (file order) whose match accepts name, or NULL. */
const TenantConf *config_template_for(const Config *cfg, const char *name);
/* Does the glob (*, ?, [..]) match name? */
bool config_glob_match(const char *glob, const char *name);
/* A valid section or tenant name: letters, digits, _ and -, 1 to CONFIG_NAME_MAX long. */
bool config_valid_name(const char *s);
/* p as given when absolute, else relative to the main file's directory (malloc'ed). */
char *config_relative_path(const Config *cfg, const char *p);

/* Is user in a comma list ("*" matches everyone)? Whitespace around items ignored. */
bool config_list_contains(const char *list, const char *user);

#endif
