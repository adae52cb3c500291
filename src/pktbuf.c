/*
 * pktbuf: see include/pktbuf.h. Buffers compact lazily: consumed bytes are
 * only moved when the tail lacks room, so forwarding a stream of small
 * messages never memmoves per message.
 */
#include "pktbuf.h"

#include <stdarg.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

/*
 * Blocks of BUF_BLOCK bytes are recycled through a small stack, so a connection
 * can hand its buffers back whenever it is idle (10,000 idle clients hold no
 * buffers) and take them again for the next query without a malloc. Each thread
 * has its own stack (pgtenant migrate's jobs build their SQL in Bufs beside each
 * other); a thread that ends hands its blocks back with buf_cache_drain().
 */
#define BUF_BLOCK     16384
#define BUF_CACHE_MAX 1024

static __thread void *block_cache[BUF_CACHE_MAX];
static __thread int block_cached;

void buf_cache_drain(void)
{
	while (block_cached > 0)
		free(block_cache[--block_cached]);
}

static void block_put(void *p)
{
	if (block_cached < BUF_CACHE_MAX)
		block_cache[block_cached++] = p;
	else
		free(p);
}

static void *block_get(void)
{
	return block_cached ? block_cache[--block_cached] : xmalloc(BUF_BLOCK);
}

void buf_release(Buf *b)
{
	if (b->cap == BUF_BLOCK)
		block_put(b->data);
	else
		free(b->data);
	b->data = NULL;
	b->cap = 0;
}

void buf_init(Buf *b)
{
	memset(b, 0, sizeof(*b));
}

void buf_free(Buf *b)
{
	buf_release(b);
	memset(b, 0, sizeof(*b));
}

void buf_grow(Buf *b, size_t n)
{
	if (b->off > 0) {
		size_t live = b->len - b->off;
		if (live)
			memmove(b->data, b->data + b->off, live);
		b->len = live;
		b->off = 0;
		if (b->cap - b->len >= n)
			return;
	}
	if (!b->data && n <= BUF_BLOCK) {
		b->data = block_get();
		b->cap = BUF_BLOCK;
		return;
	}
	size_t cap = b->cap ? b->cap : 1024;
	while (cap - b->len < n)
		cap *= 2;
	if (b->data && b->cap == BUF_BLOCK) {
		/* a recycled block cannot be realloc'd in place of the cache's bookkeeping */
		uint8_t *p = xmalloc(cap);
		memcpy(p, b->data, b->len);
		block_put(b->data);
		b->data = p;
	} else {
		b->data = xrealloc(b->data, cap);
	}
	b->cap = cap;
}

void buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(Buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	/* the analyzer loses va_start here (clang 14); ap is initialised one line up */
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
	va_end(ap);
	if (n > 0)
		buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

void pkt_begin(Buf *b, uint8_t type, size_t *start)
{
	if (type)
		buf_append(b, &type, 1);
	*start = b->len;
	pkt_put_u32(b, 0); /* length, patched by pkt_finish */
}

void pkt_finish(Buf *b, size_t start)
{
	uint32_t n = (uint32_t)(b->len - start);
	uint8_t *p = b->data + start;
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
}

void pkt_put_u8(Buf *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

void pkt_put_u16(Buf *b, uint16_t v)
{
	uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, p, 2);
}

void pkt_put_u32(Buf *b, uint32_t v)
{
	uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, p, 4);
}

void pkt_put_bytes(Buf *b, const void *p, size_t n)
{
	buf_append(b, p, n);
}

void pkt_put_cstr(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

bool msg_get_u8(MsgReader *r, uint8_t *v)
{
	if (msg_remaining(r) < 1)
		return false;
	*v = r->p[r->pos++];
	return true;
}

bool msg_get_u16(MsgReader *r, uint16_t *v)
{
	if (msg_remaining(r) < 2)
		return false;
	*v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
	r->pos += 2;
	return true;
}

bool msg_get_u32(MsgReader *r, uint32_t *v)
{
	if (msg_remaining(r) < 4)
		return false;
	*v = read_u32be(r->p + r->pos);
	r->pos += 4;
	return true;
}

bool msg_get_bytes(MsgReader *r, size_t n, const uint8_t **out)
{
	if (msg_remaining(r) < n)
		return false;
	*out = r->p + r->pos;
	r->pos += n;
	return true;
}

bool msg_get_cstr(MsgReader *r, const char **out)
{
	const uint8_t *start = r->p + r->pos;
	const uint8_t *nul = memchr(start, 0, msg_remaining(r));
	if (!nul)
		return false;
	*out = (const char *)start;
	r->pos += (size_t)(nul - start) + 1;
	return true;
}
