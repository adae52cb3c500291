/*
 * conn: the socket half every client and server connection shares — a
 * non-blocking fd, its read and write events, an input buffer and an
 * output buffer. Callers use conn_*() and never read(2)/write(2) directly,
 * so TLS can later slot in behind the same calls (Redis's connection.h idea).
 *
 * Back-pressure: a connection whose peer's output buffer is above
 * CONN_HIGH_WATER stops reading until that buffer drains below
 * CONN_LOW_WATER, so a client that stops reading a large result holds at
 * most about one high-water mark of memory.
 */
#ifndef PGTENANT_CONN_H
#define PGTENANT_CONN_H

#include "pktbuf.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#define CONN_READ_CHUNK 16384
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)
/* An idle connection keeps buffers up to this size; larger ones are freed. */
#define CONN_KEEP_BUF (32 * 1024)

typedef enum { IO_OK = 0, IO_AGAIN, IO_EOF, IO_ERROR } IoStatus;

typedef struct Conn {
	int fd;
	struct event ev_read;
	struct event ev_write;
	bool read_armed;
	bool write_armed;
	Buf in;
	Buf out;
} Conn;

extern struct event_base *g_base;

void conn_init(Conn *c, int fd, event_callback_fn on_read, event_callback_fn on_write, void *arg);
/* Removes events, closes the fd and frees buffers. */
void conn_close(Conn *c);
void conn_want_read(Conn *c, bool on);
/* Reads what is available into c->in (one read call). */
IoStatus conn_read(Conn *c);
/* Sends c->out; arms the write event when the kernel would block. IO_ERROR when the peer is gone. */
IoStatus conn_flush(Conn *c);
static inline bool conn_out_full(const Conn *c)
{
	return buf_avail(&c->out) > CONN_HIGH_WATER;
}
/* Frees the buffers of an idle connection if they grew (memory per idle client stays small). */
void conn_shrink(Conn *c);

#endif
