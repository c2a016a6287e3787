/*
 * The placement engine (see place.h). Everything lives in flat arrays
 * linked by indices, so that a clone is a handful of memcpy calls and a
 * what-if simulation never touches the live model.
 *
 * A decision is one pass over the nodes. Each node's claimed vCPUs,
 * memory, disk and VM count are kept up to date on every claim and
 * release, and so are the sums (Σx, Σx²) of the five values the
 * imbalance score takes the standard deviation of; weighing a candidate
 * replaces one node's values in those sums, so it costs O(1) and a
 * decision O(nodes), whatever the number of VMs.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/util.h"
#include "place.h"

/* The score's values per node, and their weights (Ganeti htools 3.0). */
enum { M_MEM, M_DISK, M_CPU, M_SLOTS, M_VMS, NM };
static const double place_weight[NM] = { 1, 1, 1, 1, 4 };

/*
 * A node holding n members of a VM's soft anti-affinity group weighs
 * n * SOFT_PENALTY more: more than any score difference one VM makes,
 * so such nodes are chosen only when nothing else fits.
 */
#define SOFT_PENALTY	1000.0
/* Rebuild the score sums from scratch this often (rounding drift). */
#define SUMS_REBUILD	4096
/* Rebalance: score evaluations per move before sources are narrowed. */
#define REBAL_BUDGET	400000

/* Why a node was refused, in the order the filters run. */
enum {
	R_CORDONED, R_DRAINING, R_UNREACHABLE, R_FENCED, R_NOTREADY,
	R_TAGS, R_GROUP, R_MEM, R_CPU, R_DISK, R_SLOTS, NR
};

struct pnode {
	int64_t		 id;
	int		 live;
	int		 online;	/* counted in the score */
	char		 name[PLACE_NAME_MAX];
	enum place_state state;
	int64_t		 cpus, memory, disk;
	int32_t		 cpu_ratio, mem_ratio, disk_ratio;
	int64_t		 reserve_cpus, reserve_memory, max_vms;
	int64_t		 cap_vcpus, cap_mem, cap_disk;
	int64_t		 use_vcpus, use_mem, use_disk, nvms;
	int		 ntags;
	int32_t		 tags[PLACE_NODE_TAGS];
	int32_t		 vms;		/* VMs whose source is here */
	double		 x[NM];		/* score values while online */
};

struct pvm {
	int64_t		 id;
	int		 live;
	int32_t		 node, dest;	/* dest: -1 unless migrating */
	int32_t		 next, prev;	/* in the source node's list */
	int32_t		 group;		/* -1: none */
	int32_t		 gnext, gprev;
	int64_t		 vcpus, mem, disk;
	int		 nreq;
	int32_t		 req[PLACE_VM_TAGS];
};

struct pgroup {
	int64_t		 id;
	int		 live;
	char		 name[PLACE_NAME_MAX];
	enum place_affinity policy;
	int32_t		 vms;
	int64_t		 members;
};

struct ptag {
	char		 s[PLACE_TAG_MAX];
};

/* int64 id -> array index, open addressing with backward-shift delete. */
struct pmap {
	int64_t		*k;
	int32_t		*v;
	uint32_t	 cap, len;
};
#define MAP_EMPTY	INT64_MIN

struct place {
	struct pnode	*nodes;
	int32_t		 nnodes, nodecap;	/* nnodes: high-water mark */
	struct pvm	*vms;
	int32_t		 nvms, vmcap, vmfree;	/* vmfree: free-list head */
	struct pgroup	*groups;
	int32_t		 ngroups, groupcap;
	struct ptag	*tags;
	int32_t		 ntags, tagcap;
	struct pmap	 nodemap, vmmap, groupmap;
	int32_t		*scratch;	/* per node, zero between uses */
	double		 s1[NM], s2[NM];
	int64_t		 online;
	int		 updates;
};

/* What one decision looks for (ids resolved to indices). */
struct want {
	int64_t		 vcpus, mem, disk;
	int32_t		 group;
	int		 nreq;
	int32_t		 req[PLACE_VM_TAGS];
	int32_t		 self;		/* the VM itself, or -1 */
	int32_t		 avoid;		/* a node not to consider, or -1 */
	const char	*require;	/* for messages */
};

/* Set *cause to a reason, unless the caller passed no place for one. */
static void __attribute__((format(printf, 2, 3)))
say(char **cause, const char *fmt, ...)
{
	va_list	 ap;

	if (cause == NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(cause, fmt, ap);
	va_end(ap);
}

/* ---- id maps ---- */

static uint32_t
map_hash(int64_t k)
{
	uint64_t	 x = (uint64_t)k * 0x9e3779b97f4a7c15ULL;

	return ((uint32_t)(x >> 32) ^ (uint32_t)x);
}

static void
map_init(struct pmap *m, uint32_t cap)
{
	uint32_t	 i;

	m->cap = cap;
	m->len = 0;
	m->k = xcalloc(cap, sizeof(*m->k));
	m->v = xcalloc(cap, sizeof(*m->v));
	for (i = 0; i < cap; i++)
		m->k[i] = MAP_EMPTY;
}

static void
map_free(struct pmap *m)
{
	free(m->k);
	free(m->v);
}

static int32_t
map_get(const struct pmap *m, int64_t k)
{
	uint32_t	 i = map_hash(k) & (m->cap - 1);

	while (m->k[i] != MAP_EMPTY) {
		if (m->k[i] == k)
			return (m->v[i]);
		i = (i + 1) & (m->cap - 1);
	}
	return (-1);
}

static void
map_put(struct pmap *m, int64_t k, int32_t v)
{
	struct pmap	 old;
	uint32_t	 i;

	if ((m->len + 1) * 2 > m->cap) {
		old = *m;
		map_init(m, old.cap * 2);
		for (i = 0; i < old.cap; i++)
			if (old.k[i] != MAP_EMPTY)
				map_put(m, old.k[i], old.v[i]);
		map_free(&old);
	}
	i = map_hash(k) & (m->cap - 1);
	while (m->k[i] != MAP_EMPTY && m->k[i] != k)
		i = (i + 1) & (m->cap - 1);
	if (m->k[i] == MAP_EMPTY)
		m->len++;
	m->k[i] = k;
	m->v[i] = v;
}

static void
map_del(struct pmap *m, int64_t k)
{
	uint32_t	 i, j, h, mask = m->cap - 1;

	i = map_hash(k) & mask;
	while (m->k[i] != k) {
		if (m->k[i] == MAP_EMPTY)
			return;
		i = (i + 1) & mask;
	}
	/* Shift back the entries that probed past the hole. */
	j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (m->k[j] == MAP_EMPTY)
			break;
		h = map_hash(m->k[j]) & mask;
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			m->k[i] = m->k[j];
			m->v[i] = m->v[j];
			i = j;
		}
	}
	m->k[i] = MAP_EMPTY;
	m->len--;
}

static void
map_copy(struct pmap *to, const struct pmap *from)
{
	to->cap = from->cap;
	to->len = from->len;
	to->k = xmalloc(from->cap * sizeof(*to->k));
	to->v = xmalloc(from->cap * sizeof(*to->v));
	memcpy(to->k, from->k, from->cap * sizeof(*to->k));
	memcpy(to->v, from->v, from->cap * sizeof(*to->v));
}

/* ---- names ---- */

static const char *const place_states[] = {
	[PLACE_ENROLLING] = "enrolling", [PLACE_READY] = "ready",
	[PLACE_CORDONED] = "cordoned", [PLACE_DRAINING] = "draining",
	[PLACE_UNREACHABLE] = "unreachable", [PLACE_FENCED] = "fenced",
	[PLACE_RETIRED] = "retired",
};

/* The state named s, or -1. */
int
place_state_parse(const char *s)
{
	size_t	 i;

	for (i = 0; i < nitems(place_states); i++)
		if (strcmp(s, place_states[i]) == 0)
			return ((int)i);
	return (-1);
}

/* The name of a node state. */
const char *
place_state_name(enum place_state s)
{
	if ((size_t)s >= nitems(place_states))
		return ("unknown");
	return (place_states[s]);
}

/* The policy named s, or -1. */
int
place_policy_parse(const char *s)
{
	if (strcmp(s, "spread") == 0)
		return (PLACE_SPREAD);
	if (strcmp(s, "pack") == 0)
		return (PLACE_PACK);
	return (-1);
}

/* The name of a policy. */
const char *
place_policy_name(enum place_policy p)
{
	return (p == PLACE_PACK ? "pack" : "spread");
}

/* ---- tags ---- */

static int
tag_char_ok(int c, int value)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
		return (1);
	return (value && (c == ':' || c == '/'));
}

/*
 * Split "k=v,k=v" into tags; -1 with a reason on bad syntax. Each tag is
 * a key of letters, digits, '-', '_' or '.', optionally "=value" (also
 * ':' and '/').
 */
static int
tags_split(const char *s, int max, char out[][PLACE_TAG_MAX], int *n,
    char **cause)
{
	const char	*p, *start;
	size_t		 len;
	int		 eq, i;

	*n = 0;
	if (s == NULL || *s == '\0')
		return (0);
	for (start = p = s;; p++) {
		if (*p != ',' && *p != '\0')
			continue;
		len = (size_t)(p - start);
		if (len == 0 || len >= PLACE_TAG_MAX) {
			say(cause, "a tag must be 1 to %d characters "
			    "(\"key=value\")", PLACE_TAG_MAX - 1);
			return (-1);
		}
		eq = 0;
		for (i = 0; i < (int)len; i++) {
			if (start[i] == '=' && !eq && i > 0) {
				eq = 1;
				continue;
			}
			if (!tag_char_ok((unsigned char)start[i], eq)) {
				say(cause, "bad tag \"%.*s\": use key=value "
				    "with letters, digits, '-', '_', '.'",
				    (int)len, start);
				return (-1);
			}
		}
		if (*n == max) {
			say(cause, "at most %d tags", max);
			return (-1);
		}
		memcpy(out[*n], start, len);
		out[*n][len] = '\0';
		for (i = 0; i < *n; i++)
			if (strcmp(out[i], out[*n]) == 0)
				break;
		if (i == *n)
			(*n)++;
		if (*p == '\0')
			break;
		start = p + 1;
	}
	return (0);
}

/* Check a tag list; -1 with a reason. */
int
place_tags_ok(const char *s, int max, char **cause)
{
	char	 t[PLACE_NODE_TAGS][PLACE_TAG_MAX];
	int	 n;

	if (max > PLACE_NODE_TAGS)
		max = PLACE_NODE_TAGS;
	return (tags_split(s, max, t, &n, cause));
}

/* The index of a tag, added if add is set; -1 if unknown. */
static int32_t
tag_find(struct place *p, const char *s, int add)
{
	int32_t	 i;

	for (i = 0; i < p->ntags; i++)
		if (strcmp(p->tags[i].s, s) == 0)
			return (i);
	if (!add)
		return (-1);
	if (p->ntags == p->tagcap) {
		p->tagcap = p->tagcap ? p->tagcap * 2 : 16;
		p->tags = xrealloc(p->tags, p->tagcap * sizeof(*p->tags));
	}
	strlcpy(p->tags[p->ntags].s, s, PLACE_TAG_MAX);
	return (p->ntags++);
}

/* Resolve a tag list to indices (unknown ones become -1 unless add). */
static int
tags_resolve(struct place *p, const char *s, int max, int add, int32_t *ids,
    int *n, char **cause)
{
	char	 t[PLACE_NODE_TAGS][PLACE_TAG_MAX];
	int	 i;

	if (tags_split(s, max, t, n, cause) == -1)
		return (-1);
	for (i = 0; i < *n; i++)
		ids[i] = tag_find(p, t[i], add);
	return (0);
}

/* ---- the engine ---- */

/* A new, empty engine. */
struct place *
place_new(void)
{
	struct place	*p = xcalloc(1, sizeof(*p));

	map_init(&p->nodemap, 64);
	map_init(&p->vmmap, 1024);
	map_init(&p->groupmap, 64);
	p->vmfree = -1;
	return (p);
}

/* Free an engine (NULL is fine). */
void
place_free(struct place *p)
{
	if (p == NULL)
		return;
	free(p->nodes);
	free(p->vms);
	free(p->groups);
	free(p->tags);
	free(p->scratch);
	map_free(&p->nodemap);
	map_free(&p->vmmap);
	map_free(&p->groupmap);
	free(p);
}

static void *
dup_array(const void *a, size_t n, size_t size)
{
	void	*b;

	if (n == 0)
		return (NULL);
	b = xmalloc(n * size);
	memcpy(b, a, n * size);
	return (b);
}

/* A deep copy of an engine. */
struct place *
place_clone(const struct place *p)
{
	struct place	*q = xmalloc(sizeof(*q));

	*q = *p;
	q->nodes = dup_array(p->nodes, p->nodecap, sizeof(*p->nodes));
	q->vms = dup_array(p->vms, p->vmcap, sizeof(*p->vms));
	q->groups = dup_array(p->groups, p->groupcap, sizeof(*p->groups));
	q->tags = dup_array(p->tags, p->tagcap, sizeof(*p->tags));
	q->scratch = p->nodecap ? xcalloc(p->nodecap, sizeof(*q->scratch)) :
	    NULL;
	map_copy(&q->nodemap, &p->nodemap);
	map_copy(&q->vmmap, &p->vmmap);
	map_copy(&q->groupmap, &p->groupmap);
	return (q);
}

/* ---- the score ---- */

static int
state_online(enum place_state s)
{
	return (s == PLACE_READY || s == PLACE_CORDONED ||
	    s == PLACE_DRAINING);
}

/* A node's score values with dv vCPUs, dm MiB, dd bytes, dc VMs more. */
static void
node_values(const struct pnode *n, int64_t dv, int64_t dm, int64_t dd,
    int64_t dc, double *x)
{
	x[M_MEM] = n->memory > 0 ? (double)(n->memory - n->reserve_memory -
	    n->use_mem - dm) / (double)n->memory : 0;
	x[M_DISK] = n->disk > 0 ? (double)(n->disk - n->use_disk - dd) /
	    (double)n->disk : 1;
	x[M_CPU] = n->cpus > 0 ? (double)(n->reserve_cpus + n->use_vcpus +
	    dv) / (double)n->cpus : 0;
	x[M_SLOTS] = n->max_vms > 0 ? (double)(n->nvms + dc) /
	    (double)n->max_vms : 0;
	x[M_VMS] = (double)(n->nvms + dc);
}

static double
stddev(double s1, double s2, int64_t n)
{
	double	 m, v;

	if (n <= 0)
		return (0);
	m = s1 / (double)n;
	v = s2 / (double)n - m * m;
	return (v > 0 ? sqrt(v) : 0);
}

static void
sums_rebuild(struct place *p)
{
	int32_t	 i;
	int	 k;

	memset(p->s1, 0, sizeof(p->s1));
	memset(p->s2, 0, sizeof(p->s2));
	p->online = 0;
	for (i = 0; i < p->nnodes; i++) {
		if (!p->nodes[i].live || !p->nodes[i].online)
			continue;
		p->online++;
		for (k = 0; k < NM; k++) {
			p->s1[k] += p->nodes[i].x[k];
			p->s2[k] += p->nodes[i].x[k] * p->nodes[i].x[k];
		}
	}
	p->updates = 0;
}

/* Bring a node's score values and the sums up to date. */
static void
node_refresh(struct place *p, struct pnode *n)
{
	int	 k;

	if (n->online) {
		for (k = 0; k < NM; k++) {
			p->s1[k] -= n->x[k];
			p->s2[k] -= n->x[k] * n->x[k];
		}
		p->online--;
	}
	n->online = n->live && state_online(n->state);
	node_values(n, 0, 0, 0, 0, n->x);
	if (n->online) {
		for (k = 0; k < NM; k++) {
			p->s1[k] += n->x[k];
			p->s2[k] += n->x[k] * n->x[k];
		}
		p->online++;
	}
	if (++p->updates >= SUMS_REBUILD)
		sums_rebuild(p);
}

/*
 * The score with up to two nodes' values replaced (a: old values, b: new
 * ones, for na nodes), or the current one when na is 0.
 */
static double
score_with(const struct place *p, int na, const double *a0,
    const double *b0, const double *a1, const double *b1)
{
	double	 s1, s2, t = 0;
	int	 k;

	for (k = 0; k < NM; k++) {
		s1 = p->s1[k];
		s2 = p->s2[k];
		if (na > 0) {
			s1 += b0[k] - a0[k];
			s2 += b0[k] * b0[k] - a0[k] * a0[k];
		}
		if (na > 1) {
			s1 += b1[k] - a1[k];
			s2 += b1[k] * b1[k] - a1[k] * a1[k];
		}
		t += place_weight[k] * stddev(s1, s2, p->online);
	}
	return (t);
}

/* Soft anti-affinity: members beyond the first on each node. */
static int64_t
soft_conflicts(const struct place *p)
{
	int64_t	 c = 0;
	int32_t	 g, v;

	for (g = 0; g < p->ngroups; g++) {
		if (!p->groups[g].live || p->groups[g].policy != PLACE_ANTI_SOFT)
			continue;
		for (v = p->groups[g].vms; v != -1; v = p->vms[v].gnext) {
			if (p->scratch[p->vms[v].node]++ > 0)
				c++;
			if (p->vms[v].dest != -1 &&
			    p->scratch[p->vms[v].dest]++ > 0)
				c++;
		}
		for (v = p->groups[g].vms; v != -1; v = p->vms[v].gnext) {
			p->scratch[p->vms[v].node] = 0;
			if (p->vms[v].dest != -1)
				p->scratch[p->vms[v].dest] = 0;
		}
	}
	return (c);
}

/* The current score. */
void
place_score(const struct place *p, struct place_score *s)
{
	double	 v[NM];
	int	 k;

	for (k = 0; k < NM; k++)
		v[k] = stddev(p->s1[k], p->s2[k], p->online);
	s->free_memory = v[M_MEM];
	s->free_disk = v[M_DISK];
	s->vcpu_ratio = v[M_CPU];
	s->slots = v[M_SLOTS];
	s->vms = v[M_VMS];
	s->total = score_with(p, 0, NULL, NULL, NULL, NULL);
	s->soft_conflicts = soft_conflicts(p);
}

/* ---- nodes ---- */

static int64_t
scale(int64_t v, int32_t ratio)
{
	if (v <= 0)
		return (0);
	return ((int64_t)((__int128)v * ratio / PLACE_RATIO_ONE));
}

static void
node_caps(struct pnode *n)
{
	n->cap_vcpus = scale(n->cpus - n->reserve_cpus, n->cpu_ratio);
	n->cap_mem = scale(n->memory - n->reserve_memory, n->mem_ratio);
	n->cap_disk = scale(n->disk, n->disk_ratio);
}

static int
ratio_ok(int32_t *r, int32_t def, const char *what, char **cause)
{
	if (*r == 0)
		*r = def;
	if (*r < 1 || *r > PLACE_RATIO_MAX) {
		say(cause, "the %s ratio must be between 0.001 and %d",
		    what, PLACE_RATIO_MAX / PLACE_RATIO_ONE);
		return (-1);
	}
	return (0);
}

/* Add or change a node; its VMs and state stay. */
int
place_node_set(struct place *p, int64_t id, const char *name,
    const struct place_node_conf *c, char **cause)
{
	struct pnode	*n, tmp;
	int32_t		 i, old;

	memset(&tmp, 0, sizeof(tmp));
	if (name == NULL || *name == '\0' || strlen(name) >= PLACE_NAME_MAX) {
		say(cause, "a node name must be 1 to %d characters",
		    PLACE_NAME_MAX - 1);
		return (-1);
	}
	if (c->cpus < 0 || c->memory < 0 || c->disk < 0 || c->max_vms < 0) {
		say(cause, "capacities cannot be negative");
		return (-1);
	}
	if (c->reserve_cpus < 0 || c->reserve_cpus > c->cpus) {
		say(cause, "the CPU reserve must be between 0 and the "
		    "node's %lld CPUs", (long long)c->cpus);
		return (-1);
	}
	if (c->reserve_memory < 0 || c->reserve_memory > c->memory) {
		say(cause, "the memory reserve must be between 0 and "
		    "the node's %lld MiB", (long long)c->memory);
		return (-1);
	}
	tmp.cpu_ratio = c->cpu_ratio;
	tmp.mem_ratio = c->mem_ratio;
	tmp.disk_ratio = c->disk_ratio;
	if (ratio_ok(&tmp.cpu_ratio, PLACE_CPU_RATIO, "cpu", cause) == -1 ||
	    ratio_ok(&tmp.mem_ratio, PLACE_MEM_RATIO, "memory", cause) == -1 ||
	    ratio_ok(&tmp.disk_ratio, PLACE_DISK_RATIO, "disk", cause) == -1)
		return (-1);
	if (tags_resolve(p, c->tags, PLACE_NODE_TAGS, 1, tmp.tags, &tmp.ntags,
	    cause) == -1)
		return (-1);

	if ((i = map_get(&p->nodemap, id)) == -1) {
		for (i = 0; i < p->nnodes; i++)
			if (!p->nodes[i].live)
				break;
		if (i == p->nodecap) {
			old = p->nodecap;
			p->nodecap = old ? old * 2 : 16;
			p->nodes = xrealloc(p->nodes,
			    p->nodecap * sizeof(*p->nodes));
			p->scratch = xrealloc(p->scratch,
			    p->nodecap * sizeof(*p->scratch));
			memset(p->scratch + old, 0,
			    (p->nodecap - old) * sizeof(*p->scratch));
		}
		if (i == p->nnodes)
			p->nnodes++;
		n = &p->nodes[i];
		memset(n, 0, sizeof(*n));
		n->id = id;
		n->live = 1;
		n->state = PLACE_ENROLLING;
		n->vms = -1;
		map_put(&p->nodemap, id, i);
	}
	n = &p->nodes[i];
	strlcpy(n->name, name, sizeof(n->name));
	n->cpus = c->cpus;
	n->memory = c->memory;
	n->disk = c->disk;
	n->cpu_ratio = tmp.cpu_ratio;
	n->mem_ratio = tmp.mem_ratio;
	n->disk_ratio = tmp.disk_ratio;
	n->reserve_cpus = c->reserve_cpus;
	n->reserve_memory = c->reserve_memory;
	n->max_vms = c->max_vms;
	n->ntags = tmp.ntags;
	memcpy(n->tags, tmp.tags, sizeof(n->tags));
	node_caps(n);
	node_refresh(p, n);
	return (0);
}

static struct pnode *
node_get(const struct place *p, int64_t id)
{
	int32_t	 i = map_get(&p->nodemap, id);

	return (i == -1 ? NULL : &p->nodes[i]);
}

/* Change a node's state; -1 if there is no such node. */
int
place_node_state(struct place *p, int64_t id, enum place_state s)
{
	struct pnode	*n;

	if ((n = node_get(p, id)) == NULL)
		return (-1);
	n->state = s;
	node_refresh(p, n);
	return (0);
}

/* Forget an empty node. */
int
place_node_remove(struct place *p, int64_t id, char **cause)
{
	struct pnode	*n;

	if ((n = node_get(p, id)) == NULL) {
		say(cause, "no such node");
		return (-1);
	}
	if (n->nvms > 0) {
		say(cause, "node %s still holds %lld VMs", n->name,
		    (long long)n->nvms);
		return (-1);
	}
	n->live = 0;
	node_refresh(p, n);
	map_del(&p->nodemap, id);
	return (0);
}

/* A node's capacity and claims; -1 if there is no such node. */
int
place_node_info(const struct place *p, int64_t id, struct place_node_info *o)
{
	const struct pnode	*n;

	if ((n = node_get(p, id)) == NULL)
		return (-1);
	o->id = n->id;
	o->name = n->name;
	o->state = n->state;
	o->cap_vcpus = n->cap_vcpus;
	o->cap_memory = n->cap_mem;
	o->cap_disk = n->cap_disk;
	o->use_vcpus = n->use_vcpus;
	o->use_memory = n->use_mem;
	o->use_disk = n->use_disk;
	o->vms = n->nvms;
	return (0);
}

/* Ids of online nodes without VMs (caller frees *ids). */
size_t
place_empty_nodes(const struct place *p, int64_t **ids)
{
	size_t	 n = 0;
	int32_t	 i;

	*ids = xcalloc((size_t)p->nnodes + 1, sizeof(**ids));
	for (i = 0; i < p->nnodes; i++)
		if (p->nodes[i].live && p->nodes[i].online &&
		    p->nodes[i].nvms == 0)
			(*ids)[n++] = p->nodes[i].id;
	return (n);
}

/* ---- groups ---- */

/* Add or change an anti-affinity group. */
int
place_group_set(struct place *p, int64_t id, const char *name,
    enum place_affinity policy, char **cause)
{
	struct pgroup	*g;
	int32_t		 i;

	if (name == NULL || *name == '\0' || strlen(name) >= PLACE_NAME_MAX) {
		say(cause, "a group name must be 1 to %d characters",
		    PLACE_NAME_MAX - 1);
		return (-1);
	}
	if ((i = map_get(&p->groupmap, id)) == -1) {
		for (i = 0; i < p->ngroups; i++)
			if (!p->groups[i].live)
				break;
		if (i == p->groupcap) {
			p->groupcap = p->groupcap ? p->groupcap * 2 : 16;
			p->groups = xrealloc(p->groups,
			    p->groupcap * sizeof(*p->groups));
		}
		if (i == p->ngroups)
			p->ngroups++;
		g = &p->groups[i];
		memset(g, 0, sizeof(*g));
		g->id = id;
		g->live = 1;
		g->vms = -1;
		map_put(&p->groupmap, id, i);
	}
	g = &p->groups[i];
	strlcpy(g->name, name, sizeof(g->name));
	g->policy = policy;
	return (0);
}

/* Forget a group without members. */
int
place_group_remove(struct place *p, int64_t id, char **cause)
{
	int32_t	 i;

	if ((i = map_get(&p->groupmap, id)) == -1) {
		say(cause, "no such group");
		return (-1);
	}
	if (p->groups[i].members > 0) {
		say(cause, "group %s still has %lld members",
		    p->groups[i].name, (long long)p->groups[i].members);
		return (-1);
	}
	p->groups[i].live = 0;
	map_del(&p->groupmap, id);
	return (0);
}

/* ---- claims ---- */

/* Add (sign 1) or remove (-1) a VM's claim on node i. */
static void
node_use(struct place *p, int32_t i, const struct pvm *v, int sign)
{
	struct pnode	*n = &p->nodes[i];

	n->use_vcpus += sign * v->vcpus;
	n->use_mem += sign * v->mem;
	n->use_disk += sign * v->disk;
	n->nvms += sign;
	node_refresh(p, n);
}

static void
list_link(struct place *p, int32_t vi)
{
	struct pvm	*v = &p->vms[vi];
	struct pnode	*n = &p->nodes[v->node];

	v->prev = -1;
	v->next = n->vms;
	if (n->vms != -1)
		p->vms[n->vms].prev = vi;
	n->vms = vi;
}

static void
list_unlink(struct place *p, int32_t vi)
{
	struct pvm	*v = &p->vms[vi];

	if (v->prev != -1)
		p->vms[v->prev].next = v->next;
	else
		p->nodes[v->node].vms = v->next;
	if (v->next != -1)
		p->vms[v->next].prev = v->prev;
}

/* Resolve a VM's needs; -1 with a reason on bad input. */
static int
want_make(struct place *p, const struct place_vm *vm, int add_tags,
    struct want *w, char **cause)
{
	memset(w, 0, sizeof(*w));
	w->self = w->avoid = w->group = -1;
	if (vm->vcpus < 1 || vm->memory < 1 || vm->disk < 0) {
		say(cause, "a VM needs at least one vCPU and 1 MiB of "
		    "memory");
		return (-1);
	}
	w->vcpus = vm->vcpus;
	w->mem = vm->memory;
	w->disk = vm->disk;
	w->require = vm->require;
	if (vm->group != 0 &&
	    (w->group = map_get(&p->groupmap, vm->group)) == -1) {
		say(cause, "no such group");
		return (-1);
	}
	return (tags_resolve(p, vm->require, PLACE_VM_TAGS, add_tags, w->req,
	    &w->nreq, cause));
}

static int32_t
vm_new(struct place *p, int64_t id, const struct want *w, int32_t node)
{
	struct pvm	*v;
	int32_t		 vi;

	if (p->vmfree != -1) {
		vi = p->vmfree;
		p->vmfree = p->vms[vi].next;
	} else {
		if (p->nvms == p->vmcap) {
			p->vmcap = p->vmcap ? p->vmcap * 2 : 256;
			p->vms = xrealloc(p->vms, p->vmcap * sizeof(*p->vms));
		}
		vi = p->nvms++;
	}
	v = &p->vms[vi];
	memset(v, 0, sizeof(*v));
	v->id = id;
	v->live = 1;
	v->node = node;
	v->dest = -1;
	v->vcpus = w->vcpus;
	v->mem = w->mem;
	v->disk = w->disk;
	v->group = w->group;
	v->nreq = w->nreq;
	memcpy(v->req, w->req, sizeof(v->req));
	v->gprev = -1;
	v->gnext = -1;
	if (v->group != -1) {
		v->gnext = p->groups[v->group].vms;
		if (v->gnext != -1)
			p->vms[v->gnext].gprev = vi;
		p->groups[v->group].vms = vi;
		p->groups[v->group].members++;
	}
	list_link(p, vi);
	node_use(p, node, v, 1);
	map_put(&p->vmmap, id, vi);
	return (vi);
}

/* Record a VM already on a node (no filter applies). */
int
place_vm_add(struct place *p, int64_t vm_id, const struct place_vm *vm,
    int64_t node_id, char **cause)
{
	struct want	 w;
	int32_t		 ni;

	if ((ni = map_get(&p->nodemap, node_id)) == -1) {
		say(cause, "no such node");
		return (-1);
	}
	if (map_get(&p->vmmap, vm_id) != -1) {
		say(cause, "the VM is already placed");
		return (-1);
	}
	if (want_make(p, vm, 1, &w, cause) == -1)
		return (-1);
	vm_new(p, vm_id, &w, ni);
	return (0);
}

/* Release every claim of a VM. */
int
place_vm_remove(struct place *p, int64_t vm_id)
{
	struct pvm	*v;
	int32_t		 vi;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1)
		return (-1);
	v = &p->vms[vi];
	if (v->dest != -1)
		node_use(p, v->dest, v, -1);
	node_use(p, v->node, v, -1);
	list_unlink(p, vi);
	if (v->group != -1) {
		if (v->gprev != -1)
			p->vms[v->gprev].gnext = v->gnext;
		else
			p->groups[v->group].vms = v->gnext;
		if (v->gnext != -1)
			p->vms[v->gnext].gprev = v->gprev;
		p->groups[v->group].members--;
	}
	map_del(&p->vmmap, vm_id);
	v->live = 0;
	v->next = p->vmfree;
	p->vmfree = vi;
	return (0);
}

/* Does node i hold dv vCPUs, dm MiB and dd bytes more? */
static int
node_room(const struct pnode *n, int64_t dv, int64_t dm, int64_t dd,
    char **cause)
{
	if (dm > 0 && n->use_mem + dm > n->cap_mem)
		say(cause, "node %s has %lld MiB of memory free", n->name,
		    (long long)(n->cap_mem - n->use_mem));
	else if (dv > 0 && n->use_vcpus + dv > n->cap_vcpus)
		say(cause, "node %s has %lld vCPUs free", n->name,
		    (long long)(n->cap_vcpus - n->use_vcpus));
	else if (dd > 0 && n->use_disk + dd > n->cap_disk)
		say(cause, "node %s has %lld bytes of disk free", n->name,
		    (long long)(n->cap_disk - n->use_disk));
	else
		return (0);
	return (-1);
}

/* A new size for a VM, within its nodes' capacity. */
int
place_vm_resize(struct place *p, int64_t vm_id, int64_t vcpus,
    int64_t memory, int64_t disk, char **cause)
{
	struct pvm	*v, old;
	int32_t		 vi;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1) {
		say(cause, "no such VM");
		return (-1);
	}
	v = &p->vms[vi];
	if (disk < 0)
		disk = v->disk;
	if (vcpus < 1 || memory < 1) {
		say(cause, "a VM needs at least one vCPU and 1 MiB of memory");
		return (-1);
	}
	if (node_room(&p->nodes[v->node], vcpus - v->vcpus, memory - v->mem,
	    disk - v->disk, cause) == -1 || (v->dest != -1 &&
	    node_room(&p->nodes[v->dest], vcpus - v->vcpus, memory - v->mem,
	    disk - v->disk, cause) == -1))
		return (-1);
	old = *v;
	node_use(p, v->node, &old, -1);
	if (v->dest != -1)
		node_use(p, v->dest, &old, -1);
	v->vcpus = vcpus;
	v->mem = memory;
	v->disk = disk;
	node_use(p, v->node, v, 1);
	if (v->dest != -1)
		node_use(p, v->dest, v, 1);
	return (0);
}

/* The node of a VM (its source while migrating), or -1. */
int64_t
place_vm_node(const struct place *p, int64_t vm_id, int64_t *dest)
{
	const struct pvm	*v;
	int32_t			 vi;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1)
		return (-1);
	v = &p->vms[vi];
	if (dest != NULL)
		*dest = v->dest == -1 ? -1 : p->nodes[v->dest].id;
	return (p->nodes[v->node].id);
}

/* Move a VM's claim from node to node at once. */
static void
vm_move(struct place *p, int32_t vi, int32_t to)
{
	struct pvm	*v = &p->vms[vi];

	if (v->dest != -1) {
		node_use(p, v->dest, v, -1);
		v->dest = -1;
	}
	node_use(p, v->node, v, -1);
	list_unlink(p, vi);
	v->node = to;
	list_link(p, vi);
	node_use(p, to, v, 1);
}

/* Move a VM's claim at once (a rebuild elsewhere); no filter applies. */
int
place_vm_move(struct place *p, int64_t vm_id, int64_t node_id, char **cause)
{
	int32_t	 vi, ni;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1 ||
	    (ni = map_get(&p->nodemap, node_id)) == -1) {
		say(cause, "no such VM or node");
		return (-1);
	}
	vm_move(p, vi, ni);
	return (0);
}

/* ---- filters and weighers ---- */

static int
node_has_tags(const struct pnode *n, const struct want *w)
{
	int	 i, j;

	for (i = 0; i < w->nreq; i++) {
		if (w->req[i] == -1)
			return (0);
		for (j = 0; j < n->ntags; j++)
			if (n->tags[j] == w->req[i])
				break;
		if (j == n->ntags)
			return (0);
	}
	return (1);
}

/*
 * The first filter that refuses node n for w (its R_ reason), or -1 if
 * it passes. members: the group's members already on n.
 */
static int
node_filter(const struct place *p, const struct pnode *n,
    const struct want *w, int32_t members)
{
	switch (n->state) {
	case PLACE_READY:
		break;
	case PLACE_CORDONED:
		return (R_CORDONED);
	case PLACE_DRAINING:
		return (R_DRAINING);
	case PLACE_UNREACHABLE:
		return (R_UNREACHABLE);
	case PLACE_FENCED:
		return (R_FENCED);
	default:
		return (R_NOTREADY);
	}
	if (w->nreq > 0 && !node_has_tags(n, w))
		return (R_TAGS);
	if (members > 0 && p->groups[w->group].policy == PLACE_ANTI_HARD)
		return (R_GROUP);
	if (n->use_mem + w->mem > n->cap_mem)
		return (R_MEM);
	if (n->use_vcpus + w->vcpus > n->cap_vcpus)
		return (R_CPU);
	if (n->use_disk + w->disk > n->cap_disk)
		return (R_DISK);
	if (n->max_vms > 0 && n->nvms + 1 > n->max_vms)
		return (R_SLOTS);
	return (-1);
}

static double
free_frac(int64_t cap, int64_t used)
{
	return (cap > 0 ? (double)(cap - used) / (double)cap : 0);
}

/* How much worse node n is for w under a policy (lower is better). */
static double
node_weigh(const struct place *p, const struct pnode *n,
    const struct want *w, enum place_policy pol)
{
	double	 x[NM];

	if (pol == PLACE_PACK) {
		/* The fullest node after the claim; empty ones last. */
		return ((n->nvms == 0 ? 4 : 0) +
		    free_frac(n->cap_mem, n->use_mem + w->mem) +
		    free_frac(n->cap_vcpus, n->use_vcpus + w->vcpus) +
		    free_frac(n->cap_disk, n->use_disk + w->disk));
	}
	/* Spread: the cluster's score with the VM on n. */
	node_values(n, w->vcpus, w->mem, w->disk, 1, x);
	return (score_with(p, 1, n->x, x, NULL, NULL));
}

/* Count the group's members per node into scratch (self left out). */
static void
group_mark(const struct place *p, const struct want *w, int sign)
{
	int32_t	 v;

	if (w->group == -1)
		return;
	for (v = p->groups[w->group].vms; v != -1; v = p->vms[v].gnext) {
		if (v == w->self)
			continue;
		if (sign > 0) {
			p->scratch[p->vms[v].node]++;
			if (p->vms[v].dest != -1)
				p->scratch[p->vms[v].dest]++;
		} else {
			p->scratch[p->vms[v].node] = 0;
			if (p->vms[v].dest != -1)
				p->scratch[p->vms[v].dest] = 0;
		}
	}
}

/* The best node index for w, or -1 with the refusals counted in fails. */
static int32_t
decide(const struct place *p, const struct want *w, enum place_policy pol,
    int64_t *fails)
{
	const struct pnode	*n;
	int32_t			 i, best = -1, members;
	double			 v, bestv = DBL_MAX;
	int			 r, soft;

	soft = w->group != -1 && p->groups[w->group].policy == PLACE_ANTI_SOFT;
	group_mark(p, w, 1);
	for (i = 0; i < p->nnodes; i++) {
		n = &p->nodes[i];
		if (!n->live || i == w->avoid)
			continue;
		members = w->group != -1 ? p->scratch[i] : 0;
		if ((r = node_filter(p, n, w, members)) != -1) {
			if (fails != NULL)
				fails[r]++;
			continue;
		}
		v = node_weigh(p, n, w, pol);
		if (soft)
			v += SOFT_PENALTY * members;
		if (v < bestv) {
			bestv = v;
			best = i;
		}
	}
	group_mark(p, w, -1);
	return (best);
}

/* The tags a VM requires, separated by spaces. */
static char *
tags_text(const struct place *p, const struct want *w)
{
	char	*s, *t;
	int	 i, j;

	if (w->require != NULL) {
		s = xstrdup(w->require);
		for (j = 0; s[j] != '\0'; j++)
			if (s[j] == ',')
				s[j] = ' ';
		return (s);
	}
	s = xstrdup("");
	for (i = 0; i < w->nreq; i++) {
		xasprintf(&t, "%s%s%s", s, i ? " " : "",
		    w->req[i] == -1 ? "?" : p->tags[w->req[i]].s);
		free(s);
		s = t;
	}
	return (s);
}

/* "3 nodes lacked memory, 1 was cordoned" from the refusal counts. */
static char *
fails_text(const struct place *p, const struct want *w, const int64_t *f)
{
	static const char *const verb[NR][2] = {
		[R_CORDONED] = { "was cordoned", "were cordoned" },
		[R_DRAINING] = { "was draining", "were draining" },
		[R_UNREACHABLE] = { "was unreachable", "were unreachable" },
		[R_FENCED] = { "was fenced", "were fenced" },
		[R_NOTREADY] = { "was not ready", "were not ready" },
		[R_TAGS] = { "lacked", "lacked" },
		[R_GROUP] = { "already held", "already held" },
		[R_MEM] = { "lacked memory", "lacked memory" },
		[R_CPU] = { "lacked vCPUs", "lacked vCPUs" },
		[R_DISK] = { "lacked disk", "lacked disk" },
		[R_SLOTS] = { "held its maximum of VMs",
		    "held their maximum of VMs" },
	};
	int		 order[NR], i, j, t, first = 1;
	char		*s, *out = NULL, *extra;
	size_t		 len = 0;
	FILE		*fp;

	for (i = 0; i < NR; i++)
		order[i] = i;
	/* Largest count first; filter order among equals (stable). */
	for (i = 1; i < NR; i++)
		for (j = i; j > 0 && f[order[j]] > f[order[j - 1]]; j--) {
			t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	if ((fp = open_memstream(&out, &len)) == NULL)
		return (xstrdup("no node fits"));
	for (i = 0; i < NR; i++) {
		t = order[i];
		if (f[t] == 0)
			continue;
		extra = NULL;
		if (t == R_TAGS) {
			s = tags_text(p, w);
			xasprintf(&extra, " %s %s", strchr(s, ' ') ? "tags" :
			    "tag", s);
			free(s);
		} else if (t == R_GROUP)
			xasprintf(&extra, " a VM of group %s",
			    p->groups[w->group].name);
		if (first)
			fprintf(fp, "%lld %s %s%s", (long long)f[t],
			    f[t] == 1 ? "node" : "nodes", verb[t][f[t] != 1],
			    extra ? extra : "");
		else
			fprintf(fp, ", %lld %s%s", (long long)f[t],
			    verb[t][f[t] != 1], extra ? extra : "");
		free(extra);
		first = 0;
	}
	if (first)
		fprintf(fp, "there is no hypervisor node");
	fclose(fp);
	return (out);
}

static int64_t
decide_public(const struct place *p, const struct want *w,
    enum place_policy pol, char **cause)
{
	int64_t		 fails[NR] = { 0 };
	int32_t		 i;

	if ((i = decide(p, w, pol, fails)) == -1) {
		if (cause != NULL)
			*cause = fails_text(p, w, fails);
		return (-1);
	}
	return (p->nodes[i].id);
}

/* The node a VM should go to, or -1 with each filter's refusals. */
int64_t
place_decide(const struct place *p, const struct place_vm *vm,
    enum place_policy pol, char **cause)
{
	struct want	 w;

	/* Unknown tags resolve to -1 (no node has them): nothing is added. */
	if (want_make((struct place *)p, vm, 0, &w, cause) == -1)
		return (-1);
	return (decide_public(p, &w, pol, cause));
}

/* Decide and claim in one step. */
int64_t
place_claim(struct place *p, int64_t vm_id, const struct place_vm *vm,
    enum place_policy pol, char **cause)
{
	struct want	 w;
	int64_t		 fails[NR] = { 0 };
	int32_t		 i;

	if (map_get(&p->vmmap, vm_id) != -1) {
		say(cause, "the VM is already placed");
		return (-1);
	}
	if (want_make(p, vm, 1, &w, cause) == -1)
		return (-1);
	if ((i = decide(p, &w, pol, fails)) == -1) {
		if (cause != NULL)
			*cause = fails_text(p, &w, fails);
		return (-1);
	}
	vm_new(p, vm_id, &w, i);
	return (p->nodes[i].id);
}

/* What an existing VM needs, to place it again (itself left out). */
static void
want_of(const struct place *p, int32_t vi, struct want *w)
{
	const struct pvm	*v = &p->vms[vi];

	memset(w, 0, sizeof(*w));
	w->vcpus = v->vcpus;
	w->mem = v->mem;
	w->disk = v->disk;
	w->group = v->group;
	w->nreq = v->nreq;
	memcpy(w->req, v->req, sizeof(w->req));
	w->self = vi;
	w->avoid = v->node;
}

/* A new node for an existing VM (not its own), or -1 with the refusals. */
int64_t
place_decide_vm(const struct place *p, int64_t vm_id, enum place_policy pol,
    char **cause)
{
	struct want	 w;
	int32_t		 vi;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1) {
		say(cause, "no such VM");
		return (-1);
	}
	want_of(p, vi, &w);
	return (decide_public(p, &w, pol, cause));
}

/* The members of w's group on node di (w's own VM left out). */
static int32_t
group_members_on(const struct place *p, const struct want *w, int32_t di)
{
	int32_t	 g, n = 0;

	if (w->group == -1)
		return (0);
	for (g = p->groups[w->group].vms; g != -1; g = p->vms[g].gnext)
		if (g != w->self && (p->vms[g].node == di ||
		    p->vms[g].dest == di))
			n++;
	return (n);
}

/* Would node_id take a VM like vm, by every filter? */
int
place_fits(const struct place *p, const struct place_vm *vm, int64_t node_id,
    char **cause)
{
	struct want	 w;
	int64_t		 fails[NR] = { 0 };
	int32_t		 di;
	int		 r;

	if ((di = map_get(&p->nodemap, node_id)) == -1) {
		say(cause, "no such node");
		return (-1);
	}
	if (want_make((struct place *)p, vm, 0, &w, cause) == -1)
		return (-1);
	if ((r = node_filter(p, &p->nodes[di], &w, group_members_on(p, &w,
	    di))) == -1)
		return (0);
	fails[r] = 1;
	if (cause != NULL)
		*cause = fails_text(p, &w, fails);
	return (-1);
}

/* Start a cold migration to dest, checked by every filter. */
int
place_migrate_begin(struct place *p, int64_t vm_id, int64_t dest, int check,
    char **cause)
{
	struct want	 w;
	int64_t		 fails[NR] = { 0 };
	int32_t		 vi, di;
	int		 r;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1 ||
	    (di = map_get(&p->nodemap, dest)) == -1) {
		say(cause, "no such VM or node");
		return (-1);
	}
	if (p->vms[vi].dest != -1 || p->vms[vi].node == di) {
		say(cause, p->vms[vi].dest != -1 ? "the VM is already "
		    "migrating" : "the VM is already on that node");
		return (-1);
	}
	want_of(p, vi, &w);
	if (check && (r = node_filter(p, &p->nodes[di], &w,
	    group_members_on(p, &w, di))) != -1) {
		fails[r] = 1;
		if (cause != NULL)
			*cause = fails_text(p, &w, fails);
		return (-1);
	}
	p->vms[vi].dest = di;
	node_use(p, di, &p->vms[vi], 1);
	return (0);
}

/* End a migration: moved, or back to the source alone. */
int
place_migrate_end(struct place *p, int64_t vm_id, int moved)
{
	struct pvm	*v;
	int32_t		 vi, di;

	if ((vi = map_get(&p->vmmap, vm_id)) == -1 || p->vms[vi].dest == -1)
		return (-1);
	v = &p->vms[vi];
	di = v->dest;
	if (moved) {
		vm_move(p, vi, di);
		return (0);
	}
	v->dest = -1;
	node_use(p, di, v, -1);
	return (0);
}

/* ---- reports ---- */

/* How many more VMs of this size fit on ready nodes now. */
int64_t
place_fit_count(const struct place *p, const struct place_vm *vm)
{
	const struct pnode	*n;
	struct want		 w;
	int64_t			 total = 0, k, c;
	int32_t			 i;
	int			 hard;

	if (want_make((struct place *)p, vm, 0, &w, NULL) == -1)
		return (0);
	hard = w.group != -1 && p->groups[w.group].policy == PLACE_ANTI_HARD;
	group_mark(p, &w, 1);
	for (i = 0; i < p->nnodes; i++) {
		n = &p->nodes[i];
		if (!n->live || node_filter(p, n, &w, w.group != -1 ?
		    p->scratch[i] : 0) != -1)
			continue;
		k = (n->cap_mem - n->use_mem) / w.mem;
		c = (n->cap_vcpus - n->use_vcpus) / w.vcpus;
		k = c < k ? c : k;
		if (w.disk > 0) {
			c = (n->cap_disk - n->use_disk) / w.disk;
			k = c < k ? c : k;
		}
		if (n->max_vms > 0) {
			c = n->max_vms - n->nvms;
			k = c < k ? c : k;
		}
		total += hard && k > 1 ? 1 : k;
	}
	group_mark(p, &w, -1);
	return (total);
}

static void
plan_add_move(struct place_plan *pl, int64_t vm, int64_t from, int64_t to)
{
	pl->moves = xrealloc(pl->moves, (pl->nmoves + 1) *
	    sizeof(*pl->moves));
	pl->moves[pl->nmoves].vm = vm;
	pl->moves[pl->nmoves].from = from;
	pl->moves[pl->nmoves].to = to;
	pl->nmoves++;
}

static void
plan_add_unfit(struct place_plan *pl, int64_t vm)
{
	pl->unfit = xrealloc(pl->unfit, (pl->nunfit + 1) *
	    sizeof(*pl->unfit));
	pl->unfit[pl->nunfit++] = vm;
}

/* Free a plan's arrays (the struct itself is the caller's). */
void
place_plan_free(struct place_plan *pl)
{
	if (pl == NULL)
		return;
	free(pl->moves);
	free(pl->unfit);
	memset(pl, 0, sizeof(*pl));
}

/* Largest first: memory, vCPUs, disk, then id (a stable order). */
static int
vm_cmp(const void *a, const void *b, void *arg)
{
	const struct place	*q = arg;
	const struct pvm	*x = &q->vms[*(const int32_t *)a];
	const struct pvm	*y = &q->vms[*(const int32_t *)b];

	if (x->mem != y->mem)
		return (x->mem > y->mem ? -1 : 1);
	if (x->vcpus != y->vcpus)
		return (x->vcpus > y->vcpus ? -1 : 1);
	if (x->disk != y->disk)
		return (x->disk > y->disk ? -1 : 1);
	return (x->id < y->id ? -1 : x->id > y->id);
}

/*
 * On q (a clone), take node ni out with state s and place its VMs
 * elsewhere, largest first, into pl. A VM migrating away from ni counts
 * as arrived; one migrating to ni stays where it is.
 */
static void
empty_node(struct place *q, int32_t ni, enum place_state s,
    enum place_policy pol, struct place_plan *pl)
{
	struct pnode	*n = &q->nodes[ni];
	struct want	 w;
	int32_t		*list, v, i, to, cnt = 0;

	n->state = s;
	node_refresh(q, n);
	for (v = 0; v < q->nvms; v++)
		if (q->vms[v].live && q->vms[v].dest == ni)
			place_migrate_end(q, q->vms[v].id, 0);
	list = xcalloc((size_t)n->nvms + 1, sizeof(*list));
	for (v = n->vms; v != -1; v = q->vms[v].next)
		list[cnt++] = v;
	for (i = 0; i < cnt; i++)
		if (q->vms[list[i]].dest != -1)
			place_migrate_end(q, q->vms[list[i]].id, 1);
	qsort_r(list, (size_t)cnt, sizeof(*list), vm_cmp, q);
	for (i = 0; i < cnt; i++) {
		v = list[i];
		if (q->vms[v].node != ni)
			continue;	/* it had migrated away */
		want_of(q, v, &w);
		if ((to = decide(q, &w, pol, NULL)) == -1) {
			plan_add_unfit(pl, q->vms[v].id);
			continue;
		}
		plan_add_move(pl, q->vms[v].id, n->id, q->nodes[to].id);
		vm_move(q, v, to);
	}
	free(list);
}

/* Where a drained node's VMs would go. */
int
place_plan_drain(const struct place *p, int64_t node, enum place_policy pol,
    struct place_plan *pl, char **cause)
{
	struct place	*q;
	int32_t		 ni;
	enum place_state s;

	memset(pl, 0, sizeof(*pl));
	if ((ni = map_get(&p->nodemap, node)) == -1) {
		say(cause, "no such node");
		return (-1);
	}
	place_score(p, &pl->before);
	pl->node = node;
	q = place_clone(p);
	s = p->nodes[ni].state;
	empty_node(q, ni, s == PLACE_READY || s == PLACE_CORDONED ?
	    PLACE_DRAINING : s, pol, pl);
	place_score(q, &pl->after);
	place_free(q);
	return (0);
}

/* N+1: the largest online node lost. */
int
place_plan_n1(const struct place *p, enum place_policy pol,
    struct place_plan *pl)
{
	const struct pnode	*n, *b;
	struct place		*q;
	int32_t			 i, big = -1;

	memset(pl, 0, sizeof(*pl));
	place_score(p, &pl->before);
	for (i = 0; i < p->nnodes; i++) {
		n = &p->nodes[i];
		if (!n->live || !n->online)
			continue;
		if (big != -1) {
			b = &p->nodes[big];
			if (n->memory < b->memory || (n->memory == b->memory &&
			    (n->cpus < b->cpus || (n->cpus == b->cpus &&
			    n->use_mem <= b->use_mem))))
				continue;
		}
		big = i;
	}
	if (big == -1) {
		pl->after = pl->before;
		return (0);
	}
	pl->node = p->nodes[big].id;
	q = place_clone(p);
	empty_node(q, big, PLACE_FENCED, pol, pl);
	place_score(q, &pl->after);
	place_free(q);
	return (0);
}

/* A node's share of the imbalance: its distance from the means. */
static double
node_pull(const struct place *p, const struct pnode *n)
{
	double	 m, sd, t = 0;
	int	 k;

	for (k = 0; k < NM; k++) {
		sd = stddev(p->s1[k], p->s2[k], p->online);
		if (sd <= 0)
			continue;
		m = p->s1[k] / (double)p->online;
		t += place_weight[k] * (n->x[k] - m) * (n->x[k] - m) / sd;
	}
	return (t);
}

struct pull {
	int32_t		 node;
	double		 pull;
};

static int
pull_cmp(const void *a, const void *b)
{
	const struct pull	*x = a, *y = b;

	if (x->pull != y->pull)
		return (x->pull > y->pull ? -1 : 1);
	return (x->node - y->node);
}

/* Two VMs on one node that move alike: weigh only one of them. */
static int
vm_same(const struct pvm *a, const struct pvm *b)
{
	return (a->vcpus == b->vcpus && a->mem == b->mem &&
	    a->disk == b->disk && a->group == -1 && b->group == -1 &&
	    a->nreq == 0 && b->nreq == 0);
}

/*
 * The best single move on q: lowest score (soft conflicts weigh
 * SOFT_PENALTY each), or -1 if none lowers it by min_gain.
 */
static int32_t
best_move(struct place *q, double min_gain, int32_t *to_out)
{
	struct pull	*src;
	const struct pnode *a, *b;
	struct want	 w;
	double		 cur, xa[NM], xb[NM], v, best = -min_gain;
	int32_t		 i, j, vi, u, bestvm = -1, nsrc = 0, ntgt = 0;
	int64_t		 classes = 0, budget;
	int		 soft, dup;

	cur = score_with(q, 0, NULL, NULL, NULL, NULL);
	src = xcalloc((size_t)q->nnodes + 1, sizeof(*src));
	for (i = 0; i < q->nnodes; i++) {
		if (!q->nodes[i].live || q->nodes[i].state != PLACE_READY)
			continue;
		ntgt++;
		if (q->nodes[i].vms == -1)
			continue;
		src[nsrc].node = i;
		src[nsrc].pull = node_pull(q, &q->nodes[i]);
		classes += q->nodes[i].nvms < 8 ? q->nodes[i].nvms : 8;
		nsrc++;
	}
	/* Too many candidates: weigh the most unbalanced sources only. */
	if (classes * ntgt > REBAL_BUDGET) {
		qsort(src, (size_t)nsrc, sizeof(*src), pull_cmp);
		budget = REBAL_BUDGET / (ntgt > 0 ? ntgt : 1) / 8;
		if (budget < 16)
			budget = 16;
		if (nsrc > budget)
			nsrc = (int32_t)budget;
	}
	for (i = 0; i < nsrc; i++) {
		a = &q->nodes[src[i].node];
		for (vi = a->vms; vi != -1; vi = q->vms[vi].next) {
			if (q->vms[vi].dest != -1)
				continue;
			dup = 0;
			for (u = a->vms; u != vi; u = q->vms[u].next)
				if (vm_same(&q->vms[u], &q->vms[vi])) {
					dup = 1;
					break;
				}
			if (dup)
				continue;
			want_of(q, vi, &w);
			soft = w.group != -1 &&
			    q->groups[w.group].policy == PLACE_ANTI_SOFT;
			group_mark(q, &w, 1);
			node_values(a, -w.vcpus, -w.mem, -w.disk, -1, xa);
			for (j = 0; j < q->nnodes; j++) {
				b = &q->nodes[j];
				if (!b->live || j == src[i].node ||
				    node_filter(q, b, &w, w.group != -1 ?
				    q->scratch[j] : 0) != -1)
					continue;
				node_values(b, w.vcpus, w.mem, w.disk, 1, xb);
				v = score_with(q, 2, a->x, xa, b->x, xb) - cur;
				if (soft)
					v += SOFT_PENALTY *
					    ((q->scratch[j] > 0) -
					    (q->scratch[src[i].node] > 0));
				if (v < best) {
					best = v;
					bestvm = vi;
					*to_out = j;
				}
			}
			group_mark(q, &w, -1);
		}
	}
	free(src);
	return (bestvm);
}

/* Moves that lower the score, hbal's way. */
int
place_plan_rebalance(const struct place *p, int max_moves, double min_gain,
    struct place_plan *pl)
{
	struct place	*q;
	int32_t		 vi, to = -1;
	int		 m;

	memset(pl, 0, sizeof(*pl));
	place_score(p, &pl->before);
	q = place_clone(p);
	for (m = 0; m < max_moves; m++) {
		if ((vi = best_move(q, min_gain, &to)) == -1)
			break;
		plan_add_move(pl, q->vms[vi].id, q->nodes[q->vms[vi].node].id,
		    q->nodes[to].id);
		vm_move(q, vi, to);
	}
	place_score(q, &pl->after);
	place_free(q);
	return (0);
}

/* ---- checks (tests) ---- */

/* Recompute claims, lists and sums from the VMs and compare. */
int
place_check(const struct place *p, char **cause)
{
	struct place	*q;
	int64_t		*uv, *um, *ud, *nv, members;
	int32_t		 i, v, g, cnt;
	double		 s1, s2;
	int		 k, rc = -1;

	uv = xcalloc((size_t)p->nnodes + 1, sizeof(*uv));
	um = xcalloc((size_t)p->nnodes + 1, sizeof(*um));
	ud = xcalloc((size_t)p->nnodes + 1, sizeof(*ud));
	nv = xcalloc((size_t)p->nnodes + 1, sizeof(*nv));
	q = place_clone(p);
	cnt = 0;
	for (v = 0; v < p->nvms; v++) {
		const struct pvm *x = &p->vms[v];

		if (!x->live)
			continue;
		cnt++;
		if (map_get(&p->vmmap, x->id) != v) {
			say(cause, "vm %lld: not in the map",
			    (long long)x->id);
			goto out;
		}
		if (!p->nodes[x->node].live || (x->dest != -1 &&
		    (!p->nodes[x->dest].live || x->dest == x->node))) {
			say(cause, "vm %lld: on a dead node",
			    (long long)x->id);
			goto out;
		}
		uv[x->node] += x->vcpus;
		um[x->node] += x->mem;
		ud[x->node] += x->disk;
		nv[x->node]++;
		if (x->dest != -1) {
			uv[x->dest] += x->vcpus;
			um[x->dest] += x->mem;
			ud[x->dest] += x->disk;
			nv[x->dest]++;
		}
	}
	if ((uint32_t)cnt != p->vmmap.len) {
		say(cause, "%d VMs but %u in the map", cnt,
		    p->vmmap.len);
		goto out;
	}
	for (i = 0; i < p->nnodes; i++) {
		const struct pnode *n = &p->nodes[i];

		if (!n->live)
			continue;
		if (n->use_vcpus != uv[i] || n->use_mem != um[i] ||
		    n->use_disk != ud[i] || n->nvms != nv[i]) {
			say(cause, "node %s: claims %lld/%lld/%lld/%lld, "
			    "VMs say %lld/%lld/%lld/%lld", n->name,
			    (long long)n->use_vcpus, (long long)n->use_mem,
			    (long long)n->use_disk, (long long)n->nvms,
			    (long long)uv[i], (long long)um[i],
			    (long long)ud[i], (long long)nv[i]);
			goto out;
		}
		cnt = 0;
		for (v = n->vms; v != -1; v = p->vms[v].next) {
			if (p->vms[v].node != i || !p->vms[v].live) {
				say(cause, "node %s: bad VM list",
				    n->name);
				goto out;
			}
			cnt++;
		}
		for (v = 0; v < p->nvms; v++)
			if (p->vms[v].live && p->vms[v].node == i)
				cnt--;
		if (cnt != 0) {
			say(cause, "node %s: VM list misses VMs",
			    n->name);
			goto out;
		}
	}
	for (g = 0; g < p->ngroups; g++) {
		if (!p->groups[g].live)
			continue;
		members = 0;
		for (v = p->groups[g].vms; v != -1; v = p->vms[v].gnext)
			members++;
		if (members != p->groups[g].members) {
			say(cause, "group %s: %lld members listed, %lld "
			    "counted", p->groups[g].name, (long long)members,
			    (long long)p->groups[g].members);
			goto out;
		}
	}
	for (i = 0; i < p->nnodes; i++)
		if (p->scratch[i] != 0) {
			say(cause, "scratch not cleared");
			goto out;
		}
	sums_rebuild(q);
	for (k = 0; k < NM; k++) {
		s1 = p->s1[k] - q->s1[k];
		s2 = p->s2[k] - q->s2[k];
		if (fabs(s1) > 1e-6 * (1 + fabs(q->s1[k])) ||
		    fabs(s2) > 1e-6 * (1 + fabs(q->s2[k]))) {
			say(cause, "score sums drifted (value %d)", k);
			goto out;
		}
	}
	if (p->online != q->online) {
		say(cause, "%lld online nodes counted, %lld found",
		    (long long)p->online, (long long)q->online);
		goto out;
	}
	rc = 0;
out:
	place_free(q);
	free(uv);
	free(um);
	free(ud);
	free(nv);
	return (rc);
}
