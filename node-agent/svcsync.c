/*
 * Protocol 2 for the mail and web roles: the controller sends a whole
 * desired state in bounded parts (MSG_SERVICES_PART) and then only what
 * changes (MSG_SERVICES_DELTA). Both become whole states for the role's
 * queue (svc.c): parts once the last has come, a delta merged into the
 * newest state the role holds. Once connected the role says which
 * generation that is (MSG_SERVICES_HAVE, 0 for none), which the
 * controller's deltas then start from. The status after a delta names
 * the objects it changed only: bytes both ways follow what changed.
 */
#include <stdlib.h>
#include <string.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "svc.h"

/* A set of strings (object ids, "kind id" pairs): open addressing. */
struct strset {
	char	**v;
	size_t	  cap, n;
};

static uint64_t
strset_hash(const char *s)
{
	uint64_t	 h = 1469598103934665603ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (h);
}

static char **
strset_slot(const struct strset *set, const char *s)
{
	size_t	 i;

	for (i = strset_hash(s) & (set->cap - 1);; i = (i + 1) &
	    (set->cap - 1))
		if (set->v[i] == NULL || strcmp(set->v[i], s) == 0)
			return (&set->v[i]);
}

static void
strset_add(struct strset *set, const char *s)
{
	char	**old = set->v, **slot;
	size_t	  i, oldcap = set->cap;

	if (2 * (set->n + 1) > set->cap) {
		set->cap = oldcap ? oldcap * 2 : 64;
		set->v = xcalloc(set->cap, sizeof(*set->v));
		for (i = 0; i < oldcap; i++)
			if (old[i] != NULL)
				*strset_slot(set, old[i]) = old[i];
		free(old);
	}
	if (*(slot = strset_slot(set, s)) == NULL) {
		*slot = xstrdup(s);
		set->n++;
	}
}

static int
strset_has(const struct strset *set, const char *s)
{
	return (set->cap > 0 && *strset_slot(set, s) != NULL);
}

static void
strset_clear(struct strset *set)
{
	size_t	 i;

	for (i = 0; i < set->cap; i++)
		free(set->v[i]);
	free(set->v);
	memset(set, 0, sizeof(*set));
}

/* ---- what a delta changed, for its status --------------------------- */

struct svc_only {
	struct strset	 o_set;		/* "kind id" */
};

static void
only_add(struct svc_only *o, const char *kind, const char *id)
{
	char	*k;

	xasprintf(&k, "%s %s", kind, id);
	strset_add(&o->o_set, k);
	free(k);
}

/* Keep the statuses of the objects a delta named (NULL: all). */
void
svc_only_filter(const struct svc_only *o, struct svc_result *r)
{
	size_t	 i, j;
	char	*k;

	if (o == NULL)
		return;
	for (i = j = 0; i < r->r_nobjs; i++) {
		xasprintf(&k, "%s %s", r->r_objs[i]->kind, r->r_objs[i]->id);
		if (strset_has(&o->o_set, k))
			r->r_objs[j++] = r->r_objs[i];
		else
			svc_obj_free(r->r_objs[i]);
		free(k);
	}
	r->r_nobjs = j;
}

static int
only_cmp(const void *a, const void *b)
{
	return (strcmp(*(const char *const *)a, *(const char *const *)b));
}

const char **
svc_only_ids(const struct svc_only *o, const char *kind, size_t *n,
    size_t *others)
{
	const char	**v;
	size_t		 i, len = strlen(kind);

	*n = *others = 0;
	if (o == NULL)
		return (NULL);
	v = xcalloc(o->o_set.n + 1, sizeof(*v));
	for (i = 0; i < o->o_set.cap; i++) {
		if (o->o_set.v[i] == NULL)
			continue;
		if (strncmp(o->o_set.v[i], kind, len) == 0 &&
		    o->o_set.v[i][len] == ' ')
			v[(*n)++] = o->o_set.v[i] + len + 1;
		else
			(*others)++;
	}
	qsort(v, *n, sizeof(*v), only_cmp);
	return (v);
}

void
svc_only_free(struct svc_only *o)
{
	if (o == NULL)
		return;
	strset_clear(&o->o_set);
	free(o);
}

/* ---- the protocol spoken -------------------------------------------- */

static uint32_t	 svc_proto_set;

uint32_t
svc_proto(void)
{
	return (svc_proto_set != 0 ? svc_proto_set : link_proto());
}

void
svc_set_proto(uint32_t v)
{
	svc_proto_set = v;
}

/* The newest state the role holds: waiting, or the last applied. */
static const Opsn__ServicesDesired *
svc_newest(const struct svc *s)
{
	return (s->s_pending != NULL ? s->s_pending : s->s_current);
}

static void
svc_have(struct svc *s)
{
	Opsn__ServicesHave	 m = OPSN__SERVICES_HAVE__INIT;
	const Opsn__ServicesDesired *d = svc_newest(s);

	m.generation = d != NULL ? d->generation : 0;
	if (svc_send(MSG_SERVICES_HAVE, &m.base) == 0)
		log_info("%s: holding generation %llu", s->s_name,
		    (unsigned long long)m.generation);
}

/* The link is up: protocol 2 says which generation the role holds. */
void
svc_sync_connected(struct svc *s)
{
	if (svc_proto() < 2)
		return;
	svc_sync_free(s);
	svc_have(s);
}

/*
 * A whole state (consumed) from the arrays of a view: packed, then
 * unpacked again, so that the queue owns one message like any other.
 */
static Opsn__ServicesDesired *
svc_own(const Opsn__ServicesDesired *view)
{
	Opsn__ServicesDesired	*d;
	uint8_t			*buf;
	size_t			 len;

	len = protobuf_c_message_get_packed_size(&view->base);
	buf = xmalloc(len ? len : 1);
	protobuf_c_message_pack(&view->base, buf);
	d = opsn__services_desired__unpack(NULL, len, buf);
	free(buf);
	if (d == NULL)
		fatalx("services: a state we packed does not unpack");
	return (d);
}

/* Append n pointers to an array of a view. */
static void
svc_cat(void ***v, size_t *n, void *const *add, size_t nadd)
{
	if (nadd == 0)
		return;
	*v = xrealloc(*v, (*n + nadd) * sizeof(**v));
	memcpy(*v + *n, add, nadd * sizeof(**v));
	*n += nadd;
}

static void
svc_view_free(Opsn__ServicesDesired *v)
{
	free(v->domains);
	free(v->mailboxes);
	free(v->aliases);
	free(v->sites);
}

/* ---- parts ------------------------------------------------------------ */

struct svc_parts {
	Opsn__ServicesPart	**p_v;
	size_t			  p_n;
};

void
svc_sync_free(struct svc *s)
{
	size_t	 i;

	if (s->s_parts == NULL)
		return;
	for (i = 0; i < s->s_parts->p_n; i++)
		opsn__services_part__free_unpacked(s->s_parts->p_v[i], NULL);
	free(s->s_parts->p_v);
	free(s->s_parts);
	s->s_parts = NULL;
}

/* A part of a whole state; the last queues the state. */
void
svc_sync_part(struct svc *s, const uint8_t *p, size_t len)
{
	Opsn__ServicesPart	*m;
	Opsn__ServicesDesired	 v = OPSN__SERVICES_DESIRED__INIT;
	const Opsn__ServicesDesired *d;
	size_t			 i;

	if (!s->s_inited || s->s_stopping)
		return;
	if ((m = opsn__services_part__unpack(NULL, len, p)) == NULL ||
	    m->state == NULL) {
		log_warnx("%s: a part that does not decode", s->s_name);
		if (m != NULL)
			opsn__services_part__free_unpacked(m, NULL);
		return;
	}
	if (m->index == 0)
		svc_sync_free(s);
	/* Parts come in order on one connection; a hole starts over. */
	if (m->index != (s->s_parts != NULL ? s->s_parts->p_n : 0) ||
	    (s->s_parts != NULL && s->s_parts->p_v[0]->state->generation !=
	    m->state->generation)) {
		log_warnx("%s: part %u of generation %llu out of order: "
		    "asking again", s->s_name, m->index,
		    (unsigned long long)m->state->generation);
		opsn__services_part__free_unpacked(m, NULL);
		svc_sync_free(s);
		svc_have(s);
		return;
	}
	if (s->s_parts == NULL)
		s->s_parts = xcalloc(1, sizeof(*s->s_parts));
	s->s_parts->p_v = xrealloc(s->s_parts->p_v, (s->s_parts->p_n + 1) *
	    sizeof(*s->s_parts->p_v));
	s->s_parts->p_v[s->s_parts->p_n++] = m;
	if (!m->last)
		return;
	v.generation = m->state->generation;
	v.mail_hostname = m->state->mail_hostname;
	for (i = 0; i < s->s_parts->p_n; i++) {
		d = s->s_parts->p_v[i]->state;
		svc_cat((void ***)&v.domains, &v.n_domains,
		    (void *const *)d->domains, d->n_domains);
		svc_cat((void ***)&v.mailboxes, &v.n_mailboxes,
		    (void *const *)d->mailboxes, d->n_mailboxes);
		svc_cat((void ***)&v.aliases, &v.n_aliases,
		    (void *const *)d->aliases, d->n_aliases);
		svc_cat((void ***)&v.sites, &v.n_sites,
		    (void *const *)d->sites, d->n_sites);
	}
	log_info("%s: generation %llu whole, in %zu parts", s->s_name,
	    (unsigned long long)v.generation, s->s_parts->p_n);
	d = svc_own(&v);
	svc_view_free(&v);
	svc_sync_free(s);
	svc_only_free(s->s_pending_only);
	s->s_pending_only = NULL;
	svc_queue(s, (Opsn__ServicesDesired *)d);
}

/* ---- deltas ----------------------------------------------------------- */

/* The domain of an address ("a@b" or "@b"). */
static const char *
svc_addr_domain(const char *addr)
{
	const char	*at = strrchr(addr, '@');

	return (at != NULL ? at + 1 : "");
}

/* An object of the held state that goes, and is reported (only). */
static void
svc_gone1(struct strset *set, struct svc_only *only, const char *kind,
    const char *id)
{
	strset_add(set, id);
	if (only != NULL)
		only_add(only, kind, id);
}

static void
svc_gone(struct strset *set, struct svc_only *only, const char *kind,
    const char *const *ids, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		svc_gone1(set, only, kind, ids[i]);
}

/* A delta merged into the newest state held, queued as a whole. */
void
svc_sync_delta(struct svc *s, const uint8_t *p, size_t len)
{
	Opsn__ServicesDelta	*m;
	Opsn__ServicesDesired	 v = OPSN__SERVICES_DESIRED__INIT;
	const Opsn__ServicesDesired *base, *c;
	struct strset		 gone[4], rmdom;
	struct svc_only		*only;
	size_t			 i;

	if (!s->s_inited || s->s_stopping)
		return;
	if ((m = opsn__services_delta__unpack(NULL, len, p)) == NULL ||
	    m->changes == NULL) {
		log_warnx("%s: a delta that does not decode", s->s_name);
		if (m != NULL)
			opsn__services_delta__free_unpacked(m, NULL);
		return;
	}
	base = svc_newest(s);
	if (base == NULL || base->generation != m->base_generation ||
	    s->s_parts != NULL) {
		log_notice("%s: a delta from generation %llu, but we hold "
		    "%llu: asking again", s->s_name,
		    (unsigned long long)m->base_generation,
		    (unsigned long long)(base ? base->generation : 0));
		opsn__services_delta__free_unpacked(m, NULL);
		svc_sync_free(s);
		svc_have(s);
		return;
	}
	c = m->changes;
	memset(gone, 0, sizeof(gone));
	memset(&rmdom, 0, sizeof(rmdom));
	/* What goes: removed, or replaced by the delta's version. */
	only = s->s_pending != NULL && s->s_pending_only != NULL ?
	    s->s_pending_only : xcalloc(1, sizeof(*only));
	if (s->s_pending != NULL && s->s_pending_only == NULL) {
		/* The waiting state reports everything already. */
		svc_only_free(only);
		only = NULL;
	}
	s->s_pending_only = NULL;
	svc_gone(&rmdom, only, "domain", (const char *const *)
	    m->removed_domains, m->n_removed_domains);
	for (i = 0; i < c->n_domains; i++)
		svc_gone1(&gone[0], only, "domain", c->domains[i]->name);
	svc_gone(&gone[1], only, "mailbox", (const char *const *)
	    m->removed_mailboxes, m->n_removed_mailboxes);
	for (i = 0; i < c->n_mailboxes; i++)
		svc_gone1(&gone[1], only, "mailbox", c->mailboxes[i]->id);
	svc_gone(&gone[2], only, "alias", (const char *const *)
	    m->removed_aliases, m->n_removed_aliases);
	for (i = 0; i < c->n_aliases; i++)
		svc_gone1(&gone[2], only, "alias", c->aliases[i]->id);
	svc_gone(&gone[3], only, "site", (const char *const *)
	    m->removed_sites, m->n_removed_sites);
	for (i = 0; i < c->n_sites; i++)
		svc_gone1(&gone[3], only, "site", c->sites[i]->id);
	v.generation = c->generation;
	v.mail_hostname = c->mail_hostname;
	/* The held state's objects that stay, then the delta's. */
	for (i = 0; i < base->n_domains; i++)
		if (!strset_has(&gone[0], base->domains[i]->name) &&
		    !strset_has(&rmdom, base->domains[i]->name))
			svc_cat((void ***)&v.domains, &v.n_domains,
			    (void *const *)&base->domains[i], 1);
	for (i = 0; i < base->n_mailboxes; i++)
		if (!strset_has(&gone[1], base->mailboxes[i]->id) &&
		    !strset_has(&rmdom, base->mailboxes[i]->domain))
			svc_cat((void ***)&v.mailboxes, &v.n_mailboxes,
			    (void *const *)&base->mailboxes[i], 1);
	for (i = 0; i < base->n_aliases; i++)
		if (!strset_has(&gone[2], base->aliases[i]->id) &&
		    !strset_has(&rmdom, svc_addr_domain(
		    base->aliases[i]->address)))
			svc_cat((void ***)&v.aliases, &v.n_aliases,
			    (void *const *)&base->aliases[i], 1);
	for (i = 0; i < base->n_sites; i++)
		if (!strset_has(&gone[3], base->sites[i]->id))
			svc_cat((void ***)&v.sites, &v.n_sites,
			    (void *const *)&base->sites[i], 1);
	svc_cat((void ***)&v.domains, &v.n_domains,
	    (void *const *)c->domains, c->n_domains);
	svc_cat((void ***)&v.mailboxes, &v.n_mailboxes,
	    (void *const *)c->mailboxes, c->n_mailboxes);
	svc_cat((void ***)&v.aliases, &v.n_aliases,
	    (void *const *)c->aliases, c->n_aliases);
	svc_cat((void ***)&v.sites, &v.n_sites,
	    (void *const *)c->sites, c->n_sites);
	log_debug("%s: delta %llu -> %llu: %zu domains, %zu mailboxes, %zu "
	    "aliases, %zu sites changed", s->s_name,
	    (unsigned long long)m->base_generation,
	    (unsigned long long)c->generation, c->n_domains, c->n_mailboxes,
	    c->n_aliases, c->n_sites);
	s->s_pending_only = only;
	base = svc_own(&v);
	svc_view_free(&v);
	for (i = 0; i < 4; i++)
		strset_clear(&gone[i]);
	strset_clear(&rmdom);
	opsn__services_delta__free_unpacked(m, NULL);
	svc_queue(s, (Opsn__ServicesDesired *)base);
}
