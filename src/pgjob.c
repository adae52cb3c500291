/*
 * pgjob: see include/pgjob.h.
 *
 * The job moves connecting -> ready <-> busy, or to broken from anywhere.
 * Only the head of the queue is ever on the wire. Callbacks run from
 * libevent (on_io, on_timer), so an owner may queue or close from inside
 * one; a job being closed from its own callback is freed when it returns.
 */
#include "pgjob.h"

#include "conn.h"
#include "log.h"
#include "pgtenant.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct JobStmt {
	struct JobStmt *next;
	char *sql;
	char *param;
	usec_t timeout;
	PgJobDone done; /* NULL: forgotten */
	void *arg;
} JobStmt;

typedef enum { JOB_CONNECTING, JOB_READY, JOB_BUSY, JOB_BROKEN } JobState;

struct PgJob {
	PGconn *pg;
	JobState state;
	struct event *io;
	struct event *timer; /* the deadline of the step in flight; also "answer now" */
	JobStmt *head, *tail;
	int ntuples; /* of the statement in flight, so far */
	char error[400];
	char sqlstate[6]; /* of error, when the server sent one */
	bool in_callback;
	bool closing; /* pgjob_close ran inside a callback */
};

const char *pgjob_sslmode(ServerTlsMode m)
{
	static const char *const names[] = {"disable", "prefer", "require", "verify-ca",
	                                    "verify-full"};
	return (size_t)m < ARRAY_SIZE(names) ? names[m] : "disable";
}

bool pgjob_is_address(const char *host)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void stmt_free(JobStmt *s)
{
	free(s->sql);
	free(s->param);
	free(s);
}

static void job_free(PgJob *j)
{
	while (j->head) {
		JobStmt *s = j->head;
		j->head = s->next;
		stmt_free(s);
	}
	if (j->io)
		event_free(j->io);
	if (j->timer)
		event_free(j->timer);
	if (j->pg)
		PQfinish(j->pg);
	free(j);
}

void pgjob_close(PgJob *j)
{
	if (!j)
		return;
	if (j->in_callback)
		j->closing = true;
	else
		job_free(j);
}

static void arm_timer(PgJob *j, usec_t after)
{
	struct timeval tv = {(time_t)(after / USEC_PER_SEC), (suseconds_t)(after % USEC_PER_SEC)};
	evtimer_add(j->timer, &tv);
}

/* Hands the head statement its answer and takes it off the queue. */
static void answer_head(PgJob *j, const char *error)
{
	JobStmt *s = j->head;

	assert(s);
	j->head = s->next;
	if (!j->head)
		j->tail = NULL;
	if (s->done) {
		j->in_callback = true;
		s->done(s->arg, error ? 0 : j->ntuples,
		        error && j->sqlstate[0] ? j->sqlstate : NULL, error);
		j->in_callback = false;
	}
	stmt_free(s);
}

/* The connection is lost: everything queued fails with the reason. */
static void job_break(PgJob *j, const char *why)
{
	if (j->state != JOB_BROKEN) {
		j->sqlstate[0] = '\0';
		snprintf(j->error, sizeof(j->error), "%s", why && *why ? why : "connection failed");
		j->error[strcspn(j->error, "\n")] = '\0';
		j->state = JOB_BROKEN;
		if (j->io) {
			event_free(j->io);
			j->io = NULL;
		}
		evtimer_del(j->timer);
	}
	while (j->head && !j->closing)
		answer_head(j, j->error);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

bool pgjob_watch(struct event **io, PGconn *pg, bool write, event_callback_fn cb, void *arg)
{
	int fd = PQsocket(pg);

	if (*io)
		event_free(*io);
	*io = fd < 0 ? NULL : event_new(g_base, fd, write ? EV_WRITE : EV_READ, cb, arg);
	return *io && event_add(*io, NULL) == 0;
}

static bool wait_for(PgJob *j, bool write)
{
	return pgjob_watch(&j->io, j->pg, write, on_io, j);
}

/* Puts the head statement on the wire, if the connection is free for it. */
static void send_next(PgJob *j)
{
	JobStmt *s = j->head;
	const char *params[1];

	if (!s || j->state != JOB_READY)
		return;
	params[0] = s->param;
	j->ntuples = 0;
	j->error[0] = '\0';
	j->sqlstate[0] = '\0';
	if (!PQsendQueryParams(j->pg, s->sql, s->param ? 1 : 0, NULL, params, NULL, NULL, 0)) {
		job_break(j, PQerrorMessage(j->pg));
		return;
	}
	j->state = JOB_BUSY;
	arm_timer(j, s->timeout);
	if (PQflush(j->pg) != 0 ? !wait_for(j, true) : !wait_for(j, false))
		job_break(j, "lost the connection");
}

static void read_results(PgJob *j)
{
	if (PQflush(j->pg) > 0) {
		if (!wait_for(j, true))
			job_break(j, "lost the connection");
		return;
	}
	if (!PQconsumeInput(j->pg)) {
		job_break(j, PQerrorMessage(j->pg));
		return;
	}
	while (!PQisBusy(j->pg)) {
		PGresult *res = PQgetResult(j->pg);
		if (!res) {
			/* the statement is over: its answer, then the next one */
			evtimer_del(j->timer);
			j->state = JOB_READY;
			char error[sizeof(j->error)];
			snprintf(error, sizeof(error), "%s", j->error);
			answer_head(j, error[0] ? error : NULL);
			if (!j->closing)
				send_next(j);
			return;
		}
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK)
			j->ntuples += PQntuples(res);
		else if (st != PGRES_COMMAND_OK && !j->error[0]) {
			const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			snprintf(j->sqlstate, sizeof(j->sqlstate), "%s", code ? code : "");
			snprintf(j->error, sizeof(j->error), "%s", PQresultErrorMessage(res));
			j->error[strcspn(j->error, "\n")] = '\0';
		}
		PQclear(res);
	}
	if (!wait_for(j, false))
		job_break(j, "lost the connection");
}

static void connect_step(PgJob *j)
{
	switch (PQconnectPoll(j->pg)) {
	case PGRES_POLLING_READING:
		if (!wait_for(j, false))
			job_break(j, "lost the connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!wait_for(j, true))
			job_break(j, "lost the connection");
		return;
	case PGRES_POLLING_OK:
		evtimer_del(j->timer);
		if (PQsetnonblocking(j->pg, 1) != 0) {
			job_break(j, PQerrorMessage(j->pg));
			return;
		}
		j->state = JOB_READY;
		event_free(j->io);
		j->io = NULL;
		send_next(j);
		return;
	default:
		job_break(j, PQerrorMessage(j->pg));
		return;
	}
}

static void finish_callback(PgJob *j)
{
	if (j->closing)
		job_free(j);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	PgJob *j = arg;

	time_update();
	j->in_callback = true;
	if (j->state == JOB_CONNECTING)
		connect_step(j);
	else if (j->state == JOB_BUSY)
		read_results(j);
	j->in_callback = false;
	finish_callback(j);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	PgJob *j = arg;

	time_update();
	j->in_callback = true;
	if (j->state == JOB_CONNECTING || j->state == JOB_BUSY)
		job_break(j, "timed out");
	else if (j->state == JOB_BROKEN)
		job_break(j, j->error);
	else
		send_next(j);
	j->in_callback = false;
	finish_callback(j);
}

PgJob *pgjob_open(const Config *cfg, const BackendConf *b, const char *dbname, const char *user,
                  const char *password, const char *application_name)
{
	char port[16], timeout_s[16];
	const char *keys[12], *vals[12];
	int n = 0;
	PgJob *j = xcalloc(1, sizeof(*j));

	snprintf(port, sizeof(port), "%d", b->port);
	snprintf(timeout_s, sizeof(timeout_s), "%lld",
	         (long long)(cfg->server_connect_timeout + USEC_PER_SEC - 1) / USEC_PER_SEC);
	keys[n] = "host", vals[n++] = b->host;
	if (pgjob_is_address(b->host))
		keys[n] = "hostaddr", vals[n++] = b->host;
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = dbname;
	keys[n] = "user", vals[n++] = user;
	keys[n] = "password", vals[n++] = password;
	keys[n] = "application_name", vals[n++] = application_name;
	keys[n] = "sslmode", vals[n++] = pgjob_sslmode(config_backend_server_tls_mode(cfg, b));
	keys[n] = "sslrootcert", vals[n++] = cfg->server_tls_ca_file;
	keys[n] = "connect_timeout", vals[n++] = timeout_s;
	keys[n] = NULL, vals[n] = NULL;
	j->state = JOB_CONNECTING;
	j->timer = evtimer_new(g_base, on_timer, j);
	j->pg = PQconnectStartParams(keys, vals, 0);
	if (!j->timer) {
		log_error("pgjob: out of memory");
		abort();
	}
	if (!j->pg || PQstatus(j->pg) == CONNECTION_BAD || !wait_for(j, true)) {
		job_break(j, j->pg ? PQerrorMessage(j->pg) : "out of memory");
		return j;
	}
	arm_timer(j, cfg->server_connect_timeout);
	return j;
}

void pgjob_run(PgJob *j, const char *sql, const char *param, usec_t timeout, PgJobDone done,
               void *arg)
{
	JobStmt *s = xcalloc(1, sizeof(*s));

	s->sql = xstrdup(sql);
	s->param = param ? xstrdup(param) : NULL;
	s->timeout = timeout;
	s->done = done;
	s->arg = arg;
	if (j->tail)
		j->tail->next = s;
	else
		j->head = s;
	j->tail = s;
	/* sent (or failed) from the loop: no callback ever runs inside this call */
	if (j->state == JOB_BROKEN || j->state == JOB_READY)
		arm_timer(j, 0);
}

void pgjob_forget(PgJob *j, void *arg)
{
	for (JobStmt *s = j ? j->head : NULL; s; s = s->next)
		if (s->arg == arg)
			s->done = NULL;
}

bool pgjob_idle(const PgJob *j)
{
	return !j->head;
}

bool pgjob_broken(const PgJob *j)
{
	return j->state == JOB_BROKEN;
}
