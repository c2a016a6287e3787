/*
 * Mail: domains (with their DKIM key and DNS records), mailboxes (password
 * hashes only, quotas within the domain's), aliases and forwards. Each
 * domain lives on one backend; every change bumps that backend's
 * generation and is pushed to it whole (services.c).
 *
 * Secrets: a password is hashed as soon as it is read and never stored,
 * logged, audited or answered; a hash and a DKIM private key go to the
 * backend in the desired state and nowhere else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "services.h"

#define MAIL_IMPORT_MAX		10000
#define MAIL_TARGETS_MAX	100
#define MAIL_TENANT_REF		"coalesce(t.insee, t.siren, CAST(t.id AS TEXT))"

/* "2.0 GiB (2147483648 bytes)" into buf. */
static const char *
mail_bytes(int64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB",
	    "TiB", "PiB" };
	double	 v = (double)n;
	size_t	 u = 0;

	while (v >= 1024 && u + 1 < nitems(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld bytes", (long long)n);
	else
		snprintf(buf, len, "%.1f %s (%lld bytes)", v, units[u],
		    (long long)n);
	return (buf);
}

/* Wipe and free a secret (a password, its hash, a private key). */
static void
mail_free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Load a domain by its stored name, within the caller's scope. */
static int
mail_domain_load(int64_t scope, const char *name, struct mail_domain *d)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	st = store_prepare(ctl->db, "SELECT id, tenant_id, node_id, "
	    "coalesce(quota_bytes, -1), name FROM mail_domains WHERE name = ?1 "
	    "AND (?2 = 0 OR tenant_id = ?2)");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, scope);
	if (store_step(st) == SQLITE_ROW) {
		d->md_id = sqlite3_column_int64(st, 0);
		d->md_tenant = sqlite3_column_int64(st, 1);
		d->md_node = sqlite3_column_int64(st, 2);
		d->md_quota = sqlite3_column_int64(st, 3);
		strlcpy(d->md_name, (const char *)sqlite3_column_text(st, 4),
		    sizeof(d->md_name));
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

/* The domain a name (as typed: any case, Unicode) names; -1 after 4xx. */
int
services_mail_domain_find(struct api_req *r, const char *ref, struct mail_domain *d)
{
	char	 host[SERVICES_HOST_MAX + 1], *cause = NULL;

	if (services_util_host(ref, host, &cause) == -1) {
		api_reply_error(r, 404, "not_found", "no mail domain '%.100s' "
		    "(%s)", ref, cause);
		free(cause);
		return (-1);
	}
	if (mail_domain_load(services_scope(r), host, d) == -1) {
		api_reply_error(r, 404, "not_found", "no mail domain '%s'",
		    host);
		return (-1);
	}
	return (0);
}

/* Sum of the quotas of a domain's mailboxes that are not deleted. */
static int64_t
mail_domain_used(int64_t domain_id, const char *except_id)
{
	sqlite3_stmt	*st;
	int64_t		 n = 0;

	st = store_prepare(ctl->db, "SELECT coalesce(sum(quota_bytes), 0) FROM "
	    "mailboxes WHERE domain_id = ? AND status != 'deleted' AND id != ?");
	sqlite3_bind_int64(st, 1, domain_id);
	sqlite3_bind_text(st, 2, except_id ? except_id : "", -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (n);
}

/*
 * Inside the transaction: may the domain's mailboxes get add more bytes
 * of quota (besides except_id's)? -1 with *why giving both numbers.
 */
static int
mail_quota_left(const struct mail_domain *d, int64_t add,
    const char *except_id, const char *what, char **why)
{
	int64_t	 used;
	char	 a[64], q[64], u[64], left[64];

	if (d->md_quota < 0)
		return (0);
	used = mail_domain_used(d->md_id, except_id);
	if (used + add <= d->md_quota)
		return (0);
	xasprintf(why, "%s %s is over what domain %s has left: its quota is "
	    "%s, its mailboxes already have %s, so %s is left", what,
	    mail_bytes(add, a, sizeof(a)), d->md_name, mail_bytes(d->md_quota,
	    q, sizeof(q)), mail_bytes(used, u, sizeof(u)), mail_bytes(used >
	    d->md_quota ? 0 : d->md_quota - used, left, sizeof(left)));
	return (-1);
}

/* mail_quota_left, or -1 after replying 403. */
static int
mail_quota_check(struct api_req *r, const struct mail_domain *d,
    int64_t add, const char *except_id, const char *what)
{
	char	*why = NULL;

	if (mail_quota_left(d, add, except_id, what, &why) == 0)
		return (0);
	api_reply_error(r, 403, "quota_exceeded", "%s", why);
	free(why);
	return (-1);
}

/* Commit a mutation and push its backend; -1 after replying 500. */
static int
mail_commit(struct api_req *r, int64_t node_id)
{
	if (store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "storing the change failed");
		return (-1);
	}
	services_push(node_id);
	return (0);
}

/* {"name", ...} of a domain (NULL if none). */
static json_t *
mail_domain_json(int64_t id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;
	char		*u, buf[32];

	st = store_prepare(ctl->db, "SELECT d.name, " MAIL_TENANT_REF ", "
	    "n.name, d.quota_bytes, (SELECT coalesce(sum(quota_bytes), 0) FROM "
	    "mailboxes WHERE domain_id = d.id AND status != 'deleted'), (SELECT "
	    "count(*) FROM mailboxes WHERE domain_id = d.id AND status != "
	    "'deleted'), (SELECT count(*) FROM mailboxes WHERE domain_id = "
	    "d.id AND status = 'deleted'), (SELECT count(*) FROM aliases WHERE "
	    "domain_id = d.id), d.dkim_selector, d.dkim_public_b64, t.status, "
	    "d.state, d.message, d.generation, d.applied_generation, "
	    "d.created_at, d.tenant_id FROM mail_domains d JOIN tenants t ON "
	    "t.id = d.tenant_id JOIN nodes n ON n.id = d.node_id WHERE d.id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return (NULL);
	}
	o = json_object();
	json_object_set_new(o, "name", json_string((const char *)
	    sqlite3_column_text(st, 0)));
	u = services_util_unicode((const char *)sqlite3_column_text(st, 0));
	json_object_set_new(o, "name_unicode", json_string(u));
	free(u);
	json_object_set_new(o, "tenant", json_string((const char *)
	    sqlite3_column_text(st, 1)));
	json_object_set_new(o, "tenant_id", json_integer(
	    sqlite3_column_int64(st, 16)));
	json_object_set_new(o, "backend", json_string((const char *)
	    sqlite3_column_text(st, 2)));
	json_object_set_new(o, "quota_bytes", sqlite3_column_type(st, 3) ==
	    SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st,
	    3)));
	json_object_set_new(o, "allocated_bytes", json_integer(
	    sqlite3_column_int64(st, 4)));
	json_object_set_new(o, "mailboxes", json_integer(
	    sqlite3_column_int64(st, 5)));
	json_object_set_new(o, "mailboxes_deleted", json_integer(
	    sqlite3_column_int64(st, 6)));
	json_object_set_new(o, "aliases", json_integer(
	    sqlite3_column_int64(st, 7)));
	json_object_set_new(o, "dkim", json_pack("{s:s,s:s}", "selector",
	    (const char *)sqlite3_column_text(st, 8), "public_key",
	    (const char *)sqlite3_column_text(st, 9)));
	json_object_set_new(o, "suspended", json_boolean(strcmp((const char *)
	    sqlite3_column_text(st, 10), "suspended") == 0));
	json_object_set_new(o, "live", services_live_json((const char *)
	    sqlite3_column_text(st, 11), (const char *)sqlite3_column_text(st,
	    12), sqlite3_column_int64(st, 13), sqlite3_column_int64(st, 14)));
	util_time_fmt(sqlite3_column_int64(st, 15), buf, sizeof(buf));
	json_object_set_new(o, "created_at", json_string(buf));
	sqlite3_finalize(st);
	return (o);
}

/* A new domain waiting for its DKIM key (made on the thread pool). */
struct mail_new_domain {
	uv_work_t		 nd_work;
	struct api_defer	*nd_defer;
	char			 nd_name[SERVICES_HOST_MAX + 1];
	int64_t			 nd_tenant, nd_quota, nd_node;
	char			*nd_pem, *nd_pub, *nd_cause;
};

/* On the pool: an RSA key takes from tens of milliseconds to a second. */
static void
mail_domain_key_cb(uv_work_t *w)
{
	struct mail_new_domain	*nd = w->data;

	services_util_dkim(&nd->nd_pem, &nd->nd_pub, &nd->nd_cause);
}

/* Back on the loop with the key: store the domain, as it still may be. */
static void
mail_domain_store_cb(uv_work_t *w, int status)
{
	struct mail_new_domain	*nd = w->data;
	struct api_defer	*df = nd->nd_defer;
	struct api_req		*r = api_defer_req(df);
	json_t			*sum;
	sqlite3_stmt		*st;
	char			 selector[32], obj[300], ref[64], *why = NULL;
	int64_t			 gen, id;
	struct tm		 tm;
	time_t			 now = (time_t)util_now();

	if (status == UV_ECANCELED) {
		api_defer_reply_error(df, 503, "busy", "cancelled: the "
		    "controller is stopping");
		goto out;
	}
	if (nd->nd_pem == NULL) {
		log_warnx("services: %s", nd->nd_cause);
		api_defer_reply_error(df, 500, "internal", "no DKIM key: %s",
		    nd->nd_cause);
		goto out;
	}
	gmtime_r(&now, &tm);
	snprintf(selector, sizeof(selector), "opsn%04d", tm.tm_year + 1900);
	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(df, 503, "busy", "the database is busy");
		goto out;
	}
	if (tenants_may_grow(nd->nd_tenant, &why) == -1) {
		api_defer_reply_error(df, 409, "tenant_inactive", "%s", why);
		goto rollback;
	}
	if ((gen = services_bump(nd->nd_node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "INSERT INTO mail_domains (name, tenant_id, "
	    "node_id, quota_bytes, dkim_selector, dkim_private_pem, "
	    "dkim_public_b64, generation, created_at) VALUES (?, ?, ?, ?, ?, ?, "
	    "?, ?, ?) RETURNING id");
	sqlite3_bind_text(st, 1, nd->nd_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, nd->nd_tenant);
	sqlite3_bind_int64(st, 3, nd->nd_node);
	if (nd->nd_quota > 0)
		sqlite3_bind_int64(st, 4, nd->nd_quota);
	sqlite3_bind_text(st, 5, selector, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, nd->nd_pem, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, nd->nd_pub, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, gen);
	sqlite3_bind_int64(st, 9, util_now());
	if (store_step(st) != SQLITE_ROW) {
		/* Made meanwhile by another request (the name is unique). */
		log_warnx("services: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		api_defer_reply_error(df, 409, "exists", "mail domain %s exists",
		    nd->nd_name);
		goto rollback;
	}
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	services_tenant_ref(nd->nd_tenant, ref, sizeof(ref));
	snprintf(obj, sizeof(obj), "mail-domain/%s", nd->nd_name);
	/* The summary names the key's selector, never the key. */
	sum = json_pack("{s:s,s:s,s:s,s:s}", "name", nd->nd_name, "tenant", ref,
	    "backend", nodes_name(nd->nd_node), "dkim_selector", selector);
	json_object_set_new(sum, "quota_bytes", nd->nd_quota > 0 ?
	    json_integer(nd->nd_quota) : json_null());
	if (services_journal(nd->nd_node, gen, "domain", nd->nd_name,
	    nd->nd_name, "create") == -1 || audit_record(r,
	    "mail.domain.create", obj, sum) == -1)
		goto fail;
	if (store_commit(ctl->db) == -1) {
		api_defer_reply_error(df, 500, "internal", "storing the domain "
		    "failed (request %s)", api_request_id(r));
		goto out;
	}
	services_push(nd->nd_node);
	log_info("services: %s added mail domain %s for %s on %s",
	    api_principal(r)->ap_name, nd->nd_name, ref,
	    nodes_name(nd->nd_node));
	api_defer_reply_json(df, 201, mail_domain_json(id));
	goto out;
fail:
	api_defer_reply_error(df, 500, "internal", "storing the domain failed "
	    "(request %s)", api_request_id(r));
rollback:
	store_rollback(ctl->db);
out:
	mail_free_secret(nd->nd_pem);
	free(nd->nd_pub);
	free(nd->nd_cause);
	free(nd);
	free(why);
}

/*
 * POST /v1/mail/domains {"name", "tenant", "quota_bytes"?, "backend"?}:
 * checked and placed here, its DKIM key made on the thread pool, stored
 * once the key is there.
 */
void
services_mail_domain_create(struct api_req *r)
{
	static const char *const known[] = { "name", "tenant", "quota_bytes",
	    "backend", NULL };
	struct mail_new_domain *nd;
	json_t		*body;
	sqlite3_stmt	*st;
	char		 name[SERVICES_HOST_MAX + 1];
	const char	*backend = NULL;
	int64_t		 tenant, quota = -1, node;
	int		 exists, rv;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	if (services_new_args(r, body, "name", "the domain, such as "
	    "mairie-agassac.fr", name, &tenant, &quota, &backend) == -1)
		goto out;
	st = store_prepare(ctl->db, "SELECT 1 FROM mail_domains WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	exists = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (exists) {
		api_reply_error(r, 409, "exists", "mail domain %s exists", name);
		goto out;
	}
	if ((node = services_place(r, "mail", backend)) == -1)
		goto out;
	nd = xcalloc(1, sizeof(*nd));
	strlcpy(nd->nd_name, name, sizeof(nd->nd_name));
	nd->nd_tenant = tenant;
	nd->nd_quota = quota;
	nd->nd_node = node;
	nd->nd_work.data = nd;
	nd->nd_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &nd->nd_work, mail_domain_key_cb,
	    mail_domain_store_cb)) != 0) {
		api_defer_reply_error(nd->nd_defer, 503, "busy", "%s",
		    uv_strerror(rv));
		free(nd);
	}
out:
	json_decref(body);
}

/* GET /v1/mail/domains?tenant=&backend=&limit=&cursor= */
void
services_mail_domain_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *tenant = api_query(r, "tenant");
	const char	*backend = api_query(r, "backend");
	int64_t		 tid = 0, scope = services_scope(r);
	char		*next = NULL;
	int		 limit, n = 0;
	json_t		*items;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	if (tenant != NULL && (tid = tenants_resolve(tenant)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "tenant: no tenant "
		    "'%.64s'", tenant);
		return;
	}
	items = json_array();
	st = store_prepare(ctl->db, "SELECT d.id, d.name FROM mail_domains d "
	    "JOIN nodes n ON n.id = d.node_id WHERE d.name > ?1 AND (?2 = 0 OR "
	    "d.tenant_id = ?2) AND (?3 = 0 OR d.tenant_id = ?3) AND (?4 IS NULL "
	    "OR n.name = ?4) ORDER BY d.name LIMIT ?5");
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, tid);
	sqlite3_bind_int64(st, 3, scope);
	if (backend != NULL)
		sqlite3_bind_text(st, 4, backend, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			next = params_last_key(items, "name");
			break;
		}
		json_array_append_new(items, mail_domain_json(
		    sqlite3_column_int64(st, 0)));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* GET /v1/mail/domains/{name} */
void
services_mail_domain_get(struct api_req *r)
{
	struct mail_domain	 d;

	if (services_mail_domain_find(r, api_param(r, "name"), &d) == -1)
		return;
	api_reply_json(r, 200, mail_domain_json(d.md_id));
}

/*
 * GET /v1/mail/domains/{name}/dns: MX, SPF, DKIM and DMARC; while a
 * rotation waits, the next key's record too (and the previous one's for
 * a while after the switch).
 */
void
services_mail_domain_dns(struct api_req *r)
{
	struct mail_domain	 d;
	struct services_dkim	*k;
	json_t			*o;
	char			*mx, *name, *value;
	size_t			 n, i;

	if (services_mail_domain_find(r, api_param(r, "name"), &d) == -1)
		return;
	mx = services_mx(d.md_node);
	n = services_dkim_keys(d.md_id, &k);
	o = services_util_dns(d.md_name, mx, n > 0 ? k[0].dk_selector : "",
	    n > 0 ? k[0].dk_public_b64 : "");
	for (i = 1; i < n; i++) {
		xasprintf(&name, "%s._domainkey.%s", k[i].dk_selector,
		    d.md_name);
		xasprintf(&value, "v=DKIM1; k=rsa; p=%s", k[i].dk_public_b64);
		services_util_dns_add(o, name, "TXT", value, strcmp(
		    k[i].dk_role, "next") == 0 ? "DKIM: the next key, which "
		    "signs once this record is published" : "DKIM: the "
		    "previous key, for mail signed with it still on its way");
		free(name);
		free(value);
	}
	services_dkim_keys_free(k, n);
	json_object_set_new(o, "mx", json_string(mx));
	if (strchr(mx, '.') == NULL)
		json_object_set_new(o, "warning", json_pack("s++", "the "
		    "backend's mail host name '", mx, "' is not a fully "
		    "qualified name: set one with opsnctl backend set NAME "
		    "--mail-hostname HOST"));
	free(mx);
	api_reply_json(r, 200, o);
}

/* DELETE /v1/mail/domains/{name}: only once it has no mailbox at all. */
void
services_mail_domain_delete(struct api_req *r)
{
	struct mail_domain	 d;
	sqlite3_stmt		*st;
	int64_t			 boxes = 0, deleted = 0, gen, aliases;
	char			 obj[300];

	if (services_mail_domain_find(r, api_param(r, "name"), &d) == -1)
		return;
	st = store_prepare(ctl->db, "SELECT count(*), coalesce(sum(status = "
	    "'deleted'), 0) FROM mailboxes WHERE domain_id = ?");
	sqlite3_bind_int64(st, 1, d.md_id);
	if (store_step(st) == SQLITE_ROW) {
		boxes = sqlite3_column_int64(st, 0);
		deleted = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (boxes > 0) {
		api_reply_error(r, 409, "not_empty", "mail domain %s still has "
		    "%lld mailbox(es)%s: delete them first%s", d.md_name,
		    (long long)boxes, deleted ? ", some deleted and kept for "
		    "their retention period" : "", deleted ? " and wait for "
		    "their purge" : "");
		return;
	}
	if (services_begin(r) == -1)
		return;
	/* Aliases belong to the domain and go with it. */
	st = store_prepare(ctl->db, "DELETE FROM aliases WHERE domain_id = ?");
	sqlite3_bind_int64(st, 1, d.md_id);
	store_step(st);
	aliases = sqlite3_changes(ctl->db);
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "DELETE FROM mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, d.md_id);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "mail-domain/%s", d.md_name);
	if ((gen = services_bump(d.md_node)) == -1 ||
	    services_journal(d.md_node, gen, "domain", d.md_name, d.md_name,
	    "delete") == -1 || audit_record(r, "mail.domain.delete", obj,
	    json_pack("{s:s,s:I}", "name", d.md_name, "aliases_deleted",
	    (json_int_t)aliases)) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "deleting failed");
		return;
	}
	if (mail_commit(r, d.md_node) == -1)
		return;
	log_info("services: %s deleted mail domain %s",
	    api_principal(r)->ap_name, d.md_name);
	api_reply_json(r, 200, json_pack("{s:s,s:b,s:I}", "name", d.md_name,
	    "deleted", 1, "aliases_deleted", (json_int_t)aliases));
}

/* Mailboxes. */

#define MAIL_BOX_COLS "m.id, m.address, d.name, " MAIL_TENANT_REF ", m.name, " \
	"m.quota_bytes, m.used_bytes, m.status, t.status, m.deleted_at, " \
	"m.purge_after, m.state, m.message, m.generation, " \
	"m.applied_generation, m.version, m.created_at, m.updated_at, n.name"
#define MAIL_BOX_FROM " FROM mailboxes m JOIN mail_domains d ON d.id = " \
	"m.domain_id JOIN tenants t ON t.id = d.tenant_id JOIN nodes n ON " \
	"n.id = d.node_id "

static json_t *
mail_box_row_json(sqlite3_stmt *st)
{
	json_t		*o = json_object();
	const char	*own = (const char *)sqlite3_column_text(st, 7);
	int		 member = strcmp((const char *)sqlite3_column_text(st, 8),
			    "suspended") == 0;

	json_object_set_new(o, "id", json_string((const char *)
	    sqlite3_column_text(st, 0)));
	json_object_set_new(o, "address", json_string((const char *)
	    sqlite3_column_text(st, 1)));
	json_object_set_new(o, "domain", json_string((const char *)
	    sqlite3_column_text(st, 2)));
	json_object_set_new(o, "tenant", json_string((const char *)
	    sqlite3_column_text(st, 3)));
	json_object_set_new(o, "backend", json_string((const char *)
	    sqlite3_column_text(st, 18)));
	json_object_set_new(o, "name", json_string((const char *)
	    sqlite3_column_text(st, 4)));
	json_object_set_new(o, "quota_bytes", json_integer(
	    sqlite3_column_int64(st, 5)));
	json_object_set_new(o, "used_bytes", json_integer(
	    sqlite3_column_int64(st, 6)));
	/* What the user meets: a suspended member suspends its boxes. */
	json_object_set_new(o, "status", json_string(strcmp(own, "active") ==
	    0 && member ? "suspended" : own));
	json_object_set_new(o, "own_status", json_string(own));
	json_object_set_new(o, "member_suspended", json_boolean(member));
	json_object_set_new(o, "deleted_at", store_json_time(st, 9));
	json_object_set_new(o, "purge_after", store_json_time(st, 10));
	json_object_set_new(o, "live", services_live_json((const char *)
	    sqlite3_column_text(st, 11), (const char *)sqlite3_column_text(st,
	    12), sqlite3_column_int64(st, 13), sqlite3_column_int64(st, 14)));
	json_object_set_new(o, "version", json_integer(
	    sqlite3_column_int64(st, 15)));
	json_object_set_new(o, "created_at", store_json_time(st, 16));
	json_object_set_new(o, "updated_at", store_json_time(st, 17));
	return (o);
}

/* A mailbox, with its ETag set on the reply. */
static void
mail_box_reply(struct api_req *r, int status, const char *id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;
	char		 etag[32];

	st = store_prepare(ctl->db, "SELECT " MAIL_BOX_COLS MAIL_BOX_FROM
	    "WHERE m.id = ?");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		o = mail_box_row_json(st);
	sqlite3_finalize(st);
	if (o == NULL) {
		api_reply_error(r, 404, "not_found", "no such mailbox");
		return;
	}
	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)
	    json_integer_value(json_object_get(o, "version")));
	api_set_header(r, "ETag", etag);
	api_reply_json(r, status, o);
}

/* A mailbox as the routes need it. */
struct mail_box {
	char			 mb_id[37];
	char			 mb_address[SERVICES_ADDR_MAX + 1];
	char			 mb_status[16];
	int64_t			 mb_quota;
	int64_t			 mb_version;
	int64_t			 mb_purge_after;
	struct mail_domain	 mb_domain;
};

/* The mailbox an {address} names (an address or an id); -1 after 404. */
static int
mail_box_find(struct api_req *r, struct mail_box *b)
{
	const char	*ref = api_param(r, "address");
	char		 addr[SERVICES_ADDR_MAX + 1], *cause = NULL, dom[300];
	sqlite3_stmt	*st;
	int		 found = 0;

	if (services_util_address(ref, 0, addr, &cause) == -1) {
		free(cause);
		strlcpy(addr, ref, sizeof(addr));	/* maybe an id */
	}
	st = store_prepare(ctl->db, "SELECT m.id, m.address, m.status, "
	    "m.quota_bytes, m.version, coalesce(m.purge_after, 0), d.name "
	    "FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE "
	    "(m.address = ?1 OR m.id = ?1) AND (?2 = 0 OR d.tenant_id = ?2)");
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, services_scope(r));
	if (store_step(st) == SQLITE_ROW) {
		strlcpy(b->mb_id, (const char *)sqlite3_column_text(st, 0),
		    sizeof(b->mb_id));
		strlcpy(b->mb_address, (const char *)sqlite3_column_text(st,
		    1), sizeof(b->mb_address));
		strlcpy(b->mb_status, (const char *)sqlite3_column_text(st, 2),
		    sizeof(b->mb_status));
		b->mb_quota = sqlite3_column_int64(st, 3);
		b->mb_version = sqlite3_column_int64(st, 4);
		b->mb_purge_after = sqlite3_column_int64(st, 5);
		strlcpy(dom, (const char *)sqlite3_column_text(st, 6),
		    sizeof(dom));
		found = 1;
	}
	sqlite3_finalize(st);
	if (!found || mail_domain_load(0, dom, &b->mb_domain) == -1) {
		api_reply_error(r, 404, "not_found", "no mailbox '%.254s'",
		    addr);
		return (-1);
	}
	return (0);
}

/* If-Match against the mailbox's version; -1 after replying 412. */
static int
mail_box_if_match(struct api_req *r, const struct mail_box *b)
{
	const char	*im = api_header(r, "if-match");
	char		 etag[32];

	if (im == NULL || strcmp(im, "*") == 0)
		return (0);
	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)b->mb_version);
	if (strncmp(im, "W/", 2) == 0)
		im += 2;
	if (strcmp(im, etag) != 0) {
		api_reply_error(r, 412, "stale", "mailbox %s changed since you "
		    "read it (current ETag %s): read it again", b->mb_address,
		    etag);
		return (-1);
	}
	return (0);
}

/*
 * The credential of a body: "password" (hashed here, or copied to *plain
 * for the caller to hash when plain is not NULL) or "password_hash"
 * (checked), exactly one. *hash and *plain are the caller's; *kind names
 * which for the audit. -1 after replying 400.
 */
static int
mail_credential(struct api_req *r, json_t *body, char **hash, char **plain,
    const char **kind, const char *where)
{
	json_t	*pw = json_object_get(body, "password");
	json_t	*ph = json_object_get(body, "password_hash");
	char	*cause = NULL;

	*hash = NULL;
	if ((pw == NULL) == (ph == NULL)) {
		api_reply_error(r, 400, pw == NULL ? "missing_field" :
		    "bad_field", "%s%sgive password or password_hash, one of "
		    "them", where ? where : "", where ? ": " : "");
		return (-1);
	}
	if (pw != NULL) {
		if (!json_is_string(pw) || services_util_password_ok(
		    json_string_value(pw), json_string_length(pw), &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "%s%spassword: %s",
			    where ? where : "", where ? ": " : "", cause ? cause :
			    "must be a string");
			free(cause);
			return (-1);
		}
		*kind = "password";
		if (plain != NULL) {
			*plain = xstrdup(json_string_value(pw));
			return (0);
		}
		if ((*hash = services_util_hash_password(json_string_value(pw),
		    &cause)) == NULL) {
			log_warnx("services: %s", cause);
			api_reply_error(r, 500, "internal", "%s", cause);
			free(cause);
			return (-1);
		}
		return (0);
	}
	if (!json_is_string(ph) || services_util_hash_ok(json_string_value(ph),
	    &cause) == -1) {
		api_reply_error(r, 400, "weak_hash", "%s%spassword_hash: %s",
		    where ? where : "", where ? ": " : "", cause ? cause :
		    "must be a string");
		free(cause);
		return (-1);
	}
	*hash = xstrdup(json_string_value(ph));
	*kind = "hash";
	return (0);
}

/* Is the address taken by a mailbox or an alias? 409 after replying. */
static int
mail_address_free(struct api_req *r, const char *addr, const char *where)
{
	sqlite3_stmt	*st;
	int64_t		 purge = 0;
	int		 box = 0, alias = 0;
	char		 buf[32];

	st = store_prepare(ctl->db, "SELECT status, coalesce(purge_after, 0) "
	    "FROM mailboxes WHERE address = ?");
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		box = strcmp((const char *)sqlite3_column_text(st, 0),
		    "deleted") == 0 ? 2 : 1;
		purge = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "SELECT 1 FROM aliases WHERE address = ?");
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
	alias = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (box == 1 || alias) {
		api_reply_error(r, 409, "exists", "%s%s%s is already %s",
		    where ? where : "", where ? ": " : "", addr, alias ?
		    "an alias" : "a mailbox");
		return (-1);
	}
	if (box == 2) {
		util_time_fmt(purge, buf, sizeof(buf));
		api_reply_error(r, 409, "exists", "%s%smailbox %s was deleted "
		    "and is kept until %s: restore it, or wait for its purge",
		    where ? where : "", where ? ": " : "", addr, buf);
		return (-1);
	}
	return (0);
}

/*
 * Inside the transaction: insert a mailbox. -1 on a database error. With
 * keep, the statement is kept there for the next call (the caller
 * finalizes it): an import inserts thousands.
 */
static int
mail_box_insert(sqlite3_stmt **keep, const char *id, const char *addr,
    int64_t domain_id, const char *name, const char *hash, int64_t quota,
    int64_t gen)
{
	sqlite3_stmt	*st = keep != NULL ? *keep : NULL;
	int64_t		 now = util_now();
	int		 rv;

	if (st == NULL)
		st = store_prepare(ctl->db, "INSERT INTO mailboxes (id, address, "
		    "domain_id, name, password_hash, quota_bytes, generation, "
		    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
		    "?8)");
	else
		sqlite3_reset(st);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, domain_id);
	sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, quota);
	sqlite3_bind_int64(st, 7, gen);
	sqlite3_bind_int64(st, 8, now);
	rv = store_step(st) == SQLITE_DONE ? 0 : -1;
	if (rv == -1)
		log_warnx("services: inserting %s: %s", addr,
		    sqlite3_errmsg(ctl->db));
	if (keep != NULL)
		*keep = st;
	else
		sqlite3_finalize(st);
	return (rv);
}

/* The domain of an address ("a@b.fr" -> "b.fr"). */
static const char *
mail_domain_of(const char *addr)
{
	const char	*at = strrchr(addr, '@');

	return (at != NULL ? at + 1 : addr);
}

/* POST /v1/mail/mailboxes */
void
services_mail_box_create(struct api_req *r)
{
	static const char *const known[] = { "address", "name", "quota_bytes",
	    "password", "password_hash", NULL };
	struct mail_domain d;
	json_t		*body, *v, *sum;
	char		 addr[SERVICES_ADDR_MAX + 1], id[37], obj[300];
	char		*cause = NULL, *hash = NULL;
	const char	*name = "", *kind = NULL;
	int64_t		 quota = 0, gen;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "address");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "address is required");
		goto out;
	}
	if (services_util_address(json_string_value(v), 0, addr,
	    &cause) == -1) {
		api_reply_error(r, 400, "bad_field", "address: %s", cause);
		goto out;
	}
	if (mail_domain_load(services_scope(r), mail_domain_of(addr),
	    &d) == -1) {
		api_reply_error(r, 404, "not_found", "no mail domain '%s': add "
		    "it first", mail_domain_of(addr));
		goto out;
	}
	if (tenants_may_grow(d.md_tenant, &cause) == -1) {
		api_reply_error(r, 409, "tenant_inactive", "%s", cause);
		goto out;
	}
	if ((v = json_object_get(body, "name")) != NULL) {
		if (!json_is_string(v) || !services_util_name_ok(
		    json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "name must be at "
			    "most %d characters without control characters",
			    SERVICES_NAME_MAX);
			goto out;
		}
		name = json_string_value(v);
	}
	if (services_quota_field(r, body, "quota_bytes", 1, &quota) == -1)
		goto out;
	if (mail_address_free(r, addr, NULL) == -1)
		goto out;
	if (mail_credential(r, body, &hash, NULL, &kind, NULL) == -1)
		goto out;
	services_util_uuid(id);

	if (services_begin(r) == -1)
		goto out;
	if (mail_quota_check(r, &d, quota, NULL, "mailbox quota") == -1)
		goto rollback;
	snprintf(obj, sizeof(obj), "mailbox/%s", addr);
	sum = json_pack("{s:s,s:s,s:I,s:s}", "address", addr, "name", name,
	    "quota_bytes", (json_int_t)quota, "credential", kind);
	if ((gen = services_bump(d.md_node)) == -1 ||
	    mail_box_insert(NULL, id, addr, d.md_id, name, hash, quota,
	    gen) == -1 ||
	    services_journal(d.md_node, gen, "mailbox", id, addr,
	    "create") == -1 || audit_record(r, "mail.box.create", obj,
	    sum) == -1) {
		api_reply_error(r, 500, "internal", "storing the mailbox failed");
		goto rollback;
	}
	if (mail_commit(r, d.md_node) == -1)
		goto out;
	log_info("services: %s added mailbox %s", api_principal(r)->ap_name,
	    addr);
	mail_box_reply(r, 201, id);
	goto out;
rollback:
	store_rollback(ctl->db);
out:
	mail_free_secret(hash);
	free(cause);
	json_decref(body);
}

/* GET /v1/mail/mailboxes?domain=&tenant=&status=&limit=&cursor= */
void
services_mail_box_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *domain = api_query(r, "domain");
	const char	*tenant = api_query(r, "tenant");
	const char	*status = api_query(r, "status");
	char		 host[SERVICES_HOST_MAX + 1], *cause = NULL, *next = NULL;
	int64_t		 tid = 0;
	int		 limit, n = 0;
	json_t		*items;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	if (domain != NULL && services_util_host(domain, host, &cause) == -1) {
		api_reply_error(r, 400, "bad_parameter", "domain: %s", cause);
		free(cause);
		return;
	}
	if (tenant != NULL && (tid = tenants_resolve(tenant)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "tenant: no tenant "
		    "'%.64s'", tenant);
		return;
	}
	if (status != NULL && strcmp(status, "active") != 0 &&
	    strcmp(status, "suspended") != 0 && strcmp(status, "deleted") != 0) {
		api_reply_error(r, 400, "bad_parameter", "status must be "
		    "active, suspended or deleted");
		return;
	}
	items = json_array();
	st = store_prepare(ctl->db, "SELECT " MAIL_BOX_COLS MAIL_BOX_FROM
	    "WHERE m.address > ?1 AND (?2 IS NULL OR d.name = ?2) AND (?3 = 0 "
	    "OR d.tenant_id = ?3) AND (?4 = 0 OR d.tenant_id = ?4) AND (?5 IS "
	    "NULL OR m.status = ?5) ORDER BY m.address LIMIT ?6");
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	if (domain != NULL)
		sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, tid);
	sqlite3_bind_int64(st, 4, services_scope(r));
	if (status != NULL)
		sqlite3_bind_text(st, 5, status, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			next = params_last_key(items, "address");
			break;
		}
		json_array_append_new(items, mail_box_row_json(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* GET /v1/mail/mailboxes/{address} */
void
services_mail_box_get(struct api_req *r)
{
	struct mail_box	 b;

	if (mail_box_find(r, &b) == -1)
		return;
	mail_box_reply(r, 200, b.mb_id);
}

/*
 * Inside the transaction: the common end of a mailbox change. set is the
 * SQL after "SET" (may use ?1 = id, ?2 = generation, ?3 = now and the
 * binder's own from ?4). Bumps, journals, audits; -1 after replying.
 */
static int
mail_box_change(struct api_req *r, const struct mail_box *b,
    const char *set, void (*bind)(sqlite3_stmt *, void *), void *arg,
    const char *action, json_t *sum)
{
	sqlite3_stmt	*st;
	int64_t		 gen;
	char		*sql, obj[300], audit[64];

	if ((gen = services_bump(b->mb_domain.md_node)) == -1)
		goto fail;
	xasprintf(&sql, "UPDATE mailboxes SET %s, generation = ?2, state = "
	    "'pending', message = '', version = version + 1, updated_at = ?3 "
	    "WHERE id = ?1", set);
	st = store_prepare(ctl->db, sql);
	free(sql);
	sqlite3_bind_text(st, 1, b->mb_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, gen);
	sqlite3_bind_int64(st, 3, util_now());
	if (bind != NULL)
		bind(st, arg);
	if (store_step(st) != SQLITE_DONE) {
		log_warnx("services: %s: %s", b->mb_address,
		    sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "mailbox/%s", b->mb_address);
	snprintf(audit, sizeof(audit), "mail.box.%s", action);
	if (sum == NULL)
		sum = json_object();
	json_object_set_new(sum, "address", json_string(b->mb_address));
	if (services_journal(b->mb_domain.md_node, gen, "mailbox", b->mb_id,
	    b->mb_address, action) == -1)
		goto fail;
	/* audit_record consumes the summary, whatever it returns. */
	if (audit_record(r, audit, obj, sum) == -1) {
		sum = NULL;
		goto fail;
	}
	return (0);
fail:
	json_decref(sum);
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the change failed");
	return (-1);
}

/* Refuse to change a deleted mailbox (other than restoring it). */
static int
mail_box_not_deleted(struct api_req *r, const struct mail_box *b)
{
	if (strcmp(b->mb_status, "deleted") != 0)
		return (0);
	api_reply_error(r, 409, "deleted", "mailbox %s is deleted: restore it "
	    "first", b->mb_address);
	return (-1);
}

struct mail_update {
	const char	*mu_name;	/* NULL: unchanged */
	int64_t		 mu_quota;	/* 0: unchanged */
};

static void
mail_update_bind(sqlite3_stmt *st, void *arg)
{
	struct mail_update	*u = arg;

	if (u->mu_name != NULL)
		sqlite3_bind_text(st, 4, u->mu_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, u->mu_quota);
}

/* PATCH /v1/mail/mailboxes/{address} {"name"?, "quota_bytes"?} (If-Match) */
void
services_mail_box_update(struct api_req *r)
{
	static const char *const known[] = { "name", "quota_bytes", NULL };
	struct mail_update u = { NULL, 0 };
	struct mail_box	 b;
	json_t		*body, *v, *sum;

	if (mail_box_find(r, &b) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1 ||
	    mail_box_not_deleted(r, &b) == -1)
		goto out;
	if ((v = json_object_get(body, "name")) != NULL) {
		if (!json_is_string(v) || !services_util_name_ok(
		    json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "name must be at "
			    "most %d characters without control characters",
			    SERVICES_NAME_MAX);
			goto out;
		}
		u.mu_name = json_string_value(v);
	}
	if (json_object_get(body, "quota_bytes") != NULL &&
	    services_quota_field(r, body, "quota_bytes", 1, &u.mu_quota) == -1)
		goto out;
	if (u.mu_name == NULL && u.mu_quota == 0) {
		api_reply_error(r, 400, "missing_field", "nothing to change: "
		    "give name or quota_bytes");
		goto out;
	}
	if (services_begin(r) == -1)
		goto out;
	if (mail_box_if_match(r, &b) == -1 || (u.mu_quota > 0 &&
	    mail_quota_check(r, &b.mb_domain, u.mu_quota, b.mb_id,
	    "mailbox quota") == -1)) {
		store_rollback(ctl->db);
		goto out;
	}
	sum = json_deep_copy(body);
	if (mail_box_change(r, &b, "name = coalesce(?4, name), quota_bytes = "
	    "CASE WHEN ?5 > 0 THEN ?5 ELSE quota_bytes END", mail_update_bind,
	    &u, "update", sum) == -1 || mail_commit(r, b.mb_domain.md_node) == -1)
		goto out;
	mail_box_reply(r, 200, b.mb_id);
out:
	json_decref(body);
}

static void
mail_hash_bind(sqlite3_stmt *st, void *arg)
{
	sqlite3_bind_text(st, 4, arg, -1, SQLITE_STATIC);
}

/* POST /v1/mail/mailboxes/{address}/password {"password"|"password_hash"} */
void
services_mail_box_password(struct api_req *r)
{
	static const char *const known[] = { "password", "password_hash", NULL };
	struct mail_box	 b;
	json_t		*body;
	char		*hash = NULL;
	const char	*kind;

	if (mail_box_find(r, &b) == -1)
		return;
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1 ||
	    mail_box_not_deleted(r, &b) == -1 ||
	    mail_credential(r, body, &hash, NULL, &kind, NULL) == -1)
		goto out;
	if (services_begin(r) == -1)
		goto out;
	if (mail_box_if_match(r, &b) == -1) {
		store_rollback(ctl->db);
		goto out;
	}
	if (mail_box_change(r, &b, "password_hash = ?4", mail_hash_bind, hash,
	    "password", json_pack("{s:s}", "credential", kind)) == -1 ||
	    mail_commit(r, b.mb_domain.md_node) == -1)
		goto out;
	log_info("services: %s set the password of %s",
	    api_principal(r)->ap_name, b.mb_address);
	mail_box_reply(r, 200, b.mb_id);
out:
	mail_free_secret(hash);
	json_decref(body);
}

static void
mail_status_bind(sqlite3_stmt *st, void *arg)
{
	sqlite3_bind_text(st, 4, arg, -1, SQLITE_STATIC);
}

/* suspend, activate: set the mailbox's own status. */
static void
mail_box_set_status(struct api_req *r, const char *status)
{
	struct mail_box	 b;

	if (mail_box_find(r, &b) == -1 || mail_box_not_deleted(r, &b) == -1)
		return;
	if (strcmp(b.mb_status, status) == 0) {
		mail_box_reply(r, 200, b.mb_id);	/* nothing to do */
		return;
	}
	if (services_begin(r) == -1)
		return;
	if (mail_box_if_match(r, &b) == -1) {
		store_rollback(ctl->db);
		return;
	}
	if (mail_box_change(r, &b, "status = ?4", mail_status_bind,
	    (void *)status, *status == 's' ? "suspend" : "activate",
	    json_pack("{s:s,s:s}", "from", b.mb_status, "to", status)) == -1 ||
	    mail_commit(r, b.mb_domain.md_node) == -1)
		return;
	log_info("services: %s set mailbox %s %s", api_principal(r)->ap_name,
	    b.mb_address, status);
	mail_box_reply(r, 200, b.mb_id);
}

/* POST /v1/mail/mailboxes/{address}/suspend */
void
services_mail_box_suspend(struct api_req *r)
{
	mail_box_set_status(r, "suspended");
}

/* POST /v1/mail/mailboxes/{address}/activate */
void
services_mail_box_activate(struct api_req *r)
{
	mail_box_set_status(r, "active");
}

static void
mail_delete_bind(sqlite3_stmt *st, void *arg)
{
	int64_t	 now = util_now();

	sqlite3_bind_int64(st, 4, now);
	sqlite3_bind_int64(st, 5, now + services_retention());
}

/* DELETE /v1/mail/mailboxes/{address}: kept for the retention period. */
void
services_mail_box_delete(struct api_req *r)
{
	struct mail_box	 b;
	char		 buf[32];

	if (mail_box_find(r, &b) == -1)
		return;
	if (strcmp(b.mb_status, "deleted") == 0) {
		util_time_fmt(b.mb_purge_after, buf, sizeof(buf));
		api_reply_error(r, 409, "deleted", "mailbox %s is already "
		    "deleted; its mail is kept until %s", b.mb_address, buf);
		return;
	}
	if (services_begin(r) == -1)
		return;
	if (mail_box_if_match(r, &b) == -1) {
		store_rollback(ctl->db);
		return;
	}
	util_time_fmt(util_now() + services_retention(), buf, sizeof(buf));
	if (mail_box_change(r, &b, "status = 'deleted', deleted_at = ?4, "
	    "purge_after = ?5", mail_delete_bind, NULL, "delete",
	    json_pack("{s:s}", "purge_after", buf)) == -1 ||
	    mail_commit(r, b.mb_domain.md_node) == -1)
		return;
	log_info("services: %s deleted mailbox %s (kept until %s)",
	    api_principal(r)->ap_name, b.mb_address, buf);
	mail_box_reply(r, 200, b.mb_id);
}

/* POST /v1/mail/mailboxes/{address}/restore: within the retention period. */
void
services_mail_box_restore(struct api_req *r)
{
	struct mail_box	 b;

	if (mail_box_find(r, &b) == -1)
		return;
	if (strcmp(b.mb_status, "deleted") != 0) {
		api_reply_error(r, 409, "not_deleted", "mailbox %s is not "
		    "deleted", b.mb_address);
		return;
	}
	if (services_begin(r) == -1)
		return;
	/* Its quota counts again: the domain must still have room. */
	if (mail_box_if_match(r, &b) == -1 || mail_quota_check(r,
	    &b.mb_domain, b.mb_quota, b.mb_id, "the restored mailbox's "
	    "quota") == -1) {
		store_rollback(ctl->db);
		return;
	}
	if (mail_box_change(r, &b, "status = 'active', deleted_at = NULL, "
	    "purge_after = NULL", NULL, NULL, "restore", NULL) == -1 ||
	    mail_commit(r, b.mb_domain.md_node) == -1)
		return;
	log_info("services: %s restored mailbox %s", api_principal(r)->ap_name,
	    b.mb_address);
	mail_box_reply(r, 200, b.mb_id);
}

/* One record of an import, checked. */
struct mail_rec {
	char	 mr_where[96];
	char	 mr_addr[SERVICES_ADDR_MAX + 1];
	char	 mr_id[37];
	char	*mr_name;
	char	*mr_hash;
	char	*mr_plain;	/* a password to hash on the pool, or NULL */
	int64_t	 mr_quota;
	int	 mr_exists;
};

/*
 * Check one import record (exists: "does the address exist?", bound
 * here); -1 after replying 400 naming its "where".
 */
static int
mail_import_rec(struct api_req *r, const struct mail_domain *d, json_t *rec,
    size_t idx, sqlite3_stmt *exists, struct mail_rec *m)
{
	static const char *const known[] = { "where", "address", "local",
	    "name", "quota_bytes", "password", "password_hash", NULL };
	json_t		*v, *a, *l;
	const char	*kind, *k;
	char		*cause = NULL, *full = NULL, *why;

	memset(m, 0, sizeof(*m));
	if (!json_is_object(rec)) {
		api_reply_error(r, 400, "bad_record", "record %zu is not an "
		    "object (nothing was imported)", idx + 1);
		return (-1);
	}
	v = json_object_get(rec, "where");
	if (json_is_string(v))
		snprintf(m->mr_where, sizeof(m->mr_where), "%.80s",
		    json_string_value(v));
	else
		snprintf(m->mr_where, sizeof(m->mr_where), "record %zu",
		    idx + 1);
	json_object_foreach(rec, k, v) {
		const char *const *kk;

		for (kk = known; *kk != NULL && strcmp(*kk, k) != 0; kk++)
			;
		if (*kk == NULL) {
			api_reply_error(r, 400, "bad_record", "%s: unknown field "
			    "'%.64s' (nothing was imported)", m->mr_where, k);
			return (-1);
		}
	}
	a = json_object_get(rec, "address");
	l = json_object_get(rec, "local");
	if ((a == NULL) == (l == NULL) || !json_is_string(a ? a : l)) {
		why = "give address or local (the part before '@')";
		goto bad;
	}
	if (l != NULL)
		xasprintf(&full, "%s@%s", json_string_value(l), d->md_name);
	else
		full = xstrdup(json_string_value(a));
	if (services_util_address(full, 0, m->mr_addr, &cause) == -1) {
		free(full);
		api_reply_error(r, 400, "bad_record", "%s: address: %s (nothing "
		    "was imported)", m->mr_where, cause);
		free(cause);
		return (-1);
	}
	free(full);
	if (strcmp(mail_domain_of(m->mr_addr), d->md_name) != 0) {
		api_reply_error(r, 400, "bad_record", "%s: address: %s is not "
		    "in domain %s (nothing was imported)", m->mr_where,
		    m->mr_addr, d->md_name);
		return (-1);
	}
	v = json_object_get(rec, "name");
	if (v != NULL && (!json_is_string(v) ||
	    !services_util_name_ok(json_string_value(v)))) {
		why = "name: at most 200 characters without control characters";
		goto bad;
	}
	m->mr_name = xstrdup(v ? json_string_value(v) : "");
	v = json_object_get(rec, "quota_bytes");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > SERVICES_QUOTA_MAX) {
		why = "quota_bytes: a number of bytes is required";
		goto bad;
	}
	m->mr_quota = json_integer_value(v);
	sqlite3_reset(exists);
	sqlite3_bind_text(exists, 1, m->mr_addr, -1, SQLITE_STATIC);
	m->mr_exists = store_step(exists) == SQLITE_ROW;
	/* An existing address is left as it is: no need to hash for it. */
	if (m->mr_exists)
		return (0);
	if (mail_credential(r, rec, &m->mr_hash, &m->mr_plain, &kind,
	    m->mr_where) == -1)
		return (-1);
	services_util_uuid(m->mr_id);
	return (0);
bad:
	api_reply_error(r, 400, "bad_record", "%s: %s (nothing was imported)",
	    m->mr_where, why);
	return (-1);
}

static int
mail_dup_cmp(const void *a, const void *b, void *arg)
{
	const struct mail_rec	*recs = arg;
	size_t			 x = *(const size_t *)a, y = *(const size_t *)b;
	int			 c = strcmp(recs[x].mr_addr, recs[y].mr_addr);

	return (c != 0 ? c : x < y ? -1 : x > y);
}

/*
 * Is an address in the import twice? -1 after replying 400 for the first
 * record, in order, that repeats an earlier one (sorted: n log n, where
 * comparing each record with every earlier one took seconds at 10,000).
 */
static int
mail_import_dup(struct api_req *r, const struct mail_rec *recs, size_t n)
{
	size_t	*ix = xcalloc(n, sizeof(*ix)), i, later = n, earlier = 0;

	for (i = 0; i < n; i++)
		ix[i] = i;
	qsort_r(ix, n, sizeof(*ix), mail_dup_cmp, (void *)recs);
	for (i = 1; i < n; i++) {
		if (strcmp(recs[ix[i]].mr_addr, recs[ix[i - 1]].mr_addr) != 0 ||
		    ix[i] >= later)
			continue;
		later = ix[i];
		earlier = ix[i - 1];
	}
	free(ix);
	if (later == n)
		return (0);
	/* Equal addresses sort by index: ix[i - 1] is the nearest earlier. */
	api_reply_error(r, 400, "bad_record", "%s: address %s is also at %s "
	    "(nothing was imported)", recs[later].mr_where,
	    recs[later].mr_addr, recs[earlier].mr_where);
	return (-1);
}

/*
 * An import whose passwords are being hashed: 10,000 of them take half a
 * minute, on the thread pool (MAIL_HASH_JOBS at once), never the loop.
 */
#define MAIL_HASH_JOBS	2

struct mail_import;

struct mail_hash_job {
	uv_work_t		 hj_work;
	struct mail_import	*hj_import;
	size_t			 hj_lo, hj_hi;	/* records [lo, hi) */
	int			 hj_bad;	/* a hash failed */
};

struct mail_import {
	struct api_defer	*mi_defer;
	struct mail_domain	 mi_domain;
	struct mail_rec		*mi_recs;
	size_t			 mi_n;
	struct mail_hash_job	 mi_jobs[MAIL_HASH_JOBS];
	size_t			 mi_pending;
	int			 mi_cancelled;
	uint64_t		 mi_start;	/* monotonic ms, hashing began */
};

static void
mail_recs_free(struct mail_rec *recs, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(recs[i].mr_name);
		mail_free_secret(recs[i].mr_hash);
		mail_free_secret(recs[i].mr_plain);
	}
	free(recs);
}

/* On the pool: hash the passwords of records [lo, hi). */
static void
mail_import_hash_cb(uv_work_t *w)
{
	struct mail_hash_job	*hj = w->data;
	struct mail_rec		*m;
	char			*cause = NULL;
	size_t			 i;

	for (i = hj->hj_lo; i < hj->hj_hi; i++) {
		m = &hj->hj_import->mi_recs[i];
		if (m->mr_plain == NULL)
			continue;
		if ((m->mr_hash = services_util_hash_password(m->mr_plain,
		    &cause)) == NULL) {
			hj->hj_bad = 1;
			free(cause);
			cause = NULL;
		}
		mail_free_secret(m->mr_plain);
		m->mr_plain = NULL;
	}
}

/*
 * Back on the loop with every hash: store the mailboxes in one
 * transaction, or none. What changed while the passwords were hashed is
 * seen here: an address taken meanwhile is left as it is (reported as
 * existing), a quota or a member's status that no longer allows the
 * import refuses it whole.
 */
static void
mail_import_store(struct mail_import *mi)
{
	struct mail_domain	*d = &mi->mi_domain;
	struct api_defer	*df = mi->mi_defer;
	struct api_req		*r = api_defer_req(df);
	json_t			*created = json_array(), *existing = json_array();
	json_t			*sum;
	sqlite3_stmt		*st, *ins = NULL;
	char			 obj[300], *why = NULL;
	int64_t			 add = 0, gen;
	uint64_t		 t0 = util_mono_ms(), c0 = util_thread_cpu_ms();
	size_t			 i;

	if (mi->mi_cancelled) {
		api_defer_reply_error(df, 503, "busy", "cancelled: the "
		    "controller is stopping (nothing was imported)");
		goto out;
	}
	for (i = 0; i < MAIL_HASH_JOBS; i++)
		if (mi->mi_jobs[i].hj_bad) {
			api_defer_reply_error(df, 500, "internal", "hashing a "
			    "password failed (nothing was imported; request %s)",
			    api_request_id(r));
			goto out;
		}
	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(df, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "SELECT 1 FROM mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, d->md_id);
	i = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (!i) {
		api_defer_reply_error(df, 404, "not_found", "mail domain %s was "
		    "deleted meanwhile (nothing was imported)", d->md_name);
		goto rollback;
	}
	if (tenants_may_grow(d->md_tenant, &why) == -1) {
		api_defer_reply_error(df, 409, "tenant_inactive", "%s", why);
		goto rollback;
	}
	st = store_prepare(ctl->db, "SELECT 1 FROM mailboxes WHERE address = "
	    "?1 UNION ALL SELECT 1 FROM aliases WHERE address = ?1");
	for (i = 0; i < mi->mi_n; i++) {
		if (!mi->mi_recs[i].mr_exists) {
			sqlite3_reset(st);
			sqlite3_bind_text(st, 1, mi->mi_recs[i].mr_addr, -1,
			    SQLITE_STATIC);
			mi->mi_recs[i].mr_exists = store_step(st) ==
			    SQLITE_ROW;
		}
		json_array_append_new(mi->mi_recs[i].mr_exists ? existing :
		    created, json_string(mi->mi_recs[i].mr_addr));
		if (!mi->mi_recs[i].mr_exists)
			add += mi->mi_recs[i].mr_quota;
	}
	sqlite3_finalize(st);
	if (json_array_size(created) == 0) {
		store_rollback(ctl->db);
		api_defer_reply_json(df, 200, json_pack("{s:s,s:I,s:O,s:O}",
		    "domain", d->md_name, "total", (json_int_t)mi->mi_n,
		    "created", created, "existing", existing));
		goto out;
	}
	if (mail_quota_left(d, add, NULL, "the imported mailboxes' quotas, "
	    "together,", &why) == -1) {
		api_defer_reply_error(df, 403, "quota_exceeded", "%s", why);
		goto rollback;
	}
	if ((gen = services_bump(d->md_node)) == -1)
		goto fail;
	for (i = 0; i < mi->mi_n; i++) {
		if (mi->mi_recs[i].mr_exists)
			continue;
		if (mail_box_insert(&ins, mi->mi_recs[i].mr_id,
		    mi->mi_recs[i].mr_addr, d->md_id, mi->mi_recs[i].mr_name,
		    mi->mi_recs[i].mr_hash, mi->mi_recs[i].mr_quota,
		    gen) == -1)
			goto fail;
	}
	/*
	 * One journal row per mailbox created: the rows of generation gen,
	 * which this transaction just made, in one statement.
	 */
	st = store_prepare(ctl->db, "INSERT INTO services_changes (at, node_id, "
	    "generation, kind, object_id, object, action) SELECT ?1, ?2, ?3, "
	    "'mailbox', id, address, 'create' FROM mailboxes WHERE domain_id = "
	    "?4 AND generation = ?3 ORDER BY rowid");
	sqlite3_bind_int64(st, 1, util_now());
	sqlite3_bind_int64(st, 2, d->md_node);
	sqlite3_bind_int64(st, 3, gen);
	sqlite3_bind_int64(st, 4, d->md_id);
	i = store_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!i)
		goto fail;
	snprintf(obj, sizeof(obj), "mail-domain/%s", d->md_name);
	sum = json_pack("{s:s,s:I,s:O,s:I}", "domain", d->md_name, "created",
	    (json_int_t)json_array_size(created), "addresses", created,
	    "quota_bytes", (json_int_t)add);
	if (audit_record(r, "mail.box.import", obj, sum) == -1)
		goto fail;
	if (store_commit(ctl->db) == -1) {
		api_defer_reply_error(df, 500, "internal", "storing the import "
		    "failed (nothing was imported; request %s)",
		    api_request_id(r));
		goto out;
	}
	services_push(d->md_node);
	log_info("services: %s imported %zu mailboxes into %s (hashed in %llu "
	    "ms on the pool, stored in %llu ms, %llu ms of the loop's CPU)",
	    api_principal(r)->ap_name, json_array_size(created), d->md_name,
	    (unsigned long long)(t0 - mi->mi_start), (unsigned long long)
	    (util_mono_ms() - t0), (unsigned long long)(util_thread_cpu_ms() -
	    c0));
	api_defer_reply_json(df, 200, json_pack("{s:s,s:I,s:O,s:O}", "domain",
	    d->md_name, "total", (json_int_t)mi->mi_n, "created", created,
	    "existing", existing));
	goto out;
fail:
	api_defer_reply_error(df, 500, "internal", "the import failed to store "
	    "(nothing was imported; request %s)", api_request_id(r));
rollback:
	store_rollback(ctl->db);
out:
	sqlite3_finalize(ins);
	json_decref(created);
	json_decref(existing);
	free(why);
	mail_recs_free(mi->mi_recs, mi->mi_n);
	free(mi);
}

static void
mail_import_hashed_cb(uv_work_t *w, int status)
{
	struct mail_import	*mi = ((struct mail_hash_job *)w->data)->hj_import;

	if (status == UV_ECANCELED)
		mi->mi_cancelled = 1;
	if (--mi->mi_pending == 0)
		mail_import_store(mi);
}

/*
 * POST /v1/mail/mailboxes/import {"domain", "records": [...]}: every
 * record is checked first; the passwords are hashed on the thread pool;
 * then all are created in one transaction, or none. Addresses that exist
 * already are left untouched and reported.
 */
void
services_mail_box_import(struct api_req *r)
{
	static const char *const known[] = { "domain", "records", NULL };
	struct mail_domain d;
	struct mail_import *mi;
	struct mail_rec	*recs = NULL;
	json_t		*body, *v, *records, *existing;
	sqlite3_stmt	*st;
	char		 host[SERVICES_HOST_MAX + 1], *cause = NULL;
	int64_t		 add = 0;
	size_t		 i, n = 0, per, fresh = 0;
	uint64_t	 t0 = util_mono_ms(), c0 = util_thread_cpu_ms();

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "domain");
	if (!json_is_string(v) || services_util_host(json_string_value(v),
	    host, &cause) == -1 || mail_domain_load(services_scope(r), host,
	    &d) == -1) {
		api_reply_error(r, json_is_string(v) && cause == NULL ? 404 :
		    400, json_is_string(v) && cause == NULL ? "not_found" :
		    "bad_field", "domain: %s", cause ? cause : json_is_string(v) ?
		    "no such mail domain" : "the mail domain is required");
		goto out;
	}
	if (tenants_may_grow(d.md_tenant, &cause) == -1) {
		api_reply_error(r, 409, "tenant_inactive", "%s", cause);
		goto out;
	}
	records = json_object_get(body, "records");
	if (!json_is_array(records) || json_array_size(records) == 0 ||
	    json_array_size(records) > MAIL_IMPORT_MAX) {
		api_reply_error(r, 400, "bad_field", "records must be a list of "
		    "1 to %d mailboxes", MAIL_IMPORT_MAX);
		goto out;
	}
	recs = xcalloc(json_array_size(records), sizeof(*recs));
	st = store_prepare(ctl->db, "SELECT 1 FROM mailboxes WHERE address = "
	    "?1 UNION ALL SELECT 1 FROM aliases WHERE address = ?1");
	json_array_foreach(records, i, v) {
		n = i + 1;
		if (mail_import_rec(r, &d, v, i, st, &recs[i]) == -1) {
			sqlite3_finalize(st);
			goto out;
		}
		if (!recs[i].mr_exists) {
			add += recs[i].mr_quota;
			fresh++;
		}
	}
	sqlite3_finalize(st);
	if (mail_import_dup(r, recs, n) == -1)
		goto out;
	if (fresh == 0) {
		existing = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(existing,
			    json_string(recs[i].mr_addr));
		api_reply_json(r, 200, json_pack("{s:s,s:I,s:[],s:o}", "domain",
		    d.md_name, "total", (json_int_t)n, "created", "existing",
		    existing));
		goto out;
	}
	/* Refused now rather than after the hashing; checked again then. */
	if (mail_quota_check(r, &d, add, NULL, "the imported mailboxes' "
	    "quotas, together,") == -1)
		goto out;

	mi = xcalloc(1, sizeof(*mi));
	mi->mi_domain = d;
	mi->mi_recs = recs;
	mi->mi_n = n;
	recs = NULL;
	n = 0;
	mi->mi_defer = api_defer(r);
	mi->mi_start = util_mono_ms();
	log_debug("services: import into %s checked in %llu ms (%llu ms of "
	    "CPU)", d.md_name, (unsigned long long)(mi->mi_start - t0),
	    (unsigned long long)(util_thread_cpu_ms() - c0));
	per = (mi->mi_n + MAIL_HASH_JOBS - 1) / MAIL_HASH_JOBS;
	/* The last job to end stores (none may: then it is stored here). */
	mi->mi_pending = 1;
	for (i = 0; i < MAIL_HASH_JOBS && i * per < mi->mi_n; i++) {
		mi->mi_jobs[i].hj_import = mi;
		mi->mi_jobs[i].hj_lo = i * per;
		mi->mi_jobs[i].hj_hi = (i + 1) * per < mi->mi_n ? (i + 1) * per :
		    mi->mi_n;
		mi->mi_jobs[i].hj_work.data = &mi->mi_jobs[i];
		if (uv_queue_work(ctl->loop, &mi->mi_jobs[i].hj_work,
		    mail_import_hash_cb, mail_import_hashed_cb) != 0) {
			mi->mi_cancelled = 1;
			break;
		}
		mi->mi_pending++;
	}
	if (--mi->mi_pending == 0)
		mail_import_store(mi);
out:
	mail_recs_free(recs, n);
	free(cause);
	json_decref(body);
}

/* Drop deleted mailboxes whose retention is over; the agent purges them. */
int
services_mail_purge(int64_t now)
{
	sqlite3_stmt	*st, *del;
	int64_t		*nodes = NULL, gen;
	size_t		 nn = 0, i, count = 0;
	char		 obj[300];

	st = store_prepare(ctl->db, "SELECT 1 FROM mailboxes WHERE status = "
	    "'deleted' AND purge_after <= ? LIMIT 1");
	sqlite3_bind_int64(st, 1, now);
	i = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (i == 0 || store_begin(ctl->db) == -1)
		return (0);
	st = store_prepare(ctl->db, "SELECT m.id, m.address, d.node_id FROM "
	    "mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE "
	    "m.status = 'deleted' AND m.purge_after <= ? ORDER BY d.node_id "
	    "LIMIT 1000");
	sqlite3_bind_int64(st, 1, now);
	del = store_prepare(ctl->db, "DELETE FROM mailboxes WHERE id = ?");
	gen = -1;
	while (store_step(st) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *addr = (const char *)sqlite3_column_text(st, 1);
		int64_t node = sqlite3_column_int64(st, 2);

		if (nn == 0 || nodes[nn - 1] != node) {
			nodes = xrealloc(nodes, (nn + 1) * sizeof(*nodes));
			nodes[nn++] = node;
			gen = services_bump(node);
		}
		sqlite3_reset(del);
		sqlite3_bind_text(del, 1, id, -1, SQLITE_STATIC);
		store_step(del);
		snprintf(obj, sizeof(obj), "mailbox/%s", addr);
		services_journal(node, gen, "mailbox", id, addr, "purge");
		audit_record(NULL, "mail.box.purge", obj, json_pack("{s:s}",
		    "address", addr));
		count++;
	}
	sqlite3_finalize(del);
	sqlite3_finalize(st);
	if (store_commit(ctl->db) == 0) {
		log_info("services: %zu deleted mailbox(es) past their "
		    "retention dropped; their backends purge their mail", count);
		for (i = 0; i < nn; i++)
			services_push(nodes[i]);
	}
	free(nodes);
	return (count > 0);
}

/* Aliases. */

static json_t *
mail_alias_row_json(sqlite3_stmt *st)
{
	json_t	*o = json_object(), *t;

	json_object_set_new(o, "id", json_string((const char *)
	    sqlite3_column_text(st, 0)));
	json_object_set_new(o, "address", json_string((const char *)
	    sqlite3_column_text(st, 1)));
	json_object_set_new(o, "domain", json_string((const char *)
	    sqlite3_column_text(st, 2)));
	t = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
	json_object_set_new(o, "targets", t ? t : json_array());
	json_object_set_new(o, "catch_all", json_boolean(((const char *)
	    sqlite3_column_text(st, 1))[0] == '@'));
	json_object_set_new(o, "live", services_live_json((const char *)
	    sqlite3_column_text(st, 4), (const char *)sqlite3_column_text(st,
	    5), sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 7)));
	json_object_set_new(o, "created_at", store_json_time(st, 8));
	return (o);
}

#define MAIL_ALIAS_COLS "a.id, a.address, d.name, a.targets, a.state, " \
	"a.message, a.generation, a.applied_generation, a.created_at"
#define MAIL_ALIAS_FROM " FROM aliases a JOIN mail_domains d ON d.id = " \
	"a.domain_id "

static json_t *
mail_alias_json(const char *id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_prepare(ctl->db, "SELECT " MAIL_ALIAS_COLS MAIL_ALIAS_FROM
	    "WHERE a.id = ?");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		o = mail_alias_row_json(st);
	sqlite3_finalize(st);
	return (o);
}

/*
 * The targets of an alias, checked: addresses, local ones (in one of our
 * domains) existing as a mailbox or alias. -1 after replying 400.
 */
static int
mail_alias_targets(struct api_req *r, json_t *v, const char *self,
    json_t **out)
{
	json_t		*list = json_array(), *t;
	char		 addr[SERVICES_ADDR_MAX + 1], *cause = NULL, *lower;
	sqlite3_stmt	*st;
	size_t		 i, j;
	int		 ours, found;

	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > MAIL_TARGETS_MAX) {
		api_reply_error(r, 400, "bad_field", "targets must be a list of "
		    "1 to %d addresses", MAIL_TARGETS_MAX);
		goto fail;
	}
	json_array_foreach(v, i, t) {
		if (!json_is_string(t) || services_util_address(
		    json_string_value(t), SERVICES_ADDR_EXTERNAL, addr,
		    &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "targets[%zu]: %s",
			    i, cause ? cause : "must be an address");
			free(cause);
			goto fail;
		}
		st = store_prepare(ctl->db, "SELECT 1 FROM mail_domains WHERE "
		    "name = ?");
		sqlite3_bind_text(st, 1, mail_domain_of(addr), -1,
		    SQLITE_STATIC);
		ours = store_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (ours) {
			/* Our own addresses are stored in lower case. */
			for (lower = addr; *lower != '\0'; lower++)
				if (*lower >= 'A' && *lower <= 'Z')
					*lower = (char)(*lower - 'A' + 'a');
			st = store_prepare(ctl->db, "SELECT 1 FROM mailboxes "
			    "WHERE address = ?1 AND status != 'deleted' UNION "
			    "ALL SELECT 1 FROM aliases WHERE address = ?1");
			sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
			found = store_step(st) == SQLITE_ROW;
			sqlite3_finalize(st);
			if (!found) {
				api_reply_error(r, 400, "bad_field", "targets"
				    "[%zu]: %s is in one of our domains but is "
				    "no mailbox or alias", i, addr);
				goto fail;
			}
		}
		if (strcmp(addr, self) == 0) {
			api_reply_error(r, 400, "bad_field", "targets[%zu]: an "
			    "alias cannot point to itself", i);
			goto fail;
		}
		for (j = 0; j < json_array_size(list); j++)
			if (strcmp(json_string_value(json_array_get(list, j)),
			    addr) == 0)
				break;
		if (j == json_array_size(list))
			json_array_append_new(list, json_string(addr));
	}
	*out = list;
	return (0);
fail:
	json_decref(list);
	return (-1);
}

/* POST /v1/mail/aliases {"address", "targets": [...]} */
void
services_mail_alias_create(struct api_req *r)
{
	static const char *const known[] = { "address", "targets", NULL };
	struct mail_domain d;
	json_t		*body, *v, *targets = NULL;
	char		 addr[SERVICES_ADDR_MAX + 1], id[37], obj[300];
	char		*cause = NULL, *tstr = NULL;
	int64_t		 gen;
	sqlite3_stmt	*st;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "address");
	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "address is required "
		    "(\"@domain\" for a catch-all)");
		goto out;
	}
	if (services_util_address(json_string_value(v), SERVICES_ADDR_CATCHALL,
	    addr, &cause) == -1) {
		api_reply_error(r, 400, "bad_field", "address: %s", cause);
		goto out;
	}
	if (mail_domain_load(services_scope(r), mail_domain_of(addr),
	    &d) == -1) {
		api_reply_error(r, 404, "not_found", "no mail domain '%s': add "
		    "it first", mail_domain_of(addr));
		goto out;
	}
	if (tenants_may_grow(d.md_tenant, &cause) == -1) {
		api_reply_error(r, 409, "tenant_inactive", "%s", cause);
		goto out;
	}
	if (mail_address_free(r, addr, NULL) == -1 ||
	    mail_alias_targets(r, json_object_get(body, "targets"), addr,
	    &targets) == -1)
		goto out;
	tstr = json_dumps(targets, JSON_COMPACT);
	services_util_uuid(id);
	if (services_begin(r) == -1)
		goto out;
	if ((gen = services_bump(d.md_node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "INSERT INTO aliases (id, address, "
	    "domain_id, targets, generation, created_at) VALUES (?, ?, ?, ?, "
	    "?, ?)");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, d.md_id);
	sqlite3_bind_text(st, 4, tstr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, gen);
	sqlite3_bind_int64(st, 6, util_now());
	if (store_step(st) != SQLITE_DONE) {
		log_warnx("services: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "alias/%s", addr);
	if (services_journal(d.md_node, gen, "alias", id, addr, "create") ==
	    -1 || audit_record(r, "mail.alias.create", obj, json_pack(
	    "{s:s,s:O}", "address", addr, "targets", targets)) == -1)
		goto fail;
	if (mail_commit(r, d.md_node) == -1)
		goto out;
	log_info("services: %s added alias %s", api_principal(r)->ap_name,
	    addr);
	api_reply_json(r, 201, mail_alias_json(id));
	goto out;
fail:
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the alias failed");
out:
	free(tstr);
	free(cause);
	json_decref(targets);
	json_decref(body);
}

/* GET /v1/mail/aliases?tenant=&domain=&limit=&cursor= */
void
services_mail_alias_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *domain = api_query(r, "domain");
	const char	*tenant = api_query(r, "tenant");
	char		 host[SERVICES_HOST_MAX + 1], *cause = NULL, *next = NULL;
	int64_t		 tid = 0;
	int		 limit, n = 0;
	json_t		*items;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	if (domain != NULL && services_util_host(domain, host, &cause) == -1) {
		api_reply_error(r, 400, "bad_parameter", "domain: %s", cause);
		free(cause);
		return;
	}
	if (tenant != NULL && (tid = tenants_resolve(tenant)) == -1) {
		api_reply_error(r, 400, "bad_parameter", "tenant: no tenant "
		    "'%.64s'", tenant);
		return;
	}
	items = json_array();
	st = store_prepare(ctl->db, "SELECT " MAIL_ALIAS_COLS MAIL_ALIAS_FROM
	    "WHERE a.address > ?1 AND (?2 IS NULL OR d.name = ?2) AND (?3 = 0 "
	    "OR d.tenant_id = ?3) AND (?5 = 0 OR d.tenant_id = ?5) ORDER BY "
	    "a.address LIMIT ?4");
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	if (domain != NULL)
		sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, services_scope(r));
	sqlite3_bind_int(st, 4, limit + 1);
	sqlite3_bind_int64(st, 5, tid);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			next = params_last_key(items, "address");
			break;
		}
		json_array_append_new(items, mail_alias_row_json(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* The alias an {address} names; its id and node. -1 after 404. */
static int
mail_alias_find(struct api_req *r, char id[37], char *addr, size_t alen,
    int64_t *node)
{
	const char	*ref = api_param(r, "address");
	char		 a[SERVICES_ADDR_MAX + 1], *cause = NULL;
	sqlite3_stmt	*st;
	int		 found = 0;

	if (services_util_address(ref, SERVICES_ADDR_CATCHALL, a,
	    &cause) == -1) {
		free(cause);
		strlcpy(a, ref, sizeof(a));
	}
	st = store_prepare(ctl->db, "SELECT a.id, a.address, d.node_id FROM "
	    "aliases a JOIN mail_domains d ON d.id = a.domain_id WHERE "
	    "(a.address = ?1 OR a.id = ?1) AND (?2 = 0 OR d.tenant_id = ?2)");
	sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, services_scope(r));
	if (store_step(st) == SQLITE_ROW) {
		strlcpy(id, (const char *)sqlite3_column_text(st, 0), 37);
		strlcpy(addr, (const char *)sqlite3_column_text(st, 1), alen);
		*node = sqlite3_column_int64(st, 2);
		found = 1;
	}
	sqlite3_finalize(st);
	if (!found)
		api_reply_error(r, 404, "not_found", "no alias '%.254s'", a);
	return (found ? 0 : -1);
}

/* GET /v1/mail/aliases/{address} */
void
services_mail_alias_get(struct api_req *r)
{
	char	 id[37], addr[SERVICES_ADDR_MAX + 1];
	int64_t	 node;

	if (mail_alias_find(r, id, addr, sizeof(addr), &node) == -1)
		return;
	api_reply_json(r, 200, mail_alias_json(id));
}

/* DELETE /v1/mail/aliases/{address} */
void
services_mail_alias_delete(struct api_req *r)
{
	char		 id[37], addr[SERVICES_ADDR_MAX + 1], obj[300];
	int64_t		 node, gen;
	sqlite3_stmt	*st;

	if (mail_alias_find(r, id, addr, sizeof(addr), &node) == -1)
		return;
	if (services_begin(r) == -1)
		return;
	st = store_prepare(ctl->db, "DELETE FROM aliases WHERE id = ?");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "alias/%s", addr);
	if ((gen = services_bump(node)) == -1 || services_journal(node, gen,
	    "alias", id, addr, "delete") == -1 || audit_record(r,
	    "mail.alias.delete", obj, json_pack("{s:s}", "address",
	    addr)) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "deleting failed");
		return;
	}
	if (mail_commit(r, node) == -1)
		return;
	log_info("services: %s deleted alias %s", api_principal(r)->ap_name,
	    addr);
	api_reply_json(r, 200, json_pack("{s:s,s:b}", "address", addr,
	    "deleted", 1));
}
