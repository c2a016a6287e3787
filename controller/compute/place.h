/*
 * The placement engine: an in-memory model of hypervisor nodes, their VMs
 * and anti-affinity groups, with the filters and weighers that choose a
 * node for a VM, and the reports built on them (capacity, N+1, drain and
 * evacuation plans, rebalance). It knows nothing of the database or the
 * network and has no global state: the controller keeps one engine,
 * rebuilt from the store at start-up and told of every claim and release,
 * and tests and benchmarks drive their own.
 *
 * Units: memory in MiB, disk in bytes, CPUs and vCPUs as counts.
 * Allocation ratios are integers in thousandths (4000 = 4.0): nothing
 * that is billed or compared for capacity is ever a floating point
 * number. The only floating point values are the imbalance scores that
 * weigh candidates.
 *
 * Capacity of a node under its ratios and host reserve:
 *	vCPUs	(cpus - reserve_cpus) * cpu_ratio / 1000
 *	memory	(memory - reserve_memory) * memory_ratio / 1000
 *	disk	disk * disk_ratio / 1000
 * (the reserve is physical: it is taken before the overcommit ratio).
 */
#ifndef OPSN_PLACE_H
#define OPSN_PLACE_H

#include <stddef.h>
#include <stdint.h>

#define PLACE_NAME_MAX		64	/* node and group names, with NUL */
#define PLACE_TAG_MAX		64	/* one "key=value" tag, with NUL */
#define PLACE_NODE_TAGS		16	/* tags on one node */
#define PLACE_VM_TAGS		8	/* tags one VM requires */
#define PLACE_RATIO_ONE		1000	/* a ratio of 1.0 in thousandths */
#define PLACE_RATIO_MAX		100000	/* 100.0 */
#define PLACE_CPU_RATIO		4000	/* defaults */
#define PLACE_MEM_RATIO		1000
#define PLACE_DISK_RATIO	1000

enum place_state {
	PLACE_ENROLLING,
	PLACE_READY,
	PLACE_CORDONED,
	PLACE_DRAINING,
	PLACE_UNREACHABLE,
	PLACE_FENCED,
	PLACE_RETIRED,
};

enum place_policy {
	PLACE_SPREAD,		/* lowest imbalance score (Ganeti's) */
	PLACE_PACK,		/* fullest node that fits */
};

enum place_affinity {
	PLACE_ANTI_HARD,	/* never two members on one node */
	PLACE_ANTI_SOFT,	/* avoided where possible */
};

/* What a node offers. Zero ratios mean the defaults. */
struct place_node_conf {
	int64_t		 cpus;
	int64_t		 memory;	/* MiB */
	int64_t		 disk;		/* bytes */
	int32_t		 cpu_ratio;	/* thousandths */
	int32_t		 mem_ratio;
	int32_t		 disk_ratio;
	int64_t		 reserve_cpus;
	int64_t		 reserve_memory;	/* MiB */
	int64_t		 max_vms;	/* 0: no limit */
	const char	*tags;		/* "k=v,k=v"; NULL or "" for none */
};

/* What a VM needs. */
struct place_vm {
	int64_t		 vcpus;
	int64_t		 memory;	/* MiB */
	int64_t		 disk;		/* bytes */
	int64_t		 group;		/* group id, 0 for none */
	const char	*require;	/* "k=v,k=v" tags; NULL or "" */
};

/* A node as the engine sees it (name points into the engine). */
struct place_node_info {
	int64_t		 id;
	const char	*name;
	enum place_state state;
	int64_t		 cap_vcpus, cap_memory, cap_disk;	/* allowed */
	int64_t		 use_vcpus, use_memory, use_disk;	/* claimed */
	int64_t		 vms;		/* VMs claimed here, incoming ones too */
};

/* The imbalance score and its parts (each a standard deviation). */
struct place_score {
	double		 total;
	double		 free_memory;	/* σ of free memory / memory */
	double		 free_disk;	/* σ of free disk / disk */
	double		 vcpu_ratio;	/* σ of (reserve + vCPUs) / CPUs */
	double		 slots;		/* σ of VMs / max VMs */
	double		 vms;		/* σ of VMs per node (weight 4) */
	int64_t		 soft_conflicts;	/* soft group pairs sharing a node */
};

struct place_move {
	int64_t		 vm;
	int64_t		 from;
	int64_t		 to;
};

/* A plan: moves in order, VMs left without a node, scores around it. */
struct place_plan {
	struct place_move *moves;
	size_t		 nmoves;
	int64_t		*unfit;		/* VM ids */
	size_t		 nunfit;
	int64_t		 node;		/* the node lost or drained, or 0 */
	struct place_score before, after;
};

struct place;

/* A new, empty engine; place_free accepts NULL. */
struct place	*place_new(void);
void		 place_free(struct place *);
/* A deep copy, for what-if simulations. */
struct place	*place_clone(const struct place *);

/* Add or change a node (its VMs stay); -1 with a reason on bad input. */
int	place_node_set(struct place *, int64_t id, const char *name,
	    const struct place_node_conf *, char **cause);
int	place_node_state(struct place *, int64_t id, enum place_state);
/* Forget a node; -1 if VMs are still claimed on it. */
int	place_node_remove(struct place *, int64_t id, char **cause);
int	place_node_info(const struct place *, int64_t id,
	    struct place_node_info *);
/* Ids of the nodes with no VM, in states ready, cordoned or draining. */
size_t	place_empty_nodes(const struct place *, int64_t **ids);

/* Add or change an anti-affinity group; -1 with a reason. */
int	place_group_set(struct place *, int64_t id, const char *name,
	    enum place_affinity, char **cause);
int	place_group_remove(struct place *, int64_t id, char **cause);

/*
 * The node a VM should go to under a policy, or -1 with the count of
 * nodes each filter refused ("3 nodes lacked memory, 1 was cordoned").
 * Nothing is claimed.
 */
int64_t	place_decide(const struct place *, const struct place_vm *,
	    enum place_policy, char **cause);
/* Would a new VM pass every filter on this node? 0, or -1 and why. */
int	place_fits(const struct place *, const struct place_vm *,
	    int64_t node_id, char **cause);
/* A new node for a VM already placed (never its current one). */
int64_t	place_decide_vm(const struct place *, int64_t vm_id,
	    enum place_policy, char **cause);
/* place_decide, then claim the VM there in the same step. */
int64_t	place_claim(struct place *, int64_t vm_id, const struct place_vm *,
	    enum place_policy, char **cause);
/* Record a VM already on a node, without checks (rebuilding the model). */
int	place_vm_add(struct place *, int64_t vm_id, const struct place_vm *,
	    int64_t node_id, char **cause);
/*
 * Give a VM a new size on its node(s), if their capacity holds it (the
 * node's state does not matter; a negative disk keeps it); -1 and why,
 * the VM unchanged.
 */
int	place_vm_resize(struct place *, int64_t vm_id, int64_t vcpus,
	    int64_t memory, int64_t disk, char **cause);
/* Release a VM's claims (a migration's target too). */
int	place_vm_remove(struct place *, int64_t vm_id);
/* The node holding a VM (its source while it migrates), or -1. */
int64_t	place_vm_node(const struct place *, int64_t vm_id, int64_t *dest);
/* Move a VM's claim to another node at once (evacuation: rebuilt there). */
int	place_vm_move(struct place *, int64_t vm_id, int64_t node_id,
	    char **cause);
/*
 * Start a cold migration: the VM is claimed on both nodes until it ends;
 * moved set on end moves it to the target, otherwise it stays on its
 * source. With check set the target must pass every filter (not when
 * the model is rebuilt from migrations already under way).
 */
int	place_migrate_begin(struct place *, int64_t vm_id, int64_t dest,
	    int check, char **cause);
int	place_migrate_end(struct place *, int64_t vm_id, int moved);

/* How many more VMs of this size fit now on ready nodes. */
int64_t	place_fit_count(const struct place *, const struct place_vm *);
/* The current score. */
void	place_score(const struct place *, struct place_score *);

/*
 * Where a node's VMs would go (largest first) if it were drained (its
 * VMs move, it keeps them until then) or lost. The nodes' states are
 * taken as they are, with the node itself out.
 */
int	place_plan_drain(const struct place *, int64_t node,
	    enum place_policy, struct place_plan *, char **cause);
/*
 * N+1: would every VM of the largest node (memory, then CPUs) fit
 * elsewhere if it failed; plan->unfit lists those that would not.
 */
int	place_plan_n1(const struct place *, enum place_policy,
	    struct place_plan *);
/*
 * Moves that each lower the score by at least min_gain, best first,
 * between ready nodes, at most max_moves (the way Ganeti's hbal works).
 */
int	place_plan_rebalance(const struct place *, int max_moves,
	    double min_gain, struct place_plan *);
void	place_plan_free(struct place_plan *);

/* Recompute everything from scratch and compare (tests); -1 and why. */
int	place_check(const struct place *, char **cause);
/* Parse "spread"/"pack" and the state names; -1 if unknown. */
int	place_policy_parse(const char *);
const char *place_policy_name(enum place_policy);
int	place_state_parse(const char *);
const char *place_state_name(enum place_state);
/* Check a "k=v,k=v" tag list; -1 with a reason. */
int	place_tags_ok(const char *, int max, char **cause);

#endif
