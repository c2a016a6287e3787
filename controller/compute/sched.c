/*
 * The scheduler: the placement engine (place.c) kept in step with the
 * store. It is built from the database at start-up; after that every
 * claim and release is made here by the code that records it, on the loop
 * thread, between its store_begin and its commit: a decision and its
 * claim can never be separated by another request, so concurrent creates
 * never overcommit a node, and a decision never scans the VMs.
 *
 * A hypervisor's state for placement combines the operator's (cordoned,
 * draining, fenced: node_sched.admin) with its connection (ready when its
 * agent is connected and heartbeating, unreachable otherwise).
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "place.h"
#include "vms.h"

static struct place		*sched_p;
static enum place_policy	 sched_policy;

/* The engine (compute module only). */
struct place *
sched_engine(void)
{
	return (sched_p);
}

/* The cluster's default policy ([scheduler] policy). */
enum place_policy
sched_default_policy(void)
{
	return (sched_policy);
}

/* The state placement sees for a node. */
static enum place_state
sched_state(const char *admin, int revoked, int ready)
{
	if (revoked)
		return (PLACE_RETIRED);
	if (strcmp(admin, "fenced") == 0)
		return (PLACE_FENCED);
	if (!ready)
		return (PLACE_UNREACHABLE);
	if (strcmp(admin, "draining") == 0)
		return (PLACE_DRAINING);
	if (strcmp(admin, "cordoned") == 0)
		return (PLACE_CORDONED);
	return (PLACE_READY);
}

#define SCHED_NODE_SQL "SELECT n.id, n.name, n.cpus, n.memory_bytes, " \
	"n.disk_bytes, n.revoked, coalesce(s.admin, 'none'), " \
	"coalesce(s.cpu_ratio, 4000), coalesce(s.memory_ratio, 1000), " \
	"coalesce(s.disk_ratio, 1000), coalesce(s.reserve_cpus, 0), " \
	"coalesce(s.reserve_memory_mib, 0), coalesce(s.tags, '') FROM nodes " \
	"n LEFT JOIN node_sched s ON s.node_id = n.id WHERE ',' || n.roles " \
	"|| ',' LIKE '%,hypervisor,%' "

/* Load one row of SCHED_NODE_SQL into the engine. */
static void
sched_node_row(sqlite3_stmt *st)
{
	struct place_node_conf	 c;
	int64_t			 id = sqlite3_column_int64(st, 0);
	const char		*name = (const char *)sqlite3_column_text(st, 1);
	char			*cause = NULL;

	memset(&c, 0, sizeof(c));
	c.cpus = sqlite3_column_int64(st, 2);
	c.memory = sqlite3_column_int64(st, 3) / 1048576;
	c.disk = sqlite3_column_int64(st, 4);
	c.cpu_ratio = sqlite3_column_int(st, 7);
	c.mem_ratio = sqlite3_column_int(st, 8);
	c.disk_ratio = sqlite3_column_int(st, 9);
	/* A reserve over what the node reports leaves it nothing. */
	c.reserve_cpus = sqlite3_column_int64(st, 10);
	if (c.reserve_cpus > c.cpus)
		c.reserve_cpus = c.cpus;
	c.reserve_memory = sqlite3_column_int64(st, 11);
	if (c.reserve_memory > c.memory)
		c.reserve_memory = c.memory;
	c.tags = (const char *)sqlite3_column_text(st, 12);
	if (place_node_set(sched_p, id, name, &c, &cause) == -1) {
		log_warnx("sched: node %s: %s", name, cause);
		free(cause);
		return;
	}
	place_node_state(sched_p, id, sched_state((const char *)
	    sqlite3_column_text(st, 6), sqlite3_column_int(st, 5),
	    nodes_is_ready(id)));
}

/*
 * Bring one node's capacity, settings and state into the engine. After
 * the module stopped (agents' connections close later) it does nothing.
 */
void
sched_node_sync(int64_t node_id)
{
	sqlite3_stmt	*st;

	if (sched_p == NULL)
		return;

	st = store_prepare(ctl->db, SCHED_NODE_SQL "AND n.id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		sched_node_row(st);
	sqlite3_finalize(st);
}

/* What a VM row needs; strings are the statement's (valid until the next step). */
static void
sched_vm_of(sqlite3_stmt *st, int col, struct place_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->vcpus = sqlite3_column_int64(st, col);
	vm->memory = sqlite3_column_int64(st, col + 1);
	vm->disk = sqlite3_column_int64(st, col + 2);
	vm->group = sqlite3_column_int64(st, col + 3);
	vm->require = (const char *)sqlite3_column_text(st, col + 4);
}

/* Build the engine from the store. */
int
sched_init(struct ctl *c, char **cause)
{
	struct place_vm	 vm;
	sqlite3_stmt	*st;
	int64_t		 nvms = 0, nnodes = 0, nmig = 0;
	char		*why = NULL;

	sched_policy = place_policy_parse(c->conf.sched_policy);
	if ((int)sched_policy == -1) {
		xasprintf(cause, "[scheduler] policy must be spread or pack");
		return (-1);
	}
	sched_p = place_new();
	st = store_prepare(c->db, "SELECT id, name, policy FROM vm_groups");
	while (store_step(st) == SQLITE_ROW)
		place_group_set(sched_p, sqlite3_column_int64(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    strcmp((const char *)sqlite3_column_text(st, 2),
		    "anti-affinity") == 0 ? PLACE_ANTI_HARD : PLACE_ANTI_SOFT,
		    NULL);
	sqlite3_finalize(st);
	st = store_prepare(c->db, SCHED_NODE_SQL);
	while (store_step(st) == SQLITE_ROW) {
		sched_node_row(st);
		nnodes++;
	}
	sqlite3_finalize(st);
	/*
	 * Every VM claims its node until its record goes (a deleted one
	 * holds its disk until the agent removes it). A VM that migrates is
	 * claimed on its source and, until the migration ends, its target.
	 */
	st = store_prepare(c->db, "SELECT v.id, coalesce(m.src_node, "
	    "v.node_id), v.vcpus, v.memory_mib, v.disk_bytes, "
	    "coalesce(v.group_id, 0), v.require_tags, m.dst_node FROM vms v "
	    "LEFT JOIN migrations m ON m.vm_id = v.id AND m.state IN "
	    "('stopping', 'copying', 'starting')");
	while (store_step(st) == SQLITE_ROW) {
		sched_vm_of(st, 2, &vm);
		if (place_vm_add(sched_p, sqlite3_column_int64(st, 0), &vm,
		    sqlite3_column_int64(st, 1), &why) == -1) {
			log_warnx("sched: VM %lld: %s", (long long)
			    sqlite3_column_int64(st, 0), why);
			free(why);
			why = NULL;
			continue;
		}
		nvms++;
		if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
			place_migrate_begin(sched_p, sqlite3_column_int64(st,
			    0), sqlite3_column_int64(st, 7), 0, NULL);
			nmig++;
		}
	}
	sqlite3_finalize(st);
	log_info("sched: %lld hypervisors, %lld VMs (%lld migrating), "
	    "policy %s", (long long)nnodes, (long long)nvms, (long long)nmig,
	    place_policy_name(sched_policy));
	return (0);
}

void
sched_stop(void)
{
	place_free(sched_p);
	sched_p = NULL;
}

/* Build the model again from the store (after a failed commit). */
void
sched_rebuild(void)
{
	char	*cause = NULL;

	place_free(sched_p);
	sched_p = NULL;
	if (sched_init(ctl, &cause) == -1)
		fatalx("sched: %s", cause);
	log_warnx("sched: the model was rebuilt from the store");
}

/*
 * Where a new VM goes: its node, or -1 with the refusals counted per
 * filter. With node set, that node or nothing (it must pass the filters).
 */
int64_t
sched_decide(const struct place_vm *vm, enum place_policy pol,
    int64_t node, char **cause)
{
	if (node <= 0)
		return (place_decide(sched_p, vm, pol, cause));
	return (place_fits(sched_p, vm, node, cause) == 0 ? node : -1);
}

/* Claim a VM just recorded on its node (inside the caller's transaction). */
int
sched_claim(int64_t vm_id, const struct place_vm *vm, int64_t node,
    char **cause)
{
	return (place_vm_add(sched_p, vm_id, vm, node, cause));
}

/* Release a VM's claims (its record is gone, or its creation failed). */
void
sched_release(int64_t vm_id)
{
	if (sched_p != NULL)
		place_vm_remove(sched_p, vm_id);
}

/* A VM's new vCPUs and memory, if its node holds them; -1 and why. */
int
sched_resize(int64_t vm_id, int64_t vcpus, int64_t mem, char **cause)
{
	char	*why = NULL;

	if (place_vm_node(sched_p, vm_id, NULL) == -1)
		return (0);	/* not claimed: nothing to check */
	if (place_vm_resize(sched_p, vm_id, vcpus, mem, -1, &why) == 0)
		return (0);
	if (cause != NULL)
		xasprintf(cause, "the VM cannot grow that much: %s", why);
	free(why);
	return (-1);
}
