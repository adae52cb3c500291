/*
 * conn: the socket half every client and server connection shares — a
 * non-blocking fd, its read and write events, an input buffer and an
 * output buffer. Callers use conn_*() and never read(2)/write(2) directly,
 * so TLS slots in behind the same calls (Redis's connection.h idea): with
 * Conn.ssl set, conn_read and conn_flush go through SSL_read/SSL_write.
 *
 * TLS and the event loop: a readable fd is not the only sign of input, as
 * OpenSSL may hold decrypted bytes the socket no longer shows; conn_read
 * re-activates the read event for them. SSL_read may need the socket
 * writable and SSL_write readable; the flags below carry that over to the
 * other event, so callers keep to the plain-socket discipline.
 *
 * A client is watched for hang-up also while pgtenant does not read it (held
 * back, back-pressured): its read event then waits for EV_CLOSED alone, so a
 * client that vanishes is closed at once and its server is not kept.
 *
 * Back-pressure: a connection whose peer's output buffer is above
 * CONN_HIGH_WATER stops reading until that buffer drains below
 * CONN_LOW_WATER, so a client that stops reading a large result holds at
 * most about one high-water mark of memory.
 */
#ifndef PGTENANT_CONN_H
#define PGTENANT_CONN_H

#include "list.h"
#include "pktbuf.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#define CONN_READ_CHUNK 16384
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER  (64 * 1024)
/*
 * An empty buffer of an idle connection goes back to the block cache (pktbuf.c), so
 * 10,000 idle clients hold none. A server connection (keep_bufs) keeps one block each
 * way: servers are few (pool sizes bound them) and busy, and handing the blocks back
 * after every reply cost more than the memory. A client keeps its blocks while it is
 * "warm": a buffer of it emptied within CONN_WARM_USEC (conn_cool_idle, every tick, hands
 * the others' back), and it is one of the last CONN_WARM_MAX to become warm. So a busy
 * client does not fetch and return two blocks per transaction, and the most this holds is
 * CONN_WARM_MAX * 2 blocks (8 MB).
 */
#define CONN_WARM_MAX  256
#define CONN_WARM_USEC 1000000

typedef enum { IO_OK = 0, IO_AGAIN, IO_EOF, IO_ERROR } IoStatus;

typedef struct Conn {
	int fd;
	struct event ev_read;
	struct event ev_write;
	bool read_armed;
	bool write_armed;
	bool watch_close; /* while not reading, watch for the peer hanging up (clients) */
	bool close_armed; /* ... and the read event waits for that now (EV_CLOSED) */
	bool keep_bufs;   /* empty buffers keep one block (server connections) */
	bool warm;        /* on the warm list: empty buffers keep their block for now */
	usec_t warm_at;   /* when a buffer of it last emptied */
	List warm_node;
	Buf in;
	Buf out;
	struct ssl_st *ssl;        /* NULL: plain socket */
	bool ssl_failed;           /* a fatal TLS error: no close_notify may be sent */
	bool ssl_read_wants_write; /* SSL_read needs the socket writable */
	bool ssl_write_wants_read; /* SSL_write needs the socket readable */
} Conn;

extern struct event_base *g_base;

void conn_init(Conn *c, int fd, event_callback_fn on_read, event_callback_fn on_write, void *arg);
/* Removes events, closes the fd and frees buffers. */
void conn_close(Conn *c);
void conn_want_read(Conn *c, bool on);
/* While not reading (close_armed): did the event say the peer hung up or reset? (New input is not
 * that.) */
bool conn_peer_gone(Conn *c, short what);
/* Reads what is available into c->in (one read call). */
IoStatus conn_read(Conn *c);
/* Sends c->out; arms the write event when the kernel would block. IO_ERROR when the peer is gone.
 */
IoStatus conn_flush(Conn *c);
static inline bool conn_out_full(const Conn *c)
{
	return buf_avail(&c->out) > CONN_HIGH_WATER;
}
/* conn_shrink's slow path. */
void conn_shrink_buffers(Conn *c);
/* Frees the buffers of an idle connection if they grew (memory per idle client stays small);
 * a warm client's empty buffers keep their one block each (once per transaction: inline). */
static inline void conn_shrink(Conn *c)
{
	if (c->warm && !buf_avail(&c->in) && !buf_avail(&c->out) && c->in.cap <= CONN_READ_CHUNK &&
	    c->out.cap <= CONN_READ_CHUNK) {
		c->warm_at = g_now;
		return;
	}
	conn_shrink_buffers(c);
}
/* Hands back the blocks of clients not warm any more (CONN_WARM_USEC); every tick. */
void conn_cool_idle(void);
/*
 * One step of the TLS handshake on c->ssl, arming whichever event it waits
 * for: IO_OK when done, IO_AGAIN to be called again on the next event,
 * IO_ERROR / IO_EOF with the reason in err.
 */
IoStatus conn_tls_handshake(Conn *c, char *err, size_t errlen);
static inline bool conn_is_tls(const Conn *c)
{
	return c->ssl != NULL;
}

#endif
