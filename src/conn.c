/*
 * conn: see include/conn.h.
 */
#include "conn.h"

#include "tls.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct event_base *g_base;

void conn_init(Conn *c, int fd, event_callback_fn on_read, event_callback_fn on_write, void *arg)
{
	c->fd = fd;
	c->read_armed = c->write_armed = c->close_armed = c->watch_close = c->keep_bufs = false;
	c->warm = false;
	c->ssl = NULL;
	c->ssl_failed = c->ssl_read_wants_write = c->ssl_write_wants_read = false;
	buf_init(&c->in);
	buf_init(&c->out);
	event_assign(&c->ev_read, g_base, fd, EV_READ | EV_PERSIST, on_read, arg);
	event_assign(&c->ev_write, g_base, fd, EV_WRITE | EV_PERSIST, on_write, arg);
}

/* The clients whose emptied buffers keep their blocks, in the order they became warm. */
static List warm = {&warm, &warm};
static unsigned n_warm;

/* c leaves the warm list. */
static void conn_unwarm(Conn *c)
{
	assert(c->warm && n_warm > 0);
	list_del(&c->warm_node);
	n_warm--;
	c->warm = false;
}

/* c leaves the warm list; its empty buffers hand their blocks back. */
static void conn_cool(Conn *c)
{
	conn_unwarm(c);
	if (!buf_avail(&c->in))
		buf_reset(&c->in, 0);
	if (!buf_avail(&c->out))
		buf_reset(&c->out, 0);
}

/* c becomes warm; past CONN_WARM_MAX, the one warm the longest goes cold. */
static void conn_warm(Conn *c)
{
	c->warm = true;
	n_warm++;
	list_append(&warm, &c->warm_node);
	if (n_warm > CONN_WARM_MAX)
		conn_cool(list_entry(warm.next, Conn, warm_node));
}

/*
 * The buffer b of c went empty: a server's keeps its block; a client's keeps it while the
 * client is warm (conn.h). Every transaction passes here: a store when c is warm already.
 */
static inline void conn_rest(Conn *c, Buf *b)
{
	buf_reset(b, CONN_READ_CHUNK); /* a buffer that grew past one block goes back now */
	if (c->keep_bufs || !b->data)
		return;
	c->warm_at = g_now;
	if (!c->warm)
		conn_warm(c);
}

void conn_cool_idle(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &warm, tmp)
	{
		Conn *c = list_entry(it, Conn, warm_node);
		if (g_now - c->warm_at >= CONN_WARM_USEC)
			conn_cool(c);
	}
}

void conn_close(Conn *c)
{
	if (c->warm)
		conn_unwarm(c);
	if (c->fd < 0)
		return;
	if (c->read_armed || c->close_armed)
		event_del(&c->ev_read);
	if (c->write_armed)
		event_del(&c->ev_write);
	c->read_armed = c->write_armed = c->close_armed = false;
	if (c->ssl) {
		/* one try at close_notify; a peer that does not read it loses nothing */
		ERR_clear_error();
		if (!c->ssl_failed && SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_free(&c->out);
}

bool conn_peer_gone(Conn *c, short what)
{
	uint8_t b;
	ssize_t n;

	if (what & EV_CLOSED)
		return true;
	do {
		n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* The read event, re-made for other events (EV_READ, or the hang-up watch while not reading). */
static void read_event_as(Conn *c, short what)
{
	if (event_get_events(&c->ev_read) == (what | EV_PERSIST))
		return;
	event_assign(&c->ev_read, g_base, c->fd, what | EV_PERSIST, event_get_callback(&c->ev_read),
	             event_get_callback_arg(&c->ev_read));
}

void conn_want_read(Conn *c, bool on)
{
	if (c->fd < 0)
		return;
	if (on != c->read_armed) {
		if (c->read_armed || c->close_armed)
			event_del(&c->ev_read);
		c->close_armed = false;
		if (on) {
			read_event_as(c, EV_READ);
			event_add(&c->ev_read, NULL);
		} else if (c->watch_close &&
		           (event_base_get_features(g_base) & EV_FEATURE_EARLY_CLOSE)) {
			/* not reading, but still told when the peer hangs up: EV_CLOSED
			 * (EPOLLRDHUP) for a close, EV_READ edge-triggered for a reset (epoll
			 * reports it as EPOLLHUP|EPOLLERR, which libevent turns into EV_READ, never
			 * EV_CLOSED); conn_peer_gone tells them from new input */
			read_event_as(c, EV_CLOSED | EV_READ | EV_ET);
			event_add(&c->ev_read, NULL);
			c->close_armed = true;
		}
		c->read_armed = on;
	}
	/* bytes OpenSSL already decrypted make the socket look idle */
	if (on && c->ssl && SSL_is_init_finished(c->ssl) && SSL_has_pending(c->ssl))
		event_active(&c->ev_read, EV_READ, 0);
}

static void want_write(Conn *c, bool on)
{
	if (c->fd < 0 || on == c->write_armed)
		return;
	if (on)
		event_add(&c->ev_write, NULL);
	else
		event_del(&c->ev_write);
	c->write_armed = on;
}

/* What an SSL_read or SSL_write that returned ret <= 0 means for the caller. */
static IoStatus ssl_status(Conn *c, int ret, bool reading)
{
	int e = SSL_get_error(c->ssl, ret);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			c->ssl_write_wants_read = true; /* conn_read retries the write */
		return IO_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->ssl_read_wants_write = true; /* conn_flush retries the read */
		want_write(c, true);
		return IO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	case SSL_ERROR_SYSCALL:
		c->ssl_failed = true;
		ERR_clear_error();
		return ret == 0 || errno == 0 ? IO_EOF : IO_ERROR;
	default:
		c->ssl_failed = true;
		ERR_clear_error();
		return IO_ERROR;
	}
}

static IoStatus ssl_read(Conn *c)
{
	size_t room = c->in.cap - c->in.len;
	int n;

	ERR_clear_error();
	n = SSL_read(c->ssl, c->in.data + c->in.len, room > INT_MAX ? INT_MAX : (int)room);
	if (c->ssl_write_wants_read) {
		c->ssl_write_wants_read = false;
		want_write(c, true); /* the write event retries the flush */
	}
	if (n <= 0)
		return ssl_status(c, n, true);
	c->in.len += (size_t)n;
	/* the rest of a record (or read-ahead) waits inside OpenSSL, not in the socket */
	if (c->read_armed && SSL_has_pending(c->ssl))
		event_active(&c->ev_read, EV_READ, 0);
	return IO_OK;
}

static IoStatus ssl_flush(Conn *c)
{
	if (c->ssl_read_wants_write) {
		c->ssl_read_wants_write = false;
		if (c->read_armed)
			event_active(&c->ev_read, EV_READ, 0);
	}
	while (buf_avail(&c->out)) {
		size_t len = buf_avail(&c->out);
		int n;
		ERR_clear_error();
		n = SSL_write(c->ssl, buf_head(&c->out), len > INT_MAX ? INT_MAX : (int)len);
		if (n <= 0) {
			IoStatus st = ssl_status(c, n, false);
			return st == IO_AGAIN ? IO_AGAIN : IO_ERROR;
		}
		buf_consume(&c->out, (size_t)n);
	}
	want_write(c, false);
	/* all sent: the block goes back to the cache until there is more to send */
	conn_rest(c, &c->out);
	return IO_OK;
}

IoStatus conn_tls_handshake(Conn *c, char *err, size_t errlen)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		want_write(c, false);
		return IO_OK;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		want_write(c, false);
		conn_want_read(c, true);
		return IO_AGAIN;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		want_write(c, true);
		return IO_AGAIN;
	}
	c->ssl_failed = true;
	if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
		snprintf(err, errlen, "%s",
		         r == 0 || errno == 0 ? "connection closed during the TLS handshake"
		                              : strerror(errno));
		return r == 0 || errno == 0 ? IO_EOF : IO_ERROR;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(err, errlen, "connection closed during the TLS handshake");
		return IO_EOF;
	}
	tls_describe_failure(c->ssl, err, errlen);
	return IO_ERROR;
}

IoStatus conn_read(Conn *c)
{
	ssize_t n;
	buf_reserve(&c->in, CONN_READ_CHUNK);
	if (c->ssl)
		return ssl_read(c);
	do {
		n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		c->in.len += (size_t)n;
		return IO_OK;
	}
	if (n == 0)
		return IO_EOF;
	return (errno == EAGAIN || errno == EWOULDBLOCK) ? IO_AGAIN : IO_ERROR;
}

IoStatus conn_flush(Conn *c)
{
	if (c->fd < 0)
		return IO_ERROR;
	if (c->ssl)
		return ssl_flush(c);
	while (buf_avail(&c->out)) {
		ssize_t n = send(c->fd, buf_head(&c->out), buf_avail(&c->out), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				want_write(c, true);
				return IO_AGAIN;
			}
			return IO_ERROR;
		}
		buf_consume(&c->out, (size_t)n);
	}
	want_write(c, false);
	/* all sent: the block goes back to the cache until there is more to send */
	conn_rest(c, &c->out);
	return IO_OK;
}

void conn_shrink_buffers(Conn *c)
{
	if (!buf_avail(&c->in))
		conn_rest(c, &c->in);
	if (!buf_avail(&c->out))
		conn_rest(c, &c->out);
}
