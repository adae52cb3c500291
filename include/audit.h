/*
 * audit: the audit trail of audit_log (SPEC §2) — one JSON object a line
 * for every login (accepted or refused), every console command and every
 * reload. Security tooling tails this file, so each record is written with
 * one write(2) on an O_APPEND descriptor: lines never interleave, also
 * with another process appending to the same file.
 *
 * Every function is a no-op while no audit_log is open.
 */
#ifndef PGTENANT_AUDIT_H
#define PGTENANT_AUDIT_H

#include "common.h"
#include "pktbuf.h"

/*
 * Opens (or switches to) path; NULL or "" closes the audit log. On failure
 * the previous file stays open and false is returned (errno tells why).
 */
bool audit_open(const char *path);
void audit_close(void);
bool audit_enabled(void);

/* A client login. tenant and reason may be NULL (reason: why it was refused). */
void audit_login(const char *tenant, const char *user, const char *addr, bool ok,
                 const char *reason);
/* A console command: result is its command tag, or the error message when ok is false. */
void audit_console(const char *user, const char *command, bool ok, const char *result);
/* A reload (console RELOAD or SIGHUP); n_errors problems kept the old configuration. */
void audit_reload(bool ok, int n_errors);

/*
 * Appends s to out as a JSON string (quotes included). Bytes that are not
 * valid UTF-8 are written as \u00XX, so the line stays valid JSON whatever
 * a client sent as its user name. Exposed for unit tests.
 */
void audit_json_string(Buf *out, const char *s);

#endif
