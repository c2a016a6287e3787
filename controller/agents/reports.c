/*
 * What an agent reports is believed only about its own node. A node's
 * certificate proves which node speaks, not what it may speak about: a
 * sample, a status, a VM's state or its console bytes are taken only for
 * what the controller placed on that node, and only in the node's roles.
 * The modules decide what is placed where; this file holds the roles and
 * keeps the count of what they refused, by node and kind, for /metrics.
 */
#include <sys/queue.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents.h"

#define REPORTS_KIND_MAX	31

struct reports_count {
	TAILQ_ENTRY(reports_count) rc_entry;
	int64_t		 rc_node;
	char		 rc_kind[REPORTS_KIND_MAX + 1];
	uint64_t	 rc_n;
};
static TAILQ_HEAD(, reports_count) reports_counts =
    TAILQ_HEAD_INITIALIZER(reports_counts);

/*
 * Did the node name this role at its last HELLO? Read from the nodes
 * table, which HELLO writes before any report can arrive.
 */
int
reports_has_role(int64_t node_id, const char *role)
{
	sqlite3_stmt	*st;
	int		 yes;

	st = store_prepare(ctl->db, "SELECT 1 FROM nodes WHERE id = ?1 AND "
	    "instr(',' || roles || ',', ',' || ?2 || ',') > 0");
	sqlite3_bind_int64(st, 1, node_id);
	sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
	yes = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return (yes);
}

/*
 * Count a refused report of kind ("sample_vm", "status_site", ...) from a
 * node. The first of each node and kind is logged as a warning with its
 * detail; the rest only at debug level (a node can repeat one every few
 * seconds) and in /metrics.
 */
void
reports_reject(int64_t node_id, const char *kind, const char *fmt, ...)
{
	struct reports_count	*c;
	va_list			 ap;
	char			*msg;

	TAILQ_FOREACH(c, &reports_counts, rc_entry)
		if (c->rc_node == node_id && strcmp(c->rc_kind, kind) == 0)
			break;
	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		c->rc_node = node_id;
		strlcpy(c->rc_kind, kind, sizeof(c->rc_kind));
		TAILQ_INSERT_TAIL(&reports_counts, c, rc_entry);
	}
	c->rc_n++;
	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (c->rc_n == 1)
		log_warnx("agents: %s: refused %s: %s (the next ones are only "
		    "counted: opsn_agent_reports_rejected_total)",
		    nodes_name(node_id), kind, msg);
	else
		log_debug("agents: %s: refused %s: %s", nodes_name(node_id),
		    kind, msg);
	free(msg);
}

/* Call cb for each node and kind with refused reports. */
void
reports_foreach_rejected(void (*cb)(int64_t node_id, const char *kind,
    uint64_t count, void *), void *arg)
{
	struct reports_count	*c;

	TAILQ_FOREACH(c, &reports_counts, rc_entry)
		cb(c->rc_node, c->rc_kind, c->rc_n, arg);
}

/* How many reports of kind the node had refused (tests). */
uint64_t
reports_rejected(int64_t node_id, const char *kind)
{
	struct reports_count	*c;

	TAILQ_FOREACH(c, &reports_counts, rc_entry)
		if (c->rc_node == node_id && strcmp(c->rc_kind, kind) == 0)
			return (c->rc_n);
	return (0);
}
