/*
 * Anti-affinity groups: VMs that should not share a hypervisor, either
 * never (anti-affinity: a hard filter) or where it can be avoided
 * (soft-anti-affinity: a penalty when weighing nodes). A VM joins a group
 * when it is created; placement, drains, evacuations and rebalances all
 * keep to the group's policy.
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "place.h"
#include "vms.h"

/* A group's id by name, or -1. */
int64_t
groups_find(const char *name)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;

	st = store_prepare(ctl->db, "SELECT id FROM vm_groups WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

#define GROUPS_SQL "SELECT g.name, g.policy, g.created_at, (SELECT " \
	"count(*) FROM vms v WHERE v.group_id = g.id), (SELECT " \
	"count(DISTINCT v.node_id) FROM vms v WHERE v.group_id = g.id) " \
	"FROM vm_groups g "

static json_t *
groups_row_json(sqlite3_stmt *st)
{
	char	 buf[32];

	util_time_fmt(sqlite3_column_int64(st, 2), buf, sizeof(buf));
	return (json_pack("{s:s,s:s,s:s,s:I,s:I}", "name",
	    sqlite3_column_text(st, 0), "policy", sqlite3_column_text(st, 1),
	    "created_at", buf, "vms", (json_int_t)sqlite3_column_int64(st, 3),
	    "nodes", (json_int_t)sqlite3_column_int64(st, 4)));
}

/* POST /v1/groups {"name", "policy": "anti-affinity"|"soft-anti-affinity"} */
void
groups_create(struct api_req *r)
{
	static const char *const known[] = { "name", "policy", NULL };
	json_t		*body, *v;
	const char	*name, *policy;
	sqlite3_stmt	*st;
	int64_t		 id = -1;
	char		 obj[96];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "name");
	name = json_is_string(v) ? json_string_value(v) : "";
	if (!compute_name_ok(name)) {
		api_reply_error(r, 400, "bad_field", "name must be 1 to 63 "
		    "letters, digits, '-', '_' or '.'");
		goto out;
	}
	v = json_object_get(body, "policy");
	policy = json_is_string(v) ? json_string_value(v) : "anti-affinity";
	if (v != NULL && !json_is_string(v))
		policy = "";
	if (strcmp(policy, "anti-affinity") != 0 &&
	    strcmp(policy, "soft-anti-affinity") != 0) {
		api_reply_error(r, 400, "bad_field", "policy must be "
		    "anti-affinity or soft-anti-affinity");
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "INSERT INTO vm_groups (name, policy, "
	    "created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING id");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, policy, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, util_now());
	if (store_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (id == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 409, "exists", "a group named '%s' exists",
		    name);
		goto out;
	}
	snprintf(obj, sizeof(obj), "group/%s", name);
	if (audit_record(r, "group.create", obj, json_pack("{s:s}", "policy",
	    policy)) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the group failed");
		goto out;
	}
	place_group_set(sched_engine(), id, name, strcmp(policy,
	    "anti-affinity") == 0 ? PLACE_ANTI_HARD : PLACE_ANTI_SOFT, NULL);
	st = store_prepare(ctl->db, GROUPS_SQL "WHERE g.id = ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	api_reply_json(r, 201, groups_row_json(st));
	sqlite3_finalize(st);
out:
	json_decref(body);
}

/* GET /v1/groups?limit=&cursor= */
void
groups_list(struct api_req *r)
{
	compute_page_by_name(r, GROUPS_SQL "WHERE g.name > ? ORDER BY g.name "
	    "LIMIT ?", groups_row_json);
}

/* DELETE /v1/groups/{group}: only an empty one. */
void
groups_delete(struct api_req *r)
{
	const char	*name = api_param(r, "group");
	sqlite3_stmt	*st;
	int64_t		 id, members;
	char		 obj[96];

	if ((id = groups_find(name)) == -1) {
		api_reply_error(r, 404, "not_found", "no group named '%s'",
		    name);
		return;
	}
	st = store_prepare(ctl->db, "SELECT count(*) FROM vms WHERE group_id "
	    "= ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	members = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (members > 0) {
		api_reply_error(r, 409, "not_empty", "group '%s' still has %lld "
		    "VMs", name, (long long)members);
		return;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	st = store_prepare(ctl->db, "DELETE FROM vm_groups WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "group/%s", name);
	if (audit_record(r, "group.delete", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "deleting the group failed");
		return;
	}
	place_group_remove(sched_engine(), id, NULL);
	api_reply_json(r, 200, json_pack("{s:s,s:b}", "name", name, "deleted",
	    1));
}

/*
 * A create request's placement fields: "group" (a group's name),
 * "policy" (spread or pack) and "require" ("zone=a,ssd"). Fills vm and
 * *pol; -1 after replying 400. vm->require points into body.
 */
int
groups_parse_request(struct api_req *r, json_t *body, struct place_vm *vm,
    int *pol)
{
	json_t		*v;
	char		*cause = NULL;

	*pol = sched_default_policy();
	if ((v = json_object_get(body, "policy")) != NULL &&
	    (!json_is_string(v) ||
	    (*pol = place_policy_parse(json_string_value(v))) == -1)) {
		api_reply_error(r, 400, "bad_field", "policy must be spread or "
		    "pack");
		return (-1);
	}
	if ((v = json_object_get(body, "group")) != NULL &&
	    (!json_is_string(v) ||
	    (vm->group = groups_find(json_string_value(v))) == -1)) {
		api_reply_error(r, 400, "bad_field", "group: no group named "
		    "'%.64s' (opsnctl group add)", json_is_string(v) ?
		    json_string_value(v) : "?");
		return (-1);
	}
	if (vm->group == -1)
		vm->group = 0;
	if ((v = json_object_get(body, "require")) != NULL) {
		if (!json_is_string(v) || place_tags_ok(json_string_value(v),
		    PLACE_VM_TAGS, &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "require: %s",
			    cause ? cause : "must be tags such as \"zone=a\"");
			free(cause);
			return (-1);
		}
		vm->require = json_string_value(v);
	}
	return (0);
}
