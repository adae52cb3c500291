/*
 * pgjob: pgtenant's own short conversations with a backend — does a
 * template tenant exist, create its schema or database — over one
 * non-blocking libpq connection driven by libevent, so the event loop never
 * waits on PostgreSQL.
 *
 * A job is one connection and a FIFO of statements, each with at most one
 * text parameter; they run one after the other and each answer goes to its
 * callback exactly once (unless forgotten). A failed connection fails every
 * statement queued and every later one: the owner opens a new job.
 */
#ifndef PGTENANT_PGJOB_H
#define PGTENANT_PGJOB_H

#include "common.h"
#include "config.h"

#include <event2/event.h>
#include <libpq-fe.h>

typedef struct PgJob PgJob;

/*
 * A statement's outcome: error NULL and ntuples rows on success, else why it
 * failed (PostgreSQL's message, one line, and its SQLSTATE when the server
 * sent one). Runs from the event loop, never inside pgjob_run; the job may be
 * closed from it.
 */
typedef void (*PgJobDone)(void *arg, int ntuples, const char *sqlstate, const char *error);

/* Starts connecting to b's primary as user to dbname; NULL values mean "libpq's default". */
PgJob *pgjob_open(const Config *cfg, const BackendConf *b, const char *dbname, const char *user,
                  const char *password, const char *application_name);
/* Queues sql ($1 = param when not NULL), to be answered within timeout. */
void pgjob_run(PgJob *j, const char *sql, const char *param, usec_t timeout, PgJobDone done,
               void *arg);
/* Answers meant for arg are dropped (its owner went away). */
void pgjob_forget(PgJob *j, void *arg);
/* Nothing queued or running. */
bool pgjob_idle(const PgJob *j);
/* The connection failed: every statement fails at once. */
bool pgjob_broken(const PgJob *j);
/* Closes the connection; queued statements are dropped without an answer. */
void pgjob_close(PgJob *j);

/*
 * Points *io at pg's socket, for reading or writing, calling cb(arg) (libpq may have
 * moved to a new socket, so the event is made afresh). false: no socket, or no event.
 */
bool pgjob_watch(struct event **io, PGconn *pg, bool write, event_callback_fn cb, void *arg);

/* libpq's sslmode for a ServerTlsMode. */
const char *pgjob_sslmode(ServerTlsMode m);
/* Is host a numeric address (then libpq needs no name lookup, which would block)? */
bool pgjob_is_address(const char *host);

#endif
