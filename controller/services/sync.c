/*
 * A backend's desired state on the wire. An agent of protocol 1 gets the
 * whole state in one MSG_SERVICES_DESIRED at every change (at most
 * FRAME_MAX: about 60,000 mailboxes). From protocol 2 on the agent says
 * which generation it holds (MSG_SERVICES_HAVE) once connected; it then
 * gets what changed since (MSG_SERVICES_DELTA: the objects the journal
 * names for the generations in between, read again as they are now), or
 * the whole state in bounded parts (MSG_SERVICES_PART) when it holds
 * nothing, is too far behind, or the journal no longer covers the gap.
 * Parts stream as the connection's send queue drains, so a backend of
 * 250,000 mailboxes never fills it. A change then costs its backend
 * bytes proportional to what changed, not to the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "services.h"
#include "services.pb-c.h"

#define SERVICES_TENANT_REF	"coalesce(t.insee, t.siren, CAST(t.id AS TEXT))"
/* Objects a delta may carry; more, and the whole state goes in parts. */
#define SYNC_DELTA_MAX		2000
/* Objects in one part (a mailbox is a few hundred bytes). */
#define SYNC_PART_OBJECTS	1000
/* Parts are queued while the node's send queue holds less than this. */
#define SYNC_QUEUE_BYTES	(2 * 1024 * 1024)
#define SYNC_STREAM_MS		5

/* A set of objects of one backend, and the strings they borrow. */
struct sync_set {
	Opsn__ServicesDesired	 ss_d;
	char			**ss_strs;
	size_t			 ss_nstrs, ss_capstrs;
	/* A delta's removals. */
	char			**ss_rm[4];
	size_t			 ss_nrm[4];
};
enum { RM_DOMAIN, RM_MAILBOX, RM_ALIAS, RM_SITE };

/* What this controller knows of a protocol 2 backend's session. */
struct sync_peer {
	int64_t			 p_node;
	int			 p_have;	/* it said which generation */
	uint64_t		 p_sent;	/* the generation it has or gets */
	/* A whole state being streamed in parts. */
	struct sync_set		*p_stream;
	size_t			 p_next[4];	/* next object of each kind */
	uint32_t		 p_index;	/* next part */
	size_t			 p_bytes;	/* the parts' payloads so far */
	struct sync_peer	*p_nextpeer;
};

static struct sync_peer	*sync_peers;
static uv_timer_t	 sync_timer;
static int		 sync_timer_on;

static char *
sync_keep(struct sync_set *s, const unsigned char *text)
{
	char	*copy = xstrdup(text != NULL ? (const char *)text : "");

	if (s->ss_nstrs == s->ss_capstrs) {
		s->ss_capstrs = s->ss_capstrs ? s->ss_capstrs * 2 : 256;
		s->ss_strs = xrealloc(s->ss_strs, s->ss_capstrs *
		    sizeof(*s->ss_strs));
	}
	s->ss_strs[s->ss_nstrs++] = copy;
	return (copy);
}

/* A JSON list of strings as a repeated field (strings kept in s). */
static char **
sync_list_field(struct sync_set *s, const unsigned char *json, size_t *n)
{
	json_t	*a, *v;
	char	**out;
	size_t	 i;

	*n = 0;
	a = json_loads(json != NULL ? (const char *)json : "[]", 0, NULL);
	out = xcalloc(json_array_size(a) + 1, sizeof(*out));
	json_array_foreach(a, i, v) {
		if (json_is_string(v))
			out[(*n)++] = sync_keep(s, (const unsigned char *)
			    json_string_value(v));
	}
	json_decref(a);
	return (out);
}

/* Grow a pointer array by one, returning the new slot. */
static void *
sync_grow(void ***v, size_t *n, size_t size)
{
	void	*p = xcalloc(1, size);

	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = p;
	return (p);
}

static void
sync_set_free(struct sync_set *s)
{
	Opsn__ServicesDesired	*d;
	size_t			 i;
	int			 k;

	if (s == NULL)
		return;
	d = &s->ss_d;
	for (i = 0; i < d->n_domains; i++)
		free(d->domains[i]);
	for (i = 0; i < d->n_mailboxes; i++)
		free(d->mailboxes[i]);
	for (i = 0; i < d->n_aliases; i++) {
		free(d->aliases[i]->targets);
		free(d->aliases[i]);
	}
	for (i = 0; i < d->n_sites; i++) {
		free(d->sites[i]->aliases);
		free(d->sites[i]);
	}
	free(d->domains);
	free(d->mailboxes);
	free(d->aliases);
	free(d->sites);
	/* Password hashes and DKIM keys pass through here. */
	for (i = 0; i < s->ss_nstrs; i++) {
		explicit_bzero(s->ss_strs[i], strlen(s->ss_strs[i]));
		free(s->ss_strs[i]);
	}
	free(s->ss_strs);
	for (k = 0; k < 4; k++)
		free(s->ss_rm[k]);
	free(s);
}

/*
 * The queries that read a backend's objects as the agent gets them: all
 * of them (no filter), one by its id (domain: name), or a member's.
 */
enum { F_ALL, F_ID, F_TENANT };
enum { Q_DOMAINS, Q_MAILBOXES, Q_ALIASES, Q_SITES };
static const char *const sync_sql[4] = {
	"SELECT d.name, " SERVICES_TENANT_REF ", coalesce(d.quota_bytes, 0), "
	    "t.status = 'suspended', d.dkim_selector, d.dkim_private_pem FROM "
	    "mail_domains d JOIN tenants t ON t.id = d.tenant_id WHERE "
	    "d.node_id = ?1%s ORDER BY d.name",
	"SELECT m.address, d.name, m.name, m.password_hash, m.quota_bytes, "
	    "m.status = 'suspended' OR t.status = 'suspended', m.status = "
	    "'deleted', coalesce(m.purge_after, 0), m.id, " SERVICES_TENANT_REF
	    " FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id JOIN "
	    "tenants t ON t.id = d.tenant_id WHERE d.node_id = ?1%s ORDER BY "
	    "m.address",
	"SELECT a.address, a.targets, a.id FROM aliases a JOIN mail_domains d "
	    "ON d.id = a.domain_id WHERE d.node_id = ?1%s ORDER BY a.address",
	"SELECT s.id, s.hostname, s.aliases, coalesce(s.quota_bytes, 0), "
	    "s.status = 'suspended' OR t.status = 'suspended', "
	    SERVICES_TENANT_REF ", s.tls, s.cert_sha256 FROM sites s JOIN "
	    "tenants t ON t.id = s.tenant_id WHERE s.node_id = ?1%s ORDER BY "
	    "s.hostname",
};
static const char *const sync_filter[4][3] = {
	{ "", " AND d.name = ?2", " AND d.tenant_id = ?2" },
	{ "", " AND m.id = ?2", " AND d.tenant_id = ?2" },
	{ "", " AND a.id = ?2", NULL },
	{ "", " AND s.id = ?2", " AND s.tenant_id = ?2" },
};

static void
sync_row(struct sync_set *s, int q, sqlite3_stmt *st)
{
	Opsn__ServicesDesired	*ds = &s->ss_d;
	Opsn__MailDomain	*d;
	Opsn__Mailbox		*m;
	Opsn__Alias		*a;
	Opsn__Site		*w;

	switch (q) {
	case Q_DOMAINS:
		d = sync_grow((void ***)&ds->domains, &ds->n_domains,
		    sizeof(*d));
		opsn__mail_domain__init(d);
		d->name = sync_keep(s, sqlite3_column_text(st, 0));
		d->tenant = sync_keep(s, sqlite3_column_text(st, 1));
		d->quota_bytes = (uint64_t)sqlite3_column_int64(st, 2);
		d->suspended = sqlite3_column_int(st, 3);
		d->dkim_selector = sync_keep(s, sqlite3_column_text(st, 4));
		d->dkim_private_pem = sync_keep(s, sqlite3_column_text(st, 5));
		break;
	case Q_MAILBOXES:
		m = sync_grow((void ***)&ds->mailboxes, &ds->n_mailboxes,
		    sizeof(*m));
		opsn__mailbox__init(m);
		m->address = sync_keep(s, sqlite3_column_text(st, 0));
		m->domain = sync_keep(s, sqlite3_column_text(st, 1));
		m->name = sync_keep(s, sqlite3_column_text(st, 2));
		m->password_hash = sync_keep(s, sqlite3_column_text(st, 3));
		m->quota_bytes = (uint64_t)sqlite3_column_int64(st, 4);
		m->suspended = sqlite3_column_int(st, 5);
		m->deleted = sqlite3_column_int(st, 6);
		m->purge_after = sqlite3_column_int64(st, 7);
		m->id = sync_keep(s, sqlite3_column_text(st, 8));
		m->tenant = sync_keep(s, sqlite3_column_text(st, 9));
		break;
	case Q_ALIASES:
		a = sync_grow((void ***)&ds->aliases, &ds->n_aliases,
		    sizeof(*a));
		opsn__alias__init(a);
		a->address = sync_keep(s, sqlite3_column_text(st, 0));
		a->targets = sync_list_field(s, sqlite3_column_text(st, 1),
		    &a->n_targets);
		a->id = sync_keep(s, sqlite3_column_text(st, 2));
		break;
	default:
		w = sync_grow((void ***)&ds->sites, &ds->n_sites, sizeof(*w));
		opsn__site__init(w);
		w->id = sync_keep(s, sqlite3_column_text(st, 0));
		w->hostname = sync_keep(s, sqlite3_column_text(st, 1));
		w->aliases = sync_list_field(s, sqlite3_column_text(st, 2),
		    &w->n_aliases);
		w->quota_bytes = (uint64_t)sqlite3_column_int64(st, 3);
		w->suspended = sqlite3_column_int(st, 4);
		w->tenant = sync_keep(s, sqlite3_column_text(st, 5));
		w->tls = sync_keep(s, sqlite3_column_text(st, 6));
		w->cert_sha256 = sync_keep(s, sqlite3_column_text(st, 7));
		break;
	}
}

/* Add the objects of kind q a filter selects; the number added. */
static size_t
sync_add(struct sync_set *s, int64_t node, int q, int filter,
    const char *arg)
{
	sqlite3_stmt	*st;
	char		*sql;
	size_t		 n = 0;

	xasprintf(&sql, sync_sql[q], sync_filter[q][filter]);
	st = store_stmt(ctl->db, sql);
	free(sql);
	sqlite3_bind_int64(st, 1, node);
	if (filter != F_ALL)
		sqlite3_bind_text(st, 2, arg, -1, SQLITE_TRANSIENT);
	while (store_step(st) == SQLITE_ROW) {
		sync_row(s, q, st);
		n++;
	}
	store_done(st);
	return (n);
}

static void
sync_removed(struct sync_set *s, int k, const char *id)
{
	s->ss_rm[k] = xrealloc(s->ss_rm[k], (s->ss_nrm[k] + 1) *
	    sizeof(*s->ss_rm[k]));
	s->ss_rm[k][s->ss_nrm[k]++] = sync_keep(s,
	    (const unsigned char *)id);
}

/* The generation and the name the backend's certificate carries. */
static void
sync_head(struct sync_set *s, int64_t node)
{
	sqlite3_stmt	*st;
	char		*mx;

	st = store_stmt(ctl->db, "SELECT generation FROM services_backends "
	    "WHERE node_id = ?");
	sqlite3_bind_int64(st, 1, node);
	if (store_step(st) == SQLITE_ROW)
		s->ss_d.generation = (uint64_t)sqlite3_column_int64(st, 0);
	store_done(st);
	s->ss_d.mail_hostname = sync_keep(s, (const unsigned char *)
	    (mx = services_mx(node)));
	free(mx);
}

/* The whole desired state of a backend now. */
static struct sync_set *
sync_whole(int64_t node)
{
	struct sync_set	*s = xcalloc(1, sizeof(*s));
	int		 q;

	opsn__services_desired__init(&s->ss_d);
	sync_head(s, node);
	for (q = 0; q < 4; q++)
		sync_add(s, node, q, F_ALL, NULL);
	return (s);
}

/*
 * What changed on a backend from generation base to now: each object
 * the journal names for the generations in between, as it is now (or
 * removed). NULL when the journal does not reach back to base (pruned)
 * or names more than SYNC_DELTA_MAX objects.
 */
static struct sync_set *
sync_delta(int64_t node, uint64_t base)
{
	static const struct {
		const char	*kind;
		int		 q, rm;
	} kinds[] = {
		{ "domain", Q_DOMAINS, RM_DOMAIN },
		{ "mailbox", Q_MAILBOXES, RM_MAILBOX },
		{ "alias", Q_ALIASES, RM_ALIAS },
		{ "site", Q_SITES, RM_SITE },
	};
	struct sync_set	*s;
	sqlite3_stmt	*st;
	const char	*kind, *id;
	int64_t		 from = INT64_MAX;
	size_t		 n = 0, k;
	int		 q;

	if (base == 0)
		return (NULL);
	st = store_stmt(ctl->db, "SELECT journal_from FROM services_backends "
	    "WHERE node_id = ?");
	sqlite3_bind_int64(st, 1, node);
	if (store_step(st) == SQLITE_ROW)
		from = sqlite3_column_int64(st, 0);
	store_done(st);
	s = xcalloc(1, sizeof(*s));
	opsn__services_desired__init(&s->ss_d);
	sync_head(s, node);
	/* Ahead of us (a restored database), or older than the journal. */
	if (s->ss_d.generation < base || (s->ss_d.generation > base &&
	    (int64_t)base + 1 < from)) {
		sync_set_free(s);
		return (NULL);
	}
	st = store_stmt(ctl->db, "SELECT DISTINCT kind, object_id FROM "
	    "services_changes WHERE node_id = ? AND generation > ? AND "
	    "generation <= ? ORDER BY kind, object_id");
	sqlite3_bind_int64(st, 1, node);
	sqlite3_bind_int64(st, 2, (int64_t)base);
	sqlite3_bind_int64(st, 3, (int64_t)s->ss_d.generation);
	while (store_step(st) == SQLITE_ROW && n <= SYNC_DELTA_MAX) {
		kind = (const char *)sqlite3_column_text(st, 0);
		id = (const char *)sqlite3_column_text(st, 1);
		if (strcmp(kind, "tenant") == 0) {
			/* A member suspended or back: its objects say so. */
			for (q = 0; q < 4; q++)
				if (sync_filter[q][F_TENANT] != NULL)
					n += sync_add(s, node, q, F_TENANT, id);
			continue;
		}
		for (k = 0; k < nitems(kinds); k++)
			if (strcmp(kind, kinds[k].kind) == 0)
				break;
		if (k == nitems(kinds))
			continue;
		if (sync_add(s, node, kinds[k].q, F_ID, id) == 0)
			sync_removed(s, kinds[k].rm, id);
		n++;
	}
	store_done(st);
	if (n > SYNC_DELTA_MAX) {
		sync_set_free(s);
		return (NULL);
	}
	return (s);
}

/* Send a delta from base; the bytes it took. */
static size_t
sync_send_delta(int64_t node, uint64_t base, struct sync_set *s)
{
	Opsn__ServicesDelta	 m = OPSN__SERVICES_DELTA__INIT;

	m.base_generation = base;
	m.changes = &s->ss_d;
	m.removed_domains = s->ss_rm[RM_DOMAIN];
	m.n_removed_domains = s->ss_nrm[RM_DOMAIN];
	m.removed_mailboxes = s->ss_rm[RM_MAILBOX];
	m.n_removed_mailboxes = s->ss_nrm[RM_MAILBOX];
	m.removed_aliases = s->ss_rm[RM_ALIAS];
	m.n_removed_aliases = s->ss_nrm[RM_ALIAS];
	m.removed_sites = s->ss_rm[RM_SITE];
	m.n_removed_sites = s->ss_nrm[RM_SITE];
	if (nodes_send(node, MSG_SERVICES_DELTA, &m.base) == -1)
		return (0);
	return (protobuf_c_message_get_packed_size(&m.base));
}

static struct sync_peer *
sync_peer(int64_t node, int make)
{
	struct sync_peer	*p;

	for (p = sync_peers; p != NULL; p = p->p_nextpeer)
		if (p->p_node == node)
			return (p);
	if (!make)
		return (NULL);
	p = xcalloc(1, sizeof(*p));
	p->p_node = node;
	p->p_nextpeer = sync_peers;
	sync_peers = p;
	return (p);
}

static void	sync_stream_cb(uv_timer_t *);
static void	sync_peer_sync(struct sync_peer *);

/*
 * A part's slice of one kind: up to *left objects of src from *next on
 * (a view into the stream's arrays, nothing copied).
 */
static void
sync_take(void ***dst, size_t *dn, void **src, size_t n, size_t *next,
    size_t *left)
{
	size_t	 take = n - *next < *left ? n - *next : *left;

	*dst = src + *next;
	*dn = take;
	*next += take;
	*left -= take;
}

/*
 * Queue the next parts of a stream while the node's send queue has room;
 * 1 when the stream is over (sent or the node gone), 0 if it waits.
 */
static int
sync_stream(struct sync_peer *p)
{
	Opsn__ServicesPart	 part = OPSN__SERVICES_PART__INIT;
	Opsn__ServicesDesired	 d = OPSN__SERVICES_DESIRED__INIT;
	Opsn__ServicesDesired	*w = &p->p_stream->ss_d;
	size_t			 left;

	while (nodes_sendq_bytes(p->p_node) < SYNC_QUEUE_BYTES) {
		d.generation = w->generation;
		d.mail_hostname = w->mail_hostname;
		left = SYNC_PART_OBJECTS;
		/* Each part takes the next objects, domains first. */
		sync_take((void ***)&d.domains, &d.n_domains,
		    (void **)w->domains, w->n_domains, &p->p_next[0], &left);
		sync_take((void ***)&d.mailboxes, &d.n_mailboxes,
		    (void **)w->mailboxes, w->n_mailboxes, &p->p_next[1],
		    &left);
		sync_take((void ***)&d.aliases, &d.n_aliases,
		    (void **)w->aliases, w->n_aliases, &p->p_next[2], &left);
		sync_take((void ***)&d.sites, &d.n_sites, (void **)w->sites,
		    w->n_sites, &p->p_next[3], &left);
		part.state = &d;
		part.index = p->p_index++;
		part.last = p->p_next[0] == w->n_domains && p->p_next[1] ==
		    w->n_mailboxes && p->p_next[2] == w->n_aliases &&
		    p->p_next[3] == w->n_sites;
		p->p_bytes += protobuf_c_message_get_packed_size(&part.base);
		if (nodes_send(p->p_node, MSG_SERVICES_PART, &part.base) == -1) {
			/* Gone: its next HELLO starts over. */
			sync_set_free(p->p_stream);
			p->p_stream = NULL;
			return (1);
		}
		if (part.last) {
			log_info("services: %s got generation %llu whole, in "
			    "%u parts, %zu bytes", nodes_name(p->p_node),
			    (unsigned long long)w->generation, p->p_index,
			    p->p_bytes);
			p->p_sent = w->generation;
			sync_set_free(p->p_stream);
			p->p_stream = NULL;
			return (1);
		}
	}
	return (0);
}

static void
sync_stream_cb(uv_timer_t *t)
{
	struct sync_peer	*p;
	int			 waiting = 0;

	for (p = sync_peers; p != NULL; p = p->p_nextpeer) {
		if (p->p_stream == NULL)
			continue;
		if (sync_stream(p) == 0)
			waiting = 1;
		else
			sync_peer_sync(p);	/* changes made meanwhile */
	}
	if (!waiting) {
		uv_timer_stop(&sync_timer);
		sync_timer_on = 0;
	}
}

/* Start streaming the whole state to a peer. */
static void
sync_start_stream(struct sync_peer *p)
{
	sync_set_free(p->p_stream);
	p->p_stream = sync_whole(p->p_node);
	memset(p->p_next, 0, sizeof(p->p_next));
	p->p_index = 0;
	p->p_bytes = 0;
	if (sync_stream(p) == 1)
		return;
	if (!sync_timer_on) {
		uv_timer_start(&sync_timer, sync_stream_cb, SYNC_STREAM_MS,
		    SYNC_STREAM_MS);
		sync_timer_on = 1;
	}
}

/* Bring a protocol 2 peer up to the backend's generation. */
static void
sync_peer_sync(struct sync_peer *p)
{
	struct sync_set	*s;
	size_t		 bytes;
	uint64_t	 base = p->p_sent;

	if (!p->p_have || p->p_stream != NULL)
		return;		/* it says what it has, or a stream runs */
	if ((s = sync_delta(p->p_node, base)) == NULL) {
		sync_start_stream(p);
		return;
	}
	if (s->ss_d.generation != base) {
		bytes = sync_send_delta(p->p_node, base, s);
		log_info("services: %s: delta %llu -> %llu (%zu domains, "
		    "%zu mailboxes, %zu aliases, %zu sites; %zu bytes)",
		    nodes_name(p->p_node), (unsigned long long)base,
		    (unsigned long long)s->ss_d.generation, s->ss_d.n_domains,
		    s->ss_d.n_mailboxes, s->ss_d.n_aliases, s->ss_d.n_sites,
		    bytes);
		p->p_sent = s->ss_d.generation;
	}
	sync_set_free(s);
}

/* Protocol 1: the whole state in one frame, as before protocol 2. */
static void
sync_whole_frame(int64_t node)
{
	struct sync_set	*s = sync_whole(node);
	size_t		 size;

	size = protobuf_c_message_get_packed_size(&s->ss_d.base);
	if (size > FRAME_MAX)
		log_warnx("services: the desired state of %s is %zu bytes, "
		    "over the %d-byte frame limit: not sent (the agent speaks "
		    "protocol 1; a newer one gets it in parts)",
		    nodes_name(node), size, FRAME_MAX);
	else if (nodes_send(node, MSG_SERVICES_DESIRED, &s->ss_d.base) == 0)
		log_debug("services: pushed generation %llu to %s (%zu "
		    "domains, %zu mailboxes, %zu aliases, %zu sites, %zu "
		    "bytes)", (unsigned long long)s->ss_d.generation,
		    nodes_name(node), s->ss_d.n_domains, s->ss_d.n_mailboxes,
		    s->ss_d.n_aliases, s->ss_d.n_sites, size);
	sync_set_free(s);
}

/* The backend's desired state changed (or it connected): tell it. */
void
services_push(int64_t node_id)
{
	struct sync_peer	*p;

	if (nodes_version(node_id) >= 2) {
		if ((p = sync_peer(node_id, 0)) != NULL)
			sync_peer_sync(p);
		return;
	}
	sync_whole_frame(node_id);
}

/* A backend connected: protocol 2 waits for what it has, 1 gets it all. */
void
services_sync_hello(int64_t node_id)
{
	struct sync_peer	*p;

	if (nodes_version(node_id) < 2) {
		sync_whole_frame(node_id);
		return;
	}
	p = sync_peer(node_id, 1);
	sync_set_free(p->p_stream);
	p->p_stream = NULL;
	p->p_have = 0;
	p->p_sent = 0;
}

/* MSG_SERVICES_HAVE: the generation a protocol 2 backend holds. */
void
services_sync_have(int64_t node_id, const uint8_t *buf, size_t len)
{
	Opsn__ServicesHave	*m;
	struct sync_peer	*p;

	if ((m = opsn__services_have__unpack(NULL, len, buf)) == NULL) {
		log_warnx("services: %s: SERVICES_HAVE does not decode",
		    nodes_name(node_id));
		return;
	}
	p = sync_peer(node_id, 1);
	/* It starts over from what it says: a stream in flight is moot. */
	sync_set_free(p->p_stream);
	p->p_stream = NULL;
	p->p_have = 1;
	p->p_sent = m->generation;
	opsn__services_have__free_unpacked(m, NULL);
	sync_peer_sync(p);
}

/* A backend's session is gone. */
void
services_sync_gone(int64_t node_id)
{
	struct sync_peer	*p, **pp;

	for (pp = &sync_peers; (p = *pp) != NULL; pp = &p->p_nextpeer)
		if (p->p_node == node_id) {
			*pp = p->p_nextpeer;
			sync_set_free(p->p_stream);
			free(p);
			return;
		}
}

/* Start (the stream timer) and stop. */
void
services_sync_init(uv_loop_t *loop)
{
	uv_timer_init(loop, &sync_timer);
	uv_unref((uv_handle_t *)&sync_timer);
}

void
services_sync_stop(void)
{
	struct sync_peer	*p;

	while ((p = sync_peers) != NULL) {
		sync_peers = p->p_nextpeer;
		sync_set_free(p->p_stream);
		free(p);
	}
	uv_timer_stop(&sync_timer);
	uv_close((uv_handle_t *)&sync_timer, NULL);
}
