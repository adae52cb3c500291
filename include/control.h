/*
 * control: the operations the admin console (and signals) steer the running
 * pooler with — reload, pause/resume, disable/enable, kill, reconnect,
 * wait_close, shutdown. admin.c parses commands and prints results; the
 * effects on clients, servers and pools live here, next to the core.
 *
 * Commands that answer later (PAUSE waits for running transactions,
 * WAIT_CLOSE for server connections to close) take the console client and
 * call admin_command_done() on it when finished.
 */
#ifndef PGTENANT_CONTROL_H
#define PGTENANT_CONTROL_H

#include "config.h"
#include "types.h"

/*
 * Re-reads the configuration. On failure nothing changes and errs holds
 * every problem ("FILE:LINE: message"); the caller frees it.
 */
bool control_reload(ConfigErrors *errs);
/* Holds new transactions of t (NULL: every tenant); done when running ones finished. */
void control_pause(Tenant *t, Client *console);
void control_resume(Tenant *t);
bool control_is_paused(const Tenant *t);
/* Does a console command (PAUSE, WAIT_CLOSE) wait on t? */
bool control_waits_on(const Tenant *t);
/* New logins refused (55000); connected clients closed after their current transaction. */
void control_disable(Tenant *t);
void control_enable(Tenant *t);
/* Closes t's clients and its server connections now. */
void control_kill(Tenant *t);
/* Server connections (of t's pool, or all) are closed once released, so new ones are opened. */
void control_reconnect(Tenant *t);
/* Answers the console when the connections marked by RECONNECT have closed. */
void control_wait_close(Tenant *t, Client *console);
void control_shutdown(void);
/* Called from the periodic tick: completes pending PAUSE / WAIT_CLOSE answers. */
void control_maintain(void);
/* A console client went away: forget its pending answers. */
void control_forget_console(Client *console);

#endif
