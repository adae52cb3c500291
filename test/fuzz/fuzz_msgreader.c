/*
 * Fuzz target: the bounded readers every untrusted message goes through.
 *
 * - proto_error_fields / proto_error_is_fatal on the input as an
 *   ErrorResponse body (what a server, or anything posing as one, sends);
 * - MsgReader driven by the input itself: each byte picks the next get
 *   (u8, u16, u32, bytes of a length read from the message, cstr), and
 *   every get must either fail without moving or stay inside the message;
 * - a round trip: an ErrorResponse built with proto_error from strings cut
 *   out of the input parses back to the same SQLSTATE and message.
 */
#include "pktbuf.h"
#include "proto.h"

#include "fuzz.h"

static void fuzz_error_fields(const uint8_t *data, size_t size)
{
	const char *sqlstate, *msg;

	proto_error_fields(data, size, &sqlstate, &msg);
	if (sqlstate) {
		FUZZ_ASSERT((const uint8_t *)sqlstate > data &&
		            (const uint8_t *)sqlstate < data + size);
		FUZZ_ASSERT(memchr(sqlstate, 0, size - (size_t)((const uint8_t *)sqlstate - data)));
	}
	if (msg) {
		FUZZ_ASSERT((const uint8_t *)msg > data && (const uint8_t *)msg < data + size);
		FUZZ_ASSERT(memchr(msg, 0, size - (size_t)((const uint8_t *)msg - data)));
	}
	(void)proto_error_is_fatal(data, size);
}

static void fuzz_reader(const uint8_t *data, size_t size)
{
	MsgReader r;

	msg_reader_init(&r, data, size);
	while (msg_remaining(&r) > 0) {
		size_t before = r.pos;
		uint8_t op, u8;
		uint16_t u16;
		uint32_t u32;
		const uint8_t *bytes;
		const char *s;
		bool ok;

		if (!msg_get_u8(&r, &op))
			break;
		before = r.pos;
		switch (op % 6) {
		case 0:
			ok = msg_get_u8(&r, &u8);
			FUZZ_ASSERT(!ok || r.pos == before + 1);
			break;
		case 1:
			ok = msg_get_u16(&r, &u16);
			FUZZ_ASSERT(!ok || r.pos == before + 2);
			FUZZ_ASSERT(ok || msg_remaining(&r) < 2);
			break;
		case 2:
			ok = msg_get_u32(&r, &u32);
			FUZZ_ASSERT(!ok || u32 == read_u32be(data + before));
			FUZZ_ASSERT(ok || msg_remaining(&r) < 4);
			break;
		case 3: /* a length from the message, as Bind's parameter values are read */
			ok = msg_get_u32(&r, &u32);
			if (!ok)
				break;
			before = r.pos;
			ok = msg_get_bytes(&r, u32, &bytes);
			FUZZ_ASSERT(ok == (u32 <= size - before));
			FUZZ_ASSERT(!ok || (bytes == data + before && r.pos == before + u32));
			break;
		case 4:
			ok = msg_get_cstr(&r, &s);
			if (ok) {
				FUZZ_ASSERT((const uint8_t *)s == data + before);
				FUZZ_ASSERT(r.pos == before + strlen(s) + 1 && r.pos <= size);
			} else {
				FUZZ_ASSERT(memchr(data + before, 0, size - before) == NULL);
			}
			break;
		default:
			ok = msg_get_bytes(&r, op / 6, &bytes);
			FUZZ_ASSERT(ok == ((size_t)(op / 6) <= size - before));
			break;
		}
		FUZZ_ASSERT(r.pos <= r.len);
		FUZZ_ASSERT(ok || r.pos == before);
	}
}

/* The next NUL-free string of the input from *pos, as a new C string. */
static char *cut_string(const uint8_t *data, size_t size, size_t *pos)
{
	size_t start = *pos < size ? *pos : size;
	const uint8_t *nul = memchr(data + start, 0, size - start);
	size_t end = nul ? (size_t)(nul - data) : size;
	char *s = malloc(end - start + 1);

	if (!s)
		abort();
	memcpy(s, data + start, end - start);
	s[end - start] = '\0';
	*pos = end + 1;
	return s;
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	char *sqlstate_in = cut_string(data, size, &pos);
	char *msg_in = cut_string(data, size, &pos);
	char *hint_in = cut_string(data, size, &pos);
	const char *sqlstate, *msg;
	Buf b;
	size_t plen;

	buf_init(&b);
	proto_error(&b, "ERROR", sqlstate_in, msg_in, hint_in[0] ? hint_in : NULL);
	FUZZ_ASSERT(buf_avail(&b) >= 5 && buf_head(&b)[0] == 'E');
	plen = read_u32be(buf_head(&b) + 1);
	FUZZ_ASSERT(plen + 1 == buf_avail(&b));
	proto_error_fields(buf_head(&b) + 5, plen - 4, &sqlstate, &msg);
	FUZZ_ASSERT(sqlstate && strcmp(sqlstate, sqlstate_in) == 0);
	FUZZ_ASSERT(msg && strcmp(msg, msg_in) == 0);
	FUZZ_ASSERT(!proto_error_is_fatal(buf_head(&b) + 5, plen - 4));
	buf_consume(&b, buf_avail(&b));
	FUZZ_ASSERT(buf_avail(&b) == 0);
	buf_free(&b);
	free(sqlstate_in);
	free(msg_in);
	free(hint_in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_error_fields(data, size);
	fuzz_reader(data, size);
	fuzz_round_trip(data, size);
	return 0;
}
