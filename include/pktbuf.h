/*
 * pktbuf: byte buffers, a bounds-checked reader for untrusted messages, and
 * sticky-failure packet builders.
 *
 * Buf is one growable byte array with a read offset: connections read into
 * one and write out of another. MsgReader walks one message; every get
 * checks bounds and must be checked (a malformed message from a client is
 * answered with 08P01, never trusted). Builders append to a Buf, which grows
 * as needed, and cannot fail (running out of memory aborts, as every
 * xmalloc does), so callers write field after field with nothing to check;
 * each pkt_begin needs its pkt_finish, which patches the length in.
 */
#ifndef PGTENANT_PKTBUF_H
#define PGTENANT_PKTBUF_H

#include "common.h"

#include <string.h>

typedef struct Buf {
	uint8_t *data;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of valid data */
	size_t cap;
	uint64_t consumed; /* bytes consumed or dropped since buf_init: data[off] is byte
	                    * `consumed` of the stream, which names a message for good */
} Buf;

static inline size_t buf_avail(const Buf *b)
{
	return b->len - b->off;
}

static inline const uint8_t *buf_head(const Buf *b)
{
	return b->data + b->off;
}

void buf_init(Buf *b);
void buf_free(Buf *b);
/* buf_reserve's slow path: compacts consumed bytes, then grows. */
void buf_grow(Buf *b, size_t n);
/* buf_reset's slow path: hands the allocation back. */
void buf_release(Buf *b);
/* Frees the calling thread's cached blocks (a thread that used Bufs, before it ends). */
void buf_cache_drain(void);

/*
 * The three calls every forwarded message makes are inline: room at the tail is
 * the common case, and a call each would cost more than the work.
 */

/* Makes room for n more bytes at the end (compacting consumed bytes first). */
static inline void buf_reserve(Buf *b, size_t n)
{
	if (b->cap - b->len < n)
		buf_grow(b, n);
}

static inline void buf_consume(Buf *b, size_t n)
{
	size_t avail = b->len - b->off;
	b->consumed += n < avail ? n : avail;
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

/* Drops everything; keeps the allocation unless it grew past keep bytes. */
static inline void buf_reset(Buf *b, size_t keep)
{
	b->consumed += b->len - b->off;
	b->off = b->len = 0;
	if (b->cap > keep)
		buf_release(b);
}

static inline void buf_append(Buf *b, const void *p, size_t n)
{
	if (!n)
		return;
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}
/* Appends a C string (no NUL), or printf's output (at most 255 bytes: numbers and names). */
void buf_puts(Buf *b, const char *s);
void PRINTF_LIKE(2, 3) buf_printf(Buf *b, const char *fmt, ...);

/* Packet builders (PostgreSQL v3 wire format, big-endian). */
void pkt_begin(Buf *b, uint8_t type, size_t *start); /* type 0: startup-style, no type byte */
void pkt_finish(Buf *b, size_t start);
void pkt_put_u8(Buf *b, uint8_t v);
void pkt_put_u16(Buf *b, uint16_t v);
void pkt_put_u32(Buf *b, uint32_t v);
void pkt_put_bytes(Buf *b, const void *p, size_t n);
void pkt_put_cstr(Buf *b, const char *s);

/* Bounds-checked reader over one message body. */
typedef struct MsgReader {
	const uint8_t *p;
	size_t len;
	size_t pos;
} MsgReader;

static inline void msg_reader_init(MsgReader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
}

static inline size_t msg_remaining(const MsgReader *r)
{
	return r->len - r->pos;
}

MUST_CHECK bool msg_get_u8(MsgReader *r, uint8_t *v);
MUST_CHECK bool msg_get_u16(MsgReader *r, uint16_t *v);
MUST_CHECK bool msg_get_u32(MsgReader *r, uint32_t *v);
MUST_CHECK bool msg_get_bytes(MsgReader *r, size_t n, const uint8_t **out);
/* A NUL-terminated string inside the message; false when no NUL before the end. */
MUST_CHECK bool msg_get_cstr(MsgReader *r, const char **out);

static inline uint32_t read_u32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#endif
