/*
 * template: serving tenants that have no [tenant] section but match a
 * [template] — does the tenant exist (its schema, its database, or a row
 * found by exists_query), asked on the backend without stalling the event
 * loop and remembered for template_cache_ttl (yes) or template_negative_ttl
 * (no).
 *
 * One checker connection per backend, database and role asks every question
 * in turn, so a burst of logins of new tenants becomes a queue of short
 * queries, not a burst of connections; it closes when idle for a while.
 */
#ifndef PGTENANT_TEMPLATE_H
#define PGTENANT_TEMPLATE_H

#include "common.h"
#include "config.h"
#include "types.h"

/*
 * The answer: t is the tenant (now in memory), or NULL when it does not
 * exist (error NULL) or could not be checked (error says why).
 */
typedef void (*TemplateDone)(void *arg, Tenant *t, const char *error);

/*
 * Finds out whether name, matched by a template of g_cfg, exists. Answered
 * at once from the cache (done called before returning false), else later
 * from the event loop (true). user is the client's: it connects when neither
 * the template nor its backend names a role.
 */
bool template_check(const char *name, const char *user, TemplateDone done, void *arg);
/* The answer for arg is not wanted any more (the client went away). */
void template_forget(void *arg);
/* Forgets what is known of name (CREATE/DROP TENANT), or of every name (NULL: RELOAD). */
void template_cache_drop(const char *name);
/* Closes checker connections idle for a while (the main tick). */
void template_maintain(void);

#endif
