/*
 * syscost: what the kernel charges on this machine for the operations a
 * proxy does per message, to set pgtenant's CPU per transaction against a
 * floor no user-space change can go below. Built and run by bench/all.sh.
 *
 *   syscall      a system call that does nothing (getppid): the crossing alone
 *   tcp_pair     send 64 bytes on a loopback TCP socket and recv them on its
 *                peer, in one process: the protocol work without a wake-up
 *   unix_pair    the same over a unix stream socket pair
 *   tcp_pingpong a 64-byte round trip between two processes over loopback TCP,
 *                each blocking in epoll_wait: per round trip, the CPU time of
 *                both processes together (two sends, two recvs, two sleeps and
 *                wake-ups), as a proxy pays on each side of a transaction. On an
 *                otherwise idle machine each wake-up lands on an idle CPU: in a
 *                virtual machine that is an interrupt between virtual CPUs, and
 *                the waker pays for it
 *   tcp_pingpong_1cpu  the same with both processes on one CPU: no such
 *                interrupt; the difference is its price
 *
 * Prints "name nanoseconds" lines (CPU time per operation, from getrusage).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <sched.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_ns(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void tcp_pair(int sv[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	sv[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(sv[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	sv[1] = accept(l, NULL, NULL);
	if (sv[1] < 0)
		die("accept");
	close(l);
	setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void pair_cost(const char *name, int sv[2], int n)
{
	char buf[64] = {0};
	double t0 = cpu_ns(RUSAGE_SELF);
	for (int i = 0; i < n; i++) {
		if (send(sv[0], buf, sizeof(buf), MSG_NOSIGNAL) != sizeof(buf) ||
		    recv(sv[1], buf, sizeof(buf), MSG_WAITALL) != sizeof(buf))
			die(name);
	}
	printf("%s %.0f\n", name, (cpu_ns(RUSAGE_SELF) - t0) / n);
}

/* one side of the ping-pong: wait in epoll, read 64 bytes, send them back */
static void echo_loop(int fd, int n, int first)
{
	char buf[64] = {0};
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN}, out;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll");
	if (first && send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != sizeof(buf))
		die("send");
	for (int i = 0; i < n; i++) {
		if (epoll_wait(ep, &out, 1, -1) != 1 || recv(fd, buf, sizeof(buf), MSG_WAITALL) != sizeof(buf))
			die("recv");
		if ((first && i == n - 1))
			break;
		if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != sizeof(buf))
			die("send");
	}
	close(ep);
}

/* a round trip between two processes; one_cpu: both pinned to the first CPU allowed */
static void pingpong(const char *name, int n, bool one_cpu)
{
	int sv[2];
	double t0;
	pid_t pid;
	cpu_set_t old, set;

	sched_getaffinity(0, sizeof(old), &old);
	if (one_cpu) {
		int cpu = 0;
		while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old))
			cpu++;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	tcp_pair(sv);
	t0 = cpu_ns(RUSAGE_SELF) + cpu_ns(RUSAGE_CHILDREN);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(sv[0]);
		echo_loop(sv[1], n, 0);
		_exit(0);
	}
	close(sv[1]);
	echo_loop(sv[0], n, 1);
	close(sv[0]);
	waitpid(pid, NULL, 0);
	printf("%s %.0f\n", name, (cpu_ns(RUSAGE_SELF) + cpu_ns(RUSAGE_CHILDREN) - t0) / n);
	sched_setaffinity(0, sizeof(old), &old);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200000, sv[2];
	double t0;

	t0 = cpu_ns(RUSAGE_SELF);
	for (int i = 0; i < n; i++)
		syscall(SYS_getppid);
	printf("syscall %.0f\n", (cpu_ns(RUSAGE_SELF) - t0) / n);

	tcp_pair(sv);
	pair_cost("tcp_pair", sv, n);
	close(sv[0]);
	close(sv[1]);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	pair_cost("unix_pair", sv, n);
	close(sv[0]);
	close(sv[1]);

	n /= 4;
	pingpong("tcp_pingpong", n, false);
	pingpong("tcp_pingpong_1cpu", n, true);
	return 0;
}
