/*
 * Cold migrations, for drains and rebalances: one VM at a time per
 * source node.
 *
 *   stopping	the source is told to stop the VM (its desired power is
 *		"stopped" there whatever the VM's own);
 *   copying	once the source reports it off, the source is told to serve
 *		the disk overlay to the target and the target to fetch it:
 *		agent to agent over mutual TLS, with their node certificates
 *		and a token only these two were given; streamed, resumable,
 *		checked against the source's SHA-256;
 *   starting	the target has the disk: the VM becomes the target's (it
 *		starts there with its own desired power) while the source
 *		keeps its stopped copy;
 *   done	the target runs it: the source deletes its copy.
 *
 * At every step the VM runs in one place at most and has a whole disk in
 * one place at least. The scheduler claims the VM on both nodes from the
 * start to the end. Each step is a transaction that bumps the generations
 * of the nodes concerned and pushes their whole desired state, so a lost
 * message or a restarted agent or controller takes up where it was.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "place.h"
#include "vms.h"

#define MIGRATE_TICK_MS		1000
/*
 * A target marked unreachable this long before the switch ends the
 * migration: the VM goes back to running on its source rather than wait
 * parked.
 */
#define MIGRATE_LOST_S		60

/* Fetch progress reported by targets (memory only). */
struct migrate_progress {
	TAILQ_ENTRY(migrate_progress) p_entry;
	int64_t		 p_id;		/* migration */
	uint64_t	 p_have, p_total;
	char		*p_error;	/* the last attempt's, or NULL */
};
static TAILQ_HEAD(, migrate_progress) migrate_progress =
    TAILQ_HEAD_INITIALIZER(migrate_progress);

static uv_timer_t	 migrate_timer;
static int		 migrate_ticking;

static struct migrate_progress *
migrate_progress_find(int64_t id, int create)
{
	struct migrate_progress	*p;

	TAILQ_FOREACH(p, &migrate_progress, p_entry)
		if (p->p_id == id)
			return (p);
	if (!create)
		return (NULL);
	p = xcalloc(1, sizeof(*p));
	p->p_id = id;
	TAILQ_INSERT_TAIL(&migrate_progress, p, p_entry);
	return (p);
}

static void
migrate_progress_drop(int64_t id)
{
	struct migrate_progress	*p;

	if ((p = migrate_progress_find(id, 0)) != NULL) {
		TAILQ_REMOVE(&migrate_progress, p, p_entry);
		free(p->p_error);
		free(p);
	}
}

/* The VM's name and size, for logs and reports (caller frees). */
static char *
migrate_vm_text(int64_t vm_id)
{
	sqlite3_stmt	*st;
	char		*s = NULL;

	st = store_prepare(ctl->db, "SELECT name, vcpus, memory_mib, "
	    "disk_bytes FROM vms WHERE id = ?");
	sqlite3_bind_int64(st, 1, vm_id);
	if (store_step(st) == SQLITE_ROW)
		xasprintf(&s, "VM %s (%lld vCPUs, %lld MiB, %lld MiB of disk)",
		    sqlite3_column_text(st, 0), (long long)
		    sqlite3_column_int64(st, 1), (long long)
		    sqlite3_column_int64(st, 2), (long long)
		    (sqlite3_column_int64(st, 3) >> 20));
	else
		xasprintf(&s, "VM %lld", (long long)vm_id);
	sqlite3_finalize(st);
	return (s);
}

/* Is a migration of this VM under way (not queued)? */
int
migrate_active(int64_t vm_id)
{
	sqlite3_stmt	*st;
	int		 rc;

	st = store_prepare(ctl->db, "SELECT 1 FROM migrations WHERE vm_id = ? "
	    "AND state IN ('stopping', 'copying', 'starting')");
	sqlite3_bind_int64(st, 1, vm_id);
	rc = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return (rc);
}

/*
 * A migration as a VM shows it, from five columns from col on: its id,
 * state, reason, source and target names (a NULL id: none, NULL back).
 */
json_t *
migrate_json_cols(sqlite3_stmt *st, int col)
{
	struct migrate_progress	*p;
	json_t			*o;
	const char		*state;

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return (NULL);
	state = (const char *)sqlite3_column_text(st, col + 1);
	o = json_pack("{s:s,s:s,s:s,s:s}", "state", state, "reason",
	    sqlite3_column_text(st, col + 2), "from",
	    sqlite3_column_text(st, col + 3), "to",
	    sqlite3_column_text(st, col + 4));
	p = migrate_progress_find(sqlite3_column_int64(st, col), 0);
	if (strcmp(state, "starting") == 0)
		json_object_set_new(o, "progress", json_integer(100));
	else if (p != NULL && p->p_total > 0)
		json_object_set_new(o, "progress", json_integer(
		    (json_int_t)(p->p_have * 100 / p->p_total)));
	else
		json_object_set_new(o, "progress", json_integer(0));
	if (p != NULL && p->p_error != NULL)
		json_object_set_new(o, "last_error", json_string(p->p_error));
	return (o);
}

/* A VM's migration for its JSON, or null: "migrating 43 % to hv-b". */
json_t *
migrate_vm_json(int64_t vm_id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_stmt(ctl->db, "SELECT " MIGRATE_COLS " FROM vms v "
	    MIGRATE_FROM "WHERE v.id = ?");
	sqlite3_bind_int64(st, 1, vm_id);
	if (store_step(st) == SQLITE_ROW)
		o = migrate_json_cols(st, 0);
	store_done(st);
	return (o != NULL ? o : json_null());
}

/* host:port where node serves disks, or NULL (caller frees). */
static char *
migrate_disk_server(int64_t node_id)
{
	sqlite3_stmt	*st;
	const char	*ds, *addr, *colon;
	char		*out = NULL;

	st = store_prepare(ctl->db, "SELECT s.disk_server, n.address FROM "
	    "nodes n JOIN node_sched s ON s.node_id = n.id WHERE n.id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW) {
		ds = (const char *)sqlite3_column_text(st, 0);
		addr = (const char *)sqlite3_column_text(st, 1);
		if (*ds == ':' && (colon = strrchr(addr, ':')) != NULL) {
			/* No host: where the agent connects from. */
			xasprintf(&out, "%.*s%s", (int)(colon - addr), addr,
			    ds);
		} else if (*ds != '\0')
			out = xstrdup(ds);
	}
	sqlite3_finalize(st);
	return (out);
}

/* Add a node's transfers and moved VMs to its desired state. */
void
migrate_desired(int64_t node_id, Opsn__DesiredState *ds)
{
	sqlite3_stmt	*st;
	Opsn__DiskServe	*sv;
	Opsn__DiskFetch	*fe;

	st = store_prepare(ctl->db, "SELECT v.uuid, d.name, m.token FROM "
	    "migrations m JOIN vms v ON v.id = m.vm_id JOIN nodes d ON d.id = "
	    "m.dst_node WHERE m.src_node = ? AND m.state = 'copying'");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		sv = xcalloc(1, sizeof(*sv));
		opsn__disk_serve__init(sv);
		sv->vm_id = xstrdup((const char *)sqlite3_column_text(st, 0));
		sv->peer = xstrdup((const char *)sqlite3_column_text(st, 1));
		sv->token = xstrdup((const char *)sqlite3_column_text(st, 2));
		ds->serve = xrealloc(ds->serve, (ds->n_serve + 1) *
		    sizeof(*ds->serve));
		ds->serve[ds->n_serve++] = sv;
	}
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "SELECT v.uuid, s.name, m.token, "
	    "v.image_id, m.src_node FROM migrations m JOIN vms v ON v.id = "
	    "m.vm_id JOIN nodes s ON s.id = m.src_node WHERE m.dst_node = ? "
	    "AND m.state = 'copying'");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		fe = xcalloc(1, sizeof(*fe));
		opsn__disk_fetch__init(fe);
		fe->vm_id = xstrdup((const char *)sqlite3_column_text(st, 0));
		fe->source = xstrdup((const char *)sqlite3_column_text(st, 1));
		fe->token = xstrdup((const char *)sqlite3_column_text(st, 2));
		if ((fe->address = migrate_disk_server(sqlite3_column_int64(st,
		    4))) == NULL)
			fe->address = xstrdup("");
		fe->image = xcalloc(1, sizeof(*fe->image));
		images_ref(sqlite3_column_int64(st, 3), fe->image);
		ds->fetch = xrealloc(ds->fetch, (ds->n_fetch + 1) *
		    sizeof(*ds->fetch));
		ds->fetch[ds->n_fetch++] = fe;
	}
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "SELECT vm_uuid FROM vm_moved WHERE "
	    "node_id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		ds->moved = xrealloc(ds->moved, (ds->n_moved + 1) *
		    sizeof(*ds->moved));
		ds->moved[ds->n_moved++] = xstrdup((const char *)
		    sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
}

/* Free what migrate_desired added. */
void
migrate_desired_free(Opsn__DesiredState *ds)
{
	size_t	 i;

	for (i = 0; i < ds->n_serve; i++) {
		free(ds->serve[i]->vm_id);
		free(ds->serve[i]->peer);
		free(ds->serve[i]->token);
		free(ds->serve[i]);
	}
	for (i = 0; i < ds->n_fetch; i++) {
		free(ds->fetch[i]->vm_id);
		free(ds->fetch[i]->source);
		free(ds->fetch[i]->token);
		free(ds->fetch[i]->address);
		images_ref_free(ds->fetch[i]->image);
		free(ds->fetch[i]->image);
		free(ds->fetch[i]);
	}
	for (i = 0; i < ds->n_moved; i++)
		free(ds->moved[i]);
	free(ds->serve);
	free(ds->fetch);
	free(ds->moved);
	ds->serve = NULL;
	ds->fetch = NULL;
	ds->moved = NULL;
	ds->n_serve = ds->n_fetch = ds->n_moved = 0;
}

/* ---- the steps ---- */

struct mig {
	int64_t		 id, vm, src, dst, wait_gen;
	char		 reason[16];
	char		 state[16];
};

static void
migrate_row(sqlite3_stmt *st, struct mig *m)
{
	m->id = sqlite3_column_int64(st, 0);
	m->vm = sqlite3_column_int64(st, 1);
	m->src = sqlite3_column_int64(st, 2);
	m->dst = sqlite3_column_int64(st, 3);
	m->wait_gen = sqlite3_column_int64(st, 4);
	strlcpy(m->reason, (const char *)sqlite3_column_text(st, 5),
	    sizeof(m->reason));
	strlcpy(m->state, (const char *)sqlite3_column_text(st, 6),
	    sizeof(m->state));
}

#define MIG_COLS "m.id, m.vm_id, m.src_node, m.dst_node, m.wait_gen, " \
	"m.reason, m.state"

static void
migrate_set(int64_t id, const char *state, int64_t wait_gen, const char *error)
{
	sqlite3_stmt	*st;
	int		 end = strcmp(state, "done") == 0 ||
			    strcmp(state, "failed") == 0 ||
			    strcmp(state, "cancelled") == 0;

	st = store_prepare(ctl->db, "UPDATE migrations SET state = ?, "
	    "wait_gen = ?, error = coalesce(?, error), updated_at = ?, "
	    "finished_at = CASE WHEN ?5 THEN ?4 END, token = CASE WHEN ?5 "
	    "THEN '' ELSE token END WHERE id = ?6");
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, wait_gen);
	if (error != NULL)
		sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, util_now());
	sqlite3_bind_int(st, 5, end);
	sqlite3_bind_int64(st, 6, id);
	store_step(st);
	sqlite3_finalize(st);
}

static void
migrate_audit(const char *action, int64_t vm_id, json_t *sum)
{
	sqlite3_stmt	*st;
	char		 obj[64];

	st = store_prepare(ctl->db, "SELECT uuid FROM vms WHERE id = ?");
	sqlite3_bind_int64(st, 1, vm_id);
	snprintf(obj, sizeof(obj), "vm/%s", store_step(st) == SQLITE_ROW ?
	    (const char *)sqlite3_column_text(st, 0) : "?");
	sqlite3_finalize(st);
	audit_record(NULL, action, obj, sum);
}

/* Stop a drain with a report; the node stays out of placement. */
static void
migrate_drain_stop(int64_t node_id, const char *report)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "UPDATE node_sched SET admin = "
	    "'cordoned', admin_since = ?, drain_report = ? WHERE node_id = ? "
	    "AND admin = 'draining'");
	sqlite3_bind_int64(st, 1, util_now());
	sqlite3_bind_text(st, 2, report, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, node_id);
	store_step(st);
	sqlite3_finalize(st);
	log_warnx("migrate: the drain of %s stopped: %s", nodes_name(node_id),
	    report);
}

/*
 * Start moving a VM (queued: the rebalance row to start, or 0 for a
 * drain); -1 with why when the target does not take it.
 */
static int
migrate_start(int64_t vm_id, int64_t src, int64_t dst, const char *reason,
    int64_t queued, char **cause)
{
	sqlite3_stmt	*st;
	char		*token;
	int64_t		 gen, now = util_now();
	int		 rc;

	if (place_migrate_begin(sched_engine(), vm_id, dst, 1, cause) == -1)
		return (-1);
	if (store_begin(ctl->db) == -1) {
		place_migrate_end(sched_engine(), vm_id, 0);
		xasprintf(cause, "the database is busy");
		return (-1);
	}
	token = secret_new();
	gen = vms_bump(src);
	if (queued > 0) {
		st = store_prepare(ctl->db, "UPDATE migrations SET state = "
		    "'stopping', token = ?, wait_gen = ?, updated_at = ? "
		    "WHERE id = ?");
		sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, gen);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, queued);
	} else {
		st = store_prepare(ctl->db, "INSERT INTO migrations (vm_id, "
		    "reason, src_node, dst_node, state, token, wait_gen, "
		    "created_at, updated_at) VALUES (?, ?, ?, ?, 'stopping', "
		    "?, ?, ?, ?7)");
		sqlite3_bind_int64(st, 1, vm_id);
		sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, src);
		sqlite3_bind_int64(st, 4, dst);
		sqlite3_bind_text(st, 5, token, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, gen);
		sqlite3_bind_int64(st, 7, now);
	}
	rc = store_step(st);
	free(token);	/* bound SQLITE_STATIC: only after the step */
	if (rc != SQLITE_DONE) {
		sqlite3_finalize(st);
		store_rollback(ctl->db);
		place_migrate_end(sched_engine(), vm_id, 0);
		xasprintf(cause, "storing the migration: %s",
		    sqlite3_errmsg(ctl->db));
		return (-1);
	}
	sqlite3_finalize(st);
	migrate_audit("vm.migrate", vm_id, json_pack("{s:s,s:s,s:s}", "from",
	    nodes_name(src), "to", nodes_name(dst), "reason", reason));
	if (store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		place_migrate_end(sched_engine(), vm_id, 0);
		xasprintf(cause, "the database could not commit");
		return (-1);
	}
	log_info("migrate: VM %lld from %s to %s (%s): stopping it",
	    (long long)vm_id, nodes_name(src), nodes_name(dst), reason);
	vms_push(src);
	return (0);
}

/* The source stopped the VM: the target fetches its disk. */
static void
migrate_copy(const struct mig *m)
{
	if (store_begin(ctl->db) == -1)
		return;
	vms_bump(m->src);
	migrate_set(m->id, "copying", vms_bump(m->dst), NULL);
	if (store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		return;
	}
	migrate_progress_find(m->id, 1);
	log_info("migrate: VM %lld: %s fetches its disk from %s",
	    (long long)m->vm, nodes_name(m->dst), nodes_name(m->src));
	vms_push(m->src);
	vms_push(m->dst);
}

/* The target has the disk: the VM is the target's now. */
static void
migrate_switch(const struct mig *m)
{
	sqlite3_stmt	*st;
	int64_t		 gen;

	if (store_begin(ctl->db) == -1)
		return;
	gen = vms_bump(m->dst);
	st = store_prepare(ctl->db, "UPDATE vms SET node_id = ?, generation = "
	    "?, obs_state = 'pending', obs_reason = '', obs_error = '', "
	    "obs_pid = 0 WHERE id = ?");
	sqlite3_bind_int64(st, 1, m->dst);
	sqlite3_bind_int64(st, 2, gen);
	sqlite3_bind_int64(st, 3, m->vm);
	store_step(st);
	sqlite3_finalize(st);
	vms_bump(m->src);
	migrate_set(m->id, "starting", gen, NULL);
	if (store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		return;
	}
	log_info("migrate: VM %lld: disk copied; starting it on %s",
	    (long long)m->vm, nodes_name(m->dst));
	vms_push(m->dst);
	vms_push(m->src);
}

/* The target runs the VM: the source deletes its copy. */
static void
migrate_done(const struct mig *m)
{
	if (store_begin(ctl->db) == -1)
		return;
	vms_bump(m->src);
	migrate_set(m->id, "done", m->wait_gen, NULL);
	migrate_audit("vm.migrated", m->vm, json_pack("{s:s,s:s}", "from",
	    nodes_name(m->src), "to", nodes_name(m->dst)));
	if (store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		return;
	}
	place_migrate_end(sched_engine(), m->vm, 1);
	migrate_progress_drop(m->id);
	log_info("migrate: VM %lld now runs on %s; %s deletes its copy",
	    (long long)m->vm, nodes_name(m->dst), nodes_name(m->src));
	vms_push(m->src);
}

/*
 * Give up before the switch: the VM stays on its source (and runs there
 * again if it should); the drain it was part of stops.
 */
static void
migrate_fail(const struct mig *m, const char *why)
{
	char	*vm, *report;

	if (store_begin(ctl->db) == -1)
		return;
	vms_bump(m->src);
	vms_bump(m->dst);
	migrate_set(m->id, "failed", 0, why);
	vm = migrate_vm_text(m->vm);
	xasprintf(&report, "moving %s to %s failed: %s", vm,
	    nodes_name(m->dst), why);
	if (strcmp(m->reason, "drain") == 0)
		migrate_drain_stop(m->src, report);
	migrate_audit("vm.migrate_failed", m->vm, json_pack("{s:s,s:s}", "to",
	    nodes_name(m->dst), "error", why));
	if (store_commit(ctl->db) == -1)
		store_rollback(ctl->db);
	else {
		place_migrate_end(sched_engine(), m->vm, 0);
		migrate_progress_drop(m->id);
		log_warnx("migrate: %s", report);
		vms_push(m->src);
		vms_push(m->dst);
	}
	free(vm);
	free(report);
}

/* Has node applied generation gen? */
static int
migrate_applied(int64_t node_id, int64_t gen)
{
	sqlite3_stmt	*st;
	int		 rc;

	st = store_prepare(ctl->db, "SELECT applied_generation >= ? FROM nodes "
	    "WHERE id = ?");
	sqlite3_bind_int64(st, 1, gen);
	sqlite3_bind_int64(st, 2, node_id);
	rc = store_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return (rc && nodes_is_ready(node_id));
}

/* Collect the migrations in a state (at most max). */
static size_t
migrate_list(const char *state, struct mig *out, size_t max)
{
	sqlite3_stmt	*st;
	size_t		 n = 0;

	st = store_prepare(ctl->db, "SELECT " MIG_COLS " FROM migrations m "
	    "WHERE m.state = ? ORDER BY m.id");
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	while (n < max && store_step(st) == SQLITE_ROW)
		migrate_row(st, &out[n++]);
	sqlite3_finalize(st);
	return (n);
}

/* The VM's observed state, "" if none. */
static void
migrate_vm_obs(int64_t vm_id, char *state, size_t len, char *desired,
    size_t dlen)
{
	sqlite3_stmt	*st;

	*state = *desired = '\0';
	st = store_prepare(ctl->db, "SELECT obs_state, desired FROM vms WHERE "
	    "id = ?");
	sqlite3_bind_int64(st, 1, vm_id);
	if (store_step(st) == SQLITE_ROW) {
		strlcpy(state, (const char *)sqlite3_column_text(st, 0), len);
		strlcpy(desired, (const char *)sqlite3_column_text(st, 1),
		    dlen);
	}
	sqlite3_finalize(st);
}

/* Move the next VM off a draining node, or end the drain. */
static void
migrate_drain_next(int64_t node_id)
{
	sqlite3_stmt	*st;
	int64_t		 vm = 0, to;
	char		*why = NULL, *text, *report;
	int		 busy, left;

	st = store_prepare(ctl->db, "SELECT (SELECT count(*) FROM migrations "
	    "WHERE src_node = ?1 AND state IN ('stopping', 'copying', "
	    "'starting')), (SELECT count(*) FROM vms WHERE node_id = ?1)");
	sqlite3_bind_int64(st, 1, node_id);
	store_step(st);
	busy = sqlite3_column_int(st, 0);
	left = sqlite3_column_int(st, 1);
	sqlite3_finalize(st);
	if (busy > 0)
		return;
	if (left == 0) {
		if (store_begin(ctl->db) == -1)
			return;
		st = store_prepare(ctl->db, "UPDATE node_sched SET admin = "
		    "'cordoned', admin_since = ?, drain_report = '' WHERE "
		    "node_id = ?");
		sqlite3_bind_int64(st, 1, util_now());
		sqlite3_bind_int64(st, 2, node_id);
		store_step(st);
		sqlite3_finalize(st);
		audit_record(NULL, "node.drained", "node", json_pack("{s:s}",
		    "node", nodes_name(node_id)));
		if (store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			return;
		}
		sched_node_sync(node_id);
		log_notice("migrate: %s is drained: empty and cordoned",
		    nodes_name(node_id));
		return;
	}
	/* The largest first; VMs being deleted go away by themselves. */
	st = store_prepare(ctl->db, "SELECT id FROM vms WHERE node_id = ? AND "
	    "desired != 'deleted' ORDER BY memory_mib DESC, vcpus DESC, id "
	    "LIMIT 1");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		vm = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (vm == 0)
		return;
	if ((to = place_decide_vm(sched_engine(), vm, sched_default_policy(),
	    &why)) == -1 || migrate_start(vm, node_id, to, "drain", 0,
	    &why) == -1) {
		text = migrate_vm_text(vm);
		xasprintf(&report, "%s fits on no other node: %s", text, why);
		if (store_begin(ctl->db) == 0) {
			migrate_drain_stop(node_id, report);
			audit_record(NULL, "node.drain_stopped", "node",
			    json_pack("{s:s,s:s}", "node", nodes_name(node_id),
			    "report", report));
			if (store_commit(ctl->db) == -1)
				store_rollback(ctl->db);
			else
				sched_node_sync(node_id);
		}
		free(text);
		free(report);
	}
	free(why);
}

/* Start the next queued rebalance move when none is under way. */
static void
migrate_rebalance_next(void)
{
	sqlite3_stmt	*st;
	struct mig	 m;
	int64_t		 at;
	char		*why = NULL;
	int		 found = 0;

	st = store_prepare(ctl->db, "SELECT count(*) FROM migrations WHERE "
	    "reason = 'rebalance' AND state IN ('stopping', 'copying', "
	    "'starting')");
	store_step(st);
	found = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (found > 0)
		return;
	while (migrate_list("queued", &m, 1) == 1) {
		at = place_vm_node(sched_engine(), m.vm, NULL);
		if (at == m.src && !migrate_active(m.vm) &&
		    migrate_start(m.vm, m.src, m.dst, "rebalance", m.id,
		    &why) == 0)
			return;
		/* The cluster changed since the plan: skip this move. */
		if (store_begin(ctl->db) == -1)
			return;
		migrate_set(m.id, "cancelled", 0, why ? why :
		    "the VM is no longer on its source");
		if (store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			return;
		}
		free(why);
		why = NULL;
	}
}

/* End the migrations whose target went silent before the switch. */
static void
migrate_lost_targets(void)
{
	struct mig	 m[64];
	sqlite3_stmt	*st;
	size_t		 i, n = 0;
	char		*why;

	/* Marked unreachable (silent past the timeout) that long ago. */
	st = store_prepare(ctl->db, "SELECT " MIG_COLS " FROM migrations m "
	    "JOIN nodes d ON d.id = m.dst_node WHERE m.state IN ('stopping', "
	    "'copying') AND d.state = 'unreachable' AND d.state_since < ?");
	sqlite3_bind_int64(st, 1, util_now() - MIGRATE_LOST_S);
	while (n < nitems(m) && store_step(st) == SQLITE_ROW)
		migrate_row(st, &m[n++]);
	sqlite3_finalize(st);
	for (i = 0; i < n; i++) {
		if (nodes_is_ready(m[i].dst))
			continue;
		xasprintf(&why, "node %s has been unreachable for over %d s",
		    nodes_name(m[i].dst), MIGRATE_LOST_S);
		migrate_fail(&m[i], why);
		free(why);
	}
}

/* Drive every migration and drain as far as the agents' reports allow. */
void
migrate_tick(void)
{
	struct mig	 m[64];
	sqlite3_stmt	*st;
	int64_t		*nodes = NULL;
	size_t		 i, n, nn = 0;
	char		 obs[32], desired[16];

	if (migrate_ticking || sched_engine() == NULL)
		return;
	migrate_ticking = 1;
	migrate_lost_targets();
	n = migrate_list("stopping", m, nitems(m));
	for (i = 0; i < n; i++) {
		migrate_vm_obs(m[i].vm, obs, sizeof(obs), desired,
		    sizeof(desired));
		if (migrate_applied(m[i].src, m[i].wait_gen) &&
		    strcmp(obs, "shutoff") == 0)
			migrate_copy(&m[i]);
	}
	n = migrate_list("starting", m, nitems(m));
	for (i = 0; i < n; i++) {
		migrate_vm_obs(m[i].vm, obs, sizeof(obs), desired,
		    sizeof(desired));
		if (migrate_applied(m[i].dst, m[i].wait_gen) &&
		    strcmp(obs, strcmp(desired, "running") == 0 ? "running" :
		    "shutoff") == 0)
			migrate_done(&m[i]);
	}
	st = store_prepare(ctl->db, "SELECT node_id FROM node_sched WHERE "
	    "admin = 'draining'");
	while (store_step(st) == SQLITE_ROW) {
		nodes = xrealloc(nodes, (nn + 1) * sizeof(*nodes));
		nodes[nn++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	for (i = 0; i < nn; i++)
		migrate_drain_next(nodes[i]);
	free(nodes);
	migrate_rebalance_next();
	migrate_ticking = 0;
}

static void
migrate_timer_cb(uv_timer_t *t)
{
	migrate_tick();
}

/* ---- agent messages ---- */

/* After an observed state: forget copies left behind, drive migrations. */
void
migrate_observed(int64_t node_id, const Opsn__ObservedState *os)
{
	sqlite3_stmt	*st, *del;
	const char	*u;
	size_t		 i;

	if (os->full) {
		/*
		 * A moved VM a full report does not list is gone there, once
		 * the node has applied a desired state that told it so: until
		 * then (a node back from the dead reports what it found before
		 * it hears from the controller) its copy may still be on disk.
		 */
		st = store_prepare(ctl->db, "SELECT vm_uuid FROM vm_moved "
		    "WHERE node_id = ?1 AND ?2 >= (SELECT generation FROM "
		    "nodes WHERE id = ?1)");
		sqlite3_bind_int64(st, 1, node_id);
		sqlite3_bind_int64(st, 2, (int64_t)os->generation);
		while (store_step(st) == SQLITE_ROW) {
			u = (const char *)sqlite3_column_text(st, 0);
			for (i = 0; i < os->n_vms; i++)
				if (strcmp(os->vms[i]->id, u) == 0)
					break;
			if (i < os->n_vms)
				continue;
			del = store_prepare(ctl->db, "DELETE FROM vm_moved "
			    "WHERE vm_uuid = ? AND node_id = ?");
			sqlite3_bind_text(del, 1, u, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(del, 2, node_id);
			store_step(del);
			sqlite3_finalize(del);
		}
		sqlite3_finalize(st);
	}
	migrate_tick();
}

/* The open migration of a VM to node dst, by the VM's uuid. */
static int
migrate_find_fetch(int64_t dst, const char *uuid, struct mig *m)
{
	sqlite3_stmt	*st;
	int		 rc;

	st = store_prepare(ctl->db, "SELECT " MIG_COLS " FROM migrations m "
	    "JOIN vms v ON v.id = m.vm_id WHERE v.uuid = ? AND m.dst_node = ? "
	    "AND m.state = 'copying'");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, dst);
	if ((rc = store_step(st) == SQLITE_ROW))
		migrate_row(st, m);
	sqlite3_finalize(st);
	return (rc ? 0 : -1);
}

static void
migrate_progress_msg(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__MigrateProgress	*mp;
	struct migrate_progress	*pr;
	struct mig		 m;

	if ((mp = opsn__migrate_progress__unpack(NULL, len, p)) == NULL)
		return;
	if (migrate_find_fetch(node_id, mp->vm_id, &m) == -1)
		goto out;	/* a late report of an ended migration */
	pr = migrate_progress_find(m.id, 1);
	pr->p_have = mp->have;
	pr->p_total = mp->total;
	if (*mp->error != '\0') {
		free(pr->p_error);
		pr->p_error = xstrdup(mp->error);
		log_warnx("migrate: VM %s: %s: %s", mp->vm_id,
		    nodes_name(node_id), mp->error);
	}
	if (mp->failed)
		migrate_fail(&m,
		    *mp->error ? mp->error : "the disk copy failed");
	else if (mp->done)
		migrate_switch(&m);
out:
	opsn__migrate_progress__free_unpacked(mp, NULL);
}

static void
migrate_disk_server_msg(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__DiskServer	*m;
	sqlite3_stmt		*st;
	char			*addr;

	if ((m = opsn__disk_server__unpack(NULL, len, p)) == NULL)
		return;
	if (m->port == 0 || m->port > 65535 || strlen(m->host) > 255 ||
	    strpbrk(m->host, " \t\r\n") != NULL) {
		log_warnx("migrate: %s announced a bad disk server",
		    nodes_name(node_id));
		goto out;
	}
	if (*m->host == '\0')
		xasprintf(&addr, ":%u", m->port);
	else
		xasprintf(&addr, strchr(m->host, ':') ? "[%s]:%u" : "%s:%u",
		    m->host, m->port);
	st = store_prepare(ctl->db, "INSERT INTO node_sched (node_id, "
	    "disk_server) VALUES (?1, ?2) ON CONFLICT (node_id) DO UPDATE SET "
	    "disk_server = ?2 WHERE disk_server != ?2");
	sqlite3_bind_int64(st, 1, node_id);
	sqlite3_bind_text(st, 2, addr, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	free(addr);
out:
	opsn__disk_server__free_unpacked(m, NULL);
}

/* MSG_DISK_SERVER and MSG_MIGRATE_PROGRESS from a node. */
void
migrate_agent_msg(int64_t node_id, uint16_t type, const uint8_t *p,
    size_t len)
{
	if (type == MSG_DISK_SERVER)
		migrate_disk_server_msg(node_id, p, len);
	else if (type == MSG_MIGRATE_PROGRESS)
		migrate_progress_msg(node_id, p, len);
}

/* ---- evacuation ---- */

/*
 * A node is fenced (off for good): end the migrations that touch it, in
 * the caller's transaction. A VM copied to it comes back to its source,
 * whose copy is whole; one copied from it has landed; one that had not
 * left it is evacuated with the node's other VMs.
 */
void
migrate_node_fenced(int64_t node_id)
{
	struct mig	*m = NULL;
	sqlite3_stmt	*st;
	size_t		 i, n = 0;

	st = store_prepare(ctl->db, "SELECT " MIG_COLS " FROM migrations m "
	    "WHERE (m.src_node = ?1 OR m.dst_node = ?1) AND m.state IN "
	    "('queued', 'stopping', 'copying', 'starting')");
	sqlite3_bind_int64(st, 1, node_id);
	while (store_step(st) == SQLITE_ROW) {
		m = xrealloc(m, (n + 1) * sizeof(*m));
		migrate_row(st, &m[n++]);
	}
	sqlite3_finalize(st);
	for (i = 0; i < n; i++) {
		vms_bump(m[i].src);
		vms_bump(m[i].dst);
		if (strcmp(m[i].state, "queued") == 0) {
			migrate_set(m[i].id, "cancelled", 0,
			    "a node was fenced");
			continue;
		}
		if (strcmp(m[i].state, "starting") == 0 &&
		    m[i].src == node_id) {
			/* Landed: only the source's stopped copy is lost. */
			migrate_set(m[i].id, "done", m[i].wait_gen, NULL);
			place_migrate_end(sched_engine(), m[i].vm, 1);
		} else {
			if (strcmp(m[i].state, "starting") == 0) {
				/* The source's copy is whole: back there. */
				st = store_prepare(ctl->db, "UPDATE vms SET "
				    "node_id = ?, generation = ? WHERE id = ?");
				sqlite3_bind_int64(st, 1, m[i].src);
				sqlite3_bind_int64(st, 2, vms_bump(m[i].src));
				sqlite3_bind_int64(st, 3, m[i].vm);
				store_step(st);
				sqlite3_finalize(st);
			}
			migrate_set(m[i].id, "failed", 0, "a node was fenced");
			place_migrate_end(sched_engine(), m[i].vm, 0);
		}
		migrate_progress_drop(m[i].id);
	}
	free(m);
}

/* ---- the module's hooks ---- */

int
migrate_init(struct ctl *c, char **cause)
{
	uv_timer_init(c->loop, &migrate_timer);
	uv_timer_start(&migrate_timer, migrate_timer_cb, MIGRATE_TICK_MS,
	    MIGRATE_TICK_MS);
	return (0);
}

void
migrate_stop(void)
{
	struct migrate_progress	*p;

	uv_timer_stop(&migrate_timer);
	uv_close((uv_handle_t *)&migrate_timer, NULL);
	while ((p = TAILQ_FIRST(&migrate_progress)) != NULL)
		migrate_progress_drop(p->p_id);
}
