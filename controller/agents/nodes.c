/*
 * Nodes: the agent listener, enrolment, HELLO and heartbeats, and node
 * state. Heartbeats only touch memory; a state change (ready, unreachable,
 * revoked) is written to the database.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents.h"
#include "nodes.h"
#include "opsn.pb-c.h"

#define NODE_NAME_MAX	63
#define CLIENT_DAYS	825
#define PREAUTH_IDLE_MS	15000

struct session;

struct node {
	TAILQ_ENTRY(node) n_entry;
	int64_t		 n_id;
	char		 n_name[NODE_NAME_MAX + 1];
	char		 n_state[16];
	char		 n_fpr[65];
	int		 n_revoked;
	struct session	*n_sess;
	uint64_t	 n_seen_mono;	/* last frame, monotonic ms */
	int64_t		 n_seen;	/* last frame, wall clock */
	uint64_t	 n_beat_mono;	/* last heartbeat (or HELLO), mono ms */
	int64_t		 n_not_after;	/* certificate expiry, unix s */
	uint64_t	 n_data_avail;	/* its data folder, at the last beat */
	uint64_t	 n_data_size;
};
TAILQ_HEAD(node_list, node);

struct session {
	TAILQ_ENTRY(session) s_entry;
	struct conn	*s_conn;
	struct node	*s_node;	/* set by HELLO */
	char		*s_cn;		/* certificate CN, NULL before enrolment */
	char		 s_fpr[65];
	uint32_t	 s_version;
};
TAILQ_HEAD(session_list, session);

typedef void (*nodes_handler)(struct session *, const struct frame_hdr *,
    const uint8_t *);

struct nodes_msg {
	uint16_t	 type;
	int		 needs_cert;	/* only after mutual TLS */
	int		 needs_hello;	/* only after HELLO */
	nodes_handler	 fn;
};

static void	nodes_enrol(struct session *, const struct frame_hdr *,
		    const uint8_t *);
static void	nodes_hello(struct session *, const struct frame_hdr *,
		    const uint8_t *);
static void	nodes_heartbeat(struct session *, const struct frame_hdr *,
		    const uint8_t *);
static void	nodes_error_msg(struct session *, const struct frame_hdr *,
		    const uint8_t *);
static void	nodes_touch(struct node *);

static const struct nodes_msg nodes_msgs[] = {
	{ MSG_ENROL,	 0, 0, nodes_enrol },
	{ MSG_HELLO,	 1, 0, nodes_hello },
	{ MSG_HEARTBEAT, 1, 1, nodes_heartbeat },
	{ MSG_ERROR,	 0, 0, nodes_error_msg },
};

static struct ctl		*nc;
static uv_tcp_t			 nodes_listener;
static uv_timer_t		 nodes_timer;
static struct node_list		 nodes = TAILQ_HEAD_INITIALIZER(nodes);
static struct session_list	 sessions = TAILQ_HEAD_INITIALIZER(sessions);
static size_t			 nsessions;

/*
 * Nodes by id and by name: every frame sent and every node listed looks
 * one up, and there are thousands. Nodes are never forgotten (a revoked
 * one keeps its row), so the tables only grow; open addressing, at most
 * half full.
 */
static struct {
	struct node	**by_id, **by_name;
	size_t		  cap, n;
} nodes_idx;

static uint64_t
nodes_hash_name(const char *name)
{
	uint64_t	 h = 1469598103934665603ULL;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (h);
}

static struct node **
nodes_idx_id(int64_t id)
{
	struct node	**slot;
	size_t		  i;

	for (i = (uint64_t)id * 11400714819323198485ULL & (nodes_idx.cap - 1);;
	    i = (i + 1) & (nodes_idx.cap - 1)) {
		slot = &nodes_idx.by_id[i];
		if (*slot == NULL || (*slot)->n_id == id)
			return (slot);
	}
}

static struct node **
nodes_idx_name(const char *name)
{
	struct node	**slot;
	size_t		  i;

	for (i = nodes_hash_name(name) & (nodes_idx.cap - 1);;
	    i = (i + 1) & (nodes_idx.cap - 1)) {
		slot = &nodes_idx.by_name[i];
		if (*slot == NULL || strcmp((*slot)->n_name, name) == 0)
			return (slot);
	}
}

/* Index a node once its id and name are set (again: a no-op). */
static void
nodes_idx_add(struct node *n)
{
	struct node	*m;

	if (2 * (nodes_idx.n + 1) > nodes_idx.cap) {
		free(nodes_idx.by_id);
		free(nodes_idx.by_name);
		nodes_idx.cap = nodes_idx.cap ? nodes_idx.cap * 2 : 256;
		nodes_idx.by_id = xcalloc(nodes_idx.cap, sizeof(*nodes_idx.by_id));
		nodes_idx.by_name = xcalloc(nodes_idx.cap,
		    sizeof(*nodes_idx.by_name));
		nodes_idx.n = 0;
		TAILQ_FOREACH(m, &nodes, n_entry) {
			if (m == n)
				continue;
			*nodes_idx_id(m->n_id) = m;
			*nodes_idx_name(m->n_name) = m;
			nodes_idx.n++;
		}
	}
	if (*nodes_idx_id(n->n_id) == NULL)
		nodes_idx.n++;
	*nodes_idx_id(n->n_id) = n;
	*nodes_idx_name(n->n_name) = n;
}

static struct node *
nodes_find(const char *name)
{
	if (nodes_idx.cap == 0)
		return (NULL);
	return (*nodes_idx_name(name));
}

static int
nodes_name_ok(const char *name)
{
	size_t	 i, len = strlen(name);

	if (len == 0 || len > NODE_NAME_MAX || !isalnum((unsigned char)name[0]))
		return (0);
	for (i = 0; i < len; i++) {
		unsigned char ch = name[i];
		if (!(islower(ch) || isdigit(ch) || ch == '-' || ch == '.' ||
		    ch == '_'))
			return (0);
	}
	return (1);
}

/* Persist a state change (never called for heartbeats). */
static void
nodes_set_state(struct node *n, const char *state, const char *why)
{
	sqlite3_stmt	*st;

	if (strcmp(n->n_state, state) == 0)
		return;
	log_info("nodes: %s is %s (was %s)%s%s", n->n_name, state, n->n_state,
	    why ? ": " : "", why ? why : "");
	strlcpy(n->n_state, state, sizeof(n->n_state));
	st = store_prepare(nc->db, "UPDATE nodes SET state = ?, state_since = "
	    "?, last_seen = coalesce(?, last_seen) WHERE id = ?");
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (n->n_seen > 0)
		sqlite3_bind_int64(st, 3, n->n_seen);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_int64(st, 4, n->n_id);
	if (store_step(st) != SQLITE_DONE)
		log_warnx("nodes: saving the state of %s: %s", n->n_name,
		    sqlite3_errmsg(nc->db));
	sqlite3_finalize(st);
}

static void
nodes_send_error(struct session *s, uint32_t reqid, uint32_t status,
    const char *code, const char *msg)
{
	Opsn__Error	 e = OPSN__ERROR__INIT;

	e.code = (char *)code;
	e.message = (char *)msg;
	conn_send_msg(s->s_conn, s->s_version ? s->s_version : OPSN_PROTO_MIN,
	    MSG_ERROR, reqid, status, &e.base);
}

/* Refuse a session: tell the agent why, log it here, close. */
static void
nodes_refuse(struct session *s, uint32_t reqid, uint32_t status,
    const char *code, const char *msg)
{
	log_warnx("nodes: refused %s%s%s: %s", conn_peer_addr(s->s_conn),
	    s->s_cn ? " as " : "", s->s_cn ? s->s_cn : "", msg);
	nodes_send_error(s, reqid, status, code, msg);
	conn_close(s->s_conn, msg);
}

static void
nodes_ready_cb(struct conn *c, void *arg)
{
	struct session	*s = arg;
	X509		*peer;
	struct node	*n;
	char		*msg;

	if ((peer = conn_peer_cert(c)) == NULL) {
		/* Server-authenticated TLS only: enrolment is all it may do. */
		log_debug("nodes: %s connected without a certificate",
		    conn_peer_addr(c));
		return;
	}
	s->s_cn = pki_cert_cn(peer);
	pki_fingerprint(peer, s->s_fpr);
	if (s->s_cn == NULL || (n = nodes_find(s->s_cn)) == NULL) {
		xasprintf(&msg, "certificate for '%s' names no enrolled node",
		    s->s_cn ? s->s_cn : "(no CN)");
		nodes_refuse(s, 0, ST_DENIED, "unknown_node", msg);
		free(msg);
		return;
	}
	if (n->n_revoked) {
		xasprintf(&msg, "node '%s' is revoked", n->n_name);
		nodes_refuse(s, 0, ST_DENIED, "revoked", msg);
		free(msg);
		return;
	}
	if (strcmp(n->n_fpr, s->s_fpr) != 0) {
		xasprintf(&msg, "certificate of node '%s' was replaced by a "
		    "later enrolment", n->n_name);
		nodes_refuse(s, 0, ST_DENIED, "superseded", msg);
		free(msg);
		return;
	}
	n->n_not_after = pki_not_after(peer);
	conn_set_max_frame(c, FRAME_MAX);
	conn_set_idle_timeout(c, (uint32_t)nc->conf.unreachable_ms);
}

/* Hand a frame to the module whose range holds its type; -1 if none. */
static int
nodes_to_module(struct node *n, const struct frame_hdr *h, const uint8_t *p)
{
	const struct ctl_module *const	*mp;
	const struct ctl_msg_range	*mr;
	size_t				 i;

	for (mp = nc->modules; *mp != NULL; mp++) {
		for (i = 0; i < (*mp)->m_nmsgs; i++) {
			mr = &(*mp)->m_msgs[i];
			if (h->fh_type < mr->mr_min || h->fh_type > mr->mr_max)
				continue;
			nodes_touch(n);
			mr->mr_fn(n->n_id, h->fh_type, p, h->fh_len);
			return (0);
		}
	}
	return (-1);
}

/* Tell every module that a node is gone (disconnected or revoked). */
static void
nodes_gone_hooks(int64_t id)
{
	const struct ctl_module *const	*mp;

	for (mp = nc->modules; *mp != NULL; mp++)
		if ((*mp)->m_gone != NULL)
			(*mp)->m_gone(id);
}

/* Let every module add what it knows of a node to its JSON. */
static void
nodes_json_hooks(int64_t id, json_t *o)
{
	const struct ctl_module *const	*mp;

	for (mp = nc->modules; *mp != NULL; mp++)
		if ((*mp)->m_node_json != NULL)
			(*mp)->m_node_json(id, o);
}

static void
nodes_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct session	*s = arg;
	size_t		 i;
	char		*msg;

	for (i = 0; i < nitems(nodes_msgs); i++) {
		if (nodes_msgs[i].type != h->fh_type)
			continue;
		if (nodes_msgs[i].needs_cert && s->s_cn == NULL) {
			nodes_refuse(s, h->fh_reqid, ST_DENIED, "not_enrolled",
			    "this connection has no node certificate: enrol "
			    "first");
			return;
		}
		if (nodes_msgs[i].needs_hello && s->s_node == NULL) {
			nodes_refuse(s, h->fh_reqid, ST_BAD_REQUEST,
			    "no_hello", "HELLO must come first");
			return;
		}
		nodes_msgs[i].fn(s, h, p);
		return;
	}
	/* The modules' ranges, for nodes that said HELLO. */
	if (s->s_node != NULL && nodes_to_module(s->s_node, h, p) == 0)
		return;
	xasprintf(&msg, "unknown message type %u", h->fh_type);
	log_debug("nodes: %s: %s", conn_peer_addr(c), msg);
	nodes_send_error(s, h->fh_reqid, ST_UNKNOWN_TYPE, "unknown_type", msg);
	free(msg);
}

static void
nodes_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct session	*s = arg;

	if (s->s_node != NULL) {
		log_info("nodes: %s disconnected: %s", s->s_node->n_name,
		    reason);
		if (s->s_node->n_sess == s) {
			s->s_node->n_sess = NULL;
			nodes_gone_hooks(s->s_node->n_id);
		}
	} else
		log_debug("nodes: %s closed: %s", conn_peer_addr(c), reason);
	TAILQ_REMOVE(&sessions, s, s_entry);
	nsessions--;
	free(s->s_cn);
	free(s);
}

static const struct conn_cbs nodes_cbs = {
	nodes_ready_cb, nodes_frame_cb, NULL, nodes_close_cb
};

static void
nodes_accept_cb(uv_stream_t *server, int status)
{
	struct conn_opts	 o = { 0 };
	struct session		*s;
	char			*cause = NULL;

	if (status < 0) {
		log_warnx("nodes: accept: %s", uv_strerror(status));
		return;
	}
	s = xcalloc(1, sizeof(*s));
	o.co_max_frame = FRAME_MAX_PREAUTH;
	o.co_idle_timeout_ms = PREAUTH_IDLE_MS;
	if ((s->s_conn = conn_accept(server, nc->agent_ctx, &o, &nodes_cbs, s,
	    &cause)) == NULL) {
		log_warnx("nodes: %s", cause);
		free(cause);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&sessions, s, s_entry);
	nsessions++;
	if ((int64_t)nsessions > nc->conf.max_agents)
		nodes_refuse(s, 0, ST_DENIED, "busy", "too many connections");
}

static void
nodes_enrol(struct session *s, const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__Enrol	*e;
	Opsn__EnrolOk	 ok = OPSN__ENROL_OK__INIT;
	X509		*cert = NULL;
	sqlite3_stmt	*st;
	char		*cause = NULL, *pem = NULL, *capem = NULL, *serial = NULL;
	char		 fpr[65];
	struct node	*n;
	int64_t		 now = util_now();
	size_t		 i;

	if (s->s_cn != NULL) {
		nodes_refuse(s, h->fh_reqid, ST_BAD_REQUEST, "enrolled",
		    "this connection is already authenticated");
		return;
	}
	if ((e = opsn__enrol__unpack(NULL, h->fh_len, p)) == NULL) {
		nodes_refuse(s, h->fh_reqid, ST_BAD_REQUEST, "bad_request",
		    "ENROL does not decode");
		return;
	}
	if (!nodes_name_ok(e->name)) {
		xasprintf(&cause, "node name '%.64s' is invalid (lower-case "
		    "letters, digits, '-', '.', '_'; at most %d)", e->name,
		    NODE_NAME_MAX);
		goto refuse;
	}
	for (i = 0; i < nc->nserver_names; i++) {
		/*
		 * A node named as the controller would hold a certificate
		 * for one of its names: a careless client could take it
		 * for the controller.
		 */
		if (strcasecmp(e->name, nc->server_names[i]) == 0) {
			xasprintf(&cause, "node name '%s' is one of the "
			    "controller's own names: choose another", e->name);
			goto refuse;
		}
	}
	if ((n = nodes_find(e->name)) != NULL && !n->n_revoked) {
		xasprintf(&cause, "a node named '%s' is already enrolled; "
		    "revoke it first to enrol it again", e->name);
		goto refuse;
	}
	if (store_begin(nc->db) == -1) {
		xasprintf(&cause, "the controller's database is busy");
		goto refuse;
	}
	if (enrol_join_consume(nc, e->token, e->name, &cause) == -1)
		goto rollback;
	if ((cert = pki_sign_csr(e->csr_pem, strlen(e->csr_pem), e->name,
	    nc->ca, nc->ca_key, CLIENT_DAYS, &cause)) == NULL)
		goto rollback;
	pki_fingerprint(cert, fpr);
	serial = pki_serial_hex(cert);
	st = store_prepare(nc->db, "INSERT INTO nodes (name, state, cert_serial,"
	    " cert_fpr, address, enrolled_at, state_since) VALUES "
	    "(?1, 'enrolling', ?2, ?3, ?4, ?5, ?5) ON CONFLICT (name) DO UPDATE "
	    "SET state = 'enrolling', cert_serial = ?2, cert_fpr = ?3, "
	    "revoked = 0, address = ?4, enrolled_at = ?5, state_since = ?5 "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, e->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, fpr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, conn_peer_addr(s->s_conn), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now);
	if (store_step(st) != SQLITE_ROW) {
		xasprintf(&cause, "storing the node: %s", sqlite3_errmsg(nc->db));
		sqlite3_finalize(st);
		goto rollback;
	}
	int64_t id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if ((pem = pki_cert_pem(cert, &cause)) == NULL ||
	    (capem = pki_cert_pem(nc->ca, &cause)) == NULL)
		goto rollback;
	{
		char obj[96];

		snprintf(obj, sizeof(obj), "node/%s", e->name);
		if (audit_record(NULL, "node.enrol", obj, json_pack("{s:s,s:s}",
		    "from", conn_peer_addr(s->s_conn), "cert_fingerprint",
		    fpr)) == -1) {
			xasprintf(&cause, "the controller could not record it");
			goto rollback;
		}
	}
	if (store_commit(nc->db) == -1) {
		xasprintf(&cause, "the controller could not commit");
		goto refuse;
	}
	if (n == NULL) {
		n = xcalloc(1, sizeof(*n));
		TAILQ_INSERT_TAIL(&nodes, n, n_entry);
	}
	n->n_id = id;
	strlcpy(n->n_name, e->name, sizeof(n->n_name));
	nodes_idx_add(n);
	strlcpy(n->n_state, "enrolling", sizeof(n->n_state));
	strlcpy(n->n_fpr, fpr, sizeof(n->n_fpr));
	n->n_revoked = 0;
	n->n_seen_mono = util_mono_ms();
	n->n_beat_mono = 0;
	n->n_not_after = pki_not_after(cert);
	log_notice("nodes: enrolled %s from %s", e->name,
	    conn_peer_addr(s->s_conn));
	ok.cert_pem = pem;
	ok.ca_pem = capem;
	conn_send_msg(s->s_conn, h->fh_version, MSG_ENROL_OK, h->fh_reqid,
	    ST_OK, &ok.base);
	goto out;
rollback:
	store_rollback(nc->db);
refuse:
	nodes_refuse(s, h->fh_reqid, ST_DENIED, "enrol_refused", cause);
out:
	free(cause);
	free(pem);
	free(capem);
	free(serial);
	X509_free(cert);
	opsn__enrol__free_unpacked(e, NULL);
}

static void
nodes_hello(struct session *s, const struct frame_hdr *h, const uint8_t *p)
{
	Opsn__Hello	*m;
	Opsn__HelloOk	 ok = OPSN__HELLO_OK__INIT;
	const struct ctl_module *const *mp;
	struct node	*n;
	sqlite3_stmt	*st;
	char		*msg = NULL, *roles = NULL;
	uint32_t	 lo, hi;
	size_t		 i;

	if ((m = opsn__hello__unpack(NULL, h->fh_len, p)) == NULL) {
		nodes_refuse(s, h->fh_reqid, ST_BAD_REQUEST, "bad_request",
		    "HELLO does not decode");
		return;
	}
	if (strcmp(m->name, s->s_cn) != 0) {
		xasprintf(&msg, "HELLO names '%.64s' but the certificate is "
		    "for '%s'", m->name, s->s_cn);
		nodes_refuse(s, h->fh_reqid, ST_DENIED, "name_mismatch", msg);
		goto out;
	}
	lo = m->proto_min > nc->proto_min ? m->proto_min : nc->proto_min;
	hi = m->proto_max < nc->proto_max ? m->proto_max : nc->proto_max;
	if (m->proto_min > m->proto_max || lo > hi) {
		xasprintf(&msg, "agent %s speaks protocol versions %u to %u, "
		    "the controller supports %u to %u: upgrade the %s",
		    m->name, m->proto_min, m->proto_max, nc->proto_min,
		    nc->proto_max, m->proto_max < nc->proto_min ? "agent" :
		    "controller");
		nodes_refuse(s, h->fh_reqid, ST_VERSION, "version", msg);
		goto out;
	}
	n = nodes_find(s->s_cn);
	if (n->n_sess != NULL && n->n_sess != s) {
		n->n_sess->s_node = NULL;
		conn_close(n->n_sess->s_conn, "replaced by a new connection");
	}
	n->n_sess = s;
	s->s_node = n;
	s->s_version = hi;
	n->n_seen_mono = util_mono_ms();
	n->n_beat_mono = n->n_seen_mono;
	n->n_seen = util_now();

	for (i = 0; i < m->n_roles; i++) {
		char *prev = roles;
		xasprintf(&roles, "%s%s%s", prev ? prev : "", prev ? "," : "",
		    m->roles[i]);
		free(prev);
	}
	st = store_prepare(nc->db, "UPDATE nodes SET roles = ?, address = ?, "
	    "cpus = ?, memory_bytes = ?, disk_bytes = ?, libvirt_version = ?, "
	    "qemu_version = ?, agent_version = ?, proto_version = ?, "
	    "hostname = ?, last_seen = ? WHERE id = ?");
	sqlite3_bind_text(st, 1, roles ? roles : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, conn_peer_addr(s->s_conn), -1, SQLITE_STATIC);
	if (m->inventory != NULL) {
		sqlite3_bind_int64(st, 3, m->inventory->cpus);
		sqlite3_bind_int64(st, 4, (int64_t)m->inventory->memory_bytes);
		sqlite3_bind_int64(st, 5, (int64_t)m->inventory->disk_bytes);
		sqlite3_bind_int64(st, 6, (int64_t)m->inventory->libvirt_version);
		sqlite3_bind_int64(st, 7, (int64_t)m->inventory->qemu_version);
		sqlite3_bind_text(st, 10, m->inventory->hostname, -1,
		    SQLITE_STATIC);
	} else {
		for (i = 3; i <= 7; i++)
			sqlite3_bind_int64(st, (int)i, 0);
		sqlite3_bind_text(st, 10, "", -1, SQLITE_STATIC);
	}
	sqlite3_bind_text(st, 8, m->agent_version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, hi);
	sqlite3_bind_int64(st, 11, n->n_seen);
	sqlite3_bind_int64(st, 12, n->n_id);
	if (store_step(st) != SQLITE_DONE)
		log_warnx("nodes: saving HELLO of %s: %s", n->n_name,
		    sqlite3_errmsg(nc->db));
	sqlite3_finalize(st);
	nodes_set_state(n, "ready", NULL);

	ok.proto_version = hi;
	ok.heartbeat_interval_ms = (uint32_t)nc->conf.heartbeat_ms;
	ok.controller_version = OPSN_VERSION;
	conn_send_msg(s->s_conn, hi, MSG_HELLO_OK, h->fh_reqid, ST_OK,
	    &ok.base);
	log_info("nodes: %s says hello from %s (protocol %u, agent %s)",
	    n->n_name, conn_peer_addr(s->s_conn), hi, m->agent_version);
	/* Level-triggered: each module sends a (re)connected agent its state. */
	for (mp = nc->modules; *mp != NULL; mp++)
		if ((*mp)->m_hello != NULL)
			(*mp)->m_hello(n->n_id, roles ? roles : "");
out:
	free(msg);
	free(roles);
	opsn__hello__free_unpacked(m, NULL);
}

static void
nodes_heartbeat(struct session *s, const struct frame_hdr *h,
    const uint8_t *p)
{
	Opsn__Heartbeat	*m;
	Opsn__Heartbeat	 ack = OPSN__HEARTBEAT__INIT;
	struct node	*n = s->s_node;

	if ((m = opsn__heartbeat__unpack(NULL, h->fh_len, p)) == NULL) {
		nodes_send_error(s, h->fh_reqid, ST_BAD_REQUEST, "bad_request",
		    "HEARTBEAT does not decode");
		return;
	}
	n->n_seen_mono = util_mono_ms();
	n->n_beat_mono = n->n_seen_mono;
	n->n_seen = util_now();
	if (m->data_size_bytes > 0) {
		n->n_data_avail = m->data_avail_bytes;
		n->n_data_size = m->data_size_bytes;
	}
	if (strcmp(n->n_state, "unreachable") == 0)
		nodes_set_state(n, "ready", "heartbeats again");
	ack.sent_ms = m->sent_ms;
	conn_send_msg(s->s_conn, s->s_version, MSG_HEARTBEAT_ACK, h->fh_reqid,
	    ST_OK, &ack.base);
	opsn__heartbeat__free_unpacked(m, NULL);
}

static void
nodes_error_msg(struct session *s, const struct frame_hdr *h,
    const uint8_t *p)
{
	Opsn__Error	*e;

	if ((e = opsn__error__unpack(NULL, h->fh_len, p)) == NULL)
		return;
	log_warnx("nodes: %s reports an error: %s (%s)",
	    s->s_cn ? s->s_cn : conn_peer_addr(s->s_conn), e->message,
	    e->code);
	opsn__error__free_unpacked(e, NULL);
}

/* Any frame from a node proves it is alive (memory only). */
static void
nodes_touch(struct node *n)
{
	n->n_seen_mono = util_mono_ms();
	n->n_seen = util_now();
}

static struct node *
nodes_by_id(int64_t id)
{
	if (nodes_idx.cap == 0)
		return (NULL);
	return (*nodes_idx_id(id));
}

/*
 * Frames for agents while the store's group transaction is open: they
 * announce changes that are not durable yet, so they wait for its
 * commit, and are dropped if it fails (the next push heals the node).
 */
struct held_frame {
	TAILQ_ENTRY(held_frame)	 hf_entry;
	int64_t			 hf_node;
	uint16_t		 hf_type;
	uint8_t			*hf_buf;
	size_t			 hf_len;
};
static TAILQ_HEAD(, held_frame)	 held_frames =
    TAILQ_HEAD_INITIALIZER(held_frames);

static int	nodes_send_now(struct node *, uint16_t, const void *, size_t,
		    const ProtobufCMessage *);

static void
nodes_group_cb(int ok, void *arg)
{
	struct held_frame	*hf;
	struct node		*n;

	while ((hf = TAILQ_FIRST(&held_frames)) != NULL) {
		TAILQ_REMOVE(&held_frames, hf, hf_entry);
		if (ok && (n = nodes_by_id(hf->hf_node)) != NULL &&
		    n->n_sess != NULL && n->n_sess->s_node == n)
			nodes_send_now(n, hf->hf_type, hf->hf_buf, hf->hf_len,
			    NULL);
		free(hf->hf_buf);
		free(hf);
	}
}

static int
nodes_send_now(struct node *n, uint16_t type, const void *buf, size_t len,
    const ProtobufCMessage *m)
{
	int	 rc;

	if (m != NULL)
		rc = conn_send_msg(n->n_sess->s_conn, n->n_sess->s_version,
		    type, 0, ST_OK, m);
	else
		rc = conn_send_raw(n->n_sess->s_conn, n->n_sess->s_version,
		    type, 0, ST_OK, buf, len);
	if (rc == -1) {
		/* Its queue is full: start over, the HELLO push heals it. */
		conn_close(n->n_sess->s_conn, "send queue full");
		return (-1);
	}
	return (0);
}

/* Send a frame to a connected node (after the open group commits). */
int
nodes_send(int64_t id, uint16_t type, const ProtobufCMessage *m)
{
	struct node		*n = nodes_by_id(id);
	struct held_frame	*hf;

	if (n == NULL || n->n_sess == NULL || n->n_sess->s_node != n)
		return (-1);
	if (store_group_open()) {
		hf = xcalloc(1, sizeof(*hf));
		hf->hf_node = id;
		hf->hf_type = type;
		hf->hf_len = m != NULL ? protobuf_c_message_get_packed_size(m) :
		    0;
		hf->hf_buf = xmalloc(hf->hf_len ? hf->hf_len : 1);
		if (m != NULL)
			protobuf_c_message_pack(m, hf->hf_buf);
		TAILQ_INSERT_TAIL(&held_frames, hf, hf_entry);
		return (0);
	}
	return (nodes_send_now(n, type, NULL, 0, m));
}

/* The protocol version a node's session speaks; 0 if none. */
uint32_t
nodes_version(int64_t id)
{
	struct node	*n = nodes_by_id(id);

	if (n == NULL || n->n_sess == NULL || n->n_sess->s_node != n)
		return (0);
	return (n->n_sess->s_version);
}

/* What a node's connection still has to send; 0 if none. */
size_t
nodes_sendq_bytes(int64_t id)
{
	struct node	*n = nodes_by_id(id);

	if (n == NULL || n->n_sess == NULL || n->n_sess->s_node != n)
		return (0);
	return (conn_sendq_bytes(n->n_sess->s_conn));
}

/* Node id by name; *usable says whether it may get new work. */
int64_t
nodes_id(const char *name, int *usable)
{
	struct node	*n = nodes_find(name);

	if (n == NULL)
		return (-1);
	*usable = !n->n_revoked;
	return (n->n_id);
}

/* Is node id ready (connected and heartbeating)? */
int
nodes_is_ready(int64_t id)
{
	struct node	*n = nodes_by_id(id);

	return (n != NULL && !n->n_revoked && n->n_sess != NULL &&
	    strcmp(n->n_state, "ready") == 0);
}

/* Node name by id, for logs ("?" if unknown). */
const char *
nodes_name(int64_t id)
{
	struct node	*n = nodes_by_id(id);

	return (n != NULL ? n->n_name : "?");
}

/* A client certificate presented to the API: an enrolled, current node? */
int
nodes_cert_ok(X509 *cert, char *name, size_t len)
{
	struct node	*n;
	char		*cn, fpr[65];

	if ((cn = pki_cert_cn(cert)) == NULL)
		return (-1);
	n = nodes_find(cn);
	free(cn);
	pki_fingerprint(cert, fpr);
	if (n == NULL || n->n_revoked || strcmp(n->n_fpr, fpr) != 0)
		return (-1);
	strlcpy(name, n->n_name, len);
	return (0);
}

/* Mark silent nodes unreachable. */
static void
nodes_timer_cb(uv_timer_t *t)
{
	struct node	*n;
	uint64_t	 now = util_mono_ms();
	char		*why;

	TAILQ_FOREACH(n, &nodes, n_entry) {
		if (strcmp(n->n_state, "ready") != 0 &&
		    strcmp(n->n_state, "enrolling") != 0)
			continue;
		if (now - n->n_seen_mono < (uint64_t)nc->conf.unreachable_ms)
			continue;
		xasprintf(&why, "silent for %llu ms",
		    (unsigned long long)(now - n->n_seen_mono));
		if (strcmp(n->n_state, "ready") == 0)
			nodes_set_state(n, "unreachable", why);
		if (n->n_sess != NULL)
			conn_close(n->n_sess->s_conn, why);
		free(why);
	}
}

static int
nodes_load(char **cause)
{
	sqlite3_stmt	*st;
	struct node	*n;
	uint64_t	 now = util_mono_ms();

	st = store_prepare(nc->db, "SELECT id, name, state, cert_fpr, revoked, "
	    "last_seen, enrolled_at FROM nodes");
	while (store_step(st) == SQLITE_ROW) {
		n = xcalloc(1, sizeof(*n));
		n->n_id = sqlite3_column_int64(st, 0);
		strlcpy(n->n_name, (const char *)sqlite3_column_text(st, 1),
		    sizeof(n->n_name));
		strlcpy(n->n_state, (const char *)sqlite3_column_text(st, 2),
		    sizeof(n->n_state));
		strlcpy(n->n_fpr, (const char *)sqlite3_column_text(st, 3),
		    sizeof(n->n_fpr));
		n->n_revoked = sqlite3_column_int(st, 4);
		n->n_seen = sqlite3_column_int64(st, 5);
		/* Until it connects: what enrolment signed, CLIENT_DAYS. */
		n->n_not_after = sqlite3_column_int64(st, 6) +
		    CLIENT_DAYS * 86400LL;
		/* Give every node a full timeout to come back after a restart. */
		n->n_seen_mono = now;
		TAILQ_INSERT_TAIL(&nodes, n, n_entry);
		nodes_idx_add(n);
	}
	sqlite3_finalize(st);
	return (0);
}

/* Load the nodes and listen for agents. */
int
nodes_init(struct ctl *c, char **cause)
{
	struct sockaddr_storage	 ss;
	char			*host = NULL;
	int			 port, r;
	uint64_t		 tick;

	nc = c;
	if (nodes_load(cause) == -1)
		return (-1);
	store_group_watch(nodes_group_cb, NULL);
	if (util_parse_hostport(c->conf.agent_listen, &host, &port,
	    cause) == -1)
		return (-1);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
		xasprintf(cause, "agent_listen: '%s' is not an IP address",
		    host);
		free(host);
		return (-1);
	}
	uv_tcp_init(c->loop, &nodes_listener);
	if ((r = uv_tcp_bind(&nodes_listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (r = uv_listen((uv_stream_t *)&nodes_listener, 511,
	    nodes_accept_cb)) != 0) {
		xasprintf(cause, "agent_listen %s: %s", c->conf.agent_listen,
		    uv_strerror(r));
		free(host);
		return (-1);
	}
	free(host);
	uv_timer_init(c->loop, &nodes_timer);
	tick = (uint64_t)c->conf.unreachable_ms / 10;
	if (tick < 100)
		tick = 100;
	if (tick > 1000)
		tick = 1000;
	uv_timer_start(&nodes_timer, nodes_timer_cb, tick, tick);
	log_info("nodes: listening for agents on %s", c->conf.agent_listen);
	return (0);
}

/* Stop listening and close every agent connection. */
void
nodes_stop(void)
{
	struct session	*s, *tmp;

	if (!uv_is_closing((uv_handle_t *)&nodes_listener))
		uv_close((uv_handle_t *)&nodes_listener, NULL);
	uv_timer_stop(&nodes_timer);
	uv_close((uv_handle_t *)&nodes_timer, NULL);
	/* conn_close only schedules the close: the list stays intact. */
	for (s = TAILQ_FIRST(&sessions); s != NULL; s = tmp) {
		tmp = TAILQ_NEXT(s, s_entry);
		conn_close(s->s_conn, "controller shutting down");
	}
}

/*
 * Revoke a node inside the caller's transaction: only the database
 * changes here; nodes_revoked() applies it once the transaction commits.
 */
int
nodes_revoke(const char *name, int64_t *id, char **cause)
{
	struct node	*n;
	sqlite3_stmt	*st;
	int		 rc;

	if ((n = nodes_find(name)) == NULL) {
		xasprintf(cause, "no node named '%s'", name);
		return (-1);
	}
	st = store_prepare(nc->db, "UPDATE nodes SET revoked = 1, state = "
	    "'revoked', state_since = ? WHERE id = ?");
	sqlite3_bind_int64(st, 1, util_now());
	sqlite3_bind_int64(st, 2, n->n_id);
	rc = store_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "revoking %s: %s", name,
		    sqlite3_errmsg(nc->db));
		return (-1);
	}
	*id = n->n_id;
	return (0);
}

/* A committed revocation: refuse the node and tell every module. */
void
nodes_revoked(int64_t id)
{
	struct node	*n = nodes_by_id(id);
	struct session	*s;

	if (n == NULL)
		return;
	log_info("nodes: %s is revoked (was %s): revoked by an operator",
	    n->n_name, n->n_state);
	n->n_revoked = 1;
	strlcpy(n->n_state, "revoked", sizeof(n->n_state));
	if ((s = n->n_sess) != NULL) {
		s->s_node = NULL;
		n->n_sess = NULL;
		nodes_refuse(s, 0, ST_DENIED, "revoked", "this node was revoked");
	}
	nodes_gone_hooks(id);
}

static const char *
nodes_version_str(int64_t v, char *buf, size_t len)
{
	if (v <= 0)
		return (NULL);
	snprintf(buf, len, "%lld.%lld.%lld", (long long)(v / 1000000),
	    (long long)(v / 1000 % 1000), (long long)(v % 1000));
	return (buf);
}

/* One node row (NODES_COLS) as JSON, with what memory knows of it. */
static void
nodes_row_write(struct jsonw *w, sqlite3_stmt *st)
{
	const char	*name = (const char *)sqlite3_column_text(st, 0);
	const char	*r = (const char *)sqlite3_column_text(st, 2);
	struct node	*n = nodes_find(name);
	json_t		*hooked = json_object(), *v;
	const char	*key;
	char		 buf[32];
	size_t		 len;
	int64_t		 seen;

	/* What modules know of a connected node; its state may change. */
	json_object_set_new(hooked, "state", json_string(n ? n->n_state :
	    (const char *)sqlite3_column_text(st, 1)));
	if (n != NULL)
		nodes_json_hooks(n->n_id, hooked);
	jsonw_obj(w);
	jsonw_key(w, "name");
	jsonw_str(w, name);
	jsonw_key(w, "state");
	jsonw_json(w, json_object_get(hooked, "state"));
	jsonw_key(w, "connected");
	jsonw_bool(w, n && n->n_sess);
	jsonw_key(w, "roles");
	jsonw_arr(w);
	for (; r != NULL && *r != '\0'; r += len) {
		if ((len = strcspn(r, ",")) > 0)
			jsonw_strn(w, r, len);
		if (r[len] == ',')
			len++;
	}
	jsonw_arr_end(w);
	jsonw_key(w, "address");
	jsonw_col_text(w, st, 3);
	jsonw_key(w, "proto_version");
	jsonw_int(w, sqlite3_column_int64(st, 4));
	jsonw_key(w, "agent_version");
	jsonw_col_text(w, st, 5);
	jsonw_key(w, "cpus");
	jsonw_int(w, sqlite3_column_int64(st, 6));
	jsonw_key(w, "memory_bytes");
	jsonw_int(w, sqlite3_column_int64(st, 7));
	jsonw_key(w, "disk_bytes");
	jsonw_int(w, sqlite3_column_int64(st, 8));
	jsonw_key(w, "libvirt_version");
	jsonw_str(w, nodes_version_str(sqlite3_column_int64(st, 9), buf,
	    sizeof(buf)));
	jsonw_key(w, "qemu_version");
	jsonw_str(w, nodes_version_str(sqlite3_column_int64(st, 10), buf,
	    sizeof(buf)));
	jsonw_key(w, "hostname");
	jsonw_col_text(w, st, 11);
	jsonw_key(w, "enrolled_at");
	util_time_fmt(sqlite3_column_int64(st, 12), buf, sizeof(buf));
	jsonw_str(w, buf);
	jsonw_key(w, "state_since");
	util_time_fmt(sqlite3_column_int64(st, 13), buf, sizeof(buf));
	jsonw_str(w, buf);
	jsonw_key(w, "last_seen");
	seen = n && n->n_seen ? n->n_seen : sqlite3_column_int64(st, 14);
	if (seen > 0) {
		util_time_fmt(seen, buf, sizeof(buf));
		jsonw_str(w, buf);
	} else
		jsonw_null(w);
	jsonw_key(w, "revoked");
	jsonw_bool(w, sqlite3_column_int(st, 15));
	jsonw_key(w, "cert_fingerprint");
	jsonw_col_text(w, st, 16);
	json_object_del(hooked, "state");
	json_object_foreach(hooked, key, v) {
		jsonw_key(w, key);
		jsonw_json(w, v);
	}
	json_decref(hooked);
	jsonw_obj_end(w);
}

#define NODES_COLS "name, state, roles, address, proto_version, " \
	"agent_version, cpus, memory_bytes, disk_bytes, libvirt_version, " \
	"qemu_version, hostname, enrolled_at, state_since, last_seen, revoked, " \
	"cert_fpr"

/* JSON of one node, NULL if there is none by that name. */
json_t *
nodes_json(const char *name)
{
	sqlite3_stmt	*st;
	struct jsonw	 w;
	json_t		*o = NULL;

	memset(&w, 0, sizeof(w));
	st = store_stmt(nc->db, "SELECT " NODES_COLS " FROM nodes WHERE "
	    "name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		nodes_row_write(&w, st);
		o = jsonw_load(&w);
	}
	store_done(st);
	return (o);
}

/*
 * A page of nodes by name after cursor, written into w (opened by
 * params_page_open()); *next is the next cursor (the caller frees) or
 * NULL.
 */
void
nodes_list_write(struct jsonw *w, const char *after, int limit, char **next)
{
	sqlite3_stmt	*st;
	int		 n = 0;

	*next = NULL;
	st = store_stmt(nc->db, "SELECT " NODES_COLS " FROM nodes WHERE "
	    "name > ? ORDER BY name LIMIT ?");
	sqlite3_bind_text(st, 1, after ? after : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			/* More: the next page starts after the last one here. */
			break;
		}
		free(*next);
		*next = xstrdup((const char *)sqlite3_column_text(st, 0));
		nodes_row_write(w, st);
	}
	store_done(st);
	if (n <= limit) {
		free(*next);
		*next = NULL;
	}
}

/* Count of nodes per state, for /v1/health. */
json_t *
nodes_state_counts(void)
{
	struct node	*n;
	json_t		*o = json_object(), *v;

	TAILQ_FOREACH(n, &nodes, n_entry) {
		v = json_object_get(o, n->n_state);
		json_object_set_new(o, n->n_state,
		    json_integer(v ? json_integer_value(v) + 1 : 1));
	}
	return (o);
}

/*
 * The agents module's families for GET /metrics: nodes by state, and per
 * node (revoked ones left out) its state, the age of its last heartbeat
 * on the monotonic clock (a wall-clock step changes nothing), its
 * certificate's expiry and its data folder's disk.
 */
static void
nodes_prom_rejected(int64_t node, const char *kind, uint64_t count,
    void *arg)
{
	struct prom	*pr = arg;
	char		*n = prom_label(nodes_name(node)), *k = prom_label(kind);

	prom_add(pr, "opsn_agent_reports_rejected_total{node=\"%s\","
	    "kind=\"%s\"} %llu\n", n, k, (unsigned long long)count);
	free(n);
	free(k);
}

void
nodes_metrics(struct prom *pr)
{
	struct node	*n;
	json_t		*counts, *v;
	const char	*k;
	uint64_t	 now = util_mono_ms();
	char		*l, *sl;

	prom_family(pr, "opsn_nodes", "gauge", "Nodes by state.");
	counts = nodes_state_counts();
	json_object_foreach(counts, k, v)
		prom_sample(pr, "opsn_nodes", "state", k,
		    (double)json_integer_value(v));
	json_decref(counts);
	prom_family(pr, "opsn_node_state", "gauge",
	    "A node's state (1 for the state it is in).");
	TAILQ_FOREACH(n, &nodes, n_entry) {
		if (n->n_revoked)
			continue;
		l = prom_label(n->n_name);
		sl = prom_label(n->n_state);
		prom_add(pr, "opsn_node_state{node=\"%s\",state=\"%s\"} 1\n", l,
		    sl);
		free(sl);
		free(l);
	}
	prom_family(pr, "opsn_node_connected", "gauge",
	    "Whether a node's agent is connected and said HELLO.");
	TAILQ_FOREACH(n, &nodes, n_entry)
		if (!n->n_revoked)
			prom_sample(pr, "opsn_node_connected", "node", n->n_name,
			    n->n_sess != NULL);
	prom_family(pr, "opsn_node_heartbeat_age_seconds", "gauge",
	    "Time since a node's last heartbeat (since the controller started "
	    "for a node not heard from since).");
	TAILQ_FOREACH(n, &nodes, n_entry)
		if (!n->n_revoked)
			prom_sample(pr, "opsn_node_heartbeat_age_seconds", "node",
			    n->n_name, (double)(now - (n->n_beat_mono != 0 ?
			    n->n_beat_mono : n->n_seen_mono)) / 1000);
	prom_family(pr, "opsn_node_certificate_expiry_timestamp_seconds",
	    "gauge", "When a node's certificate expires (unix seconds).");
	TAILQ_FOREACH(n, &nodes, n_entry)
		if (!n->n_revoked && n->n_not_after > 0)
			prom_sample(pr,
			    "opsn_node_certificate_expiry_timestamp_seconds",
			    "node", n->n_name, (double)n->n_not_after);
	prom_family(pr, "opsn_node_data_dir_avail_bytes", "gauge",
	    "Space left in the file system of a node agent's data folder "
	    "(spool, keys, maps), at its last heartbeat.");
	TAILQ_FOREACH(n, &nodes, n_entry)
		if (!n->n_revoked && n->n_data_size > 0)
			prom_sample(pr, "opsn_node_data_dir_avail_bytes", "node",
			    n->n_name, (double)n->n_data_avail);
	prom_family(pr, "opsn_node_data_dir_size_bytes", "gauge",
	    "Size of the file system of a node agent's data folder.");
	TAILQ_FOREACH(n, &nodes, n_entry)
		if (!n->n_revoked && n->n_data_size > 0)
			prom_sample(pr, "opsn_node_data_dir_size_bytes", "node",
			    n->n_name, (double)n->n_data_size);
	prom_family(pr, "opsn_agent_reports_rejected_total", "counter",
	    "Reports (samples, states, console bytes) an agent sent about "
	    "what is not placed on its node or not of its roles.");
	reports_foreach_rejected(nodes_prom_rejected, pr);
}
