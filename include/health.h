/*
 * health: the replica checker (SPEC §5). Every health_check_period each
 * backend's primary and replicas are asked, over one persistent libpq
 * connection each driven by the event loop (never blocking it), whether
 * they are reachable, whether a replica is in recovery, and how far its
 * replay lags: LSNs are compared with the primary's (an idle primary makes
 * no false lag), and the replay timestamp gives the lag in time when the
 * replica is behind.
 */
#ifndef PGTENANT_HEALTH_H
#define PGTENANT_HEALTH_H

#include "common.h"

void health_start(void);
void health_stop(void);
const char *health_state_name(int state);

#endif
