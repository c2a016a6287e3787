/*
 * VMs: records, the desired state pushed to each node with a generation,
 * the observed state agents report, and the tail of each VM's console.
 *
 * Every change follows one path: validate, then in one transaction change
 * the VM and bump its node's generation, commit, then push the node's whole
 * desired state. A lost push is healed by the next one or by the push that
 * follows the agent's HELLO.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "place.h"
#include "vms.h"

#define VM_NAME_MAX		63
#define VM_NICS_MAX		8
#define CONSOLE_KEEP		(64 * 1024)

/* The last CONSOLE_KEEP bytes of a VM's serial console, in memory. */
struct console {
	LIST_ENTRY(console) c_entry;
	char		 c_uuid[37];
	uint64_t	 c_start;	/* stream offset of c_buf[0] */
	size_t		 c_len;
	char		 c_buf[CONSOLE_KEEP];
};
static LIST_HEAD(, console) consoles = LIST_HEAD_INITIALIZER(consoles);

static int
vms_name_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > VM_NAME_MAX || !isalnum((unsigned char)s[0]))
		return (0);
	for (i = 0; i < len; i++)
		if (!islower((unsigned char)s[i]) &&
		    !isdigit((unsigned char)s[i]) && s[i] != '-')
			return (0);
	return (1);
}

static int
vms_bridge_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > 15)
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return (0);
	return (1);
}

static void
vms_uuid(char out[37])
{
	unsigned char	 b[16];

	util_random(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* What agents use to fetch images: api_url, or https://<api_listen>. */
static char *
vms_image_url(void)
{
	char	*host = NULL, *url, name[256], *cause = NULL;
	int	 port;

	if (ctl->conf.api_url != NULL && *ctl->conf.api_url != '\0') {
		xasprintf(&url, "%s/v1/images", ctl->conf.api_url);
		return (url);
	}
	if (util_parse_hostport(ctl->conf.api_listen, &host, &port,
	    &cause) == -1) {
		free(cause);
		return (xstrdup(""));
	}
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
		free(host);
		if (gethostname(name, sizeof(name)) != 0)
			strlcpy(name, "localhost", sizeof(name));
		host = xstrdup(name);
	}
	xasprintf(&url, strchr(host, ':') ? "https://[%s]:%d/v1/images" :
	    "https://%s:%d/v1/images", host, port);
	free(host);
	return (url);
}

#define VMS_TENANT "coalesce(t.insee, t.siren, CAST(t.id AS TEXT), '')"
#define VMS_COLS "v.uuid, v.name, n.name, " VMS_TENANT ", v.vcpus, " \
	"v.memory_mib, " \
	"v.disk_bytes, i.name, v.nics, v.desired, v.generation, v.obs_state, " \
	"v.obs_reason, v.obs_since, v.obs_error, v.obs_generation, v.obs_pid, " \
	"v.created_at, v.id, pl.name, v.node_id, g.name, v.require_tags, " \
	"v.restored, " MIGRATE_COLS
#define VMS_FROM " FROM vms v JOIN nodes n ON n.id = v.node_id " \
	"JOIN images i ON i.id = v.image_id " \
	"LEFT JOIN tenants t ON t.id = v.tenant_id " \
	"LEFT JOIN plans pl ON pl.id = v.plan_id " \
	"LEFT JOIN vm_groups g ON g.id = v.group_id " MIGRATE_FROM
#define VMS_COL_MIGRATION 24

/* A VM as JSON, from the columns of VMS_COLS. */
static const struct jsonw_field vms_fields[] = {
	{ "id", JW_TEXT, 0 },
	{ "name", JW_TEXT, 1 },
	{ "node", JW_TEXT, 2 },
	{ "tenant", JW_TEXT, 3 },
	{ "vcpus", JW_INT, 4 },
	{ "memory_mib", JW_INT, 5 },
	{ "disk_bytes", JW_INT, 6 },
	{ "image", JW_TEXT, 7 },
};
static const struct jsonw_field vms_fields_after_nics[] = {
	{ "desired", JW_TEXT, 9 },
	{ "generation", JW_INT, 10 },
};
/* After the observed state and reason (vms_row_write). */
static const struct jsonw_field vms_fields_observed[] = {
	{ "since", JW_TIME, 13 },
	{ "error", JW_TEXT, 14 },
	{ "generation", JW_INT, 15 },
	{ "pid", JW_INT, 16 },
	{ NULL, JW_END, 0 },
	{ "created_at", JW_TIME, 17 },
	{ "plan", JW_TEXT, 19 },
	{ "group", JW_TEXT, 21 },
	{ "require", JW_TEXT, 22 },
};

static void
vms_row_write(struct jsonw *w, sqlite3_stmt *st)
{
	json_t	*nics, *mig;

	jsonw_obj(w);
	jsonw_row(w, st, vms_fields, nitems(vms_fields));
	/* The NICs are stored as a JSON array. */
	nics = json_loads((const char *)sqlite3_column_text(st, 8), 0, NULL);
	jsonw_key(w, "nics");
	if (nics != NULL)
		jsonw_json(w, nics);
	else {
		jsonw_arr(w);
		jsonw_arr_end(w);
	}
	json_decref(nics);
	jsonw_row(w, st, vms_fields_after_nics, nitems(vms_fields_after_nics));
	jsonw_key(w, "observed");
	jsonw_obj(w);
	jsonw_key(w, "state");
	if (nodes_is_ready(sqlite3_column_int64(st, 20))) {
		jsonw_col_text(w, st, 11);
		jsonw_key(w, "reason");
		jsonw_col_text(w, st, 12);
	} else {
		/* Its node is silent: what it last said may be stale. */
		jsonw_str(w, "unknown");
		jsonw_key(w, "reason");
		jsonw_str(w, "node unreachable");
		jsonw_key(w, "last_state");
		jsonw_col_text(w, st, 11);
	}
	jsonw_row(w, st, vms_fields_observed, nitems(vms_fields_observed));
	jsonw_key(w, "migration");
	if ((mig = migrate_json_cols(st, VMS_COL_MIGRATION)) != NULL) {
		jsonw_json(w, mig);
		json_decref(mig);
	} else
		jsonw_null(w);
	/* Restored from a backup: waiting to learn it from its node. */
	jsonw_key(w, "restored");
	jsonw_bool(w, sqlite3_column_int(st, 23));
	jsonw_obj_end(w);
}

/*
 * Find the VM a path names (its id, or its name when that is unambiguous);
 * -1 after replying 404 or 409.
 */
static int64_t
vms_find(struct api_req *r, const char *ref)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;
	int		 n = 0;

	const struct api_principal *p = api_principal(r);

	/* A token scoped to a tenant sees only that tenant's VMs. */
	st = store_prepare(ctl->db, "SELECT id FROM vms WHERE (uuid = ?1 OR "
	    "name = ?1) AND (?2 = 0 OR tenant_id = ?2)");
	sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p != NULL ? p->ap_tenant : 0);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			id = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (n == 0) {
		api_reply_error(r, 404, "not_found", "no VM named '%s'", ref);
		return (-1);
	}
	if (n > 1) {
		api_reply_error(r, 409, "ambiguous", "several VMs are named "
		    "'%s'; use the VM's id", ref);
		return (-1);
	}
	return (id);
}

static json_t *
vms_json(int64_t id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	struct jsonw	 w;

	memset(&w, 0, sizeof(w));
	st = store_stmt(ctl->db, "SELECT " VMS_COLS VMS_FROM "WHERE v.id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) == SQLITE_ROW) {
		vms_row_write(&w, st);
		o = jsonw_load(&w);
	}
	store_done(st);
	return (o);
}

/* Bump the node's generation inside the caller's transaction. */
int64_t
vms_bump(int64_t node_id)
{
	sqlite3_stmt	*st;
	int64_t		 gen = -1;

	st = store_prepare(ctl->db, "UPDATE nodes SET generation = generation "
	    "+ 1 WHERE id = ? RETURNING generation");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		gen = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (gen);
}

/* Parse "nics": [{"bridge": "br0"}]; -1 after replying 400. */
static int
vms_parse_nics(struct api_req *r, json_t *v, json_t **out)
{
	static const char *const known[] = { "bridge", "mac", NULL };
	json_t		*nics = json_array(), *n, *b;
	size_t		 i;
	unsigned char	 m[3];
	char		 mac[18];

	if (v != NULL && (!json_is_array(v) || json_array_size(v) >
	    VM_NICS_MAX)) {
		api_reply_error(r, 400, "bad_field", "nics must be a list of "
		    "at most %d {\"bridge\": NAME}", VM_NICS_MAX);
		goto fail;
	}
	json_array_foreach(v, i, n) {
		if (!json_is_object(n) || params_known_fields(r, n, known) == -1)
			goto fail_msg;
		b = json_object_get(n, "bridge");
		if (!json_is_string(b) || !vms_bridge_ok(json_string_value(b))) {
			api_reply_error(r, 400, "bad_field", "nics[%zu].bridge "
			    "must be an interface name of 1 to 15 letters, "
			    "digits, '-', '_' or '.'", i);
			goto fail;
		}
		util_random(m, sizeof(m));
		snprintf(mac, sizeof(mac), "52:54:00:%02x:%02x:%02x", m[0],
		    m[1], m[2]);
		json_array_append_new(nics, json_pack("{s:s,s:s}", "bridge",
		    json_string_value(b), "mac", mac));
	}
	*out = nics;
	return (0);
fail_msg:
	if (!json_is_object(n))
		api_reply_error(r, 400, "bad_field", "nics[%zu] must be an "
		    "object", i);
fail:
	json_decref(nics);
	return (-1);
}

/*
 * Check the tenant's quotas for one more VM of this size, inside the
 * transaction; -1 after replying 403 naming the quota and the use.
 */
static int
vms_quota(struct api_req *r, int64_t tenant, int64_t nvms, int64_t vcpus,
    int64_t mem, int64_t disk)
{
	static const char *const what[4] = { "VM count", "vCPU", "memory (MiB)",
	    "disk (bytes)" };
	sqlite3_stmt	*st;
	int64_t		 quota[4], use[4], add[4] = { nvms, vcpus, mem, disk };
	char		 ref[64];
	int		 i, has[4];

	st = store_prepare(ctl->db, "SELECT t.quota_vms, t.quota_vcpus, "
	    "t.quota_memory_mib, t.quota_disk_bytes, " VMS_TENANT ", "
	    "(SELECT count(*) FROM vms WHERE tenant_id = t.id AND desired != "
	    "'deleted'), (SELECT coalesce(sum(vcpus), 0) FROM vms WHERE "
	    "tenant_id = t.id AND desired != 'deleted'), (SELECT "
	    "coalesce(sum(memory_mib), 0) FROM vms WHERE tenant_id = t.id AND "
	    "desired != 'deleted'), (SELECT coalesce(sum(disk_bytes), 0) FROM "
	    "vms WHERE tenant_id = t.id AND desired != 'deleted') FROM tenants "
	    "t WHERE t.id = ?");
	sqlite3_bind_int64(st, 1, tenant);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		api_reply_error(r, 404, "not_found", "no such tenant");
		return (-1);
	}
	for (i = 0; i < 4; i++) {
		has[i] = sqlite3_column_type(st, i) != SQLITE_NULL;
		quota[i] = sqlite3_column_int64(st, i);
		use[i] = sqlite3_column_int64(st, 5 + i);
	}
	strlcpy(ref, (const char *)sqlite3_column_text(st, 4), sizeof(ref));
	sqlite3_finalize(st);
	for (i = 0; i < 4; i++) {
		if (has[i] && add[i] > 0 && use[i] + add[i] > quota[i]) {
			api_reply_error(r, 403, "quota_exceeded", "tenant %s: "
			    "%s quota is %lld, it uses %lld and this VM needs "
			    "%lld more", ref, what[i], (long long)quota[i],
			    (long long)use[i], (long long)add[i]);
			return (-1);
		}
	}
	return (0);
}

/* A size: from the body if given, else the plan's; -1 after replying. */
static int
vms_size(struct api_req *r, json_t *body, const char *name, int64_t min,
    int64_t max, int64_t plan_value, int64_t *out)
{
	if (json_object_get(body, name) == NULL && plan_value > 0) {
		*out = plan_value;
		return (0);
	}
	return (params_int_field(r, body, name, min, max, out));
}

/* A VM to create, as its request asks. */
struct vms_new {
	const char	*vn_name;
	int64_t		 vn_tenant;	/* 0: the platform's */
	int64_t		 vn_plan;	/* 0: none */
	int64_t		 vn_vcpus, vn_mem, vn_disk;
	const char	*vn_power;
	int64_t		 vn_image;
	json_t		*vn_nics;
	int64_t		 vn_node;	/* 0: the scheduler decides */
	struct place_vm	 vn_want;
	int		 vn_policy;
};

/* The tenant a create is for: the body's, or a bound token's own. */
static int
vms_new_tenant(struct api_req *r, json_t *body, struct vms_new *vn)
{
	const struct api_principal *p = api_principal(r);
	json_t		*v;
	char		*cause = NULL;

	if ((v = json_object_get(body, "tenant")) != NULL) {
		if (!json_is_string(v) || (vn->vn_tenant = tenants_resolve(
		    json_string_value(v))) == -1) {
			api_reply_error(r, 400, "bad_field", "tenant: no tenant "
			    "'%.64s' (use its id, INSEE code or SIREN)",
			    json_is_string(v) ? json_string_value(v) : "?");
			return (-1);
		}
	}
	/* A token scoped to a tenant creates for that tenant only. */
	if (p != NULL && p->ap_tenant != 0) {
		if (vn->vn_tenant != 0 && vn->vn_tenant != p->ap_tenant) {
			api_reply_error(r, 403, "forbidden", "token '%s' may "
			    "only manage its own tenant's VMs", p->ap_name);
			return (-1);
		}
		vn->vn_tenant = p->ap_tenant;
	}
	if (vn->vn_tenant != 0 && tenants_may_grow(vn->vn_tenant,
	    &cause) == -1) {
		api_reply_error(r, 409, "tenant_inactive", "%s", cause);
		free(cause);
		return (-1);
	}
	return (0);
}

/* Sizes from the plan, each overridable; power, image and NICs. */
static int
vms_new_shape(struct api_req *r, json_t *body, struct vms_new *vn)
{
	json_t		*v;
	int64_t		 pv = 0, pm = 0, pd = 0;
	char		*cause = NULL;

	if ((v = json_object_get(body, "plan")) != NULL) {
		if (!json_is_string(v) || (vn->vn_plan = plans_find(
		    json_string_value(v), &pv, &pm, &pd)) == -1) {
			api_reply_error(r, 400, "bad_field", "plan: no plan "
			    "named '%.64s'", json_is_string(v) ?
			    json_string_value(v) : "?");
			return (-1);
		}
	}
	if (vms_size(r, body, "vcpus", 1, PLAN_VCPUS_MAX, pv,
	    &vn->vn_vcpus) == -1 || vms_size(r, body, "memory_mib",
	    PLAN_MEMORY_MIN, PLAN_MEMORY_MAX, pm, &vn->vn_mem) == -1 ||
	    vms_size(r, body, "disk_bytes", PLAN_DISK_MIN, PLAN_DISK_MAX, pd,
	    &vn->vn_disk) == -1)
		return (-1);
	vn->vn_power = "running";
	if ((v = json_object_get(body, "power")) != NULL) {
		if (!json_is_string(v) || (strcmp(json_string_value(v),
		    "running") != 0 && strcmp(json_string_value(v),
		    "stopped") != 0)) {
			api_reply_error(r, 400, "bad_field", "power must be "
			    "running or stopped");
			return (-1);
		}
		vn->vn_power = json_string_value(v);
	}
	v = json_object_get(body, "image");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "image is required");
		return (-1);
	}
	if ((vn->vn_image = images_ready_id(json_string_value(v),
	    &cause)) == -1) {
		api_reply_error(r, 400, "bad_image", "%s", cause);
		free(cause);
		return (-1);
	}
	return (vms_parse_nics(r, json_object_get(body, "nics"),
	    &vn->vn_nics));
}

/* Where it may go: a pinned node, the scheduler's policy and filters. */
static int
vms_new_where(struct api_req *r, json_t *body, struct vms_new *vn)
{
	json_t		*v;
	const char	*node;
	int		 usable;

	memset(&vn->vn_want, 0, sizeof(vn->vn_want));
	vn->vn_want.vcpus = vn->vn_vcpus;
	vn->vn_want.memory = vn->vn_mem;
	vn->vn_want.disk = vn->vn_disk;
	if (groups_parse_request(r, body, &vn->vn_want, &vn->vn_policy) == -1)
		return (-1);
	if ((v = json_object_get(body, "node")) == NULL)
		return (0);
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "bad_field", "node must be a node name");
		return (-1);
	}
	node = json_string_value(v);
	if ((vn->vn_node = nodes_id(node, &usable)) == -1 || !usable) {
		api_reply_error(r, vn->vn_node == -1 ? 404 : 409,
		    vn->vn_node == -1 ? "not_found" : "node_unusable",
		    vn->vn_node == -1 ? "no node named '%s'" :
		    "node '%s' is revoked", node);
		return (-1);
	}
	return (0);
}

/* Everything a create asks, checked; -1 after replying. */
static int
vms_new_parse(struct api_req *r, json_t *body, struct vms_new *vn)
{
	static const char *const known[] = { "name", "node", "tenant", "plan",
	    "vcpus", "memory_mib", "disk_bytes", "image", "power", "nics",
	    "group", "policy", "require", NULL };
	json_t		*v;

	if (params_known_fields(r, body, known) == -1)
		return (-1);
	v = json_object_get(body, "name");
	if (!json_is_string(v) || !vms_name_ok(json_string_value(v))) {
		api_reply_error(r, 400, "bad_field", "name must be 1 to %d "
		    "lower-case letters, digits or '-', starting with a letter "
		    "or digit", VM_NAME_MAX);
		return (-1);
	}
	vn->vn_name = json_string_value(v);
	if (vms_new_tenant(r, body, vn) == -1 ||
	    vms_new_shape(r, body, vn) == -1 ||
	    vms_new_where(r, body, vn) == -1)
		return (-1);
	return (0);
}

/* Insert the VM's row on node_id (inside the transaction); its id or -1. */
static int64_t
vms_new_insert(const struct vms_new *vn, const char *uuid, int64_t node_id)
{
	sqlite3_stmt	*st;
	char		*nicstr;
	int64_t		 id = -1;

	nicstr = json_dumps(vn->vn_nics, JSON_COMPACT);
	st = store_prepare(ctl->db, "INSERT INTO vms (uuid, name, node_id, "
	    "tenant_id, plan_id, vcpus, memory_mib, disk_bytes, image_id, nics, "
	    "desired, generation, obs_state, created_at, group_id, require_tags) "
	    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vn->vn_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, node_id);
	if (vn->vn_tenant != 0)
		sqlite3_bind_int64(st, 4, vn->vn_tenant);
	if (vn->vn_plan > 0)
		sqlite3_bind_int64(st, 5, vn->vn_plan);
	sqlite3_bind_int64(st, 6, vn->vn_vcpus);
	sqlite3_bind_int64(st, 7, vn->vn_mem);
	sqlite3_bind_int64(st, 8, vn->vn_disk);
	sqlite3_bind_int64(st, 9, vn->vn_image);
	sqlite3_bind_text(st, 10, nicstr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, vn->vn_power, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 12, vms_bump(node_id));
	sqlite3_bind_int64(st, 13, util_now());
	if (vn->vn_want.group != 0)
		sqlite3_bind_int64(st, 14, vn->vn_want.group);
	sqlite3_bind_text(st, 15, vn->vn_want.require ? vn->vn_want.require :
	    "", -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	else
		log_warnx("vms: %s", sqlite3_errmsg(ctl->db));
	sqlite3_finalize(st);
	free(nicstr);
	return (id);
}

/* The audit record of a create. */
static int
vms_new_audit(struct api_req *r, const struct vms_new *vn, const char *uuid,
    int64_t node_id)
{
	json_t	*sum;
	char	 obj[64];

	snprintf(obj, sizeof(obj), "vm/%s", uuid);
	sum = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:O}", "name", vn->vn_name,
	    "node", nodes_name(node_id), "vcpus", (json_int_t)vn->vn_vcpus,
	    "memory_mib", (json_int_t)vn->vn_mem, "disk_bytes",
	    (json_int_t)vn->vn_disk, "power", vn->vn_power, "nics",
	    vn->vn_nics);
	if (vn->vn_tenant != 0)
		json_object_set_new(sum, "tenant", json_integer(vn->vn_tenant));
	if (vn->vn_want.group != 0)
		json_object_set_new(sum, "group",
		    json_integer(vn->vn_want.group));
	if (vn->vn_want.require != NULL && *vn->vn_want.require != '\0')
		json_object_set_new(sum, "require",
		    json_string(vn->vn_want.require));
	return (audit_record(r, "vm.create", obj, sum));
}

/* POST /v1/vms */
void
vms_create(struct api_req *r)
{
	struct vms_new	 vn;
	json_t		*body;
	sqlite3_stmt	*st;
	int64_t		 node_id, id = -1;
	char		 uuid[37], *cause = NULL;
	int		 taken, claimed = 0;

	if ((body = api_body_json(r)) == NULL)
		return;
	memset(&vn, 0, sizeof(vn));
	if (vms_new_parse(r, body, &vn) == -1)
		goto out;
	vms_uuid(uuid);
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	/* Quota and placement are decided in the transaction that claims. */
	if (vn.vn_tenant != 0 && vms_quota(r, vn.vn_tenant, 1, vn.vn_vcpus,
	    vn.vn_mem, vn.vn_disk) == -1)
		goto rollback;
	if ((node_id = sched_decide(&vn.vn_want, (enum place_policy)
	    vn.vn_policy, vn.vn_node, &cause)) == -1) {
		api_reply_error(r, 409, "no_capacity", "no node can take the "
		    "VM: %s", cause);
		goto rollback;
	}
	st = store_prepare(ctl->db, "SELECT 1 FROM vms WHERE name = ? AND "
	    "coalesce(tenant_id, 0) = ?");
	sqlite3_bind_text(st, 1, vn.vn_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, vn.vn_tenant);
	taken = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (taken) {
		api_reply_error(r, 409, "exists", "a VM named '%s' exists%s",
		    vn.vn_name, vn.vn_tenant ? " for this tenant" : "");
		goto rollback;
	}
	if ((id = vms_new_insert(&vn, uuid, node_id)) == -1) {
		api_reply_error(r, 500, "internal", "storing the VM failed");
		goto rollback;
	}
	/* The claim, in the same turn of the loop as the decision. */
	if (sched_claim(id, &vn.vn_want, node_id, &cause) == -1) {
		log_warnx("vms: claiming %s: %s", vn.vn_name, cause);
		api_reply_error(r, 500, "internal", "storing the VM failed");
		goto rollback;
	}
	claimed = 1;
	if (vms_new_audit(r, &vn, uuid, node_id) == -1 ||
	    store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "storing the VM failed");
		goto rollback;
	}
	log_info("vms: %s created %s (%s) on %s", api_principal(r)->ap_name,
	    vn.vn_name, uuid, nodes_name(node_id));
	vms_push(node_id);
	api_reply_json(r, 201, vms_json(id));
	goto out;
rollback:
	store_rollback(ctl->db);
	if (claimed)
		sched_release(id);
out:
	free(cause);
	json_decref(vn.vn_nics);
	json_decref(body);
}

/* GET /v1/vms?node=&limit=&cursor= (cursor: the last id seen) */
void
vms_list(struct api_req *r)
{
	const struct api_principal *p = api_principal(r);
	sqlite3_stmt	*st;
	const char	*node = api_query(r, "node");
	const char	*tenant = api_query(r, "tenant");
	const char	*state = api_query(r, "state");
	char		*sql, next[24];
	int		 limit, n = 0, usable;
	int64_t		 tid = 0, nid = 0, last = 0, after;
	struct jsonw	 w;

	if (params_page_id(r, &limit, &after) == -1)
		return;
	if (tenant != NULL && (tid = tenants_resolve(tenant)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "tenant: no tenant "
		    "'%.64s'", tenant);
		return;
	}
	if (p != NULL && p->ap_tenant != 0)
		tid = p->ap_tenant;
	/* A node that does not exist holds no VM: an empty page. */
	if (node != NULL && (nid = nodes_id(node, &usable)) == -1)
		nid = 0;
	/*
	 * Only the filters asked for are in the SQL, so that the index of
	 * the node or the member serves the page in id order.
	 */
	xasprintf(&sql, "SELECT " VMS_COLS VMS_FROM "WHERE v.id > ?1%s%s%s "
	    "ORDER BY v.id LIMIT ?3", node ? " AND v.node_id = ?2" : "",
	    tid ? " AND v.tenant_id = ?4" : "", state ? " AND (v.obs_state = "
	    "?5 OR v.desired = ?5)" : "");
	st = store_stmt(ctl->db, sql);
	free(sql);
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, nid);
	sqlite3_bind_int(st, 3, limit + 1);
	sqlite3_bind_int64(st, 4, tid);
	if (state != NULL)
		sqlite3_bind_text(st, 5, state, -1, SQLITE_STATIC);
	params_page_open(&w);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			snprintf(next, sizeof(next), "%lld", (long long)last);
			break;
		}
		last = sqlite3_column_int64(st, 18);
		vms_row_write(&w, st);
	}
	store_done(st);
	params_page_reply(r, &w, n > limit ? next : NULL);
}

/* GET /v1/vms/{vm} */
void
vms_get(struct api_req *r)
{
	int64_t	 id;

	if ((id = vms_find(r, api_param(r, "vm"))) == -1)
		return;
	api_reply_json(r, 200, vms_json(id));
}

/* Change a VM's desired state (and maybe its reboot counter), then push. */
static void
vms_set(struct api_req *r, const char *desired, int reboot, int status)
{
	sqlite3_stmt	*st;
	int64_t		 id, node_id, gen;
	const char	*cur;
	char		 uuid[37], obj[64];

	if ((id = vms_find(r, api_param(r, "vm"))) == -1)
		return;
	st = store_prepare(ctl->db, "SELECT node_id, desired, uuid FROM vms "
	    "WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	node_id = sqlite3_column_int64(st, 0);
	cur = (const char *)sqlite3_column_text(st, 1);
	strlcpy(uuid, (const char *)sqlite3_column_text(st, 2), sizeof(uuid));
	if (strcmp(cur, "deleted") == 0) {
		sqlite3_finalize(st);
		api_reply_error(r, 409, "deleted", "VM '%s' is being deleted",
		    api_param(r, "vm"));
		return;
	}
	if (reboot && strcmp(cur, "running") != 0) {
		sqlite3_finalize(st);
		api_reply_error(r, 409, "not_running", "VM '%s' is not meant "
		    "to be running; start it instead", api_param(r, "vm"));
		return;
	}
	sqlite3_finalize(st);
	/* A VM half way between two nodes is deleted once it has landed. */
	if (desired[0] == 'd' && migrate_active(id)) {
		api_reply_error(r, 409, "migrating", "VM '%s' is migrating; "
		    "delete it once it has moved", api_param(r, "vm"));
		return;
	}
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	gen = vms_bump(node_id);
	/* The operator decided: a restored VM is no longer only adopted. */
	st = store_prepare(ctl->db, "UPDATE vms SET desired = ?, generation = ?,"
	    " reboot_seq = reboot_seq + ?, restored = 0 WHERE id = ?");
	sqlite3_bind_text(st, 1, desired, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, gen);
	sqlite3_bind_int(st, 3, reboot ? 1 : 0);
	sqlite3_bind_int64(st, 4, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "vm/%s", uuid);
	if (audit_record(r, reboot ? "vm.reboot" : desired[0] == 'd' ?
	    "vm.delete" : desired[0] == 'r' ? "vm.start" : "vm.stop", obj,
	    NULL) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	log_info("vms: %s set %s to %s%s", api_principal(r)->ap_name,
	    api_param(r, "vm"), desired, reboot ? " (reboot)" : "");
	vms_push(node_id);
	api_reply_json(r, status, vms_json(id));
}

/* POST /v1/vms/{vm}/start */
void
vms_start(struct api_req *r)
{
	vms_set(r, "running", 0, 200);
}

/* POST /v1/vms/{vm}/stop */
void
vms_stop(struct api_req *r)
{
	vms_set(r, "stopped", 0, 200);
}

/* POST /v1/vms/{vm}/reboot */
void
vms_reboot(struct api_req *r)
{
	vms_set(r, "running", 1, 200);
}

/*
 * PATCH /v1/vms/{vm} {"vcpus", "memory_mib"}: a new size, within the
 * tenant's quotas. The agent applies it while the VM is stopped (a
 * running VM keeps its size until its next stop and start).
 */
void
vms_resize(struct api_req *r)
{
	static const char *const known[] = { "vcpus", "memory_mib", NULL };
	json_t		*body;
	sqlite3_stmt	*st;
	int64_t		 id, node_id, tenant, gen, vcpus, mem, ov, om;
	char		 uuid[37], obj[64], *cause = NULL;
	int		 resized = 0;

	if ((id = vms_find(r, api_param(r, "vm"))) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	st = store_prepare(ctl->db, "SELECT node_id, coalesce(tenant_id, 0), "
	    "vcpus, memory_mib, uuid, desired FROM vms WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	node_id = sqlite3_column_int64(st, 0);
	tenant = sqlite3_column_int64(st, 1);
	ov = sqlite3_column_int64(st, 2);
	om = sqlite3_column_int64(st, 3);
	strlcpy(uuid, (const char *)sqlite3_column_text(st, 4), sizeof(uuid));
	if (strcmp((const char *)sqlite3_column_text(st, 5), "deleted") == 0) {
		sqlite3_finalize(st);
		api_reply_error(r, 409, "deleted", "VM '%s' is being deleted",
		    api_param(r, "vm"));
		goto out;
	}
	sqlite3_finalize(st);
	vcpus = ov;
	mem = om;
	if ((json_object_get(body, "vcpus") != NULL && params_int_field(r,
	    body, "vcpus", 1, PLAN_VCPUS_MAX, &vcpus) == -1) ||
	    (json_object_get(body, "memory_mib") != NULL && params_int_field(r,
	    body, "memory_mib", PLAN_MEMORY_MIN, PLAN_MEMORY_MAX, &mem) == -1))
		goto out;
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (tenant != 0 && vms_quota(r, tenant, 0, vcpus - ov, mem - om, 0) ==
	    -1)
		goto rollback;
	/* Its node must hold the new size (both nodes while it migrates). */
	if (sched_resize(id, vcpus, mem, &cause) == -1) {
		api_reply_error(r, 409, "no_capacity", "%s", cause);
		free(cause);
		goto rollback;
	}
	resized = 1;
	gen = vms_bump(node_id);
	st = store_prepare(ctl->db, "UPDATE vms SET vcpus = ?, memory_mib = ?, "
	    "generation = ?, restored = 0 WHERE id = ?");
	sqlite3_bind_int64(st, 1, vcpus);
	sqlite3_bind_int64(st, 2, mem);
	sqlite3_bind_int64(st, 3, gen);
	sqlite3_bind_int64(st, 4, id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "vm/%s", uuid);
	if (audit_record(r, "vm.resize", obj, json_pack("{s:I,s:I}", "vcpus",
	    (json_int_t)vcpus, "memory_mib", (json_int_t)mem)) == -1 ||
	    store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "storing the change failed");
		goto rollback;
	}
	vms_push(node_id);
	api_reply_json(r, 200, vms_json(id));
	goto out;
rollback:
	store_rollback(ctl->db);
	if (resized)
		sched_resize(id, ov, om, NULL);
out:
	json_decref(body);
}

/* DELETE /v1/vms/{vm}: the record goes once the agent has removed it. */
void
vms_delete(struct api_req *r)
{
	vms_set(r, "deleted", 0, 202);
}

static struct console *
vms_console_find(const char *uuid, int create)
{
	struct console	*c;

	LIST_FOREACH(c, &consoles, c_entry)
		if (strcmp(c->c_uuid, uuid) == 0)
			return (c);
	if (!create)
		return (NULL);
	c = xcalloc(1, sizeof(*c));
	strlcpy(c->c_uuid, uuid, sizeof(c->c_uuid));
	LIST_INSERT_HEAD(&consoles, c, c_entry);
	return (c);
}

static void
vms_console_forget(const char *uuid)
{
	struct console	*c;

	if ((c = vms_console_find(uuid, 0)) != NULL) {
		LIST_REMOVE(c, c_entry);
		free(c);
	}
}

/* GET /v1/vms/{vm}/console?offset=N */
void
vms_console(struct api_req *r)
{
	sqlite3_stmt	*st;
	struct console	*c;
	uint64_t	 off, end;
	int64_t		 id, q;
	char		 uuid[37], *text;
	size_t		 i, n = 0, from;
	json_t		*o;

	if (params_query_int(r, "offset", 0, INT64_MAX, 0, &q) == -1 ||
	    (id = vms_find(r, api_param(r, "vm"))) == -1)
		return;
	off = (uint64_t)q;
	st = store_prepare(ctl->db, "SELECT uuid FROM vms WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	strlcpy(uuid, (const char *)sqlite3_column_text(st, 0), sizeof(uuid));
	sqlite3_finalize(st);
	c = vms_console_find(uuid, 0);
	o = json_object();
	json_object_set_new(o, "vm", json_string(uuid));
	end = c ? c->c_start + c->c_len : 0;
	if (c == NULL || off >= end) {
		json_object_set_new(o, "offset", json_integer((json_int_t)
		    (off > end ? end : off)));
		json_object_set_new(o, "next", json_integer((json_int_t)end));
		json_object_set_new(o, "data", json_string(""));
		json_object_set_new(o, "truncated", json_false());
		api_reply_json(r, 200, o);
		return;
	}
	json_object_set_new(o, "truncated", json_boolean(off < c->c_start));
	if (off < c->c_start)
		off = c->c_start;
	from = (size_t)(off - c->c_start);
	/* Console bytes are not JSON text: keep printable ASCII and \n, \t. */
	text = xmalloc(c->c_len - from + 1);
	for (i = from; i < c->c_len; i++) {
		unsigned char ch = (unsigned char)c->c_buf[i];

		if (ch == '\n' || ch == '\t' || (ch >= 0x20 && ch < 0x7f))
			text[n++] = (char)ch;
		else if (ch != '\r')
			text[n++] = '?';
	}
	json_object_set_new(o, "offset", json_integer((json_int_t)off));
	json_object_set_new(o, "next", json_integer((json_int_t)end));
	json_object_set_new(o, "data", json_stringn(text, n));
	free(text);
	api_reply_json(r, 200, o);
}

/* Send a node its whole desired state. */
void
vms_push(int64_t node_id)
{
	Opsn__DesiredState	 ds = OPSN__DESIRED_STATE__INIT;
	Opsn__VmSpec		**specs = NULL, *s;
	sqlite3_stmt		*st;
	size_t			 n = 0, i, j;
	json_t			*nics, *nic;

	st = store_prepare(ctl->db, "SELECT generation FROM nodes WHERE id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		ds.generation = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	ds.image_url = vms_image_url();
	ds.epoch = ctl->epoch;
	ds.release = unknown_release_list(node_id, &ds.n_release);
	/*
	 * The node's VMs, and the copies it keeps of VMs migrating away: a
	 * VM leaving this node is stopped, then parked (its domain goes, its
	 * disk stays) until it runs on its target. The node's index finds
	 * them (an OR across the join read all 50,000 VMs of a national
	 * platform at each agent's hello: 40 ms).
	 */
	st = store_stmt(ctl->db, "SELECT v.uuid, v.name, " VMS_TENANT ", "
	    "v.vcpus, v.memory_mib, v.disk_bytes, v.image_id, v.nics, "
	    "CASE WHEN m.src_node = ?1 AND m.state = 'stopping' THEN "
	    "'stopped' WHEN m.src_node = ?1 THEN 'parked' ELSE v.desired END, "
	    "v.reboot_seq, v.restored FROM vms v LEFT JOIN tenants t ON t.id = "
	    "v.tenant_id LEFT JOIN migrations m ON m.vm_id = v.id AND m.state "
	    "IN ('stopping', 'copying', 'starting') WHERE v.id IN (SELECT id "
	    "FROM vms WHERE node_id = ?1 UNION ALL SELECT vm_id FROM "
	    "migrations WHERE src_node = ?1 AND state = 'starting') AND "
	    "v.desired != 'deleted' ORDER BY v.id");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		s = xcalloc(1, sizeof(*s));
		opsn__vm_spec__init(s);
		s->id = xstrdup((const char *)sqlite3_column_text(st, 0));
		s->name = xstrdup((const char *)sqlite3_column_text(st, 1));
		s->tenant = xstrdup((const char *)sqlite3_column_text(st, 2));
		s->vcpus = (uint32_t)sqlite3_column_int(st, 3);
		s->memory_mib = (uint64_t)sqlite3_column_int64(st, 4);
		s->disk_bytes = (uint64_t)sqlite3_column_int64(st, 5);
		s->image = xcalloc(1, sizeof(*s->image));
		images_ref(sqlite3_column_int64(st, 6), s->image);
		nics = json_loads((const char *)sqlite3_column_text(st, 7), 0,
		    NULL);
		s->n_nics = json_array_size(nics);
		s->nics = xcalloc(s->n_nics, sizeof(*s->nics));
		json_array_foreach(nics, j, nic) {
			s->nics[j] = xcalloc(1, sizeof(**s->nics));
			opsn__nic__init(s->nics[j]);
			s->nics[j]->bridge = xstrdup(json_string_value(
			    json_object_get(nic, "bridge")));
			s->nics[j]->mac = xstrdup(json_string_value(
			    json_object_get(nic, "mac")));
		}
		json_decref(nics);
		s->power = xstrdup((const char *)sqlite3_column_text(st, 8));
		s->reboot_seq = (uint64_t)sqlite3_column_int64(st, 9);
		s->adopt_only = sqlite3_column_int(st, 10) != 0;
		specs = xrealloc(specs, (n + 1) * sizeof(*specs));
		specs[n++] = s;
	}
	store_done(st);
	ds.vms = specs;
	ds.n_vms = n;
	migrate_desired(node_id, &ds);
	if (nodes_send(node_id, MSG_DESIRED_STATE, &ds.base) == 0)
		log_debug("vms: pushed generation %llu (%zu VMs) to %s",
		    (unsigned long long)ds.generation, n, nodes_name(node_id));
	for (i = 0; i < n; i++) {
		s = specs[i];
		images_ref_free(s->image);
		free(s->image);
		for (j = 0; j < s->n_nics; j++) {
			free(s->nics[j]->bridge);
			free(s->nics[j]->mac);
			free(s->nics[j]);
		}
		free(s->nics);
		free(s->id);
		free(s->name);
		free(s->tenant);
		free(s->power);
		free(s);
	}
	free(specs);
	free(ds.image_url);
	for (i = 0; i < ds.n_release; i++)
		free(ds.release[i]);
	free(ds.release);
	migrate_desired_free(&ds);
}

/*
 * Is the VM a hypervisor reports on placed on that node? A VM placed on
 * another node is refused and counted under kind, except the copies a
 * node was told to let go, which are skipped quietly: the one a
 * migration's source keeps until the VM runs on its target (and reports
 * deleted once the migration is done), and those an evacuation left on a
 * dead node. A VM placed nowhere (deleted since) is skipped quietly too.
 */
static int
vms_ours(int64_t node_id, const char *uuid, int deleted, const char *kind)
{
	sqlite3_stmt	*st;
	int64_t		 on = -1;
	int		 left = 0, done = 0;

	st = store_prepare(ctl->db, "SELECT v.node_id, EXISTS (SELECT 1 FROM "
	    "migrations m WHERE m.vm_id = v.id AND m.src_node = ?2 AND "
	    "m.state IN ('stopping', 'copying', 'starting')) OR EXISTS "
	    "(SELECT 1 FROM vm_moved WHERE vm_uuid = ?1 AND node_id = ?2), "
	    "?3 AND EXISTS (SELECT 1 FROM migrations m WHERE m.vm_id = v.id "
	    "AND m.src_node = ?2 AND m.state = 'done') FROM vms v WHERE "
	    "v.uuid = ?1");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, node_id);
	sqlite3_bind_int(st, 3, deleted);
	if (store_step(st) == SQLITE_ROW) {
		on = sqlite3_column_int64(st, 0);
		left = sqlite3_column_int(st, 1);
		done = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	if (on != -1 && on != node_id && !left) {
		if (done)
			log_info("vms: %s: the copy its migration left on %s "
			    "is gone", uuid, nodes_name(node_id));
		else
			reports_reject(node_id, kind, "VM %.64s is placed on "
			    "%s", uuid, nodes_name(on));
	}
	return (on == node_id);
}

/*
 * A node reports a VM deleted: a copy an evacuation left there is gone.
 * Taken whoever the VM is placed on now (or if it is deleted since).
 */
static void
vms_moved_gone(int64_t node_id, const char *uuid)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "DELETE FROM vm_moved WHERE vm_uuid = ? "
	    "AND node_id = ?");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, node_id);
	store_step(st);
	if (sqlite3_changes(ctl->db) > 0)
		log_info("vms: %s: the copy left on %s is gone", uuid,
		    nodes_name(node_id));
	sqlite3_finalize(st);
}

/* Record one VM's observed state; a VM deleted on purpose is forgotten. */
static void
vms_observe_one(int64_t node_id, const Opsn__VmStatus *vs)
{
	sqlite3_stmt	*st;
	int		 deleted = strcmp(vs->state, "deleted") == 0, ours;

	if (vs->held) {
		unknown_seen(node_id, vs);
		return;
	}
	/* A VM this node held, now deleted: the controller never placed it. */
	if (deleted)
		unknown_gone(node_id, vs->id);
	ours = vms_ours(node_id, vs->id, deleted, "vm_state");
	if (deleted)
		vms_moved_gone(node_id, vs->id);
	if (!ours)
		return;

	if (deleted) {
		st = store_prepare(ctl->db, "DELETE FROM vms WHERE uuid = ? AND "
		    "node_id = ? AND desired = 'deleted' RETURNING id");
		sqlite3_bind_text(st, 1, vs->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, node_id);
		if (store_step(st) == SQLITE_ROW) {
			sched_release(sqlite3_column_int64(st, 0));
			log_info("vms: %s is deleted on %s", vs->id,
			    nodes_name(node_id));
			vms_console_forget(vs->id);
		}
		sqlite3_finalize(st);
		return;
	}
	/* Only a change is written: repeated reports cost nothing. */
	st = store_prepare(ctl->db, "UPDATE vms SET obs_state = ?, obs_reason = "
	    "?, obs_since = ?, obs_error = ?, obs_generation = ?, obs_pid = ? "
	    "WHERE uuid = ? AND node_id = ? AND (obs_state, obs_reason, "
	    "coalesce(obs_since, 0), obs_error, obs_generation, obs_pid) IS NOT "
	    "(?1, ?2, ?3, ?4, ?5, ?6)");
	sqlite3_bind_text(st, 1, vs->state, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vs->reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, vs->since);
	sqlite3_bind_text(st, 4, vs->error, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)vs->generation);
	sqlite3_bind_int64(st, 6, vs->pid);
	sqlite3_bind_text(st, 7, vs->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, node_id);
	store_step(st);
	if (sqlite3_changes(ctl->db) > 0)
		log_info("vms: %s on %s is %s%s%s%s", vs->id,
		    nodes_name(node_id), vs->state, *vs->reason ? " (" : "",
		    vs->reason, *vs->reason ? ")" : "");
	sqlite3_finalize(st);
}

/* MSG_OBSERVED_STATE from a node. */
void
vms_observed(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__ObservedState	*m;
	sqlite3_stmt		*st;
	size_t			 i;
	int			 push = 0;

	if ((m = opsn__observed_state__unpack(NULL, len, p)) == NULL) {
		log_warnx("vms: %s sent an observed state that does not "
		    "decode", nodes_name(node_id));
		return;
	}
	if (store_begin(ctl->db) == -1)
		goto out;
	for (i = 0; i < m->n_vms; i++) {
		vms_observe_one(node_id, m->vms[i]);
		/* Only an agent in our epoch reports as a restore needs. */
		if (m->epoch == ctl->epoch && unknown_adopt(node_id, m->vms[i]))
			push = 1;
	}
	if (m->full)
		unknown_full(node_id, m);
	if (m->full) {
		/*
		 * A full report lists every VM the node has: one meant to be
		 * deleted that it no longer lists is gone.
		 */
		st = store_prepare(ctl->db, "SELECT uuid FROM vms WHERE "
		    "node_id = ? AND desired = 'deleted'");
		sqlite3_bind_int64(st, 1, node_id);
		while (store_step(st) == SQLITE_ROW) {
			const char *u = (const char *)sqlite3_column_text(st, 0);
			Opsn__VmStatus gone = OPSN__VM_STATUS__INIT;

			for (i = 0; i < m->n_vms; i++)
				if (strcmp(m->vms[i]->id, u) == 0)
					break;
			if (i < m->n_vms)
				continue;
			gone.id = (char *)u;
			gone.state = "deleted";
			vms_observe_one(node_id, &gone);
		}
		sqlite3_finalize(st);
	}
	st = store_prepare(ctl->db, "UPDATE nodes SET applied_generation = ? "
	    "WHERE id = ? AND applied_generation != ?1");
	sqlite3_bind_int64(st, 1, (int64_t)m->generation);
	sqlite3_bind_int64(st, 2, node_id);
	store_step(st);
	sqlite3_finalize(st);
	if (store_commit(ctl->db) == 0 && push)
		vms_push(node_id);
	/* Migrations wait for what the agents report. */
	migrate_observed(node_id, m);
out:
	opsn__observed_state__free_unpacked(m, NULL);
}

/* MSG_IMAGE_PROGRESS from a node: logged for the operator. */
void
vms_image_progress(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__ImageProgress	*m;

	if ((m = opsn__image_progress__unpack(NULL, len, p)) == NULL)
		return;
	if (*m->error != '\0')
		log_warnx("images: %s: fetching %s of %s failed: %s",
		    nodes_name(node_id), m->part, m->image, m->error);
	else if (m->done)
		log_info("images: %s has the %s of %s (%llu bytes)",
		    nodes_name(node_id), m->part, m->image,
		    (unsigned long long)m->total);
	else
		log_debug("images: %s: %s of %s: %llu/%llu",
		    nodes_name(node_id), m->part, m->image,
		    (unsigned long long)m->have, (unsigned long long)m->total);
	opsn__image_progress__free_unpacked(m, NULL);
}

/* MSG_CONSOLE_DATA from a node: keep the tail in memory. */
void
vms_console_data(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__ConsoleData	*m;
	struct console		*c;
	const uint8_t		*d;
	size_t			 n, drop;

	if ((m = opsn__console_data__unpack(NULL, len, p)) == NULL)
		return;
	/* Only the node that runs the VM may write its console. */
	if (!vms_ours(node_id, m->vm_id, 0, "console"))
		goto out;
	c = vms_console_find(m->vm_id, 1);
	if (m->reset || m->offset != c->c_start + c->c_len) {
		/* A new stream, or a gap: start again where this data does. */
		c->c_start = m->offset;
		c->c_len = 0;
	}
	d = m->data.data;
	n = m->data.len;
	if (n > CONSOLE_KEEP) {
		d += n - CONSOLE_KEEP;
		c->c_start += c->c_len + (n - CONSOLE_KEEP);
		c->c_len = 0;
		n = CONSOLE_KEEP;
	}
	if (c->c_len + n > CONSOLE_KEEP) {
		drop = c->c_len + n - CONSOLE_KEEP;
		memmove(c->c_buf, c->c_buf + drop, c->c_len - drop);
		c->c_len -= drop;
		c->c_start += drop;
	}
	/* An empty frame (a reset alone) carries no data pointer. */
	if (n > 0)
		memcpy(c->c_buf + c->c_len, d, n);
	c->c_len += n;
out:
	opsn__console_data__free_unpacked(m, NULL);
}
