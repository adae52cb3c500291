/*
 * proto: builders and the startup parser; see include/proto.h.
 */
#include "proto.h"

#include <string.h>

const char proto_no_user[] = "no PostgreSQL user name specified in startup packet";

bool proto_parse_startup(const uint8_t *body, size_t len, Startup *out, const char **why)
{
	MsgReader r;
	uint32_t version;

	memset(out, 0, sizeof(*out));
	msg_reader_init(&r, body, len);
	if (!msg_get_u32(&r, &version)) {
		*why = "startup packet too short";
		return false;
	}
	out->version = version;
	for (;;) {
		const char *name, *value;
		if (!msg_get_cstr(&r, &name)) {
			*why = "startup packet is not terminated";
			return false;
		}
		if (!*name)
			break;
		if (!msg_get_cstr(&r, &value)) {
			*why = "startup parameter has no value";
			return false;
		}
		if (strcmp(name, "user") == 0)
			out->user = value;
		else if (strcmp(name, "database") == 0)
			out->database = value;
		else if (strcmp(name, "options") == 0)
			out->options = value;
		else if (strcmp(name, "replication") == 0)
			out->replication = true;
		else if (strncmp(name, "_pq_.", 5) == 0) {
			if (out->n_pq_ext < (int)ARRAY_SIZE(out->pq_ext))
				out->pq_ext[out->n_pq_ext++] = name;
		} else {
			if (out->n_params >= STARTUP_MAX_PARAMS) {
				*why = "too many startup parameters";
				return false;
			}
			out->params[out->n_params].name = name;
			out->params[out->n_params].value = value;
			out->n_params++;
		}
	}
	if (msg_remaining(&r) != 0) {
		*why = "trailing bytes after startup parameters";
		return false;
	}
	if (!out->user || !*out->user) {
		*why = proto_no_user;
		return false;
	}
	if (!out->database || !*out->database)
		out->database = out->user;
	return true;
}

void proto_error(Buf *b, const char *severity, const char *sqlstate, const char *msg,
                 const char *hint)
{
	size_t start;
	bool error = strcmp(severity, "ERROR") == 0 || strcmp(severity, "FATAL") == 0 ||
	             strcmp(severity, "PANIC") == 0;
	pkt_begin(b, error ? 'E' : 'N', &start);
	pkt_put_u8(b, 'S');
	pkt_put_cstr(b, severity);
	pkt_put_u8(b, 'V');
	pkt_put_cstr(b, severity);
	pkt_put_u8(b, 'C');
	pkt_put_cstr(b, sqlstate);
	pkt_put_u8(b, 'M');
	pkt_put_cstr(b, msg);
	if (hint) {
		pkt_put_u8(b, 'H');
		pkt_put_cstr(b, hint);
	}
	pkt_put_u8(b, 0);
	pkt_finish(b, start);
}

void proto_auth_request(Buf *b, uint32_t code, const void *data, size_t n)
{
	size_t start;
	pkt_begin(b, 'R', &start);
	pkt_put_u32(b, code);
	pkt_put_bytes(b, data, n);
	pkt_finish(b, start);
}

void proto_parameter_status(Buf *b, const char *name, const char *value)
{
	size_t start;
	pkt_begin(b, 'S', &start);
	pkt_put_cstr(b, name);
	pkt_put_cstr(b, value);
	pkt_finish(b, start);
}

void proto_backend_key(Buf *b, uint32_t pid, uint32_t key)
{
	size_t start;
	pkt_begin(b, 'K', &start);
	pkt_put_u32(b, pid);
	pkt_put_u32(b, key);
	pkt_finish(b, start);
}

void proto_ready(Buf *b, char tx_status)
{
	size_t start;
	pkt_begin(b, 'Z', &start);
	pkt_put_u8(b, (uint8_t)tx_status);
	pkt_finish(b, start);
}

void proto_negotiate_version(Buf *b, uint32_t newest_minor, const char *const *unsupported, int n)
{
	size_t start;
	pkt_begin(b, 'v', &start);
	pkt_put_u32(b, newest_minor);
	pkt_put_u32(b, (uint32_t)n);
	for (int i = 0; i < n; i++)
		pkt_put_cstr(b, unsupported[i]);
	pkt_finish(b, start);
}

void proto_simple_query(Buf *b, const char *sql)
{
	size_t start;
	pkt_begin(b, 'Q', &start);
	pkt_put_cstr(b, sql);
	pkt_finish(b, start);
}

void proto_cancel_request(Buf *b, uint32_t pid, uint32_t key)
{
	size_t start;
	pkt_begin(b, 0, &start);
	pkt_put_u32(b, PROTO_CANCEL);
	pkt_put_u32(b, pid);
	pkt_put_u32(b, key);
	pkt_finish(b, start);
}

void proto_error_fields(const uint8_t *body, size_t len, const char **sqlstate, const char **msg)
{
	MsgReader r;
	*sqlstate = NULL;
	*msg = NULL;
	msg_reader_init(&r, body, len);
	for (;;) {
		uint8_t code;
		const char *val;
		if (!msg_get_u8(&r, &code) || code == 0)
			return;
		if (!msg_get_cstr(&r, &val))
			return;
		if (code == 'C')
			*sqlstate = val;
		else if (code == 'M')
			*msg = val;
	}
}

bool proto_error_is_fatal(const uint8_t *body, size_t len)
{
	MsgReader r;
	msg_reader_init(&r, body, len);
	for (;;) {
		uint8_t code;
		const char *val;
		if (!msg_get_u8(&r, &code) || code == 0 || !msg_get_cstr(&r, &val))
			return false;
		if (code == 'V' || code == 'S')
			return strcmp(val, "FATAL") == 0 || strcmp(val, "PANIC") == 0;
	}
}
