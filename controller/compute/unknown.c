/*
 * After a restore from a backup (docs/operations.md): the controller's
 * epoch is new, its VMs are marked restored, and each node tells it what
 * became of them since the backup.
 *
 *  - A restored VM its node has is adopted as it is: its desired power
 *    and size become what the node reports (audited), so no guest is
 *    started, stopped or resized because of an old backup.
 *  - A restored VM its node lacks is shown "missing"; it is never made
 *    again unless the operator starts it (or deletes it).
 *  - A VM a node holds that the controller does not know (made after the
 *    backup) is listed in vms_unknown and kept running until the operator
 *    deletes it (DELETE /v1/unknown-vms/{id}), which releases it.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "vms.h"

/* A held VM reported by a node: remember it unless it is one of ours. */
void
unknown_seen(int64_t node_id, const Opsn__VmStatus *vs)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "INSERT INTO vms_unknown (node_id, uuid, "
	    "name, state, seen_at) SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS "
	    "(SELECT 1 FROM vms WHERE uuid = ?2) ON CONFLICT (node_id, uuid) "
	    "DO UPDATE SET name = ?3, state = ?4, seen_at = ?5");
	sqlite3_bind_int64(st, 1, node_id);
	sqlite3_bind_text(st, 2, vs->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, vs->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, vs->state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, util_now());
	if (store_step(st) == SQLITE_DONE && sqlite3_changes(ctl->db) > 0)
		log_debug("vms: %s holds %s (%s, %s), unknown to the "
		    "controller", nodes_name(node_id), vs->id, vs->name,
		    vs->state);
	sqlite3_finalize(st);
}

/* A VM reported deleted: no longer held there. */
void
unknown_gone(int64_t node_id, const char *uuid)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "DELETE FROM vms_unknown WHERE node_id = ? "
	    "AND uuid = ?");
	sqlite3_bind_int64(st, 1, node_id);
	sqlite3_bind_text(st, 2, uuid, -1, SQLITE_STATIC);
	store_step(st);
	if (sqlite3_changes(ctl->db) > 0)
		log_info("vms: %s no longer holds %s", nodes_name(node_id), uuid);
	sqlite3_finalize(st);
}

/* A full report lists every held VM: one it does not list is gone. */
void
unknown_full(int64_t node_id, const Opsn__ObservedState *m)
{
	sqlite3_stmt	*st;
	size_t		 i, ngone = 0;
	char		**gone = NULL;

	st = store_prepare(ctl->db, "SELECT uuid FROM vms_unknown WHERE "
	    "node_id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		const char *u = (const char *)sqlite3_column_text(st, 0);

		for (i = 0; i < m->n_vms; i++)
			if (m->vms[i]->held && strcmp(m->vms[i]->id, u) == 0)
				break;
		if (i < m->n_vms)
			continue;
		gone = xrealloc(gone, (ngone + 1) * sizeof(*gone));
		gone[ngone++] = xstrdup(u);
	}
	sqlite3_finalize(st);
	for (i = 0; i < ngone; i++) {
		unknown_gone(node_id, gone[i]);
		free(gone[i]);
	}
	free(gone);
}

/*
 * A restored VM, reported by an agent of the current epoch: adopt what
 * the node has (1: its desired state changed, push it), or say it is
 * missing. Other VMs: 0.
 */
int
unknown_adopt(int64_t node_id, const Opsn__VmStatus *vs)
{
	sqlite3_stmt	*st;
	int64_t		 id, gen, vcpus, mem;
	char		*desired, obj[64];
	const char	*want;
	int		 rv = 0;

	st = store_prepare(ctl->db, "SELECT id, desired, vcpus, memory_mib "
	    "FROM vms WHERE uuid = ? AND node_id = ? AND restored = 1");
	sqlite3_bind_text(st, 1, vs->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, node_id);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return (0);
	}
	id = sqlite3_column_int64(st, 0);
	desired = xstrdup((const char *)sqlite3_column_text(st, 1));
	vcpus = sqlite3_column_int64(st, 2);
	mem = sqlite3_column_int64(st, 3);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "vm/%s", vs->id);

	if (strcmp(vs->state, "absent") == 0) {
		st = store_prepare(ctl->db, "UPDATE vms SET obs_state = "
		    "'missing', obs_reason = 'not on its node after the "
		    "restore' WHERE id = ? AND obs_state != 'missing'");
		sqlite3_bind_int64(st, 1, id);
		store_step(st);
		if (sqlite3_changes(ctl->db) > 0)
			log_warnx("vms: %s is not on %s: deleted after the "
			    "backup the controller was restored from? It is "
			    "not made again unless an operator starts it",
			    vs->id, nodes_name(node_id));
		sqlite3_finalize(st);
		goto out;
	}
	if (strcmp(vs->state, "running") != 0 &&
	    strcmp(vs->state, "paused") != 0 &&
	    strcmp(vs->state, "shutoff") != 0 &&
	    strcmp(vs->state, "crashed") != 0)
		goto out;	/* not settled yet: wait for the next report */
	want = strcmp(vs->state, "shutoff") == 0 ? "stopped" : "running";
	gen = vms_bump(node_id);
	st = store_prepare(ctl->db, "UPDATE vms SET restored = 0, desired = ?, "
	    "vcpus = ?, memory_mib = ?, generation = ? WHERE id = ?");
	sqlite3_bind_text(st, 1, want, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, vs->vcpus > 0 ? (int64_t)vs->vcpus : vcpus);
	sqlite3_bind_int64(st, 3, vs->memory_mib > 0 ?
	    (int64_t)vs->memory_mib : mem);
	sqlite3_bind_int64(st, 4, gen);
	sqlite3_bind_int64(st, 5, id);
	store_step(st);
	sqlite3_finalize(st);
	if (audit_record(NULL, "vm.adopt", obj, json_pack("{s:s,s:s,s:s,s:I,"
	    "s:I}", "node", nodes_name(node_id), "observed", vs->state,
	    "desired_was", desired, "vcpus", (json_int_t)vs->vcpus,
	    "memory_mib", (json_int_t)vs->memory_mib)) == -1)
		log_warnx("vms: recording the adoption of %s failed", vs->id);
	if (strcmp(want, desired) != 0)
		log_notice("vms: %s on %s is %s since the backup: its desired "
		    "state is now %s (was %s)", vs->id, nodes_name(node_id),
		    vs->state, want, desired);
	rv = 1;
out:
	free(desired);
	return (rv);
}

/* Held VMs the operator deleted, and VMs meant to be deleted. */
char **
unknown_release_list(int64_t node_id, size_t *n)
{
	sqlite3_stmt	*st;
	char		**v = NULL;

	*n = 0;
	st = store_prepare(ctl->db, "SELECT uuid FROM vms_unknown WHERE "
	    "node_id = ?1 AND release = 1 UNION SELECT uuid FROM vms WHERE "
	    "node_id = ?1 AND desired = 'deleted'");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		v = xrealloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	return (v);
}

/* GET /v1/unknown-vms */
void
unknown_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	json_t		*items = json_array();
	char		 buf[32];

	st = store_prepare(ctl->db, "SELECT u.uuid, u.name, n.name, u.state, "
	    "u.seen_at, u.release FROM vms_unknown u JOIN nodes n ON n.id = "
	    "u.node_id ORDER BY n.name, u.uuid");
	while (store_step(st) == SQLITE_ROW) {
		util_time_fmt(sqlite3_column_int64(st, 4), buf, sizeof(buf));
		json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:s,"
		    "s:b}", "id", sqlite3_column_text(st, 0), "name",
		    sqlite3_column_text(st, 1), "node",
		    sqlite3_column_text(st, 2), "state",
		    sqlite3_column_text(st, 3), "seen_at", buf, "deleting",
		    sqlite3_column_int(st, 5)));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, NULL);
}

/* DELETE /v1/unknown-vms/{id}: the node may delete it. */
void
unknown_delete(struct api_req *r)
{
	const char	*id = api_param(r, "id");
	sqlite3_stmt	*st;
	int64_t		 node_id = -1;
	char		 obj[64];

	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	st = store_prepare(ctl->db, "UPDATE vms_unknown SET release = 1 WHERE "
	    "uuid = ? RETURNING node_id");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		node_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (node_id == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 404, "not_found", "no unknown VM '%.64s'",
		    id);
		return;
	}
	vms_bump(node_id);
	snprintf(obj, sizeof(obj), "vm/%.40s", id);
	if (audit_record(r, "vm.unknown.delete", obj, json_pack("{s:s}",
	    "node", nodes_name(node_id))) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	log_notice("vms: %s lets %s delete %s", api_principal(r)->ap_name,
	    nodes_name(node_id), id);
	vms_push(node_id);
	api_reply_json(r, 202, json_pack("{s:s,s:s,s:b}", "id", id, "node",
	    nodes_name(node_id), "deleting", 1));
}

/*
 * Restored from a backup: no VM is acted on until its node has said what
 * became of it, and what nodes held before is not known any more.
 */
int
unknown_restored(struct ctl *c, char **cause)
{
	if (store_exec(c->db, "UPDATE vms SET restored = 1, obs_state = "
	    "'unknown' WHERE desired != 'deleted'; DELETE FROM vms_unknown",
	    cause) == -1)
		return (-1);
	return (0);
}

/* VMs nodes hold unknown to the controller, for GET /metrics. */
void
unknown_metrics(struct prom *pr)
{
	sqlite3_stmt	*st;

	prom_family(pr, "opsn_vms_unknown", "gauge", "VMs a node holds that "
	    "the controller does not know (made after the backup it was "
	    "restored from).");
	st = store_prepare(ctl->db, "SELECT n.name, count(*) FROM vms_unknown "
	    "u JOIN nodes n ON n.id = u.node_id GROUP BY n.name ORDER BY "
	    "n.name");
	while (store_step(st) == SQLITE_ROW)
		prom_sample(pr, "opsn_vms_unknown", "node",
		    (const char *)sqlite3_column_text(st, 0),
		    (double)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
}
