/* Forward declarations of the core objects, so headers can point at each other. */
#ifndef PGTENANT_TYPES_H
#define PGTENANT_TYPES_H

typedef struct Client Client;
typedef struct ServerConn ServerConn;
typedef struct Pool Pool;
typedef struct Backend Backend;
typedef struct Tenant Tenant;

#endif
