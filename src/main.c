/*
 * main: command line, signals, the event loop and its periodic tick.
 *
 * The tick (every 100 ms) drives every timeout by walking the heads of
 * time-ordered lists — login clients, waiting clients, idle servers — so an
 * idle client costs nothing between ticks and 10,000 clients cost no timers.
 */
#include "client.h"
#include "config.h"
#include "conn.h"
#include "control.h"
#include "health.h"
#include "listener.h"
#include "audit.h"
#include "metrics.h"
#include "migrate.h"
#include "log.h"
#include "pgtenant.h"
#include "pool.h"
#include "server.h"
#include "template.h"
#include "tenant.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *config_path;
static struct event *tick_ev;

static void usage(FILE *fp)
{
	fprintf(fp,
	        "pgtenant %s - a tenant-aware PostgreSQL connection pooler\n\n"
	        "Usage: pgtenant [options] CONFIG.ini\n"
	        "       pgtenant migrate CONFIG.ini [status|run|validate] [options]\n\n"
	        "Options:\n"
	        "  -d, --daemon    run in the background (writes pid_file)\n"
	        "  -v              more logging (repeat for more)\n"
	        "  -q              log errors only\n"
	        "      --check     validate CONFIG and its include_dir, print problems, exit\n"
	        "  -V, --version   print the version and exit\n"
	        "  -h, --help      print this help and exit\n",
	        PGTENANT_VERSION);
}

static void print_errors(const ConfigErrors *errs, FILE *fp)
{
	for (int i = 0; i < errs->n; i++)
		fprintf(fp, "%s\n", errs->msgs[i]);
}

static AuthFile *load_auth(const Config *cfg, char *err, size_t errlen)
{
	if (!cfg->auth_file || !*cfg->auth_file)
		return NULL;
	return authfile_load(cfg->auth_file, err, errlen);
}

/* Secrets in a file anyone may read deserve a warning (the file still loads). */
static void warn_readable_secrets(const Config *cfg)
{
	struct stat st;
	bool config_has_password = false;

	for (int i = 0; i < cfg->n_backends; i++)
		if (cfg->backends[i].password)
			config_has_password = true;
	for (int i = 0; i < cfg->n_tenants; i++)
		if (cfg->tenants[i].server_password)
			config_has_password = true;
	for (int i = 0; i < cfg->n_files; i++) {
		if (config_has_password && stat(cfg->files[i], &st) == 0 && (st.st_mode & S_IROTH))
			log_warning(
			        "%s holds passwords and is readable by every user: chmod o-r it",
			        cfg->files[i]);
	}
	if (cfg->auth_file && *cfg->auth_file && stat(cfg->auth_file, &st) == 0 &&
	    (st.st_mode & S_IROTH))
		log_warning("auth_file %s is readable by every user: chmod o-r it", cfg->auth_file);
}

static void raise_fd_limit(const Config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_client_conn + 64;
	for (int i = 0; i < cfg->n_backends; i++)
		want += (rlim_t)(cfg->backends[i].pool_size > 0 ? cfg->backends[i].pool_size
		                                                : cfg->default_pool_size) *
		        (rlim_t)(1 + cfg->backends[i].n_replicas) * 2;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		log_warning("open-file hard limit %lu is below the %lu max_client_conn needs",
		            (unsigned long)rl.rlim_max, (unsigned long)want);
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warning("could not raise the open-file limit: %s", strerror(errno));
}

static void reload(void)
{
	ConfigErrors errs = {0};

	/*
	 * logrotate renames the files and sends SIGHUP: reopen them first, so the
	 * reload's own lines land in the new files, and even when the reload
	 * fails (a bad file keeps the old configuration, not the old inode).
	 * A successful reload then switches to the new paths, if they changed.
	 */
	log_open(g_cfg->log_file);
	audit_open(g_cfg->audit_log);
	control_reload(&errs);
	config_errors_free(&errs);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	time_update();
	if (sig == SIGHUP)
		reload();
	else
		control_shutdown();
	client_maintain();
}

static void expire_logins(void)
{
	List *it, *tmp;
	list_for_each_safe(it, &g_login_clients, tmp)
	{
		Client *c = list_entry(it, Client, node);
		if (g_now - c->connect_time < g_cfg->client_login_timeout)
			break; /* the list is in connect order */
		client_fatal(c, "08P01", "client_login_timeout reached", NULL);
		if (!c->closing)
			client_close(c, "client_login_timeout");
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	time_update();
	expire_logins();
	static unsigned ticks;
	pool_maintain();
	server_maintain();
	conn_cool_idle();
	control_maintain();
	stats_tick();
	static usec_t last_stats;
	if (++ticks % 10 == 0) {
		client_idle_timeouts();
		template_maintain();
	}
	if (!last_stats)
		last_stats = g_now;
	if (g_cfg->stats_period > 0 && g_now - last_stats >= g_cfg->stats_period) {
		tenant_log_stats(g_now - last_stats);
		last_stats = g_now;
	}
	if (g_shutdown) {
		client_close_idle_for_shutdown();
		if (g_n_clients == 0 || g_now >= g_shutdown_deadline)
			event_base_loopbreak(g_base);
	}
	client_maintain();
	if (ticks % 10 == 5)
		tenant_sweep_idle(); /* after client_maintain: closed clients are gone */
}

static bool daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (g_cfg->log_file && *g_cfg->log_file)
			dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return true;
}

static void write_pid_file(const char *path)
{
	FILE *fp;
	if (!path || !*path)
		return;
	fp = fopen(path, "w");
	if (!fp) {
		log_warning("cannot write pid_file %s: %s", path, strerror(errno));
		return;
	}
	fprintf(fp, "%d\n", (int)getpid());
	fclose(fp);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"daemon", no_argument, NULL, 'd'},
	                                     {"check", no_argument, NULL, 'C'},
	                                     {"version", no_argument, NULL, 'V'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	bool check = false, daemon = false;
	int verbosity = 0, opt;
	ConfigErrors errs = {0};
	char err[512] = "";

	/* a subcommand of its own: it never starts the event loop */
	if (argc > 1 && strcmp(argv[1], "migrate") == 0)
		return migrate_main(argc - 1, argv + 1);

	while ((opt = getopt_long(argc, argv, "dvqVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			daemon = true;
			break;
		case 'v':
			verbosity++;
			break;
		case 'q':
			verbosity = -1;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("pgtenant %s\n", PGTENANT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 1;
	}
	config_path = argv[optind];
	g_log_level = verbosity < 0 ? LOG_LVL_ERROR : LOG_LVL_INFO + verbosity;
	if (g_log_level > LOG_LVL_TRACE)
		g_log_level = LOG_LVL_TRACE;
	time_update();

	g_cfg = config_load(config_path, &errs);
	if (!g_cfg) {
		print_errors(&errs, check ? stdout : stderr);
		config_errors_free(&errs);
		return 1;
	}
	g_auth = load_auth(g_cfg, err, sizeof(err));
	if (g_cfg->auth_file && *g_cfg->auth_file && !g_auth) {
		fprintf(check ? stdout : stderr, "%s\n", err);
		return 1;
	}
	/* certificate and key problems are configuration problems: --check reports them too */
	if (!tls_configure(g_cfg, err, sizeof(err))) {
		fprintf(check ? stdout : stderr, "%s: %s\n", config_path, err);
		return 1;
	}
	if (check) {
		printf("%s: configuration is valid (%d backends, %d tenants)\n", config_path,
		       g_cfg->n_backends, g_cfg->n_tenants);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	if (!metrics_bind(g_cfg->metrics_listen, err, sizeof(err))) {
		fprintf(stderr, "pgtenant: %s\n", err);
		return 1;
	}
	if (!listener_bind(g_cfg))
		return 1;
	if (daemon && !daemonize()) {
		fprintf(stderr, "pgtenant: cannot daemonize: %s\n", strerror(errno));
		return 1;
	}
	log_open(g_cfg->log_file);
	warn_readable_secrets(g_cfg);
	raise_fd_limit(g_cfg);
	g_base = event_base_new();
	if (!g_base) {
		log_error("cannot create the event loop");
		return 1;
	}
	pool_backends_build(g_cfg);
	tenant_registry_build(g_cfg);
	pool_reservations_build();
	listener_start();
	audit_open(g_cfg->audit_log);
	health_start();
	if (!metrics_start(g_base, err, sizeof(err))) {
		log_error("%s", err);
		return 1;
	}
	write_pid_file(g_cfg->pid_file);

	struct event *sig_hup = evsignal_new(g_base, SIGHUP, on_signal, NULL);
	struct event *sig_term = evsignal_new(g_base, SIGTERM, on_signal, NULL);
	struct event *sig_int = evsignal_new(g_base, SIGINT, on_signal, NULL);
	evsignal_add(sig_hup, NULL);
	evsignal_add(sig_term, NULL);
	evsignal_add(sig_int, NULL);
	tick_ev = event_new(g_base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 100 * 1000};
	event_add(tick_ev, &tv);

	log_info("pgtenant %s started: %d backends, %d tenants, %s pooling", PGTENANT_VERSION,
	         g_cfg->n_backends, g_cfg->n_tenants,
	         g_cfg->pool_mode == POOL_MODE_SESSION ? "session" : "transaction");
	event_base_dispatch(g_base);

	listener_stop();
	metrics_stop();
	health_stop();
	audit_close();
	pool_close_all();
	server_free_closed();
	if (g_cfg->pid_file && *g_cfg->pid_file)
		unlink(g_cfg->pid_file);
	log_info("pgtenant stopped");
	event_free(tick_ev);
	event_free(sig_hup);
	event_free(sig_term);
	event_free(sig_int);
	event_base_free(g_base);
	tls_cleanup();
	return 0;
}
