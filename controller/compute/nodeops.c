/*
 * Operations on hypervisors and on the cluster: placement settings
 * (ratios, host reserve, tags), cordon, drain, fenced evacuation, the
 * capacity report (plans that fit, N+1, empty nodes) and rebalancing.
 * Every change goes validate, transaction (state, audit, generations),
 * commit, then the scheduler's model and the pushes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "place.h"
#include "vms.h"

#define REBALANCE_MAX_MOVES	1000
#define REBALANCE_DEFAULT_MOVES	20

/* "4.0", "1.5", "0.125": a ratio in thousandths as text. */
static json_t *
nodeops_ratio_json(int64_t milli)
{
	char	 buf[32];
	int	 n;

	n = snprintf(buf, sizeof(buf), "%lld.%03lld", (long long)(milli /
	    1000), (long long)(milli % 1000));
	while (n > 0 && buf[n - 1] == '0' && buf[n - 2] != '.')
		buf[--n] = '\0';
	return (json_string(buf));
}

/*
 * A ratio from JSON: a string ("1.5"), a whole number or a number with at
 * most three decimals; in thousandths. -1 if it is none of these.
 */
static int
nodeops_ratio_parse(json_t *v, int64_t *out)
{
	char		 buf[64];
	const char	*s, *p;
	int64_t		 whole = 0, frac = 0;
	int		 digits = 0;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0 || json_integer_value(v) > 100)
			return (-1);
		*out = json_integer_value(v) * PLACE_RATIO_ONE;
		return (0);
	}
	if (json_is_real(v)) {
		snprintf(buf, sizeof(buf), "%.6f", json_real_value(v));
		s = buf;
	} else if (json_is_string(v))
		s = json_string_value(v);
	else
		return (-1);
	for (p = s; isdigit((unsigned char)*p) && p - s < 4; p++)
		whole = whole * 10 + (*p - '0');
	if (p == s)
		return (-1);
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++, digits++) {
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
			else if (*p != '0')
				return (-1);	/* finer than a thousandth */
		}
	if (*p != '\0')
		return (-1);
	for (; digits < 3; digits++)
		frac *= 10;
	*out = whole * PLACE_RATIO_ONE + frac;
	return (0);
}

/* The hypervisor a path names; -1 after replying 404 or 409. */
static int64_t
nodeops_node(struct api_req *r)
{
	const char	*name = api_param(r, "node");
	sqlite3_stmt	*st;
	int64_t		 id;
	int		 usable, hv = 0;

	if ((id = nodes_id(name, &usable)) == -1) {
		api_reply_error(r, 404, "not_found", "no node named '%s'", name);
		return (-1);
	}
	st = store_prepare(ctl->db, "SELECT ',' || roles || ',' LIKE "
	    "'%,hypervisor,%' FROM nodes WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		hv = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (!hv) {
		api_reply_error(r, 409, "not_hypervisor", "node '%s' is not a "
		    "hypervisor", name);
		return (-1);
	}
	return (id);
}

/* The placement view of a node (capacity, settings, claims), or NULL. */
json_t *
nodeops_node_json(int64_t node_id)
{
	struct place_node_info	 ni;
	sqlite3_stmt		*st;
	json_t			*o, *migs;

	if (place_node_info(sched_engine(), node_id, &ni) == -1)
		return (NULL);
	o = json_object();
	json_object_set_new(o, "state", json_string(place_state_name(
	    ni.state)));
	st = store_prepare(ctl->db, "SELECT coalesce(s.admin, 'none'), "
	    "coalesce(s.cpu_ratio, 4000), coalesce(s.memory_ratio, 1000), "
	    "coalesce(s.disk_ratio, 1000), coalesce(s.reserve_cpus, 0), "
	    "coalesce(s.reserve_memory_mib, 0), coalesce(s.tags, ''), "
	    "coalesce(s.drain_report, ''), coalesce(s.disk_server, '') FROM "
	    "nodes n LEFT JOIN node_sched s ON s.node_id = n.id WHERE n.id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW) {
		json_object_set_new(o, "admin", json_string((const char *)
		    sqlite3_column_text(st, 0)));
		json_object_set_new(o, "cpu_ratio", nodeops_ratio_json(
		    sqlite3_column_int64(st, 1)));
		json_object_set_new(o, "memory_ratio", nodeops_ratio_json(
		    sqlite3_column_int64(st, 2)));
		json_object_set_new(o, "disk_ratio", nodeops_ratio_json(
		    sqlite3_column_int64(st, 3)));
		json_object_set_new(o, "reserve_cpus", json_integer(
		    sqlite3_column_int64(st, 4)));
		json_object_set_new(o, "reserve_memory_mib", json_integer(
		    sqlite3_column_int64(st, 5)));
		json_object_set_new(o, "tags", json_string((const char *)
		    sqlite3_column_text(st, 6)));
		json_object_set_new(o, "drain_report", json_string((const char *)
		    sqlite3_column_text(st, 7)));
		json_object_set_new(o, "disk_server", json_string((const char *)
		    sqlite3_column_text(st, 8)));
	}
	sqlite3_finalize(st);
	json_object_set_new(o, "capacity", json_pack("{s:I,s:I,s:I}", "vcpus",
	    (json_int_t)ni.cap_vcpus, "memory_mib", (json_int_t)ni.cap_memory,
	    "disk_bytes", (json_int_t)ni.cap_disk));
	json_object_set_new(o, "allocated", json_pack("{s:I,s:I,s:I,s:I}",
	    "vcpus", (json_int_t)ni.use_vcpus, "memory_mib",
	    (json_int_t)ni.use_memory, "disk_bytes", (json_int_t)ni.use_disk,
	    "vms", (json_int_t)ni.vms));
	migs = json_array();
	st = store_prepare(ctl->db, "SELECT v.id, v.name FROM migrations m "
	    "JOIN vms v ON v.id = m.vm_id WHERE (m.src_node = ?1 OR "
	    "m.dst_node = ?1) AND m.state IN ('stopping', 'copying', "
	    "'starting') ORDER BY m.id");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		json_t *m = migrate_vm_json(sqlite3_column_int64(st, 0));

		json_object_set_new(m, "vm", json_string((const char *)
		    sqlite3_column_text(st, 1)));
		json_array_append_new(migs, m);
	}
	sqlite3_finalize(st);
	json_object_set_new(o, "migrations", migs);
	return (o);
}

/* GET /v1/nodes/{node}/placement */
void
nodeops_get(struct api_req *r)
{
	json_t	*o;
	int64_t	 id;

	if ((id = nodeops_node(r)) == -1)
		return;
	if ((o = nodeops_node_json(id)) == NULL) {
		api_reply_error(r, 409, "not_ready", "node '%s' has not said "
		    "hello yet", api_param(r, "node"));
		return;
	}
	json_object_set_new(o, "node", json_string(api_param(r, "node")));
	api_reply_json(r, 200, o);
}

/* Make sure a node has its node_sched row (inside a transaction). */
static void
nodeops_row(int64_t id)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "INSERT INTO node_sched (node_id) VALUES "
	    "(?) ON CONFLICT DO NOTHING");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	sqlite3_finalize(st);
}

/*
 * PATCH /v1/nodes/{node}/placement {"cpu_ratio", "memory_ratio",
 * "disk_ratio", "reserve_cpus", "reserve_memory_mib", "tags"}: ratios as
 * "1.5" (thousandths at most); VMs already there stay.
 */
void
nodeops_set(struct api_req *r)
{
	static const char *const known[] = { "cpu_ratio", "memory_ratio",
	    "disk_ratio", "reserve_cpus", "reserve_memory_mib", "tags", NULL };
	static const char *const ratios[] = { "cpu_ratio", "memory_ratio",
	    "disk_ratio" };
	json_t		*body, *v, *sum;
	sqlite3_stmt	*st;
	int64_t		 id, ratio[3] = { -1, -1, -1 }, rc = -1, rm = -1;
	int64_t		 cpus = 0, mem = 0;
	const char	*tags = NULL;
	char		*cause = NULL, obj[96];
	size_t		 i;

	if ((id = nodeops_node(r)) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	for (i = 0; i < nitems(ratios); i++) {
		if ((v = json_object_get(body, ratios[i])) == NULL)
			continue;
		if (nodeops_ratio_parse(v, &ratio[i]) == -1 || ratio[i] < 1 ||
		    ratio[i] > PLACE_RATIO_MAX) {
			api_reply_error(r, 400, "bad_field", "%s must be a "
			    "ratio from 0.001 to 100, such as \"1.5\"",
			    ratios[i]);
			goto out;
		}
	}
	st = store_prepare(ctl->db, "SELECT cpus, memory_bytes / 1048576 FROM "
	    "nodes WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW) {
		cpus = sqlite3_column_int64(st, 0);
		mem = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (json_object_get(body, "reserve_cpus") != NULL &&
	    params_int_field(r, body, "reserve_cpus", 0, cpus, &rc) == -1)
		goto out;
	if (json_object_get(body, "reserve_memory_mib") != NULL &&
	    params_int_field(r, body, "reserve_memory_mib", 0, mem, &rm) == -1)
		goto out;
	if ((v = json_object_get(body, "tags")) != NULL) {
		if (!json_is_string(v) || place_tags_ok(json_string_value(v),
		    PLACE_NODE_TAGS, &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "tags: %s", cause ?
			    cause : "must be a string such as \"zone=a,ssd\"");
			goto out;
		}
		tags = json_string_value(v);
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	nodeops_row(id);
	st = store_prepare(ctl->db, "UPDATE node_sched SET cpu_ratio = "
	    "coalesce(?1, cpu_ratio), memory_ratio = coalesce(?2, "
	    "memory_ratio), disk_ratio = coalesce(?3, disk_ratio), reserve_cpus "
	    "= coalesce(?4, reserve_cpus), reserve_memory_mib = coalesce(?5, "
	    "reserve_memory_mib), tags = coalesce(?6, tags) WHERE node_id = ?7");
	for (i = 0; i < 3; i++)
		if (ratio[i] != -1)
			sqlite3_bind_int64(st, (int)i + 1, ratio[i]);
	if (rc != -1)
		sqlite3_bind_int64(st, 4, rc);
	if (rm != -1)
		sqlite3_bind_int64(st, 5, rm);
	if (tags != NULL)
		sqlite3_bind_text(st, 6, tags, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "node/%s", api_param(r, "node"));
	sum = json_deep_copy(body);
	if (audit_record(r, "node.set", obj, sum) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the settings "
		    "failed");
		goto out;
	}
	sched_node_sync(id);
	log_info("nodes: %s changed the placement settings of %s",
	    api_principal(r)->ap_name, api_param(r, "node"));
	nodeops_get(r);
out:
	free(cause);
	json_decref(body);
}

/* Set a node's operator state (inside a transaction). */
static void
nodeops_admin(int64_t id, const char *admin, const char *report)
{
	sqlite3_stmt	*st;

	nodeops_row(id);
	st = store_prepare(ctl->db, "UPDATE node_sched SET admin = ?, "
	    "admin_since = ?, drain_report = coalesce(?, drain_report) WHERE "
	    "node_id = ?");
	sqlite3_bind_text(st, 1, admin, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (report != NULL)
		sqlite3_bind_text(st, 3, report, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, id);
	store_step(st);
	sqlite3_finalize(st);
}

static const char *
nodeops_admin_of(int64_t id)
{
	static char	 buf[16];
	sqlite3_stmt	*st;

	strlcpy(buf, "none", sizeof(buf));
	st = store_prepare(ctl->db, "SELECT admin FROM node_sched WHERE "
	    "node_id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(buf, (const char *)sqlite3_column_text(st, 0),
		    sizeof(buf));
	sqlite3_finalize(st);
	return (buf);
}

/* Cordon or uncordon: the operator state of one node, audited. */
static void
nodeops_set_admin(struct api_req *r, const char *admin, const char *action)
{
	int64_t		 id;
	char		 obj[96], was[16];

	if ((id = nodeops_node(r)) == -1)
		return;
	strlcpy(was, nodeops_admin_of(id), sizeof(was));
	if (strcmp(was, "fenced") == 0 && strcmp(admin, "cordoned") == 0) {
		api_reply_error(r, 409, "fenced", "node '%s' is fenced; "
		    "uncordon it once it is back in service",
		    api_param(r, "node"));
		return;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	/* Cordoning or uncordoning a draining node stops the drain. */
	nodeops_admin(id, admin, strcmp(was, "draining") == 0 ?
	    "the drain was stopped by an operator" : "");
	snprintf(obj, sizeof(obj), "node/%s", api_param(r, "node"));
	if (audit_record(r, action, obj, json_pack("{s:s}", "was", was)) ==
	    -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	sched_node_sync(id);
	log_info("nodes: %s: %s %s (was %s)", api_principal(r)->ap_name,
	    action, api_param(r, "node"), was);
	nodeops_get(r);
}

/* POST /v1/nodes/{node}/cordon: no new VM goes there. */
void
nodeops_cordon(struct api_req *r)
{
	nodeops_set_admin(r, "cordoned", "node.cordon");
}

/* POST /v1/nodes/{node}/uncordon: back in placement (ends a drain). */
void
nodeops_uncordon(struct api_req *r)
{
	nodeops_set_admin(r, "none", "node.uncordon");
}

/* The VMs of a plan that fit nowhere, as one sentence (caller frees). */
static char *
nodeops_unfit_text(const struct place *p, const struct place_plan *pl)
{
	sqlite3_stmt	*st;
	char		*out = NULL, *why, *prev;
	size_t		 i;

	for (i = 0; i < pl->nunfit; i++) {
		why = NULL;
		place_decide_vm(p, pl->unfit[i], sched_default_policy(), &why);
		st = store_prepare(ctl->db, "SELECT name, vcpus, memory_mib, "
		    "disk_bytes FROM vms WHERE id = ?");
		sqlite3_bind_int64(st, 1, pl->unfit[i]);
		prev = out;
		if (store_step(st) == SQLITE_ROW)
			xasprintf(&out, "%s%sVM %s (%lld vCPUs, %lld MiB) fits "
			    "on no other node: %s", prev ? prev : "", prev ?
			    "; " : "", sqlite3_column_text(st, 0), (long long)
			    sqlite3_column_int64(st, 1), (long long)
			    sqlite3_column_int64(st, 2), why ? why : "?");
		else
			out = prev ? prev : xstrdup("");
		if (out != prev)
			free(prev);
		sqlite3_finalize(st);
		free(why);
	}
	return (out);
}

/*
 * POST /v1/nodes/{node}/drain: move every VM elsewhere by cold migration,
 * one at a time; the node ends empty and cordoned. Refused, with nothing
 * changed, when some VM would fit nowhere.
 */
void
nodeops_drain(struct api_req *r)
{
	struct place_plan	 pl;
	struct place		*q;
	int64_t			 id;
	char			 obj[96], *cause = NULL, *report;
	const char		*was;

	if ((id = nodeops_node(r)) == -1)
		return;
	was = nodeops_admin_of(id);
	if (strcmp(was, "fenced") == 0) {
		api_reply_error(r, 409, "fenced", "node '%s' is fenced: "
		    "evacuate it instead", api_param(r, "node"));
		return;
	}
	if (strcmp(was, "draining") != 0) {
		/* Would each VM find a node, taken in drain order? */
		q = place_clone(sched_engine());
		place_node_state(q, id, PLACE_DRAINING);
		if (place_plan_drain(q, id, sched_default_policy(), &pl,
		    &cause) == -1) {
			api_reply_error(r, 500, "internal", "%s", cause);
			free(cause);
			place_free(q);
			return;
		}
		if (pl.nunfit > 0) {
			report = nodeops_unfit_text(q, &pl);
			api_reply_error(r, 409, "drain_blocked", "cannot drain "
			    "%s: %s", api_param(r, "node"), report);
			free(report);
			place_plan_free(&pl);
			place_free(q);
			return;
		}
		place_plan_free(&pl);
		place_free(q);
		if (store_begin(ctl->db) == -1) {
			api_reply_error(r, 503, "busy", "the database is busy");
			return;
		}
		nodeops_admin(id, "draining", "");
		snprintf(obj, sizeof(obj), "node/%s", api_param(r, "node"));
		if (audit_record(r, "node.drain", obj, NULL) == -1 ||
		    store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			api_reply_error(r, 500, "internal", "storing the change "
			    "failed");
			return;
		}
		sched_node_sync(id);
		log_notice("nodes: %s drains %s", api_principal(r)->ap_name,
		    api_param(r, "node"));
		migrate_tick();
	}
	nodeops_get(r);
}

/*
 * POST /v1/nodes/{node}/evacuate {"fenced": true}: the operator confirms
 * that an unreachable node is off; its VMs are rebuilt on other nodes from
 * their images (its local disks are lost). When it comes back, it is told
 * that they moved and removes its copies without starting them.
 */
void
nodeops_evacuate(struct api_req *r)
{
	static const char *const known[] = { "fenced", NULL };
	struct vmrow {
		int64_t	 id;
		char	 uuid[37];
		char	 name[64];
		int	 deleted;
	}		*vms = NULL;
	json_t		*body, *moved, *unplaced, *o;
	sqlite3_stmt	*st;
	int64_t		 id, to, *targets = NULL;
	size_t		 i, n = 0, nt = 0, j;
	char		 obj[96], *why;

	if ((id = nodeops_node(r)) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	if (!json_is_true(json_object_get(body, "fenced"))) {
		api_reply_error(r, 400, "not_fenced", "confirm that node '%s' "
		    "is off (\"fenced\": true, opsnctl node evacuate --fenced): "
		    "its VMs start again elsewhere from their images and its "
		    "local disks are lost", api_param(r, "node"));
		goto out;
	}
	if (nodes_is_ready(id)) {
		api_reply_error(r, 409, "reachable", "node '%s' is reachable: "
		    "drain it instead", api_param(r, "node"));
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	nodeops_admin(id, "fenced", "");
	sched_node_sync(id);
	migrate_node_fenced(id);
	st = store_prepare(ctl->db, "SELECT id, uuid, name, desired = "
	    "'deleted' FROM vms WHERE node_id = ? ORDER BY memory_mib DESC, "
	    "vcpus DESC, id");
	sqlite3_bind_int64(st, 1, id);
	while (store_step(st) == SQLITE_ROW) {
		vms = xrealloc(vms, (n + 1) * sizeof(*vms));
		vms[n].id = sqlite3_column_int64(st, 0);
		strlcpy(vms[n].uuid, (const char *)sqlite3_column_text(st, 1),
		    sizeof(vms[n].uuid));
		strlcpy(vms[n].name, (const char *)sqlite3_column_text(st, 2),
		    sizeof(vms[n].name));
		vms[n].deleted = sqlite3_column_int(st, 3);
		n++;
	}
	sqlite3_finalize(st);
	moved = json_array();
	unplaced = json_array();
	for (i = 0; i < n; i++) {
		/* Its copy there goes when the node returns. */
		st = store_prepare(ctl->db, "INSERT OR IGNORE INTO vm_moved "
		    "(vm_uuid, node_id, moved_at) VALUES (?, ?, ?)");
		sqlite3_bind_text(st, 1, vms[i].uuid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, id);
		sqlite3_bind_int64(st, 3, util_now());
		if (vms[i].deleted) {
			store_step(st);
			sqlite3_finalize(st);
			st = store_prepare(ctl->db, "DELETE FROM vms WHERE id "
			    "= ?");
			sqlite3_bind_int64(st, 1, vms[i].id);
			store_step(st);
			sqlite3_finalize(st);
			place_vm_remove(sched_engine(), vms[i].id);
			continue;
		}
		why = NULL;
		if ((to = place_decide_vm(sched_engine(), vms[i].id,
		    sched_default_policy(), &why)) == -1) {
			sqlite3_finalize(st);
			json_array_append_new(unplaced, json_pack("{s:s,s:s}",
			    "vm", vms[i].name, "reason", why));
			free(why);
			continue;
		}
		store_step(st);
		sqlite3_finalize(st);
		st = store_prepare(ctl->db, "UPDATE vms SET node_id = ?, "
		    "generation = ?, obs_state = 'pending', obs_reason = '', "
		    "obs_error = '', obs_pid = 0 WHERE id = ?");
		sqlite3_bind_int64(st, 1, to);
		sqlite3_bind_int64(st, 2, vms_bump(to));
		sqlite3_bind_int64(st, 3, vms[i].id);
		store_step(st);
		sqlite3_finalize(st);
		place_vm_move(sched_engine(), vms[i].id, to, NULL);
		json_array_append_new(moved, json_pack("{s:s,s:s}", "vm",
		    vms[i].name, "to", nodes_name(to)));
		for (j = 0; j < nt && targets[j] != to; j++)
			;
		if (j == nt) {
			targets = xrealloc(targets, (nt + 1) *
			    sizeof(*targets));
			targets[nt++] = to;
		}
	}
	vms_bump(id);
	snprintf(obj, sizeof(obj), "node/%s", api_param(r, "node"));
	if (audit_record(r, "node.evacuate", obj, json_pack("{s:O,s:O}",
	    "moved", moved, "unplaced", unplaced)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		/* The model went ahead of the store: build it again. */
		sched_rebuild();
		api_reply_error(r, 500, "internal", "storing the evacuation "
		    "failed");
		json_decref(moved);
		json_decref(unplaced);
		goto out;
	}
	log_notice("nodes: %s evacuated %s: %zu VMs moved, %zu left",
	    api_principal(r)->ap_name, api_param(r, "node"),
	    json_array_size(moved), json_array_size(unplaced));
	for (j = 0; j < nt; j++)
		vms_push(targets[j]);
	o = json_pack("{s:s,s:o,s:o}", "node", api_param(r, "node"), "moved",
	    moved, "unplaced", unplaced);
	xasprintf(&why, "the local disks of %s are lost: its VMs start again "
	    "from their images", api_param(r, "node"));
	json_object_set_new(o, "warning", json_string(why));
	free(why);
	api_reply_json(r, 200, o);
	migrate_tick();
out:
	free(vms);
	free(targets);
	json_decref(body);
}

static json_t *
nodeops_score_json(const struct place_score *s)
{
	return (json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "total", s->total,
	    "free_memory", s->free_memory, "free_disk", s->free_disk,
	    "vcpu_ratio", s->vcpu_ratio, "slots", s->slots, "vms_per_node",
	    s->vms, "soft_conflicts", (json_int_t)s->soft_conflicts));
}

/*
 * GET /v1/cluster/capacity?plan=P: how many more VMs of each plan (or P)
 * fit now; N+1 (would every VM fit elsewhere if the largest node failed,
 * and which would not); the empty nodes.
 */
void
nodeops_capacity(struct api_req *r)
{
	struct place		*p = sched_engine();
	struct place_plan	 pl;
	struct place_vm		 vm;
	struct place_score	 sc;
	sqlite3_stmt		*st;
	const char		*plan = api_query(r, "plan");
	json_t			*o, *plans, *n1, *list;
	int64_t			*ids;
	size_t			 i, n;

	o = json_object();
	plans = json_array();
	st = store_prepare(ctl->db, "SELECT name, vcpus, memory_mib, "
	    "disk_bytes FROM plans WHERE (?1 IS NULL OR name = ?1) ORDER BY "
	    "memory_mib, vcpus, name");
	if (plan != NULL)
		sqlite3_bind_text(st, 1, plan, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW) {
		memset(&vm, 0, sizeof(vm));
		vm.vcpus = sqlite3_column_int64(st, 1);
		vm.memory = sqlite3_column_int64(st, 2);
		vm.disk = sqlite3_column_int64(st, 3);
		json_array_append_new(plans, json_pack("{s:s,s:I,s:I,s:I,s:I}",
		    "plan", sqlite3_column_text(st, 0), "vcpus",
		    (json_int_t)vm.vcpus, "memory_mib", (json_int_t)vm.memory,
		    "disk_bytes", (json_int_t)vm.disk, "fit",
		    (json_int_t)place_fit_count(p, &vm)));
	}
	sqlite3_finalize(st);
	if (plan != NULL && json_array_size(plans) == 0) {
		json_decref(plans);
		json_decref(o);
		api_reply_error(r, 404, "not_found", "no plan named '%s'", plan);
		return;
	}
	/* A size given outright (vcpus, memory_mib, disk_bytes). */
	if (api_query(r, "memory_mib") != NULL) {
		memset(&vm, 0, sizeof(vm));
		if (params_query_int(r, "vcpus", 1, PLAN_VCPUS_MAX, 1,
		    &vm.vcpus) == -1 || params_query_int(r, "memory_mib",
		    PLAN_MEMORY_MIN, PLAN_MEMORY_MAX, 0, &vm.memory) == -1 ||
		    params_query_int(r, "disk_bytes", 0, PLAN_DISK_MAX, 0,
		    &vm.disk) == -1) {
			json_decref(plans);
			json_decref(o);
			return;
		}
		json_array_append_new(plans, json_pack("{s:n,s:I,s:I,s:I,s:I}",
		    "plan", "vcpus", (json_int_t)vm.vcpus, "memory_mib",
		    (json_int_t)vm.memory, "disk_bytes", (json_int_t)vm.disk,
		    "fit", (json_int_t)place_fit_count(p, &vm)));
	}
	json_object_set_new(o, "plans", plans);
	place_plan_n1(p, sched_default_policy(), &pl);
	n1 = json_object();
	json_object_set_new(n1, "lost_node", pl.node ?
	    json_string(nodes_name(pl.node)) : json_null());
	json_object_set_new(n1, "ok", json_boolean(pl.nunfit == 0));
	json_object_set_new(n1, "moved", json_integer((json_int_t)pl.nmoves));
	list = json_array();
	for (i = 0; i < pl.nunfit; i++) {
		st = store_prepare(ctl->db, "SELECT name FROM vms WHERE id = ?");
		sqlite3_bind_int64(st, 1, pl.unfit[i]);
		if (store_step(st) == SQLITE_ROW)
			json_array_append_new(list, json_string((const char *)
			    sqlite3_column_text(st, 0)));
		sqlite3_finalize(st);
	}
	json_object_set_new(n1, "unplaced", list);
	json_object_set_new(o, "n_plus_1", n1);
	place_plan_free(&pl);
	list = json_array();
	n = place_empty_nodes(p, &ids);
	for (i = 0; i < n; i++)
		json_array_append_new(list, json_string(nodes_name(ids[i])));
	free(ids);
	json_object_set_new(o, "empty_nodes", list);
	place_score(p, &sc);
	json_object_set_new(o, "score", nodeops_score_json(&sc));
	json_object_set_new(o, "policy", json_string(place_policy_name(
	    sched_default_policy())));
	api_reply_json(r, 200, o);
}

/*
 * POST /v1/cluster/rebalance {"dry_run", "max_moves", "min_gain"}: the
 * moves that each lower the imbalance score (Ganeti's, as hbal's), with
 * the score before and after; without dry_run they are queued and carried
 * out one at a time as cold migrations.
 */
void
nodeops_rebalance(struct api_req *r)
{
	static const char *const known[] = { "dry_run", "max_moves",
	    "min_gain", NULL };
	struct place_plan	 pl;
	json_t			*body, *v, *moves, *o;
	sqlite3_stmt		*st;
	int64_t			 max = REBALANCE_DEFAULT_MOVES, gain = 10;
	int			 dry;
	size_t			 i;
	char			 name[64];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	dry = json_is_true(json_object_get(body, "dry_run"));
	if (json_object_get(body, "max_moves") != NULL && params_int_field(r,
	    body, "max_moves", 1, REBALANCE_MAX_MOVES, &max) == -1)
		goto out;
	/* The least gain worth a move, in thousandths of the score. */
	if ((v = json_object_get(body, "min_gain")) != NULL &&
	    (nodeops_ratio_parse(v, &gain) == -1 || gain < 1)) {
		api_reply_error(r, 400, "bad_field", "min_gain must be a "
		    "number from 0.001, such as \"0.01\"");
		goto out;
	}
	place_plan_rebalance(sched_engine(), (int)max, (double)gain / 1000,
	    &pl);
	moves = json_array();
	for (i = 0; i < pl.nmoves; i++) {
		st = store_prepare(ctl->db, "SELECT name FROM vms WHERE id = ?");
		sqlite3_bind_int64(st, 1, pl.moves[i].vm);
		strlcpy(name, store_step(st) == SQLITE_ROW ? (const char *)
		    sqlite3_column_text(st, 0) : "?", sizeof(name));
		sqlite3_finalize(st);
		json_array_append_new(moves, json_pack("{s:s,s:s,s:s}", "vm",
		    name, "from", nodes_name(pl.moves[i].from), "to",
		    nodes_name(pl.moves[i].to)));
	}
	if (!dry && pl.nmoves > 0) {
		if (store_begin(ctl->db) == -1) {
			api_reply_error(r, 503, "busy", "the database is busy");
			json_decref(moves);
			goto free_plan;
		}
		/* Earlier plans give way to this one. */
		st = store_prepare(ctl->db, "UPDATE migrations SET state = "
		    "'cancelled', error = 'replaced by a new rebalance', "
		    "finished_at = ?1, updated_at = ?1 WHERE state = 'queued'");
		sqlite3_bind_int64(st, 1, util_now());
		store_step(st);
		sqlite3_finalize(st);
		for (i = 0; i < pl.nmoves; i++) {
			st = store_prepare(ctl->db, "INSERT INTO migrations "
			    "(vm_id, reason, src_node, dst_node, state, token, "
			    "created_at, updated_at) VALUES (?, 'rebalance', "
			    "?, ?, 'queued', '', ?4, ?4)");
			sqlite3_bind_int64(st, 1, pl.moves[i].vm);
			sqlite3_bind_int64(st, 2, pl.moves[i].from);
			sqlite3_bind_int64(st, 3, pl.moves[i].to);
			sqlite3_bind_int64(st, 4, util_now());
			store_step(st);
			sqlite3_finalize(st);
		}
		if (audit_record(r, "cluster.rebalance", "cluster", json_pack(
		    "{s:O,s:f,s:f}", "moves", moves, "score_before",
		    pl.before.total, "score_after", pl.after.total)) == -1 ||
		    store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			api_reply_error(r, 500, "internal", "storing the moves "
			    "failed");
			json_decref(moves);
			goto free_plan;
		}
	}
	o = json_object();
	json_object_set_new(o, "dry_run", json_boolean(dry));
	json_object_set_new(o, "score_before", nodeops_score_json(
	    &pl.before));
	json_object_set_new(o, "score_after", nodeops_score_json(&pl.after));
	json_object_set_new(o, "moves", moves);
	json_object_set_new(o, "queued", json_integer(dry ? 0 :
	    (json_int_t)pl.nmoves));
	api_reply_json(r, dry || pl.nmoves == 0 ? 200 : 202, o);
	if (!dry)
		migrate_tick();
free_plan:
	place_plan_free(&pl);
out:
	json_decref(body);
}
