/*
 * proto: the PostgreSQL v3 wire protocol pieces pgtenant builds or parses
 * itself — startup packets, authentication requests, ErrorResponse and the
 * welcome messages. Forwarded traffic is not parsed here: client.c and
 * server.c frame it and only look at the few message types that matter.
 */
#ifndef PGTENANT_PROTO_H
#define PGTENANT_PROTO_H

#include "common.h"
#include "pktbuf.h"

#define PROTO_V3        0x00030000u
#define PROTO_CANCEL    80877102u
#define PROTO_SSL       80877103u
#define PROTO_GSSENC    80877104u
#define STARTUP_MAX_LEN 10000u
#define MSG_HEADER_LEN  5

/* Authentication request codes ('R'). */
enum {
	AUTH_REQ_OK = 0,
	AUTH_REQ_CLEARTEXT = 3,
	AUTH_REQ_MD5 = 5,
	AUTH_REQ_SASL = 10,
	AUTH_REQ_SASL_CONTINUE = 11,
	AUTH_REQ_SASL_FINAL = 12
};

#define STARTUP_MAX_PARAMS 64

typedef struct StartupParam {
	const char *name;
	const char *value;
} StartupParam;

/* A parsed StartupMessage; strings point into the packet buffer. */
typedef struct Startup {
	uint32_t version;
	const char *user;
	const char *database;
	const char *options;
	StartupParam params[STARTUP_MAX_PARAMS]; /* everything else, in order */
	int n_params;
	bool replication;
	/* protocol-extension parameters ("_pq_.*") the client asked for; refused by
	 * NegotiateProtocolVersion */
	const char *pq_ext[16];
	int n_pq_ext;
} Startup;

/*
 * Parses a StartupMessage body (after the 4-byte length). false + reason on garbage;
 * the reason is proto_no_user when only the user name is missing (a well-formed packet).
 */
extern const char proto_no_user[];
bool proto_parse_startup(const uint8_t *body, size_t len, Startup *out, const char **why);

/* ErrorResponse (severity "ERROR", "FATAL", "PANIC") or NoticeResponse (any other, e.g. "NOTICE");
 * hint may be NULL. */
void proto_error(Buf *b, const char *severity, const char *sqlstate, const char *msg,
                 const char *hint);
void proto_auth_request(Buf *b, uint32_t code, const void *data, size_t n);
void proto_parameter_status(Buf *b, const char *name, const char *value);
void proto_backend_key(Buf *b, uint32_t pid, uint32_t key);
void proto_ready(Buf *b, char tx_status);
void proto_negotiate_version(Buf *b, uint32_t newest_minor, const char *const *unsupported, int n);
void proto_simple_query(Buf *b, const char *sql);
void proto_cancel_request(Buf *b, uint32_t pid, uint32_t key);

/* Pulls the SQLSTATE and message fields out of an ErrorResponse body (NULL when absent). */
void proto_error_fields(const uint8_t *body, size_t len, const char **sqlstate, const char **msg);
/* Is this ErrorResponse FATAL or PANIC (the server closes the connection after it)? */
bool proto_error_is_fatal(const uint8_t *body, size_t len);

#endif
