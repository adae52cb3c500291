/*
 * router: see include/router.h.
 */
#include "router.h"

#include "client.h"
#include "pgtenant.h"
#include "pool.h"
#include "prepare.h"
#include "proto.h"
#include "sqllex.h"
#include "tenant.h"

#include <string.h>

typedef struct BatchInfo {
	bool all_read_only;
	bool hint_replica;
	bool hint_primary;
	bool read_only_tx;
	bool begin_only;   /* a lone BEGIN / START TRANSACTION (not READ ONLY) */
	bool end_only;     /* a lone COMMIT / END / ROLLBACK / ABORT */
	bool end_rollback; /* ... and it is ROLLBACK / ABORT */
	bool session_state;
	bool serializable; /* SERIALIZABLE: a hot standby refuses it */
} BatchInfo;

static void note_sql(Client *c, BatchInfo *b, const char *sql, size_t len, bool lone)
{
	SqlInfo info;
	SqlLexer lx;
	SqlToken tok;

	client_sql_info(c, sql, len, &info);
	if (!info.read_only)
		b->all_read_only = false;
	b->hint_replica |= info.hint_replica;
	b->hint_primary |= info.hint_primary;
	b->read_only_tx |= (info.flags & SQLF_READ_ONLY_TX) != 0;
	if (info.flags & (SQLF_SESSION_STATE | SQLF_STATE_UNKNOWN | SQLF_UNPARSED))
		b->session_state = true;
	if (info.flags & SQLF_SERIALIZABLE)
		b->serializable = true;
	if (!lone || info.n_statements != 1 ||
	    (info.flags & (SQLF_TX_CONTROL | SQLF_READ_ONLY_TX | SQLF_SERIALIZABLE)) !=
	            SQLF_TX_CONTROL)
		return;
	sqllex_init(&lx, sql, len);
	if (sqllex_next(&lx, &tok) != SQLTOK_IDENT)
		return;
	if (sqltok_is(&tok, "begin") || sqltok_is(&tok, "start")) {
		b->begin_only = true;
		return;
	}
	bool commit = sqltok_is(&tok, "commit") || sqltok_is(&tok, "end");
	bool rollback = sqltok_is(&tok, "rollback") || sqltok_is(&tok, "abort");
	if (!commit && !rollback)
		return;
	/* only a plain end: AND CHAIN, TO SAVEPOINT and PREPARED are not a local answer */
	SqlTokType tt = sqllex_next(&lx, &tok);
	if (tt == SQLTOK_IDENT && (sqltok_is(&tok, "work") || sqltok_is(&tok, "transaction")))
		tt = sqllex_next(&lx, &tok);
	while (tt == SQLTOK_SEMI)
		tt = sqllex_next(&lx, &tok);
	if (tt != SQLTOK_EOF)
		return;
	b->end_only = true;
	b->end_rollback = rollback;
}

/* Looks at the client's buffered batch; ROUTE_WAIT until it is complete. */
static Route route_scan(Client *c, BatchInfo *b)
{
	const Buf *in = &c->conn.in;
	size_t pos = 0, avail = buf_avail(in);
	const uint8_t *base = buf_head(in);

	memset(b, 0, sizeof(*b));
	b->all_read_only = true;
	while (avail - pos >= MSG_HEADER_LEN) {
		uint8_t type = base[pos];
		uint32_t len = read_u32be(base + pos + 1);
		if (len < 4 || (int64_t)len > g_cfg->max_packet_size)
			return ROUTE_PRIMARY; /* client_forward answers it with FATAL 08P01 */
		size_t total = 1 + (size_t)len;
		if (avail - pos < total)
			break;
		const uint8_t *body = base + pos + MSG_HEADER_LEN;
		size_t blen = total - MSG_HEADER_LEN;
		switch (type) {
		case 'Q': {
			const uint8_t *nul = blen ? memchr(body, 0, blen) : NULL;
			if (!nul)
				return ROUTE_PRIMARY;
			note_sql(c, b, (const char *)body, (size_t)(nul - body), pos == 0);
			return ROUTE_REPLICA; /* decided by the flags */
		}
		case 'P': {
			MsgReader r;
			const char *name, *query;
			msg_reader_init(&r, body, blen);
			if (!msg_get_cstr(&r, &name) || !msg_get_cstr(&r, &query))
				return ROUTE_PRIMARY;
			note_sql(c, b, query, strlen(query), false);
			break;
		}
		case 'B': {
			MsgReader r;
			const char *portal, *name;
			msg_reader_init(&r, body, blen);
			if (!msg_get_cstr(&r, &portal) || !msg_get_cstr(&r, &name))
				return ROUTE_PRIMARY;
			if (*name) {
				const char *text = prep_client_query(c, name);
				if (!text)
					return ROUTE_PRIMARY;
				note_sql(c, b, text, strlen(text), false);
			}
			break;
		}
		case 'S':
			return ROUTE_REPLICA;
		case 'D':
		case 'E':
		case 'C':
			break;
		default: /* Flush (the client waits for replies mid-batch), FunctionCall, COPY data
		          */
			return ROUTE_PRIMARY;
		}
		pos += total;
	}
	/* a batch bigger than this is not worth holding back */
	return avail > 1024 * 1024 ? ROUTE_PRIMARY : ROUTE_WAIT;
}

Route router_route_batch(Client *c)
{
	BatchInfo b;
	ReadRouting mode = (ReadRouting)c->tenant->read_routing;
	Pool *home = c->home_pool;

	c->pool = home;
	if (mode == READ_ROUTING_OFF || !home->backend->n_replicas ||
	    c->tenant->pool_mode != POOL_MODE_TRANSACTION)
		return ROUTE_PRIMARY;
	Route r = route_scan(c, &b);
	if (r == ROUTE_WAIT)
		return r;
	if (c->deferred_begin && b.end_only)
		return b.end_rollback ? ROUTE_LOCAL_ROLLBACK : ROUTE_LOCAL_END;
	if (!c->deferred_begin && b.begin_only && c->tx_status == 'I' && !c->sticky_primary)
		return ROUTE_DEFER_BEGIN;
	bool replica;
	if (r == ROUTE_PRIMARY || b.hint_primary || c->sticky_primary || b.session_state ||
	    b.serializable)
		replica = false;
	else if (c->deferred_begin)
		replica = b.read_only_tx; /* BEGIN; SET TRANSACTION READ ONLY */
	else if (b.read_only_tx || b.hint_replica)
		replica = true;
	else
		replica = mode == READ_ROUTING_AUTO && b.all_read_only && g_now >= c->rw_until;
	if (b.session_state)
		c->sticky_primary = true;
	if (!replica) {
		if (!b.all_read_only || c->deferred_begin) {
			usec_t ryw = config_read_your_writes(g_cfg);
			if (ryw > 0)
				c->rw_until = g_now + ryw;
		}
		return ROUTE_PRIMARY;
	}
	Replica *rep = pool_pick_replica(home->backend);
	if (!rep)
		return ROUTE_PRIMARY;
	c->pool = pool_replica_of(home, rep);
	return ROUTE_REPLICA;
}
