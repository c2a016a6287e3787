/*
 * A mail domain's DKIM keys and their rotation.
 *
 * A domain signs with its current key. Rotating makes a next key with a
 * new selector and prints its record; nothing signs with it yet, since a
 * receiver could not check the signature before the record is published.
 * The switch comes when `mail domain check` finds the next record in the
 * DNS as printed, or at once when the rotation is forced. The current key
 * then becomes the previous one: its record is listed for
 * DKIM_PREVIOUS_DAYS more, for mail signed with it still on its way.
 *
 * Private keys go to the backend in the desired state and nowhere else:
 * not in an answer, the audit trail or a log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/tlscert.h"
#include "opsn/util.h"
#include "core/core.h"
#include "services.h"

#define DKIM_PREVIOUS_DAYS	7

/* The keys whose records a domain publishes (see services.h). */
size_t
services_dkim_keys(int64_t domain_id, struct services_dkim **out)
{
	struct services_dkim	*v;
	sqlite3_stmt		*st;
	size_t			 n = 0;
	int			 i;
	static const char *const role[] = { "current", "next", "previous" };

	v = xcalloc(3, sizeof(*v));
	st = store_prepare(ctl->db, "SELECT dkim_selector, dkim_public_b64, "
	    "dkim_next_selector, dkim_next_public_b64, dkim_prev_selector, "
	    "dkim_prev_public_b64, coalesce(dkim_rotated_at, 0) FROM "
	    "mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, domain_id);
	if (store_step(st) == SQLITE_ROW) {
		for (i = 0; i < 3; i++) {
			const char *sel = (const char *)sqlite3_column_text(st,
			    2 * i);

			if (sel == NULL || *sel == '\0')
				continue;
			if (i == 2 && sqlite3_column_int64(st, 6) +
			    DKIM_PREVIOUS_DAYS * 86400 < util_now())
				continue;
			v[n].dk_role = role[i];
			strlcpy(v[n].dk_selector, sel, sizeof(v[n].dk_selector));
			v[n].dk_public_b64 = xstrdup((const char *)
			    sqlite3_column_text(st, 2 * i + 1));
			n++;
		}
	}
	sqlite3_finalize(st);
	*out = v;
	return (n);
}

void
services_dkim_keys_free(struct services_dkim *v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(v[i].dk_public_b64);
	free(v);
}

/* A selector no key of the domain has: opsnYYYYMMDD, then a letter. */
static void
dkim_selector(int64_t domain_id, char *out, size_t len)
{
	sqlite3_stmt	*st;
	struct tm	 tm;
	time_t		 now = (time_t)util_now();
	char		 base[32];
	int		 taken = 1, i;

	gmtime_r(&now, &tm);
	snprintf(base, sizeof(base), "opsn%04d%02d%02d", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday);
	st = store_prepare(ctl->db, "SELECT 1 FROM mail_domains WHERE id = ?1 "
	    "AND ?2 IN (dkim_selector, dkim_next_selector, "
	    "dkim_prev_selector)");
	for (i = 0; taken && i <= 26; i++) {
		if (i == 0)
			strlcpy(out, base, len);
		else
			snprintf(out, len, "%s%c", base, 'a' + i - 1);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, domain_id);
		sqlite3_bind_text(st, 2, out, -1, SQLITE_STATIC);
		taken = store_step(st) == SQLITE_ROW;
	}
	sqlite3_finalize(st);
}

/* Sign with the next key from now on (see services.h). */
int
services_dkim_promote(struct api_req *r, int64_t domain_id)
{
	sqlite3_stmt	*st;
	int64_t		 node = 0, gen;
	char		 name[SERVICES_HOST_MAX + 1] = "", sel[64] = "", obj[300];
	char		 old[64] = "";

	if (store_begin(ctl->db) == -1)
		return (-1);
	st = store_prepare(ctl->db, "SELECT node_id, name, dkim_next_selector, "
	    "dkim_selector FROM mail_domains WHERE id = ? AND "
	    "dkim_next_selector != ''");
	sqlite3_bind_int64(st, 1, domain_id);
	if (store_step(st) == SQLITE_ROW) {
		node = sqlite3_column_int64(st, 0);
		strlcpy(name, (const char *)sqlite3_column_text(st, 1),
		    sizeof(name));
		strlcpy(sel, (const char *)sqlite3_column_text(st, 2),
		    sizeof(sel));
		strlcpy(old, (const char *)sqlite3_column_text(st, 3),
		    sizeof(old));
	}
	sqlite3_finalize(st);
	if (node == 0) {
		store_rollback(ctl->db);
		return (0);
	}
	if ((gen = services_bump(node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "UPDATE mail_domains SET "
	    "dkim_prev_selector = dkim_selector, dkim_prev_public_b64 = "
	    "dkim_public_b64, dkim_selector = dkim_next_selector, "
	    "dkim_private_pem = dkim_next_private_pem, dkim_public_b64 = "
	    "dkim_next_public_b64, dkim_next_selector = '', "
	    "dkim_next_private_pem = '', dkim_next_public_b64 = '', "
	    "dkim_rotated_at = ?2, generation = ?3, state = 'pending', "
	    "message = '' WHERE id = ?1");
	sqlite3_bind_int64(st, 1, domain_id);
	sqlite3_bind_int64(st, 2, util_now());
	sqlite3_bind_int64(st, 3, gen);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "mail/domain/%s", name);
	if (services_journal(node, gen, "domain", name, name, "dkim") == -1 ||
	    audit_record(r, "mail.domain.dkim", obj, json_pack("{s:s,s:s}",
	    "from", old, "to", sel)) == -1 || store_commit(ctl->db) == -1)
		goto fail;
	services_push(node);
	log_info("services: domain %s signs with DKIM selector %s (was %s)",
	    name, sel, old);
	return (1);
fail:
	store_rollback(ctl->db);
	return (-1);
}

/* {"selector", "record": {name, type, value}, "zone"} of a key. */
static json_t *
dkim_key_json(const char *domain, const char *selector, const char *b64)
{
	json_t	*o;
	char	*name, *value, *zone;

	xasprintf(&name, "%s._domainkey.%s", selector, domain);
	xasprintf(&value, "v=DKIM1; k=rsa; p=%s", b64);
	zone = services_util_zone_line(name, SERVICES_DNS_TTL, "TXT", value);
	o = json_pack("{s:s,s:{s:s,s:s,s:i,s:s},s:s}", "selector", selector,
	    "record", "name", name, "type", "TXT", "ttl", SERVICES_DNS_TTL,
	    "value", value, "zone", zone);
	free(name);
	free(value);
	free(zone);
	return (o);
}

/* A rotation: its RSA key, when it needs one, is made on the pool. */
struct dkim_rotate {
	uv_work_t		 dr_work;
	struct api_defer	*dr_defer;
	struct mail_domain	 dr_domain;
	int			 dr_force;
	int			 dr_need_key;	/* no next key waited */
	char			*dr_pem, *dr_pub, *dr_cause;
};

/* On the pool: an RSA key takes from tens of milliseconds to a second. */
static void
dkim_rotate_key_cb(uv_work_t *w)
{
	struct dkim_rotate	*dr = w->data;

	if (dr->dr_need_key)
		services_util_dkim(&dr->dr_pem, &dr->dr_pub, &dr->dr_cause);
}

/* Back on the loop: keep the new key (unless one came meanwhile), reply. */
static void
dkim_rotate_done_cb(uv_work_t *w, int status)
{
	struct dkim_rotate	*dr = w->data;
	struct api_defer	*df = dr->dr_defer;
	struct api_req		*r = api_defer_req(df);
	struct mail_domain	*d = &dr->dr_domain;
	sqlite3_stmt		*st;
	json_t			*o;
	char			 sel[64] = "", obj[300];
	int			 made = 0;

	if (status == UV_ECANCELED) {
		api_defer_reply_error(df, 503, "busy", "cancelled: the "
		    "controller is stopping");
		goto out;
	}
	if (dr->dr_need_key && dr->dr_pem == NULL) {
		api_defer_reply_error(df, 500, "internal", "%s", dr->dr_cause);
		goto out;
	}
	st = store_prepare(ctl->db, "SELECT dkim_next_selector FROM "
	    "mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, d->md_id);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(sel, (const char *)sqlite3_column_text(st, 0),
		    sizeof(sel));
	sqlite3_finalize(st);
	/* A next key made meanwhile by another rotation is kept. */
	if (*sel == '\0' && dr->dr_pem != NULL) {
		dkim_selector(d->md_id, sel, sizeof(sel));
		if (store_begin(ctl->db) == -1) {
			api_defer_reply_error(df, 503, "busy", "the database is "
			    "busy");
			goto out;
		}
		st = store_prepare(ctl->db, "UPDATE mail_domains SET "
		    "dkim_next_selector = ?, dkim_next_private_pem = ?, "
		    "dkim_next_public_b64 = ? WHERE id = ?");
		sqlite3_bind_text(st, 1, sel, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, dr->dr_pem, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, dr->dr_pub, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, d->md_id);
		store_step(st);
		sqlite3_finalize(st);
		snprintf(obj, sizeof(obj), "mail/domain/%s", d->md_name);
		if (audit_record(r, "mail.domain.dkim_rotate", obj,
		    json_pack("{s:s}", "next_selector", sel)) == -1 ||
		    store_commit(ctl->db) == -1) {
			store_rollback(ctl->db);
			api_defer_reply_error(df, 500, "internal", "storing the "
			    "key failed");
			goto out;
		}
		made = 1;
	}
	st = store_prepare(ctl->db, "SELECT dkim_next_public_b64 FROM "
	    "mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, d->md_id);
	store_step(st);
	o = json_pack("{s:s,s:b,s:o}", "domain", d->md_name, "new", made,
	    "next", dkim_key_json(d->md_name, sel, (const char *)
	    sqlite3_column_text(st, 0)));
	sqlite3_finalize(st);
	if (dr->dr_force && services_dkim_promote(r, d->md_id) == -1) {
		json_decref(o);
		api_defer_reply_error(df, 500, "internal", "switching keys "
		    "failed");
		goto out;
	}
	json_object_set_new(o, "signing", json_string(dr->dr_force ? sel :
	    "unchanged until the record is published (mail domain check)"));
	api_defer_reply_json(df, 200, o);
out:
	if (dr->dr_pem != NULL)
		tlscert_free_secret(dr->dr_pem, strlen(dr->dr_pem));
	free(dr->dr_pub);
	free(dr->dr_cause);
	free(dr);
}

/*
 * POST /v1/mail/domains/{name}/dkim/rotate {"force"?: bool}: a next key
 * (kept if one waits already; a new one is made on the thread pool);
 * with force, it signs from now on.
 */
void
services_mail_domain_dkim_rotate(struct api_req *r)
{
	static const char *const known[] = { "force", NULL };
	struct dkim_rotate	*dr;
	struct mail_domain	 d;
	sqlite3_stmt		*st;
	json_t			*body = NULL, *v;
	size_t			 blen = 0;
	int			 force = 0, rv;

	if (services_mail_domain_find(r, api_param(r, "name"), &d) == -1)
		return;
	if (api_body(r, &blen) != NULL && blen > 0 &&
	    (body = api_body_json(r)) == NULL)
		return;
	if (body != NULL && params_known_fields(r, body, known) == -1)
		goto out;
	if (body != NULL && (v = json_object_get(body, "force")) != NULL) {
		if (!json_is_boolean(v)) {
			api_reply_error(r, 400, "bad_field", "force must be "
			    "true or false");
			goto out;
		}
		force = json_is_true(v);
	}
	dr = xcalloc(1, sizeof(*dr));
	dr->dr_domain = d;
	dr->dr_force = force;
	st = store_prepare(ctl->db, "SELECT dkim_next_selector = '' FROM "
	    "mail_domains WHERE id = ?");
	sqlite3_bind_int64(st, 1, d.md_id);
	dr->dr_need_key = store_step(st) == SQLITE_ROW &&
	    sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	dr->dr_work.data = dr;
	dr->dr_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &dr->dr_work, dkim_rotate_key_cb,
	    dkim_rotate_done_cb)) != 0) {
		api_defer_reply_error(dr->dr_defer, 503, "busy", "%s",
		    uv_strerror(rv));
		free(dr);
	}
out:
	json_decref(body);
}
