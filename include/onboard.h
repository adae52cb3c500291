/*
 * onboard: the console's CREATE TENANT and DROP TENANT — the steps that
 * bring a tenant into service or take it out, run without blocking the event
 * loop (backend statements through pgjob, `pgtenant migrate` as a child
 * process watched by libevent), answered on the console when done.
 *
 * Every step that fails undoes the ones before it (a schema or database it
 * created is dropped, a file it wrote is removed, a file it removed is put
 * back), and the error names the step. One such command runs at a time.
 */
#ifndef PGTENANT_ONBOARD_H
#define PGTENANT_ONBOARD_H

#include "common.h"
#include "config.h"
#include "types.h"

#define ONBOARD_MAX_WITH 32

typedef struct OnboardRequest {
	char name[CONFIG_NAME_MAX + 1];
	bool drop;      /* DROP TENANT */
	bool drop_data; /* DROP TENANT ... DROP DATA */
	/* CREATE: TEMPLATE t, or MODE m BACKEND b (neither: the template matching the name) */
	char tmpl[CONFIG_NAME_MAX + 1];
	int mode; /* TenantMode; -1: not given */
	char backend[CONFIG_NAME_MAX + 1];
	int n_with; /* WITH (key = value, ...) */
	char *with_keys[ONBOARD_MAX_WITH];
	char *with_values[ONBOARD_MAX_WITH];
} OnboardRequest;

/*
 * Starts req (taken over and freed) for console c, which gets
 * admin_command_done or admin_command_failed — possibly before this returns.
 */
void onboard_start(Client *c, OnboardRequest *req);
void onboard_request_free(OnboardRequest *req);
/* c has gone: the command still finishes (or is undone), unanswered. */
void onboard_forget_console(Client *c);

#endif
