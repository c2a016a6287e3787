/*
 * The placement engine: one table row per filter, weigher, ratio, host
 * reserve, tag and anti-affinity behaviour with the node expected or the
 * exact refusal message; then capacity, N+1, drain plans, migrations,
 * rebalance, the htools score and input checks.
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

#define GIB	(1024LL * 1024 * 1024)
#define G_HARD	1		/* group ids in the tables */
#define G_SOFT	2

/* A node of a table row, with VMs already on it. */
struct tnode {
	const char	*name;
	int64_t		 cpus, mem, disk_gib;
	int32_t		 cpu_ratio, mem_ratio, disk_ratio;
	int64_t		 res_cpus, res_mem, max_vms;
	const char	*tags;
	enum place_state state;		/* 0 (enrolling) stands for ready */
	int64_t		 fill_vcpus, fill_mem, fill_gib;	/* one VM */
	int		 hard, soft;	/* members of the groups already here */
};

struct tcase {
	const char	*what;
	struct tnode	 nodes[5];
	struct place_vm	 vm;
	enum place_policy pol;
	const char	*want;		/* node name, or NULL: no fit */
	const char	*msg;		/* the refusal, when want is NULL */
};

#define N(n_, c_, m_, g_)	.name = n_, .cpus = c_, .mem = m_, \
	.disk_gib = g_
#define VM(c, m, g)	{ .vcpus = c, .memory = m, .disk = (g) * GIB }

static const struct tcase cases[] = {
	/* ---- the state filter ---- */
	{ "a cordoned node is skipped",
	  { { N("a", 8, 8192, 100), .state = PLACE_CORDONED },
	    { N("b", 8, 8192, 100), .fill_mem = 4096 } },
	  VM(1, 1024, 10), PLACE_SPREAD, "b", NULL },
	{ "every state but ready refuses, counted per state",
	  { { N("a", 8, 8192, 100), .state = PLACE_CORDONED },
	    { N("b", 8, 8192, 100), .state = PLACE_DRAINING },
	    { N("c", 8, 8192, 100), .state = PLACE_UNREACHABLE },
	    { N("d", 8, 8192, 100), .state = PLACE_FENCED },
	    { N("e", 8, 8192, 100), .state = PLACE_RETIRED } },
	  VM(1, 1024, 10), PLACE_SPREAD, NULL,
	  "1 node was cordoned, 1 was draining, 1 was unreachable, "
	  "1 was fenced, 1 was not ready" },
	{ "no node at all says so",
	  { { NULL } }, VM(1, 1024, 10), PLACE_SPREAD, NULL,
	  "there is no hypervisor node" },
	/* ---- capacity, ratios and host reserve ---- */
	{ "memory: the node with room",
	  { { N("a", 8, 4096, 100) }, { N("b", 8, 16384, 100) } },
	  VM(1, 8192, 10), PLACE_SPREAD, "b", NULL },
	{ "memory lacking everywhere, the issue's message",
	  { { N("a", 8, 4096, 100) }, { N("b", 8, 4096, 100) },
	    { N("c", 8, 4096, 100) },
	    { N("d", 8, 65536, 100), .state = PLACE_CORDONED } },
	  VM(1, 8192, 10), PLACE_SPREAD, NULL,
	  "3 nodes lacked memory, 1 was cordoned" },
	{ "default cpu ratio 4.0: 2 CPUs hold 8 vCPUs",
	  { { N("a", 2, 65536, 100) } }, VM(8, 1024, 10), PLACE_SPREAD, "a",
	  NULL },
	{ "default cpu ratio 4.0: not 9 vCPUs",
	  { { N("a", 2, 65536, 100) } }, VM(9, 1024, 10), PLACE_SPREAD, NULL,
	  "1 node lacked vCPUs" },
	{ "cpu ratio 1.0 counts claimed vCPUs",
	  { { N("a", 4, 65536, 100), .cpu_ratio = 1000, .fill_vcpus = 2 } },
	  VM(3, 1024, 10), PLACE_SPREAD, NULL, "1 node lacked vCPUs" },
	{ "cpu ratio 2.5 in thousandths",
	  { { N("a", 4, 65536, 100), .cpu_ratio = 2500 } },
	  VM(10, 1024, 10), PLACE_SPREAD, "a", NULL },
	{ "memory ratio 1.5 overcommits memory",
	  { { N("a", 8, 4096, 100), .mem_ratio = 1500 } },
	  VM(1, 6144, 10), PLACE_SPREAD, "a", NULL },
	{ "memory ratio 1.0 is the default",
	  { { N("a", 8, 4096, 100) } },
	  VM(1, 4097, 10), PLACE_SPREAD, NULL, "1 node lacked memory" },
	{ "disk ratio 1.0 counts claimed disk",
	  { { N("a", 8, 65536, 100), .fill_gib = 60 } },
	  VM(1, 1024, 41), PLACE_SPREAD, NULL, "1 node lacked disk" },
	{ "disk ratio 2.0 overcommits thin disks",
	  { { N("a", 8, 65536, 100), .disk_ratio = 2000, .fill_gib = 60 } },
	  VM(1, 1024, 140), PLACE_SPREAD, "a", NULL },
	{ "host memory reserve is kept for the hypervisor",
	  { { N("a", 8, 8192, 100), .res_mem = 2048 } },
	  VM(1, 6145, 10), PLACE_SPREAD, NULL, "1 node lacked memory" },
	{ "host memory reserve leaves the rest",
	  { { N("a", 8, 8192, 100), .res_mem = 2048 } },
	  VM(1, 6144, 10), PLACE_SPREAD, "a", NULL },
	{ "host CPU reserve comes before the ratio: (8-2)x4 = 24",
	  { { N("a", 8, 65536, 100), .res_cpus = 2 } },
	  VM(24, 1024, 10), PLACE_SPREAD, "a", NULL },
	{ "host CPU reserve: not 25",
	  { { N("a", 8, 65536, 100), .res_cpus = 2 } },
	  VM(25, 1024, 10), PLACE_SPREAD, NULL, "1 node lacked vCPUs" },
	{ "reserve and ratio together on memory: (8192-2048)x1.5",
	  { { N("a", 8, 8192, 100), .res_mem = 2048, .mem_ratio = 1500 } },
	  VM(1, 9216, 10), PLACE_SPREAD, "a", NULL },
	{ "a VM slot limit",
	  { { N("a", 8, 65536, 100), .max_vms = 1, .fill_mem = 512 } },
	  VM(1, 512, 1), PLACE_SPREAD, NULL, "1 node held its maximum of VMs" },
	{ "filters count the first refusal only, largest count first",
	  { { N("a", 1, 512, 1) }, { N("b", 1, 512, 1) },
	    { N("c", 1, 65536, 100) }, { N("d", 64, 65536, 1) } },
	  VM(8, 1024, 10), PLACE_SPREAD, NULL,
	  "2 nodes lacked memory, 1 lacked vCPUs, 1 lacked disk" },
	/* ---- tags ---- */
	{ "a required tag picks the node that has it",
	  { { N("a", 8, 65536, 100), .tags = "zone=a" },
	    { N("b", 8, 65536, 100), .tags = "zone=b,ssd" } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .require = "zone=b" },
	  PLACE_SPREAD, "b", NULL },
	{ "every required tag must be there",
	  { { N("a", 8, 65536, 100), .tags = "zone=b" },
	    { N("b", 8, 65536, 100), .tags = "zone=b,ssd" } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB,
	    .require = "ssd,zone=b" }, PLACE_SPREAD, "b", NULL },
	{ "a tag no node has",
	  { { N("a", 8, 65536, 100), .tags = "zone=a" },
	    { N("b", 8, 65536, 100), .tags = "zone=b" } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .require = "zone=c" },
	  PLACE_SPREAD, NULL, "2 nodes lacked tag zone=c" },
	{ "tags are checked before capacity",
	  { { N("a", 8, 512, 100), .tags = "zone=a" },
	    { N("b", 8, 65536, 100), .tags = "zone=b" } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB,
	    .require = "zone=a,ssd" }, PLACE_SPREAD, NULL,
	  "2 nodes lacked tags zone=a ssd" },
	/* ---- anti-affinity ---- */
	{ "hard anti-affinity: never a node with a member",
	  { { N("a", 8, 65536, 100), .hard = 1 },
	    { N("b", 8, 8192, 100), .fill_mem = 6000 } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_HARD },
	  PLACE_SPREAD, "b", NULL },
	{ "hard anti-affinity: nothing when every node has one",
	  { { N("a", 8, 65536, 100), .hard = 1 },
	    { N("b", 8, 65536, 100), .hard = 1 },
	    { N("c", 8, 512, 100) } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_HARD },
	  PLACE_SPREAD, NULL,
	  "2 nodes already held a VM of group web, 1 lacked memory" },
	{ "soft anti-affinity avoids a node with a member",
	  { { N("a", 8, 65536, 100), .soft = 1 },
	    { N("b", 8, 8192, 100), .fill_mem = 6000 } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_SOFT },
	  PLACE_SPREAD, "b", NULL },
	{ "soft anti-affinity: the node with fewest members",
	  { { N("a", 8, 65536, 100), .soft = 2 },
	    { N("b", 8, 65536, 100), .soft = 1, .fill_mem = 30000 },
	    { N("c", 8, 65536, 100), .soft = 3 } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_SOFT },
	  PLACE_SPREAD, "b", NULL },
	{ "soft anti-affinity gives way when only members' nodes fit",
	  { { N("a", 8, 65536, 100), .soft = 1 },
	    { N("b", 8, 512, 100) } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_SOFT },
	  PLACE_SPREAD, "a", NULL },
	{ "soft anti-affinity under pack too",
	  { { N("a", 8, 65536, 100), .soft = 1, .fill_mem = 60000 },
	    { N("b", 8, 65536, 100), .fill_mem = 1000 } },
	  { .vcpus = 1, .memory = 1024, .disk = GIB, .group = G_SOFT },
	  PLACE_PACK, "b", NULL },
	/* ---- weighers ---- */
	{ "spread: the emptier node",
	  { { N("a", 8, 65536, 100), .fill_mem = 30000 },
	    { N("b", 8, 65536, 100), .fill_mem = 10000 },
	    { N("c", 8, 65536, 100), .fill_mem = 20000 } },
	  VM(1, 1024, 10), PLACE_SPREAD, "b", NULL },
	{ "spread: balances vCPUs when memory is even",
	  { { N("a", 8, 65536, 100), .fill_vcpus = 8, .fill_mem = 4096 },
	    { N("b", 8, 65536, 100), .fill_vcpus = 1, .fill_mem = 4096 } },
	  VM(4, 1024, 10), PLACE_SPREAD, "b", NULL },
	{ "spread: an empty node first",
	  { { N("a", 8, 65536, 100), .fill_mem = 1024 },
	    { N("b", 8, 65536, 100) } },
	  VM(1, 1024, 10), PLACE_SPREAD, "b", NULL },
	{ "pack: the fullest node that fits",
	  { { N("a", 8, 65536, 100), .fill_mem = 30000 },
	    { N("b", 8, 65536, 100), .fill_mem = 50000 },
	    { N("c", 8, 65536, 100), .fill_mem = 10000 } },
	  VM(1, 1024, 10), PLACE_PACK, "b", NULL },
	{ "pack: skips the fullest when it does not fit",
	  { { N("a", 8, 65536, 100), .fill_mem = 30000 },
	    { N("b", 8, 65536, 100), .fill_mem = 65000 },
	    { N("c", 8, 65536, 100), .fill_mem = 10000 } },
	  VM(1, 1024, 10), PLACE_PACK, "a", NULL },
	{ "pack: a used node before an empty smaller one",
	  { { N("a", 8, 16384, 100) },
	    { N("b", 8, 65536, 100), .fill_mem = 1024 } },
	  VM(1, 1024, 10), PLACE_PACK, "b", NULL },
	{ "pack: among empty nodes the one left fullest",
	  { { N("a", 16, 65536, 200) }, { N("b", 4, 8192, 50) },
	    { N("c", 8, 32768, 100) } },
	  VM(2, 4096, 20), PLACE_PACK, "b", NULL },
};

/* Build a table row's cluster. */
static struct place *
build(const struct tcase *t)
{
	struct place		*p = place_new();
	struct place_node_conf	 c;
	struct place_vm		 vm;
	const struct tnode	*n;
	char			*cause = NULL;
	int64_t			 vmid = 1000;
	int			 i, k;

	assert_int_equal(place_group_set(p, G_HARD, "web", PLACE_ANTI_HARD,
	    &cause), 0);
	assert_int_equal(place_group_set(p, G_SOFT, "db", PLACE_ANTI_SOFT,
	    &cause), 0);
	for (i = 0; i < (int)nitems(t->nodes) && t->nodes[i].name; i++) {
		n = &t->nodes[i];
		memset(&c, 0, sizeof(c));
		c.cpus = n->cpus;
		c.memory = n->mem;
		c.disk = n->disk_gib * GIB;
		c.cpu_ratio = n->cpu_ratio;
		c.mem_ratio = n->mem_ratio;
		c.disk_ratio = n->disk_ratio;
		c.reserve_cpus = n->res_cpus;
		c.reserve_memory = n->res_mem;
		c.max_vms = n->max_vms;
		c.tags = n->tags;
		if (place_node_set(p, i + 1, n->name, &c, &cause) == -1)
			fail_msg("%s: %s", t->what, cause);
		place_node_state(p, i + 1, n->state ? n->state : PLACE_READY);
		if (n->fill_vcpus || n->fill_mem || n->fill_gib) {
			memset(&vm, 0, sizeof(vm));
			vm.vcpus = n->fill_vcpus ? n->fill_vcpus : 1;
			vm.memory = n->fill_mem ? n->fill_mem : 1;
			vm.disk = n->fill_gib * GIB;
			assert_int_equal(place_vm_add(p, ++vmid, &vm, i + 1,
			    &cause), 0);
		}
		for (k = 0; k < n->hard + n->soft; k++) {
			memset(&vm, 0, sizeof(vm));
			vm.vcpus = 1;
			vm.memory = 1;
			vm.group = k < n->hard ? G_HARD : G_SOFT;
			assert_int_equal(place_vm_add(p, ++vmid, &vm, i + 1,
			    &cause), 0);
		}
	}
	return (p);
}

static const char *
node_name(const struct place *p, int64_t id)
{
	struct place_node_info	 ni;

	if (id == -1 || place_node_info(p, id, &ni) == -1)
		return ("(none)");
	return (ni.name);
}

static void
place_table_rows_choose_the_expected_node(void **state)
{
	const struct tcase	*t;
	struct place		*p;
	char			*cause, *err;
	int64_t			 got;
	size_t			 i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		t = &cases[i];
		p = build(t);
		cause = NULL;
		got = place_decide(p, &t->vm, t->pol, &cause);
		if (t->want != NULL) {
			if (got == -1 || strcmp(node_name(p, got), t->want) != 0)
				fail_msg("%s: got %s (%s), want %s", t->what,
				    node_name(p, got), cause ? cause : "",
				    t->want);
		} else {
			if (got != -1)
				fail_msg("%s: placed on %s, want no fit",
				    t->what, node_name(p, got));
			if (cause == NULL || strcmp(cause, t->msg) != 0)
				fail_msg("%s: message \"%s\", want \"%s\"",
				    t->what, cause ? cause : "(null)", t->msg);
		}
		free(cause);
		/* The same decision through a claim, and nothing else moves. */
		cause = NULL;
		got = place_claim(p, 1, &t->vm, t->pol, &cause);
		assert_true((got == -1) == (t->want == NULL));
		if (place_check(p, &err) == -1)
			fail_msg("%s: %s", t->what, err);
		free(cause);
		place_free(p);
	}
}

/* ---- helpers for the other tests ---- */

/* A ready node "n<id>" with default ratios and no reserve. */
static void
add_node(struct place *p, int64_t id, int64_t cpus, int64_t mem, int64_t gib)
{
	struct place_node_conf	 c = { .cpus = cpus, .memory = mem,
	    .disk = gib * GIB };
	char			 name[24], *cause = NULL;

	snprintf(name, sizeof(name), "n%lld", (long long)id);
	assert_int_equal(place_node_set(p, id, name, &c, &cause), 0);
	assert_int_equal(place_node_state(p, id, PLACE_READY), 0);
}

static struct place *
cluster(int n, int64_t cpus, int64_t mem, int64_t gib)
{
	struct place	*p = place_new();
	int		 i;

	for (i = 1; i <= n; i++)
		add_node(p, i, cpus, mem, gib);
	return (p);
}

static void
add_vm(struct place *p, int64_t id, int64_t node, int64_t vcpus,
    int64_t mem, int64_t gib)
{
	struct place_vm	 vm = { .vcpus = vcpus, .memory = mem,
	    .disk = gib * GIB };
	char		*cause = NULL;

	if (place_vm_add(p, id, &vm, node, &cause) == -1)
		fail_msg("%s", cause);
}

static void
check(const struct place *p)
{
	char	*cause = NULL;

	if (place_check(p, &cause) == -1)
		fail_msg("%s", cause);
}

/* ---- capacity and N+1 ---- */

static void
place_capacity_counts_what_fits_per_node(void **state)
{
	struct place	*p = cluster(3, 8, 16384, 100);
	struct place_vm	 vm = { .vcpus = 2, .memory = 4096, .disk = 10 * GIB };
	struct place_vm	 tagged = vm;

	(void)state;
	/* 4 per node by memory (16384/4096), vCPUs 32/2 = 16, disk 10. */
	assert_int_equal(place_fit_count(p, &vm), 12);
	add_vm(p, 1, 1, 1, 5000, 1);
	/* Node 1 keeps 11384 MiB: 2 more there. */
	assert_int_equal(place_fit_count(p, &vm), 10);
	place_node_state(p, 3, PLACE_CORDONED);
	assert_int_equal(place_fit_count(p, &vm), 6);
	/* Counting by claims agrees with the count. */
	while (place_claim(p, 100 + place_fit_count(p, &vm), &vm,
	    PLACE_SPREAD, NULL) != -1)
		;
	assert_int_equal(place_fit_count(p, &vm), 0);
	tagged.require = "zone=a";
	assert_int_equal(place_fit_count(p, &tagged), 0);
	check(p);
	place_free(p);
}

static void
place_capacity_matches_placing_until_full(void **state)
{
	struct place	*p = place_new();
	struct place_node_conf c;
	struct place_vm	 vm = { .vcpus = 2, .memory = 3000, .disk = 7 * GIB };
	int64_t		 fit, placed = 0;
	char		*cause = NULL, name[16];
	int		 i;

	(void)state;
	srandom(7);
	for (i = 1; i <= 40; i++) {
		memset(&c, 0, sizeof(c));
		c.cpus = 4 + random() % 60;
		c.memory = 4096 + random() % 200000;
		c.disk = (20 + random() % 500) * GIB;
		c.cpu_ratio = 1000 + random() % 4000;
		c.reserve_memory = random() % 2048;
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(place_node_set(p, i, name, &c, &cause), 0);
		place_node_state(p, i, PLACE_READY);
	}
	fit = place_fit_count(p, &vm);
	assert_true(fit > 100);
	for (;;) {
		placed++;
		if (place_claim(p, placed, &vm, placed % 2 ? PLACE_PACK :
		    PLACE_SPREAD, &cause) == -1)
			break;
	}
	free(cause);
	assert_int_equal(placed - 1, fit);
	place_free(p);
}

static void
place_n1_survives_losing_the_largest_node(void **state)
{
	struct place		*p = cluster(3, 16, 16384, 100);
	struct place_plan	 pl;

	(void)state;
	add_node(p, 4, 32, 32768, 200);
	add_vm(p, 1, 4, 2, 8192, 10);
	add_vm(p, 2, 4, 2, 8192, 10);
	add_vm(p, 3, 1, 2, 8192, 10);
	assert_int_equal(place_plan_n1(p, PLACE_SPREAD, &pl), 0);
	assert_int_equal(pl.node, 4);
	assert_int_equal(pl.nunfit, 0);
	assert_int_equal(pl.nmoves, 2);
	assert_true(pl.moves[0].to != 1);	/* spread: not onto VM 3 */
	place_plan_free(&pl);
	/* The engine itself did not change. */
	assert_int_equal(place_vm_node(p, 1, NULL), 4);
	check(p);
	place_free(p);
}

static void
place_n1_names_the_vms_that_would_not_fit(void **state)
{
	struct place		*p = cluster(2, 16, 16384, 100);
	struct place_plan	 pl;

	(void)state;
	add_node(p, 3, 32, 65536, 400);
	add_vm(p, 10, 3, 4, 16384, 10);
	add_vm(p, 11, 3, 4, 16384, 10);
	add_vm(p, 12, 3, 4, 16384, 10);
	add_vm(p, 13, 3, 1, 1024, 10);
	assert_int_equal(place_plan_n1(p, PLACE_SPREAD, &pl), 0);
	assert_int_equal(pl.node, 3);
	/* Two 16 GiB VMs fit on the two small nodes; one does not. */
	assert_int_equal(pl.nmoves, 2);
	assert_int_equal(pl.nunfit, 2);
	assert_true(pl.unfit[0] == 12 || pl.unfit[1] == 12);
	assert_true(pl.unfit[0] == 13 || pl.unfit[1] == 13);
	place_plan_free(&pl);
	place_free(p);
}

static void
place_empty_nodes_are_listed(void **state)
{
	struct place	*p = cluster(4, 8, 8192, 100);
	int64_t		*ids;
	size_t		 n;

	(void)state;
	add_vm(p, 1, 2, 1, 1024, 1);
	place_node_state(p, 4, PLACE_UNREACHABLE);
	n = place_empty_nodes(p, &ids);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 3);
	free(ids);
	place_free(p);
}

/* ---- drain, evacuation, migration ---- */

static void
place_drain_plan_moves_every_vm_largest_first(void **state)
{
	struct place		*p = cluster(3, 8, 16384, 100);
	struct place_plan	 pl;
	char			*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 1, 1024, 1);
	add_vm(p, 2, 1, 1, 8192, 1);
	add_vm(p, 3, 1, 1, 4096, 1);
	assert_int_equal(place_plan_drain(p, 1, PLACE_SPREAD, &pl, &cause), 0);
	assert_int_equal(pl.nmoves, 3);
	assert_int_equal(pl.nunfit, 0);
	assert_int_equal(pl.moves[0].vm, 2);
	assert_int_equal(pl.moves[1].vm, 3);
	assert_int_equal(pl.moves[2].vm, 1);
	/* Spread: the two largest end on different nodes. */
	assert_true(pl.moves[0].to != pl.moves[1].to);
	assert_true(pl.moves[0].to != 1 && pl.moves[1].to != 1 &&
	    pl.moves[2].to != 1);
	place_plan_free(&pl);
	place_free(p);
}

static void
place_drain_plan_reports_what_fits_nowhere(void **state)
{
	struct place		*p = cluster(2, 8, 16384, 100);
	struct place_plan	 pl;
	char			*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 1, 12000, 1);
	add_vm(p, 2, 1, 1, 1024, 1);
	add_vm(p, 3, 2, 1, 8000, 1);
	assert_int_equal(place_plan_drain(p, 1, PLACE_SPREAD, &pl, &cause), 0);
	assert_int_equal(pl.nunfit, 1);
	assert_int_equal(pl.unfit[0], 1);
	assert_int_equal(pl.nmoves, 1);
	assert_int_equal(pl.moves[0].vm, 2);
	place_plan_free(&pl);
	/* place_decide_vm explains it. */
	assert_int_equal(place_node_state(p, 1, PLACE_DRAINING), 0);
	assert_int_equal(place_decide_vm(p, 1, PLACE_SPREAD, &cause), -1);
	assert_string_equal(cause, "1 node lacked memory");
	free(cause);
	place_free(p);
}

static void
place_migration_claims_both_nodes_until_it_ends(void **state)
{
	struct place		*p = cluster(2, 8, 16384, 100);
	struct place_node_info	 a, b;
	int64_t			 dest;
	char			*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 2, 10000, 10);
	assert_int_equal(place_migrate_begin(p, 1, 2, 1, &cause), 0);
	place_node_info(p, 1, &a);
	place_node_info(p, 2, &b);
	assert_int_equal(a.use_memory, 10000);
	assert_int_equal(b.use_memory, 10000);
	assert_int_equal(place_vm_node(p, 1, &dest), 1);
	assert_int_equal(dest, 2);
	/* The target's room is taken: another big VM does not fit there. */
	add_vm(p, 2, 1, 1, 1, 1);
	assert_int_equal(place_migrate_begin(p, 2, 2, 1, &cause), 0);
	assert_int_equal(place_migrate_end(p, 2, 0), 0);
	check(p);
	assert_int_equal(place_migrate_end(p, 1, 1), 0);
	place_node_info(p, 1, &a);
	assert_int_equal(a.use_memory, 1);
	assert_int_equal(place_vm_node(p, 1, &dest), 2);
	assert_int_equal(dest, -1);
	check(p);
	place_free(p);
}

static void
place_migration_target_is_filtered(void **state)
{
	struct place	*p = cluster(3, 8, 16384, 100);
	char		*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 2, 10000, 10);
	add_vm(p, 2, 2, 2, 10000, 10);
	assert_int_equal(place_migrate_begin(p, 1, 2, 1, &cause), -1);
	assert_string_equal(cause, "1 node lacked memory");
	free(cause);
	place_node_state(p, 3, PLACE_CORDONED);
	assert_int_equal(place_migrate_begin(p, 1, 3, 1, &cause), -1);
	assert_string_equal(cause, "1 node was cordoned");
	free(cause);
	check(p);
	place_free(p);
}

static void
place_hard_group_holds_through_migrations(void **state)
{
	struct place	*p = cluster(3, 8, 16384, 100);
	struct place_vm	 vm = { .vcpus = 1, .memory = 1024, .group = 5 };
	char		*cause = NULL;
	int64_t		 n1, n2, n3;

	(void)state;
	assert_int_equal(place_group_set(p, 5, "web", PLACE_ANTI_HARD,
	    &cause), 0);
	n1 = place_claim(p, 1, &vm, PLACE_PACK, &cause);
	n2 = place_claim(p, 2, &vm, PLACE_PACK, &cause);
	assert_true(n1 != -1 && n2 != -1 && n1 != n2);
	n3 = 6 - n1 - n2;
	/* VM 1 on its way to n3: n3 is taken for VM 3 too. */
	assert_int_equal(place_migrate_begin(p, 1, n3, 1, &cause), 0);
	assert_int_equal(place_claim(p, 3, &vm, PLACE_PACK, &cause), -1);
	assert_string_equal(cause, "3 nodes already held a VM of group web");
	free(cause);
	/* A member may not move onto another member. */
	assert_int_equal(place_migrate_begin(p, 2, n3, 1, &cause), -1);
	free(cause);
	assert_int_equal(place_group_remove(p, 5, &cause), -1);
	free(cause);
	check(p);
	place_free(p);
}

static void
place_evacuation_moves_claims_and_releases_the_dead_node(void **state)
{
	struct place		*p = cluster(3, 8, 16384, 100);
	struct place_node_info	 ni;
	char			*cause = NULL;
	int64_t			 to;

	(void)state;
	add_vm(p, 1, 1, 2, 4096, 10);
	place_node_state(p, 1, PLACE_FENCED);
	to = place_decide_vm(p, 1, PLACE_SPREAD, &cause);
	assert_true(to == 2 || to == 3);
	assert_int_equal(place_vm_move(p, 1, to, &cause), 0);
	place_node_info(p, 1, &ni);
	assert_int_equal(ni.vms, 0);
	assert_int_equal(ni.use_memory, 0);
	assert_int_equal(place_node_remove(p, 1, &cause), 0);
	assert_int_equal(place_node_remove(p, to, &cause), -1);
	free(cause);
	check(p);
	place_free(p);
}

static void
place_fits_checks_one_node_with_every_filter(void **state)
{
	struct place	*p = cluster(2, 8, 16384, 100);
	struct place_vm	 vm = { .vcpus = 1, .memory = 8192, .disk = GIB };
	char		*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 1, 10000, 1);
	assert_int_equal(place_fits(p, &vm, 2, &cause), 0);
	assert_int_equal(place_fits(p, &vm, 1, &cause), -1);
	assert_string_equal(cause, "1 node lacked memory");
	free(cause);
	place_node_state(p, 2, PLACE_UNREACHABLE);
	assert_int_equal(place_fits(p, &vm, 2, &cause), -1);
	assert_string_equal(cause, "1 node was unreachable");
	free(cause);
	assert_int_equal(place_fits(p, &vm, 9, &cause), -1);
	assert_string_equal(cause, "no such node");
	free(cause);
	place_free(p);
}

static void
place_resize_stays_within_the_node(void **state)
{
	struct place		*p = cluster(1, 2, 16384, 100);
	struct place_node_info	 ni;
	char			*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 2, 4096, 10);
	add_vm(p, 2, 1, 2, 4096, 10);
	/* The node's state does not matter to a resize. */
	place_node_state(p, 1, PLACE_CORDONED);
	assert_int_equal(place_vm_resize(p, 1, 4, 8192, -1, &cause), 0);
	place_node_info(p, 1, &ni);
	assert_int_equal(ni.use_memory, 12288);
	assert_int_equal(ni.use_vcpus, 6);
	assert_int_equal(ni.use_disk, 20 * GIB);
	assert_int_equal(place_vm_resize(p, 2, 2, 8193, -1, &cause), -1);
	assert_string_equal(cause, "node n1 has 4096 MiB of memory free");
	free(cause);
	assert_int_equal(place_vm_resize(p, 2, 5, 4096, -1, &cause), -1);
	assert_string_equal(cause, "node n1 has 2 vCPUs free");
	free(cause);
	check(p);
	place_free(p);
}

/* ---- rebalance ---- */

static void
place_rebalance_lowers_the_score(void **state)
{
	struct place		*p = cluster(4, 16, 32768, 200);
	struct place_plan	 pl;
	struct place_score	 s;
	char			*cause = NULL;
	int			 i;

	(void)state;
	for (i = 1; i <= 12; i++)
		add_vm(p, i, i <= 9 ? 1 : 2, 1, 2048, 10);
	assert_int_equal(place_plan_rebalance(p, 100, 0.01, &pl), 0);
	assert_true(pl.nmoves >= 5);
	assert_true(pl.after.total < pl.before.total / 4);
	place_score(p, &s);
	assert_true(s.total == pl.before.total);	/* p is untouched */
	/* Carrying out the plan gives the score it promised. */
	for (i = 0; i < (int)pl.nmoves; i++) {
		assert_int_equal(place_vm_node(p, pl.moves[i].vm, NULL),
		    pl.moves[i].from);
		assert_int_equal(place_migrate_begin(p, pl.moves[i].vm,
		    pl.moves[i].to, 1, &cause), 0);
		assert_int_equal(place_migrate_end(p, pl.moves[i].vm, 1), 0);
	}
	place_score(p, &s);
	assert_true(s.total < pl.after.total + 1e-9 &&
	    s.total > pl.after.total - 1e-9);
	place_plan_free(&pl);
	/* Balanced now: no more moves. */
	assert_int_equal(place_plan_rebalance(p, 100, 0.01, &pl), 0);
	assert_int_equal(pl.nmoves, 0);
	place_plan_free(&pl);
	check(p);
	place_free(p);
}

static void
place_rebalance_separates_soft_groups_and_keeps_hard_ones(void **state)
{
	struct place		*p = cluster(3, 16, 32768, 200);
	struct place_vm		 soft = { .vcpus = 1, .memory = 1024,
	    .group = 7 };
	struct place_vm		 hard = { .vcpus = 1, .memory = 1024,
	    .group = 8 };
	struct place_plan	 pl;
	char			*cause = NULL;
	size_t			 i;

	(void)state;
	assert_int_equal(place_group_set(p, 7, "s", PLACE_ANTI_SOFT,
	    &cause), 0);
	assert_int_equal(place_group_set(p, 8, "h", PLACE_ANTI_HARD,
	    &cause), 0);
	assert_int_equal(place_vm_add(p, 1, &soft, 1, &cause), 0);
	assert_int_equal(place_vm_add(p, 2, &soft, 1, &cause), 0);
	assert_int_equal(place_vm_add(p, 3, &hard, 2, &cause), 0);
	assert_int_equal(place_vm_add(p, 4, &hard, 3, &cause), 0);
	add_vm(p, 5, 2, 1, 1024, 0);
	add_vm(p, 6, 3, 1, 1024, 0);
	assert_int_equal(place_plan_rebalance(p, 10, 0.01, &pl), 0);
	assert_int_equal(pl.before.soft_conflicts, 1);
	assert_int_equal(pl.after.soft_conflicts, 0);
	for (i = 0; i < pl.nmoves; i++)
		assert_true(pl.moves[i].vm != 3 && pl.moves[i].vm != 4);
	place_plan_free(&pl);
	place_free(p);
}

/* ---- the score ---- */

/*
 * ../shared/bench/htools/examples_tiny.txt: `hinfo -t` and htscore.py
 * both say 2.06054688: 4 x σ(VMs) = 2, then σ of free memory 0.015625,
 * free disk 0.009765625, vCPU ratio 0.03125, spindles 0.00390625.
 */
static void
place_score_matches_htools(void **state)
{
	struct place		*p = place_new();
	struct place_node_conf	 c = { .cpus = 32, .memory = 131072,
	    .disk = 2097152LL * 1048576, .reserve_cpus = 1,
	    .reserve_memory = 4096, .max_vms = 128 };
	struct place_vm		 vm = { .vcpus = 2, .memory = 4096,
	    .disk = 40960LL * 1048576 };
	struct place_score	 s;
	char			*cause = NULL;

	(void)state;
	assert_int_equal(place_node_set(p, 1, "n1", &c, &cause), 0);
	assert_int_equal(place_node_set(p, 2, "n2", &c, &cause), 0);
	place_node_state(p, 1, PLACE_READY);
	place_node_state(p, 2, PLACE_READY);
	assert_int_equal(place_vm_add(p, 1, &vm, 1, &cause), 0);
	place_score(p, &s);
	assert_true(s.vms == 0.5);
	assert_true(s.total > 2.06054687 && s.total < 2.06054688);
	place_free(p);
}

/* ---- input ---- */

static void
place_rejects_bad_node_settings(void **state)
{
	static const struct {
		struct place_node_conf	 c;
		const char		*msg;
	} bad[] = {
		{ { .cpus = 4, .memory = 1024, .cpu_ratio = 100001 },
		  "the cpu ratio must be between 0.001 and 100" },
		{ { .cpus = 4, .memory = 1024, .mem_ratio = -1 },
		  "the memory ratio must be between 0.001 and 100" },
		{ { .cpus = 4, .memory = 1024, .reserve_cpus = 5 },
		  "the CPU reserve must be between 0 and the node's 4 CPUs" },
		{ { .cpus = 4, .memory = 1024, .reserve_memory = 2048 },
		  "the memory reserve must be between 0 and the node's "
		  "1024 MiB" },
		{ { .cpus = 4, .memory = 1024, .tags = "zone=a,,b" },
		  "a tag must be 1 to 63 characters (\"key=value\")" },
		{ { .cpus = 4, .memory = 1024, .tags = "zone=a b" },
		  "bad tag \"zone=a b\": use key=value with letters, digits, "
		  "'-', '_', '.'" },
		{ { .cpus = 4, .memory = 1024, .tags = "=a" },
		  "bad tag \"=a\": use key=value with letters, digits, "
		  "'-', '_', '.'" },
	};
	struct place		*p = place_new();
	struct place_node_info	 ni;
	struct place_node_conf	 ok = { .cpus = 4, .memory = 1024,
	    .tags = "zone=a,rack=r1:2" };
	char			*cause;
	size_t			 i;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		cause = NULL;
		assert_int_equal(place_node_set(p, 1, "n", &bad[i].c, &cause),
		    -1);
		assert_string_equal(cause, bad[i].msg);
		free(cause);
	}
	assert_int_equal(place_node_info(p, 1, &ni), -1);
	assert_int_equal(place_node_set(p, 1, "n", &ok, &cause), 0);
	place_node_info(p, 1, &ni);
	/* Zero ratios are the defaults: cpu 4.0, memory and disk 1.0. */
	assert_int_equal(ni.cap_vcpus, 16);
	assert_int_equal(ni.cap_memory, 1024);
	assert_int_equal(place_policy_parse("pack"), PLACE_PACK);
	assert_int_equal(place_policy_parse("fast"), -1);
	assert_int_equal(place_state_parse("draining"), PLACE_DRAINING);
	assert_string_equal(place_state_name(PLACE_FENCED), "fenced");
	place_free(p);
}

static void
place_changing_a_node_keeps_its_vms(void **state)
{
	struct place		*p = cluster(1, 8, 8192, 100);
	struct place_node_conf	 c = { .cpus = 8, .memory = 8192,
	    .disk = 100 * GIB, .mem_ratio = 2000 };
	struct place_node_info	 ni;
	char			*cause = NULL;

	(void)state;
	add_vm(p, 1, 1, 4, 6000, 10);
	assert_int_equal(place_node_set(p, 1, "n1", &c, &cause), 0);
	place_node_info(p, 1, &ni);
	assert_int_equal(ni.cap_memory, 16384);
	assert_int_equal(ni.use_memory, 6000);
	assert_int_equal(ni.state, PLACE_READY);
	check(p);
	place_free(p);
}

static void
place_many_vms_come_and_go(void **state)
{
	struct place	*p = cluster(50, 128, 1 << 20, 10000), *q;
	struct place_vm	 vm = { .vcpus = 1, .memory = 100, .disk = GIB };
	char		*cause = NULL;
	int64_t		 id;

	(void)state;
	srandom(3);
	for (id = 1; id <= 20000; id++)
		assert_true(place_claim(p, id, &vm, PLACE_SPREAD, &cause) != -1);
	for (id = 1; id <= 20000; id += 1 + random() % 3)
		assert_int_equal(place_vm_remove(p, id), 0);
	assert_int_equal(place_vm_remove(p, 1), -1);
	check(p);
	q = place_clone(p);
	for (id = 20001; id <= 30000; id++)
		assert_true(place_claim(q, id, &vm, PLACE_PACK, &cause) != -1);
	check(q);
	check(p);
	assert_int_equal(place_vm_node(p, 25000, NULL), -1);
	place_free(q);
	place_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(place_table_rows_choose_the_expected_node),
		cmocka_unit_test(place_capacity_counts_what_fits_per_node),
		cmocka_unit_test(place_capacity_matches_placing_until_full),
		cmocka_unit_test(place_n1_survives_losing_the_largest_node),
		cmocka_unit_test(place_n1_names_the_vms_that_would_not_fit),
		cmocka_unit_test(place_empty_nodes_are_listed),
		cmocka_unit_test(place_drain_plan_moves_every_vm_largest_first),
		cmocka_unit_test(place_drain_plan_reports_what_fits_nowhere),
		cmocka_unit_test(place_migration_claims_both_nodes_until_it_ends),
		cmocka_unit_test(place_migration_target_is_filtered),
		cmocka_unit_test(place_hard_group_holds_through_migrations),
		cmocka_unit_test(
		    place_evacuation_moves_claims_and_releases_the_dead_node),
		cmocka_unit_test(place_fits_checks_one_node_with_every_filter),
		cmocka_unit_test(place_resize_stays_within_the_node),
		cmocka_unit_test(place_rebalance_lowers_the_score),
		cmocka_unit_test(
		    place_rebalance_separates_soft_groups_and_keeps_hard_ones),
		cmocka_unit_test(place_score_matches_htools),
		cmocka_unit_test(place_rejects_bad_node_settings),
		cmocka_unit_test(place_changing_a_node_keeps_its_vms),
		cmocka_unit_test(place_many_vms_come_and_go),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
