/*
 * listener: accepts clients in a loop until the kernel has no more, hands
 * each to client_accept(). Accept errors such as EMFILE pause accepting
 * briefly instead of spinning.
 */
#include "listener.h"

#include "client.h"
#include "conn.h"
#include "log.h"
#include "net.h"
#include "pgtenant.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LISTENERS 16

typedef struct Listener {
	int fd;
	bool is_unix;
	struct event ev;
} Listener;

static Listener listeners[MAX_LISTENERS];
static int n_listeners;
static char unix_path[256];

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	Listener *l = arg;
	time_update();
	for (int i = 0; i < 64; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warning("accept failed: %s", strerror(errno));
			break;
		}
		if (!l->is_unix)
			net_tune(cfd, g_cfg->tcp_keepalive, g_cfg->tcp_user_timeout);
		client_accept(cfd);
	}
}

static bool add_listener(int fd, bool is_unix)
{
	if (n_listeners >= MAX_LISTENERS) {
		close(fd);
		log_error("too many listen addresses (at most %d)", MAX_LISTENERS);
		return false;
	}
	Listener *l = &listeners[n_listeners++];
	l->fd = fd;
	l->is_unix = is_unix;
	return true;
}

void listener_start(void)
{
	for (int i = 0; i < n_listeners; i++) {
		Listener *l = &listeners[i];
		event_assign(&l->ev, g_base, l->fd, EV_READ | EV_PERSIST, on_accept, l);
		event_add(&l->ev, NULL);
	}
}

bool listener_bind(const Config *cfg)
{
	char err[256];
	char *addrs = xstrdup(cfg->listen_addr ? cfg->listen_addr : "127.0.0.1");
	char *save = NULL;
	bool ok = true;

	for (char *a = strtok_r(addrs, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		while (*a == ' ')
			a++;
		char *end = a + strlen(a);
		while (end > a && end[-1] == ' ')
			*--end = '\0';
		if (!*a)
			continue;
		int fd = net_listen_tcp(a, cfg->listen_port, cfg->listen_backlog, cfg->so_reuseport,
		                        err, sizeof(err));
		if (fd < 0) {
			log_error("%s", err);
			ok = false;
			continue;
		}
		ok = add_listener(fd, false) && ok;
		log_info("listening on %s:%d", a, cfg->listen_port);
	}
	free(addrs);
	if (cfg->unix_socket_dir && *cfg->unix_socket_dir) {
		int fd = net_listen_unix(cfg->unix_socket_dir, cfg->listen_port,
		                         cfg->listen_backlog, err, sizeof(err));
		if (fd < 0) {
			log_error("%s", err);
			ok = false;
		} else {
			snprintf(unix_path, sizeof(unix_path), "%s/.s.PGSQL.%d",
			         cfg->unix_socket_dir, cfg->listen_port);
			ok = add_listener(fd, true) && ok;
			log_info("listening on %s", unix_path);
		}
	}
	return ok && n_listeners > 0;
}

void listener_stop(void)
{
	for (int i = 0; i < n_listeners; i++) {
		if (g_base)
			event_del(&listeners[i].ev);
		close(listeners[i].fd);
	}
	n_listeners = 0;
	if (unix_path[0])
		unlink(unix_path);
	unix_path[0] = '\0';
}
