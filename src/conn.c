/*
 * conn: see include/conn.h.
 */
#include "conn.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct event_base *g_base;

void conn_init(Conn *c, int fd, event_callback_fn on_read, event_callback_fn on_write, void *arg)
{
	c->fd = fd;
	c->read_armed = c->write_armed = false;
	buf_init(&c->in);
	buf_init(&c->out);
	event_assign(&c->ev_read, g_base, fd, EV_READ | EV_PERSIST, on_read, arg);
	event_assign(&c->ev_write, g_base, fd, EV_WRITE | EV_PERSIST, on_write, arg);
}

void conn_close(Conn *c)
{
	if (c->fd < 0)
		return;
	if (c->read_armed)
		event_del(&c->ev_read);
	if (c->write_armed)
		event_del(&c->ev_write);
	c->read_armed = c->write_armed = false;
	close(c->fd);
	c->fd = -1;
	buf_free(&c->in);
	buf_free(&c->out);
}

void conn_want_read(Conn *c, bool on)
{
	if (c->fd < 0 || on == c->read_armed)
		return;
	if (on)
		event_add(&c->ev_read, NULL);
	else
		event_del(&c->ev_read);
	c->read_armed = on;
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

IoStatus conn_read(Conn *c)
{
	ssize_t n;
	buf_reserve(&c->in, CONN_READ_CHUNK);
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
	return IO_OK;
}

void conn_shrink(Conn *c)
{
	if (!buf_avail(&c->in))
		buf_reset(&c->in, CONN_KEEP_BUF);
	if (!buf_avail(&c->out))
		buf_reset(&c->out, CONN_KEEP_BUF);
}
