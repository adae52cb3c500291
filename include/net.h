/*
 * net: the small socket helpers (Redis's anet in spirit). Each returns a
 * file descriptor or -1 with a message in err; callers never touch
 * setsockopt or getaddrinfo directly.
 */
#ifndef PGTENANT_NET_H
#define PGTENANT_NET_H

#include "common.h"

#include <sys/socket.h>

int net_listen_tcp(const char *addr, int port, int backlog, bool reuseport, char *err,
                   size_t errlen);
int net_listen_unix(const char *dir, int port, int backlog, char *err, size_t errlen);
/* Starts a non-blocking connect; *in_progress tells whether to wait for writability. */
int net_connect(const char *host, int port, bool *in_progress, char *err, size_t errlen);
/* Options for an accepted or connected TCP socket (nodelay, keepalive, user timeout). */
void net_tune(int fd, bool keepalive, usec_t user_timeout);
bool net_set_nonblock(int fd);
/* The pending error of a connecting socket (0 when connected). */
int net_socket_error(int fd);
/* "addr" and port of the peer, for logs and SHOW CLIENTS. */
void net_peer_name(int fd, char *addr, size_t addrlen, int *port);

#endif
