/*
 * A randomized property test on a simulated cluster: the placement
 * engine drives a small model of a controller and its agents through
 * thousands of creates, deletes, drains (cold migrations step by step:
 * stop, copy, start on the target, delete the source), node failures
 * (crashes and network partitions), fenced evacuations, returns of dead
 * nodes and rebalances. After every step:
 *   - no node holds more than its capacity under its ratios and reserve;
 *   - every VM the model holds is in the engine, on the node the model
 *     says, and the engine holds nothing else (no VM lost or invented);
 *   - no VM runs in two places, even with a partitioned node still
 *     running its guests until it is fenced (powered off);
 *   - no two members of a hard anti-affinity group share a node;
 *   - the engine's incremental state equals a recomputation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "opsn/util.h"
#include "compute/place.h"

#define NODES	12
#define MAXVMS	4096
#define GIB	(1024LL * 1024 * 1024)
#define G_HARD	1
#define G_SOFT	2

/* Where a VM is in its cold migration. */
enum { MIG_NONE, MIG_STOPPED, MIG_COPYING };

struct mvm {
	int		 live;
	struct place_vm	 spec;
	int		 node;		/* its claim (source while migrating) */
	int		 dest;		/* 0 unless migrating */
	int		 stage;
	int		 desired_running;
	/* The agents' view: a disk and a running guest per node. */
	int		 disk[NODES + 1];
	int		 running[NODES + 1];
};

struct mnode {
	enum place_state state;
	int		 reachable;	/* its agent talks to the controller */
	int		 powered;	/* its guests can run */
	int		 draining;	/* a drain is under way */
};

struct sim {
	struct place	*p;
	struct mnode	 node[NODES + 1];
	struct mvm	 vm[MAXVMS];
	int		 nvm;
	uint64_t	 rng;
	/* What happened, to check the run did exercise everything. */
	int		 creates, refused, deletes, migrations, aborts;
	int		 drains_done, drains_stopped, failures, evacuated;
	int		 evac_unfit, returns, undefined, rebalanced;
};

static uint64_t
rnd(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (s->rng);
}

static int
pick(struct sim *s, int n)
{
	return ((int)(rnd(s) % (uint64_t)n));
}

/* ---- invariants ---- */

static void
check_all(struct sim *s, int step)
{
	struct place_node_info	 ni;
	int64_t			 dest, at;
	char			*cause = NULL;
	int			 i, n, run, members[NODES + 1];

	if (place_check(s->p, &cause) == -1)
		fail_msg("step %d: %s", step, cause);
	for (n = 1; n <= NODES; n++) {
		assert_int_equal(place_node_info(s->p, n, &ni), 0);
		if (ni.use_vcpus > ni.cap_vcpus || ni.use_memory >
		    ni.cap_memory || ni.use_disk > ni.cap_disk)
			fail_msg("step %d: node %d overcommitted: %lld/%lld "
			    "vCPUs, %lld/%lld MiB, %lld/%lld bytes", step, n,
			    (long long)ni.use_vcpus, (long long)ni.cap_vcpus,
			    (long long)ni.use_memory,
			    (long long)ni.cap_memory, (long long)ni.use_disk,
			    (long long)ni.cap_disk);
	}
	memset(members, 0, sizeof(members));
	for (i = 0; i < s->nvm; i++) {
		struct mvm *v = &s->vm[i];

		at = place_vm_node(s->p, i + 1, &dest);
		if (!v->live) {
			if (at != -1)
				fail_msg("step %d: deleted VM %d still claimed",
				    step, i + 1);
			/* Until its unreachable node hears of the delete. */
			for (n = 1; n <= NODES; n++)
				if (v->running[n] && s->node[n].reachable)
					fail_msg("step %d: deleted VM %d runs "
					    "on node %d", step, i + 1, n);
			continue;
		}
		if (at != v->node || dest != (v->dest ? v->dest : -1))
			fail_msg("step %d: VM %d lost: engine says %lld->%lld, "
			    "model %d->%d", step, i + 1, (long long)at,
			    (long long)dest, v->node, v->dest);
		run = 0;
		for (n = 1; n <= NODES; n++)
			run += v->running[n];
		if (run > 1)
			fail_msg("step %d: VM %d runs twice", step, i + 1);
		if (v->spec.group == G_HARD) {
			if (members[v->node]++ > 0)
				fail_msg("step %d: two hard members on node %d",
				    step, v->node);
			if (v->dest && members[v->dest]++ > 0)
				fail_msg("step %d: two hard members on node %d",
				    step, v->dest);
		}
	}
}

/* ---- the agents ---- */

/*
 * A reachable agent applies the controller's desired state: guests of
 * VMs claimed on it run (when desired and not stopped by a migration);
 * copies of VMs claimed elsewhere, or deleted, are undefined and never
 * started (the agent refuses older desired states, and the controller
 * tells it these VMs moved).
 */
static void
agent_reconcile(struct sim *s, int n)
{
	int	 i;

	if (!s->node[n].reachable || !s->node[n].powered)
		return;
	for (i = 0; i < s->nvm; i++) {
		struct mvm *v = &s->vm[i];

		if (!v->live || (v->node != n && v->dest != n)) {
			if (v->disk[n] || v->running[n])
				s->undefined++;
			v->disk[n] = v->running[n] = 0;
			continue;
		}
		if (v->node == n && v->stage == MIG_NONE && v->desired_running) {
			/* A disk lost with a fenced node: rebuilt from the image. */
			v->disk[n] = 1;
			v->running[n] = 1;
		}
	}
}

/* ---- operations ---- */

static const char *const zones[] = { "zone=a", "zone=b", "zone=c" };

static void
op_create(struct sim *s)
{
	struct mvm	*v;
	int64_t		 node;
	char		*cause = NULL;
	int		 r;

	if (s->nvm == MAXVMS)
		return;
	v = &s->vm[s->nvm];
	memset(v, 0, sizeof(*v));
	v->spec.vcpus = 1 + pick(s, 4);
	v->spec.memory = 256 << pick(s, 5);
	v->spec.disk = (1 + pick(s, 40)) * GIB;
	r = pick(s, 10);
	v->spec.group = r == 0 ? G_HARD : r == 1 ? G_SOFT : 0;
	v->spec.require = pick(s, 5) == 0 ? zones[pick(s, 3)] : NULL;
	node = place_claim(s->p, s->nvm + 1, &v->spec, pick(s, 2) ?
	    PLACE_SPREAD : PLACE_PACK, &cause);
	if (node == -1) {
		assert_non_null(cause);
		free(cause);
		s->refused++;
		return;
	}
	assert_int_equal(s->node[node].state, PLACE_READY);
	v->live = 1;
	v->node = (int)node;
	v->desired_running = 1;
	s->nvm++;
	s->creates++;
	agent_reconcile(s, (int)node);
}

static void
op_delete(struct sim *s)
{
	struct mvm	*v;
	int		 i, n;

	if (s->nvm == 0)
		return;
	i = pick(s, s->nvm);
	v = &s->vm[i];
	if (!v->live || v->stage != MIG_NONE)
		return;
	assert_int_equal(place_vm_remove(s->p, i + 1), 0);
	v->live = 0;
	s->deletes++;
	/* Reachable agents undefine it now, the others when they return. */
	for (n = 1; n <= NODES; n++)
		agent_reconcile(s, n);
}

/* Give up a migration: the target's copy goes, the source runs again. */
static void
mig_abort(struct sim *s, int i)
{
	struct mvm	*v = &s->vm[i];
	int		 d = v->dest;

	assert_int_equal(place_migrate_end(s->p, i + 1, 0), 0);
	v->dest = 0;
	v->stage = MIG_NONE;
	s->aborts++;
	agent_reconcile(s, d);
	agent_reconcile(s, v->node);
}

/* Start moving VM i to a node the engine picks; -1 if none fits. */
static int
mig_start(struct sim *s, int i, int64_t to)
{
	struct mvm	*v = &s->vm[i];
	char		*cause = NULL;

	if (to == -1)
		to = place_decide_vm(s->p, i + 1, PLACE_SPREAD, &cause);
	if (to == -1) {
		free(cause);
		return (-1);
	}
	if (place_migrate_begin(s->p, i + 1, to, 1, &cause) == -1) {
		free(cause);
		return (-1);
	}
	v->dest = (int)to;
	/* Stop on the source first: never two running copies. */
	v->running[v->node] = 0;
	v->stage = MIG_STOPPED;
	return (0);
}

/* One step of VM i's migration. */
static void
mig_step(struct sim *s, int i)
{
	struct mvm	*v = &s->vm[i];
	int		 src = v->node, d = v->dest;

	if (!s->node[src].reachable || !s->node[d].reachable ||
	    !s->node[d].powered) {
		mig_abort(s, i);
		return;
	}
	switch (v->stage) {
	case MIG_STOPPED:
		/* The target fetches the overlay from the source, streamed. */
		v->disk[d] = 1;
		v->stage = MIG_COPYING;
		break;
	case MIG_COPYING:
		/* Checksummed and complete: start on the target, then delete. */
		assert_false(v->running[src]);
		assert_int_equal(place_migrate_end(s->p, i + 1, 1), 0);
		v->node = d;
		v->dest = 0;
		v->stage = MIG_NONE;
		v->running[d] = v->desired_running;
		v->disk[src] = 0;
		s->migrations++;
		break;
	}
}

static void
op_drain_start(struct sim *s)
{
	struct place_plan pl;
	char		*cause = NULL;
	int		 n = 1 + pick(s, NODES);

	if (s->node[n].state != PLACE_READY &&
	    s->node[n].state != PLACE_CORDONED)
		return;
	/* The plan says beforehand whether everything fits. */
	assert_int_equal(place_plan_drain(s->p, n, PLACE_SPREAD, &pl, &cause),
	    0);
	place_plan_free(&pl);
	s->node[n].state = PLACE_DRAINING;
	s->node[n].draining = 1;
	place_node_state(s->p, n, PLACE_DRAINING);
}

/* Drains move one VM at a time. */
static void
op_drain_step(struct sim *s)
{
	int	 n, i, busy, left;

	for (n = 1; n <= NODES; n++) {
		if (!s->node[n].draining)
			continue;
		busy = -1;
		left = -1;
		for (i = 0; i < s->nvm; i++) {
			if (!s->vm[i].live || s->vm[i].node != n)
				continue;
			if (s->vm[i].stage != MIG_NONE)
				busy = i;
			else if (left == -1)
				left = i;
		}
		if (busy != -1) {
			mig_step(s, busy);
			continue;
		}
		if (left == -1) {
			/* Empty: the node ends cordoned. */
			s->node[n].draining = 0;
			s->node[n].state = PLACE_CORDONED;
			place_node_state(s->p, n, PLACE_CORDONED);
			s->drains_done++;
			continue;
		}
		if (!s->node[n].reachable)
			continue;
		if (mig_start(s, left, -1) == -1) {
			/* Fits nowhere: the drain stops, nothing half moved. */
			s->node[n].draining = 0;
			s->node[n].state = PLACE_CORDONED;
			place_node_state(s->p, n, PLACE_CORDONED);
			s->drains_stopped++;
		}
	}
}

/* Rebalance moves in flight (not part of a drain) advance too. */
static void
op_migrations_step(struct sim *s)
{
	int	 i;

	for (i = 0; i < s->nvm; i++)
		if (s->vm[i].live && s->vm[i].stage != MIG_NONE &&
		    !s->node[s->vm[i].node].draining)
			mig_step(s, i);
}

static void
op_fail(struct sim *s)
{
	int	 n = 1 + pick(s, NODES), i;

	if (!s->node[n].reachable)
		return;
	s->node[n].reachable = 0;
	s->node[n].draining = 0;
	/* A crash stops the guests; a partition leaves them running. */
	if (pick(s, 2) == 0) {
		s->node[n].powered = 0;
		for (i = 0; i < s->nvm; i++)
			s->vm[i].running[n] = 0;
	}
	s->node[n].state = PLACE_UNREACHABLE;
	place_node_state(s->p, n, PLACE_UNREACHABLE);
	s->failures++;
	/* Migrations through it cannot go on. */
	for (i = 0; i < s->nvm; i++)
		if (s->vm[i].live && s->vm[i].stage != MIG_NONE &&
		    (s->vm[i].node == n || s->vm[i].dest == n))
			mig_abort(s, i);
}

static void
op_evacuate(struct sim *s)
{
	int64_t		 to;
	char		*cause = NULL;
	int		 n = 1 + pick(s, NODES), i;

	if (s->node[n].state != PLACE_UNREACHABLE &&
	    s->node[n].state != PLACE_FENCED)
		return;
	/* The operator confirms the node is off: its guests and disks are gone. */
	s->node[n].powered = 0;
	s->node[n].state = PLACE_FENCED;
	place_node_state(s->p, n, PLACE_FENCED);
	for (i = 0; i < s->nvm; i++) {
		struct mvm *v = &s->vm[i];

		v->running[n] = 0;
		v->disk[n] = 0;
		if (!v->live || v->node != n)
			continue;
		to = place_decide_vm(s->p, i + 1, PLACE_SPREAD, &cause);
		if (to == -1) {
			free(cause);
			cause = NULL;
			s->evac_unfit++;
			continue;
		}
		assert_int_equal(place_vm_move(s->p, i + 1, to, &cause), 0);
		v->node = (int)to;
		s->evacuated++;
		agent_reconcile(s, (int)to);
	}
}

static void
op_return(struct sim *s)
{
	int	 n = 1 + pick(s, NODES);

	if (s->node[n].reachable)
		return;
	s->node[n].reachable = 1;
	s->node[n].powered = 1;
	s->node[n].state = PLACE_READY;
	place_node_state(s->p, n, PLACE_READY);
	s->returns++;
	agent_reconcile(s, n);
}

static void
op_uncordon(struct sim *s)
{
	int	 n = 1 + pick(s, NODES);

	if (s->node[n].state != PLACE_CORDONED)
		return;
	s->node[n].state = PLACE_READY;
	place_node_state(s->p, n, PLACE_READY);
}

static void
op_rebalance(struct sim *s)
{
	struct place_plan pl;
	size_t		 i;

	assert_int_equal(place_plan_rebalance(s->p, 2, 0.01, &pl), 0);
	assert_true(pl.after.total <= pl.before.total + 1e-9 ||
	    pl.after.soft_conflicts < pl.before.soft_conflicts);
	for (i = 0; i < pl.nmoves; i++) {
		struct mvm *v = &s->vm[pl.moves[i].vm - 1];

		if (v->stage != MIG_NONE || !s->node[v->node].reachable ||
		    s->node[v->node].draining)
			continue;
		if (mig_start(s, (int)pl.moves[i].vm - 1, pl.moves[i].to) == 0)
			s->rebalanced++;
	}
	place_plan_free(&pl);
}

static void
sim_run(uint64_t seed, int steps)
{
	struct sim		*s = xcalloc(1, sizeof(*s));
	struct place_node_conf	 c;
	char			 name[16], *cause = NULL;
	int			 n, i, r;

	s->p = place_new();
	s->rng = seed;
	assert_int_equal(place_group_set(s->p, G_HARD, "hard",
	    PLACE_ANTI_HARD, &cause), 0);
	assert_int_equal(place_group_set(s->p, G_SOFT, "soft",
	    PLACE_ANTI_SOFT, &cause), 0);
	for (n = 1; n <= NODES; n++) {
		memset(&c, 0, sizeof(c));
		c.cpus = 4 + pick(s, 28);
		c.memory = 16384 << pick(s, 2);
		c.disk = (200 + pick(s, 800)) * GIB;
		c.cpu_ratio = 1000 + pick(s, 4) * 1000;
		c.mem_ratio = pick(s, 4) == 0 ? 1500 : 1000;
		c.reserve_cpus = pick(s, 3);
		c.reserve_memory = 1024 * pick(s, 3);
		c.tags = zones[n % 3];
		snprintf(name, sizeof(name), "n%d", n);
		assert_int_equal(place_node_set(s->p, n, name, &c, &cause), 0);
		s->node[n].state = PLACE_READY;
		s->node[n].reachable = s->node[n].powered = 1;
		place_node_state(s->p, n, PLACE_READY);
	}
	for (i = 0; i < steps; i++) {
		r = pick(s, 100);
		if (r < 22)
			op_create(s);
		else if (r < 40)
			op_delete(s);
		else if (r < 43)
			op_drain_start(s);
		else if (r < 70)
			op_drain_step(s);
		else if (r < 78)
			op_migrations_step(s);
		else if (r < 80)
			op_fail(s);
		else if (r < 84)
			op_evacuate(s);
		else if (r < 89)
			op_return(s);
		else if (r < 95)
			op_uncordon(s);
		else
			op_rebalance(s);
		check_all(s, i);
	}
	print_message("seed %llu: %d creates (%d refused), %d deletes, "
	    "%d migrations (%d aborted), %d drains done, %d stopped, "
	    "%d failures, %d evacuated (%d unfit), %d returns, "
	    "%d copies undefined, %d rebalance moves\n",
	    (unsigned long long)seed, s->creates, s->refused, s->deletes,
	    s->migrations, s->aborts, s->drains_done, s->drains_stopped,
	    s->failures, s->evacuated, s->evac_unfit, s->returns,
	    s->undefined, s->rebalanced);
	/* The run went through every kind of event. */
	assert_true(s->creates > 100 && s->refused > 0 && s->deletes > 100);
	assert_true(s->migrations > 50 && s->aborts > 0);
	assert_true(s->drains_done > 5 && s->drains_stopped > 0);
	assert_true(s->evacuated > 10 && s->returns > 10 &&
	    s->undefined > 10 && s->rebalanced > 0);
	place_free(s->p);
	free(s);
}

static void
sim_never_overcommits_loses_or_doubles_a_vm(void **state)
{
	uint64_t	 seed;

	(void)state;
	for (seed = 1; seed <= 4; seed++)
		sim_run(seed * 0x9e3779b97f4a7c15ULL, 10000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sim_never_overcommits_loses_or_doubles_a_vm),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
