/*
 * param: the session parameters pgtenant keeps per client and per server
 * connection, so a client's client_encoding, DateStyle, TimeZone,
 * application_name, extra_float_digits and other startup GUCs follow it
 * across server connections.
 *
 * A client's list holds what it asked for (startup) and what the server
 * reported while it was linked (ParameterStatus). A server's list holds
 * what that connection currently has: reported values plus the values
 * pgtenant itself SET. On link, param_sync_sql() builds one SET/RESET
 * string for the differences; nothing is sent when they agree.
 */
#ifndef PGTENANT_PARAM_H
#define PGTENANT_PARAM_H

#include "common.h"
#include "pktbuf.h"

typedef struct Param {
	char *name;
	char *value;
} Param;

typedef struct Params {
	Param *items;
	int n;
	int cap;
	uint64_t version; /* changes with every change of the list (never repeats in a process) */
	uint64_t fp;      /* fingerprint of the settable values (see params_fingerprint) */
	uint64_t fp_version;
} Params;

void params_init(Params *p);
void params_free(Params *p);
void params_clear(Params *p);
const char *params_get(const Params *p, const char *name);
/* Returns true when the stored value changed. */
bool params_set(Params *p, const char *name, const char *value);
void params_remove(Params *p, const char *name);
void params_copy(Params *dst, const Params *src);

/*
 * An order-independent hash of the settable (name, value) pairs, cached per
 * version. Equal fingerprints of a client and a server mean nothing to SET,
 * so the common link costs no list comparison.
 */
uint64_t params_fingerprint_compute(Params *p);
static inline uint64_t params_fingerprint(Params *p)
{
	if (p->fp_version == p->version && p->version)
		return p->fp;
	return params_fingerprint_compute(p);
}

/* Reported by the server but not settable (never SET on a client's behalf). */
bool param_is_readonly(const char *name);
/* A setting the server reports about itself (ParameterStatus never makes it the client's) that a
 * client may set. */
bool param_is_server_report(const char *name);
/* ... holding the value every server starts with (nothing to reset). */
bool param_is_server_default(const char *name, const char *value);
/* Settable parameters PostgreSQL reports with ParameterStatus. */
bool param_is_reported(const char *name);

/*
 * Appends to sql the statements that make server's state match client's:
 * SET for each client value that differs, RESET for unreported values the
 * server carries from an earlier client. Returns false when nothing is needed.
 * server is updated to the values it will have after the statements run.
 */
bool param_sync_sql(const Params *client, Params *server, Buf *sql);

/* Appends s as a SQL string literal (E'' form when backslashes occur). */
void param_quote_literal(Buf *sql, const char *s);
/* Appends s as a quoted identifier. */
void param_quote_ident(Buf *sql, const char *s);

#endif
