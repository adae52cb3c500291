/*
 * migrate: `pgtenant migrate CONFIG.ini [status|run|validate]` applies a
 * folder of Flyway-named SQL files (V1__create_orders.sql, V1.2__...) to
 * every tenant of the ini, straight to the backends with libpq, never
 * through the pooler's event loop.
 *
 * A migration target is what has one history: a schema tenant's schema, a
 * database tenant's database, or the one backend database that all shared
 * tenants on it use. Targets come from sources (migrate_sources[]): the
 * [tenant] sections, then the tenants each [template] serves, found by
 * listing the schemas or databases its pattern makes on the backend.
 */
#ifndef PGTENANT_MIGRATE_H
#define PGTENANT_MIGRATE_H

#include "auth.h"
#include "config.h"

#define MIGRATE_VERSION_PARTS 8
#define MIGRATE_HISTORY_TABLE "pgtenant_schema_history"

typedef struct MigrateFile {
	char *name;    /* file name as found: V1.2__add_orders.sql */
	char *version; /* normalised: parts as decimal numbers joined by '.' ("1.2") */
	uint64_t parts[MIGRATE_VERSION_PARTS];
	int n_parts;
	char *description; /* "add orders": underscores of the name read as spaces */
	char *sql;
	size_t sql_len;
	int32_t checksum;    /* Flyway's: CRC-32 of the lines without their ends, as a signed int */
	bool no_transaction; /* first line is "-- pgtenant: no-transaction" */
} MigrateFile;

typedef enum {
	MIGRATE_NAME_OK = 0,
	MIGRATE_NAME_IGNORED, /* not a versioned migration: R__..., U1__..., README, *.conf */
	MIGRATE_NAME_BAD      /* V...sql that is not V<version>__<description>.sql */
} MigrateNameResult;

/* Reads version and description from a file name into f (name, version, parts, description). */
MigrateNameResult migrate_parse_name(const char *name, MigrateFile *f);
/* Orders versions part by part, numerically; a missing part counts as 0 (1 == 1.0). */
int migrate_version_cmp(const MigrateFile *a, const MigrateFile *b);
/* Flyway's checksum of a file's text: CRC-32 over its lines, line ends and a leading BOM left out.
 */
int32_t migrate_checksum(const char *data, size_t len);
/* Is the first line the no-transaction marker? */
bool migrate_is_no_transaction(const char *data, size_t len);
void migrate_file_free(MigrateFile *f);

typedef struct MigrateTarget {
	char *name; /* the tenant; for shared tenants "shared:BACKEND/DBNAME" */
	TenantMode mode;
	int backend_index; /* into cfg->backends: the connection bound is per backend */
	char *host;
	int port;
	char *dbname;
	char *user;     /* NULL: libpq's default */
	char *password; /* NULL: none (libpq may still read PGPASSWORD or ~/.pgpass) */
	char *sslmode;
	char *sslrootcert;
	char *schema;      /* schema mode: the tenant's schema; else NULL (history in public) */
	char *search_path; /* schema mode: as the pooler sets it */
	char *tenant_guc; /* shared mode: the GUC, set to "" for the group (no one tenant's rows) */
	char **members;   /* tenants that share this history (the tenant itself, or a group) */
	int n_members;
} MigrateTarget;

typedef struct MigrateTargets {
	MigrateTarget *v;
	int n, cap;
} MigrateTargets;

/*
 * Adds t (copied: every string is duplicated). A shared-mode target whose
 * backend and database match one already there joins it: its members are
 * added to that target's (which keeps its own login).
 */
void migrate_target_add(MigrateTargets *ts, const MigrateTarget *t);
void migrate_targets_free(MigrateTargets *ts);

/* A source of targets; false with a message in err stops the command. */
typedef bool (*MigrateTargetSource)(const Config *cfg, const AuthFile *auth, MigrateTargets *out,
                                    char *err, size_t errlen);
/* The [tenant] sections. */
bool migrate_tenant_targets(const Config *cfg, const AuthFile *auth, MigrateTargets *out, char *err,
                            size_t errlen);

/* `pgtenant migrate ...`: argv[0] is "migrate". Returns the exit status. */
int migrate_main(int argc, char **argv);

#endif
