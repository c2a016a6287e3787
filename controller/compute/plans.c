/* Plans (flavors): named sizes for VMs. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "core/core.h"
#include "vms.h"

static json_t *
plans_row_json(sqlite3_stmt *st)
{
	return (json_pack("{s:s,s:I,s:I,s:I}", "name",
	    sqlite3_column_text(st, 0), "vcpus",
	    (json_int_t)sqlite3_column_int64(st, 1), "memory_mib",
	    (json_int_t)sqlite3_column_int64(st, 2), "disk_bytes",
	    (json_int_t)sqlite3_column_int64(st, 3)));
}

/* A plan's or a group's name: 1 to 63 letters, digits, '-', '_', '.'. */
int
compute_name_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > 63)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return (0);
	return (1);
}

/* Plan id and sizes by name; -1 if there is none. */
int64_t
plans_find(const char *name, int64_t *vcpus, int64_t *mem, int64_t *disk)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;

	st = store_prepare(ctl->db, "SELECT id, vcpus, memory_mib, disk_bytes "
	    "FROM plans WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		*vcpus = sqlite3_column_int64(st, 1);
		*mem = sqlite3_column_int64(st, 2);
		*disk = sqlite3_column_int64(st, 3);
	}
	sqlite3_finalize(st);
	return (id);
}

/* POST /v1/plans {"name", "vcpus", "memory_mib", "disk_bytes"} */
void
plans_create(struct api_req *r)
{
	static const char *const known[] = { "name", "vcpus", "memory_mib",
	    "disk_bytes", NULL };
	json_t		*body, *v;
	const char	*name;
	int64_t		 vcpus, mem, disk;
	sqlite3_stmt	*st;
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
	if (params_int_field(r, body, "vcpus", 1, PLAN_VCPUS_MAX, &vcpus) ==
	    -1 || params_int_field(r, body, "memory_mib", PLAN_MEMORY_MIN,
	    PLAN_MEMORY_MAX, &mem) == -1 || params_int_field(r, body,
	    "disk_bytes", PLAN_DISK_MIN, PLAN_DISK_MAX, &disk) == -1)
		goto out;
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_stmt(ctl->db, "INSERT INTO plans (name, vcpus, "
	    "memory_mib, disk_bytes, created_at) VALUES (?, ?, ?, ?, ?) "
	    "ON CONFLICT DO NOTHING");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, vcpus);
	sqlite3_bind_int64(st, 3, mem);
	sqlite3_bind_int64(st, 4, disk);
	sqlite3_bind_int64(st, 5, util_now());
	store_step(st);
	store_done(st);
	if (sqlite3_changes(ctl->db) == 0) {
		store_rollback(ctl->db);
		api_reply_error(r, 409, "exists", "a plan named '%s' exists",
		    name);
		goto out;
	}
	snprintf(obj, sizeof(obj), "plan/%s", name);
	if (audit_record(r, "plan.create", obj, json_deep_copy(body)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the plan failed");
		goto out;
	}
	api_reply_json(r, 201, json_pack("{s:s,s:I,s:I,s:I}", "name", name,
	    "vcpus", (json_int_t)vcpus, "memory_mib", (json_int_t)mem,
	    "disk_bytes", (json_int_t)disk));
out:
	json_decref(body);
}

/*
 * Reply one page of a list ordered by name: sql takes the cursor (the last
 * name seen) as its first parameter and the row limit as its second; row
 * makes each row's JSON.
 */
void
compute_page_by_name(struct api_req *r, const char *sql,
    json_t *(*row)(sqlite3_stmt *))
{
	sqlite3_stmt	*st;
	const char	*cursor;
	char		*next = NULL;
	int		 limit, n = 0;
	json_t		*items;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	items = json_array();
	st = store_prepare(ctl->db, sql);
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			/* The previous row's name: the next page starts after. */
			next = params_last_key(items, "name");
			break;
		}
		json_array_append_new(items, row(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* GET /v1/plans?limit=&cursor= (cursor: the last name seen) */
void
plans_list(struct api_req *r)
{
	compute_page_by_name(r, "SELECT name, vcpus, memory_mib, disk_bytes "
	    "FROM plans WHERE name > ? ORDER BY name LIMIT ?", plans_row_json);
}
