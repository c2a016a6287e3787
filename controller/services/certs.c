/*
 * Certificates of the hosted services, as the controller sees them.
 *
 * The backends' agents get their certificates themselves (ACME) and
 * report each one's state (MSG_SERVICES_CERTS): none, pending, valid until
 * a date by an issuer, or failed with the CA's words. The controller
 * keeps the last report per backend and shows it with the site (or the
 * backend, for a mail host name).
 *
 * A member may bring its own certificate for a site. Its private key must
 * reach the site's backend and nothing else: not the database, not the
 * audit trail, not a log, not a later answer. So the key is carried
 * through once. POST /v1/sites/{hostname}/certificate checks the pair
 * (lib/tlscert.c: the key is the certificate's, the certificate covers
 * the site's names and is valid now), sends it to the backend in
 * MSG_SITE_CERT and waits, the key living only in this request's memory;
 * the backend checks it again, keeps it (0600) and answers with the
 * certificate's SHA-256 (MSG_SITE_CERT_RESULT). Only then does the
 * controller record, with the usual path (generation, journal, audit),
 * that the site is served with the certificate of that fingerprint; the
 * desired state names the fingerprint, never the key. A backend that is
 * not connected cannot take a key: the request is refused (503) rather
 * than the key stored to wait for it; one that does not answer in time
 * leaves the site as it was (504).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "services.h"
#include "services.pb-c.h"

#define CERTS_WAIT_MS		15000	/* for the backend's answer */
#define CERTS_REPORT_MAX	100000	/* certificates in one report */
#define CERTS_TEXT_MAX		1024

/* A member's certificate on its way to a backend. */
struct certs_pending {
	struct certs_pending	*p_next;
	uint64_t		 p_request;
	int64_t			 p_node;
	char			 p_site[37];
	char			 p_host[SERVICES_HOST_MAX + 1];
	char			 p_sha256[65];
	struct tlscert_info	 p_info;
	struct api_defer	*p_defer;
	uint64_t		 p_deadline;	/* monotonic ms */
};

static struct certs_pending	*certs_pending;
static uint64_t			 certs_next_request = 1;

/* ---- what the agents report ------------------------------------------------ */

static const char *
certs_state(const char *s)
{
	static const char *const known[] = { "none", "pending", "valid",
	    "failed" };
	size_t	 i;

	for (i = 0; i < nitems(known); i++)
		if (strcmp(s, known[i]) == 0)
			return (known[i]);
	return (NULL);
}

/* MSG_SERVICES_CERTS: the backend's certificates replace what it said. */
void
services_certs_report(int64_t node_id, const uint8_t *p, size_t len)
{
	Opsn__ServicesCerts	*m;
	sqlite3_stmt		*st;
	json_t			*names;
	char			*nj;
	size_t			 i, k;
	int64_t			 now = util_now();

	if ((m = opsn__services_certs__unpack(NULL, len, p)) == NULL) {
		log_warnx("services: %s sent certificates that do not decode",
		    nodes_name(node_id));
		return;
	}
	if (m->n_certs > CERTS_REPORT_MAX || store_begin(ctl->db) == -1)
		goto out;
	st = store_prepare(ctl->db, "DELETE FROM services_certs WHERE "
	    "node_id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	store_step(st);
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "INSERT OR REPLACE INTO services_certs "
	    "(node_id, kind, object_id, state, source, not_before, not_after, "
	    "issuer, message, next_attempt, names, reported_at) VALUES (?, ?, "
	    "?, ?, ?, nullif(?, 0), nullif(?, 0), ?, ?, nullif(?, 0), ?, ?)");
	for (i = 0; i < m->n_certs; i++) {
		const Opsn__CertStatus *c = m->certs[i];
		const char *state = certs_state(c->state);

		if (state == NULL || (strcmp(c->kind, "site") != 0 &&
		    strcmp(c->kind, "mail") != 0) || strlen(c->id) > 256)
			continue;
		names = json_array();
		for (k = 0; k < c->n_names && k < 100; k++)
			json_array_append_new(names, json_stringn(c->names[k],
			    strnlen(c->names[k], SERVICES_HOST_MAX)));
		nj = json_dumps(names, JSON_COMPACT);
		json_decref(names);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, node_id);
		sqlite3_bind_text(st, 2, c->kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, c->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, c->source, (int)strnlen(c->source, 16),
		    SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, c->not_before);
		sqlite3_bind_int64(st, 7, c->not_after);
		sqlite3_bind_text(st, 8, c->issuer, (int)strnlen(c->issuer,
		    CERTS_TEXT_MAX), SQLITE_STATIC);
		sqlite3_bind_text(st, 9, c->message, (int)strnlen(c->message,
		    CERTS_TEXT_MAX), SQLITE_STATIC);
		sqlite3_bind_int64(st, 10, c->next_attempt);
		sqlite3_bind_text(st, 11, nj, -1, free);
		sqlite3_bind_int64(st, 12, now);
		store_step(st);
		if (strcmp(state, "failed") == 0)
			log_warnx("services: %s: certificate of %s %s failed: "
			    "%s", nodes_name(node_id), c->kind, c->id,
			    c->message);
	}
	sqlite3_finalize(st);
	if (store_commit(ctl->db) == -1)
		store_rollback(ctl->db);
out:
	opsn__services_certs__free_unpacked(m, NULL);
}

static json_t *
certs_time(sqlite3_stmt *st, int col)
{
	char	 buf[32];

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return (json_null());
	util_time_fmt(sqlite3_column_int64(st, col), buf, sizeof(buf));
	return (json_string(buf));
}

/*
 * {"state", "source", "not_before", "not_after", "issuer", "message",
 * "next_attempt"} from the columns of CERTS_COLS starting at col; tls is
 * the site's mode ("off": no certificate wanted), or NULL.
 */
json_t *
services_certs_json(sqlite3_stmt *st, int col, const char *tls)
{
	json_t		*o = json_object();
	const char	*state = (const char *)sqlite3_column_text(st, col);
	const char	*source = (const char *)sqlite3_column_text(st, col + 1);
	const char	*issuer = (const char *)sqlite3_column_text(st, col + 4);
	const char	*msg = (const char *)sqlite3_column_text(st, col + 5);

	/* Nothing reported yet: a site's backend has not looked yet. */
	if (state == NULL)
		state = tls != NULL ? "pending" : "none";
	if (tls != NULL && strcmp(tls, "off") == 0)
		state = "off";
	json_object_set_new(o, "state", json_string(state));
	json_object_set_new(o, "source", json_string(source != NULL ? source :
	    tls != NULL ? tls : ""));
	json_object_set_new(o, "not_before", certs_time(st, col + 2));
	json_object_set_new(o, "not_after", certs_time(st, col + 3));
	json_object_set_new(o, "issuer", json_string(issuer ? issuer : ""));
	json_object_set_new(o, "message", json_string(msg ? msg : ""));
	json_object_set_new(o, "next_attempt", certs_time(st, col + 6));
	return (o);
}

/* ---- a member's certificate, carried through ------------------------------ */

static void
certs_pending_free(struct certs_pending *p)
{
	tlscert_info_clear(&p->p_info);
	free(p);
}

static struct certs_pending *
certs_pending_take(uint64_t request, int64_t node_id)
{
	struct certs_pending	**pp, *p;

	for (pp = &certs_pending; (p = *pp) != NULL; pp = &p->p_next)
		if (p->p_request == request && (node_id == 0 ||
		    p->p_node == node_id)) {
			*pp = p->p_next;
			return (p);
		}
	return (NULL);
}

/* Record that the site is served with the certificate the backend kept. */
static void
certs_commit(struct certs_pending *p)
{
	struct api_req	*r = api_defer_req(p->p_defer);
	sqlite3_stmt	*st;
	int64_t		 gen;
	char		 obj[300], na[32];

	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(p->p_defer, 503, "busy", "the database "
		    "is busy; the certificate is on the backend: send it again");
		return;
	}
	if ((gen = services_bump(p->p_node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "UPDATE sites SET tls = 'manual', "
	    "cert_sha256 = ?, generation = ?, state = 'pending', message = '', "
	    "updated_at = ? WHERE id = ? AND node_id = ?");
	sqlite3_bind_text(st, 1, p->p_sha256, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, gen);
	sqlite3_bind_int64(st, 3, util_now());
	sqlite3_bind_text(st, 4, p->p_site, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, p->p_node);
	store_step(st);
	sqlite3_finalize(st);
	if (sqlite3_changes(ctl->db) != 1) {
		store_rollback(ctl->db);
		api_defer_reply_error(p->p_defer, 409, "conflict", "site %s "
		    "moved or was deleted meanwhile", p->p_host);
		return;
	}
	snprintf(obj, sizeof(obj), "site/%s", p->p_host);
	util_time_fmt(p->p_info.ti_not_after, na, sizeof(na));
	/* The fingerprint and dates only: the key is nobody's business. */
	if (services_journal(p->p_node, gen, "site", p->p_site, p->p_host,
	    "certificate") == -1 || audit_record(r, "site.certificate", obj,
	    json_pack("{s:s,s:s,s:s,s:s}", "source", "manual", "sha256",
	    p->p_sha256, "issuer", p->p_info.ti_issuer, "not_after",
	    na)) == -1)
		goto fail;
	if (store_commit(ctl->db) == -1)
		goto fail;
	services_push(p->p_node);
	log_info("services: site %s: certificate %.16s... by %s set by %s",
	    p->p_host, p->p_sha256, p->p_info.ti_issuer,
	    api_principal(r)->ap_name);
	api_defer_reply_json(p->p_defer, 200, services_sites_json(p->p_site));
	return;
fail:
	store_rollback(ctl->db);
	api_defer_reply_error(p->p_defer, 500, "internal", "storing the change "
	    "failed");
}

/* MSG_SITE_CERT_RESULT: the backend kept the certificate, or says why not. */
void
services_certs_result(int64_t node_id, const uint8_t *buf, size_t len)
{
	Opsn__SiteCertResult	*m;
	struct certs_pending	*p;

	if ((m = opsn__site_cert_result__unpack(NULL, len, buf)) == NULL) {
		log_warnx("services: %s sent a certificate result that does "
		    "not decode", nodes_name(node_id));
		return;
	}
	if ((p = certs_pending_take(m->request, node_id)) == NULL) {
		log_info("services: %s answered certificate request %llu too "
		    "late", nodes_name(node_id),
		    (unsigned long long)m->request);
		goto out;
	}
	if (!m->ok)
		api_defer_reply_error(p->p_defer, 422, "certificate_refused",
		    "the backend refused the certificate: %.500s", m->error);
	else if (strcmp(m->cert_sha256, p->p_sha256) != 0)
		api_defer_reply_error(p->p_defer, 502, "backend_error", "the "
		    "backend kept another certificate than the one sent");
	else
		certs_commit(p);
	certs_pending_free(p);
out:
	opsn__site_cert_result__free_unpacked(m, NULL);
}

/* Requests the backend did not answer in time, or all of one node's. */
static void
certs_expire(int64_t node_id, uint64_t now_ms)
{
	struct certs_pending	**pp, *p;

	for (pp = &certs_pending; (p = *pp) != NULL;) {
		if (node_id != 0 ? p->p_node != node_id :
		    now_ms < p->p_deadline) {
			pp = &p->p_next;
			continue;
		}
		*pp = p->p_next;
		api_defer_reply_error(p->p_defer, node_id != 0 ? 503 : 504,
		    node_id != 0 ? "backend_unreachable" : "backend_timeout",
		    "backend %s did not answer: site %s is left as it was; "
		    "send the certificate again", nodes_name(p->p_node),
		    p->p_host);
		certs_pending_free(p);
	}
}

/* Once a second from the services timer. */
void
services_certs_tick(void)
{
	certs_expire(0, util_mono_ms());
}

/* A backend went away: its pending requests will not be answered. */
void
services_certs_gone(int64_t node_id)
{
	certs_expire(node_id, 0);
}

/* The controller stops: nobody will answer. */
void
services_certs_stop(void)
{
	certs_expire(0, UINT64_MAX);
}

/* A string field of the body; NULL after replying 400. */
static const char *
certs_field(struct api_req *r, json_t *body, const char *name)
{
	json_t	*v = json_object_get(body, name);

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > TLSCERT_PEM_MAX) {
		api_reply_error(r, 400, "bad_field", "%s: the PEM text (at most "
		    "%d bytes) is required", name, TLSCERT_PEM_MAX);
		return (NULL);
	}
	return (json_string_value(v));
}

/* Wipe the key from the parsed body before it is freed. */
static void
certs_body_free(json_t *body)
{
	json_t	*v;

	if (body == NULL)
		return;
	if ((v = json_object_get(body, "key_pem")) != NULL &&
	    json_is_string(v))
		OPENSSL_cleanse((char *)json_string_value(v),
		    json_string_length(v));
	json_decref(body);
}

/* The site's host name, then its aliases (borrowed from *keep). */
static const char **
certs_site_names(const char *site_id, json_t **keep, size_t *n)
{
	sqlite3_stmt	*st;
	json_t		*v = NULL, *a;
	const char	**names;
	size_t		 i;

	st = store_prepare(ctl->db, "SELECT json_array(hostname) FROM sites "
	    "WHERE id = ?1 UNION ALL SELECT aliases FROM sites WHERE id = ?1");
	sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
	*keep = json_array();
	while (store_step(st) == SQLITE_ROW) {
		if ((v = json_loads((const char *)sqlite3_column_text(st, 0), 0,
		    NULL)) == NULL)
			continue;
		json_array_extend(*keep, v);
		json_decref(v);
	}
	sqlite3_finalize(st);
	names = xcalloc(json_array_size(*keep) + 1, sizeof(*names));
	*n = 0;
	json_array_foreach(*keep, i, a)
		if (json_is_string(a))
			names[(*n)++] = json_string_value(a);
	return (names);
}

/* POST /v1/sites/{hostname}/certificate {"cert_pem", "key_pem"} */
void
services_sites_cert_set(struct api_req *r)
{
	Opsn__SiteCert		 m = OPSN__SITE_CERT__INIT;
	struct certs_pending	*p;
	static const char *const known[] = { "cert_pem", "key_pem", NULL };
	char			 id[37], host[SERVICES_HOST_MAX + 1], status[16];
	char			*cause = NULL;
	const char		*cert, *key, **names = NULL;
	json_t			*body, *keep = NULL;
	int64_t			 node;
	size_t			 n = 0;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1 ||
	    services_sites_find(r, id, host, sizeof(host), status,
	    sizeof(status), &node) == -1 ||
	    (cert = certs_field(r, body, "cert_pem")) == NULL ||
	    (key = certs_field(r, body, "key_pem")) == NULL)
		goto out;
	names = certs_site_names(id, &keep, &n);
	p = xcalloc(1, sizeof(*p));
	if (tlscert_check(cert, strlen(cert), key, strlen(key), names, n,
	    util_now(), &p->p_info, &cause) == -1) {
		api_reply_error(r, 400, "bad_certificate", "%s", cause);
		certs_pending_free(p);
		goto out;
	}
	p->p_request = certs_next_request++;
	p->p_node = node;
	strlcpy(p->p_site, id, sizeof(p->p_site));
	strlcpy(p->p_host, host, sizeof(p->p_host));
	strlcpy(p->p_sha256, p->p_info.ti_sha256, sizeof(p->p_sha256));
	m.request = p->p_request;
	m.site_id = id;
	m.names = (char **)names;
	m.n_names = n;
	m.cert_pem = (char *)cert;
	m.key_pem = (char *)key;
	if (nodes_send(node, MSG_SITE_CERT, &m.base) == -1) {
		api_reply_error(r, 503, "backend_unreachable", "backend %s is "
		    "not connected; a key is never kept here to wait for it: "
		    "send the certificate again once it is", nodes_name(node));
		certs_pending_free(p);
		goto out;
	}
	p->p_deadline = util_mono_ms() + CERTS_WAIT_MS;
	p->p_defer = api_defer(r);
	p->p_next = certs_pending;
	certs_pending = p;
out:
	free(cause);
	free(names);
	json_decref(keep);
	certs_body_free(body);
}

/* DELETE /v1/sites/{hostname}/certificate: back to ACME. */
void
services_sites_cert_acme(struct api_req *r)
{
	char		 id[37], host[SERVICES_HOST_MAX + 1], status[16];
	char		 obj[300];
	int64_t		 node, gen;
	sqlite3_stmt	*st;

	if (services_sites_find(r, id, host, sizeof(host), status,
	    sizeof(status), &node) == -1 || services_begin(r) == -1)
		return;
	if ((gen = services_bump(node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "UPDATE sites SET tls = 'acme', "
	    "cert_sha256 = '', generation = ?, state = 'pending', message = '', "
	    "updated_at = ? WHERE id = ?");
	sqlite3_bind_int64(st, 1, gen);
	sqlite3_bind_int64(st, 2, util_now());
	sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "site/%s", host);
	if (services_journal(node, gen, "site", id, host, "certificate") ==
	    -1 || audit_record(r, "site.certificate", obj, json_pack("{s:s}",
	    "source", "acme")) == -1 || store_commit(ctl->db) == -1)
		goto fail;
	services_push(node);
	api_reply_json(r, 200, services_sites_json(id));
	return;
fail:
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the change failed");
}
