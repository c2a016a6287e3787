/*
 * Websites: a host name (and aliases) served by one web backend's nginx,
 * with a quota for its files. Suspended (by an operator, or because its
 * member is) it serves a "suspended" page instead of its files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "services.h"

#define SITES_ALIASES_MAX	20
#define SITES_TENANT_REF	"coalesce(t.insee, t.siren, CAST(t.id AS TEXT))"

#define SITES_COLS "s.id, s.hostname, s.aliases, " SITES_TENANT_REF ", " \
	"n.name, s.quota_bytes, s.used_bytes, s.status, t.status, s.state, " \
	"s.message, s.generation, s.applied_generation, s.created_at, " \
	"s.updated_at, s.tls, s.cert_sha256, " SERVICES_CERT_COLS
#define SITES_FROM " FROM sites s JOIN tenants t ON t.id = s.tenant_id JOIN " \
	"nodes n ON n.id = s.node_id LEFT JOIN services_certs c ON " \
	"c.node_id = s.node_id AND c.kind = 'site' AND c.object_id = s.id "

static json_t *
sites_time(sqlite3_stmt *st, int col)
{
	char	 buf[32];

	util_time_fmt(sqlite3_column_int64(st, col), buf, sizeof(buf));
	return (json_string(buf));
}

static json_t *
sites_row_json(sqlite3_stmt *st)
{
	json_t		*o = json_object(), *a, *cert;
	const char	*host = (const char *)sqlite3_column_text(st, 1);
	const char	*own = (const char *)sqlite3_column_text(st, 7);
	char		*u;
	int		 member = strcmp((const char *)sqlite3_column_text(st, 8),
			    "suspended") == 0;

	json_object_set_new(o, "id", json_string((const char *)
	    sqlite3_column_text(st, 0)));
	json_object_set_new(o, "hostname", json_string(host));
	u = services_util_unicode(host);
	json_object_set_new(o, "hostname_unicode", json_string(u));
	free(u);
	a = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
	json_object_set_new(o, "aliases", a ? a : json_array());
	json_object_set_new(o, "tenant", json_string((const char *)
	    sqlite3_column_text(st, 3)));
	json_object_set_new(o, "backend", json_string((const char *)
	    sqlite3_column_text(st, 4)));
	json_object_set_new(o, "quota_bytes", sqlite3_column_type(st, 5) ==
	    SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st,
	    5)));
	json_object_set_new(o, "used_bytes", json_integer(
	    sqlite3_column_int64(st, 6)));
	json_object_set_new(o, "status", json_string(strcmp(own, "active") ==
	    0 && member ? "suspended" : own));
	json_object_set_new(o, "own_status", json_string(own));
	json_object_set_new(o, "member_suspended", json_boolean(member));
	json_object_set_new(o, "live", services_live_json((const char *)
	    sqlite3_column_text(st, 9), (const char *)sqlite3_column_text(st,
	    10), sqlite3_column_int64(st, 11), sqlite3_column_int64(st, 12)));
	json_object_set_new(o, "created_at", sites_time(st, 13));
	json_object_set_new(o, "updated_at", sites_time(st, 14));
	json_object_set_new(o, "tls", json_string((const char *)
	    sqlite3_column_text(st, 15)));
	cert = services_certs_json(st, 17, (const char *)
	    sqlite3_column_text(st, 15));
	if (*sqlite3_column_text(st, 16) != '\0')
		json_object_set_new(cert, "sha256", json_string((const char *)
		    sqlite3_column_text(st, 16)));
	json_object_set_new(o, "certificate", cert);
	return (o);
}

/* A site as the API shows it. */
json_t *
services_sites_json(const char *id)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_prepare(ctl->db, "SELECT " SITES_COLS SITES_FROM
	    "WHERE s.id = ?");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		o = sites_row_json(st);
	sqlite3_finalize(st);
	return (o);
}

/* The site that serves a name (host name or alias), or NULL. */
static char *
sites_serving(const char *name)
{
	sqlite3_stmt	*st;
	char		*host = NULL;

	st = store_prepare(ctl->db, "SELECT hostname FROM sites s WHERE "
	    "hostname = ?1 OR EXISTS (SELECT 1 FROM json_each(s.aliases) WHERE "
	    "value = ?1)");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		host = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return (host);
}

/* Check the aliases of a new site; -1 after replying. */
static int
sites_aliases(struct api_req *r, json_t *v, const char *host, json_t **out)
{
	json_t	*list = json_array(), *a;
	char	 name[SERVICES_HOST_MAX + 1], *cause = NULL, *other;
	size_t	 i, j;

	if (v != NULL && (!json_is_array(v) || json_array_size(v) >
	    SITES_ALIASES_MAX)) {
		api_reply_error(r, 400, "bad_field", "aliases must be a list of "
		    "at most %d host names", SITES_ALIASES_MAX);
		goto fail;
	}
	json_array_foreach(v, i, a) {
		if (!json_is_string(a) || services_util_host(
		    json_string_value(a), name, &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "aliases[%zu]: %s",
			    i, cause ? cause : "must be a host name");
			free(cause);
			goto fail;
		}
		if (strcmp(name, host) == 0)
			continue;
		for (j = 0; j < json_array_size(list); j++)
			if (strcmp(json_string_value(json_array_get(list, j)),
			    name) == 0)
				break;
		if (j < json_array_size(list))
			continue;
		if ((other = sites_serving(name)) != NULL) {
			api_reply_error(r, 409, "exists", "%s is already served "
			    "by site %s", name, other);
			free(other);
			goto fail;
		}
		json_array_append_new(list, json_string(name));
	}
	*out = list;
	return (0);
fail:
	json_decref(list);
	return (-1);
}

/* POST /v1/sites {"hostname", "tenant", "aliases"?, "quota_bytes"?, "backend"?} */
void
services_sites_create(struct api_req *r)
{
	static const char *const known[] = { "hostname", "tenant", "aliases",
	    "quota_bytes", "backend", NULL };
	json_t		*body, *aliases = NULL, *sum;
	sqlite3_stmt	*st;
	char		 host[SERVICES_HOST_MAX + 1], id[37], obj[300], ref[64];
	char		*cause = NULL, *astr = NULL, *other;
	const char	*backend = NULL;
	int64_t		 tenant, quota = -1, node, gen, now = util_now();

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	if (services_new_args(r, body, "hostname", "such as "
	    "www.mairie-agassac.fr", host, &tenant, &quota, &backend) == -1)
		goto out;
	if ((other = sites_serving(host)) != NULL) {
		api_reply_error(r, 409, "exists", "%s is already served by site "
		    "%s", host, other);
		free(other);
		goto out;
	}
	if (sites_aliases(r, json_object_get(body, "aliases"), host,
	    &aliases) == -1)
		goto out;
	astr = json_dumps(aliases, JSON_COMPACT);
	services_util_uuid(id);

	if (services_begin(r) == -1)
		goto out;
	if ((node = services_place(r, "web", backend)) == -1)
		goto rollback;
	if ((gen = services_bump(node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "INSERT INTO sites (id, hostname, aliases, "
	    "tenant_id, node_id, quota_bytes, generation, created_at, "
	    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?8)");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, astr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, tenant);
	sqlite3_bind_int64(st, 5, node);
	if (quota > 0)
		sqlite3_bind_int64(st, 6, quota);
	sqlite3_bind_int64(st, 7, gen);
	sqlite3_bind_int64(st, 8, now);
	if (store_step(st) != SQLITE_DONE) {
		log_warnx("services: %s", sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	services_tenant_ref(tenant, ref, sizeof(ref));
	snprintf(obj, sizeof(obj), "site/%s", host);
	sum = json_pack("{s:s,s:s,s:O,s:s}", "hostname", host, "tenant", ref,
	    "aliases", aliases, "backend", nodes_name(node));
	json_object_set_new(sum, "quota_bytes", quota > 0 ?
	    json_integer(quota) : json_null());
	if (services_journal(node, gen, "site", id, host, "create") == -1) {
		json_decref(sum);
		goto fail;
	}
	if (audit_record(r, "site.create", obj, sum) == -1)
		goto fail;
	if (store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "storing the site failed");
		goto out;
	}
	services_push(node);
	log_info("services: %s added site %s for %s on %s",
	    api_principal(r)->ap_name, host, ref, nodes_name(node));
	api_reply_json(r, 201, services_sites_json(id));
	goto out;
fail:
	api_reply_error(r, 500, "internal", "storing the site failed");
rollback:
	store_rollback(ctl->db);
out:
	free(astr);
	free(cause);
	json_decref(aliases);
	json_decref(body);
}

/* GET /v1/sites?tenant=&backend=&limit=&cursor= */
void
services_sites_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *tenant = api_query(r, "tenant");
	const char	*backend = api_query(r, "backend");
	int64_t		 tid = 0;
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
	st = store_prepare(ctl->db, "SELECT " SITES_COLS SITES_FROM "WHERE "
	    "s.hostname > ?1 AND (?2 = 0 OR s.tenant_id = ?2) AND (?3 = 0 OR "
	    "s.tenant_id = ?3) AND (?4 IS NULL OR n.name = ?4) ORDER BY "
	    "s.hostname LIMIT ?5");
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, tid);
	sqlite3_bind_int64(st, 3, services_scope(r));
	if (backend != NULL)
		sqlite3_bind_text(st, 4, backend, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			next = params_last_key(items, "hostname");
			break;
		}
		json_array_append_new(items, sites_row_json(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

/* The site a {hostname} names (host name as typed, or id); -1 after 404. */
int
services_sites_find(struct api_req *r, char id[37], char *host, size_t hlen,
    char *status, size_t slen, int64_t *node)
{
	const char	*ref = api_param(r, "hostname");
	char		 h[SERVICES_HOST_MAX + 1], *cause = NULL;
	sqlite3_stmt	*st;
	int		 found = 0;

	if (services_util_host(ref, h, &cause) == -1) {
		free(cause);
		strlcpy(h, ref, sizeof(h));
	}
	st = store_prepare(ctl->db, "SELECT id, hostname, status, node_id FROM "
	    "sites WHERE (hostname = ?1 OR id = ?1) AND (?2 = 0 OR tenant_id = "
	    "?2)");
	sqlite3_bind_text(st, 1, h, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, services_scope(r));
	if (store_step(st) == SQLITE_ROW) {
		strlcpy(id, (const char *)sqlite3_column_text(st, 0), 37);
		strlcpy(host, (const char *)sqlite3_column_text(st, 1), hlen);
		strlcpy(status, (const char *)sqlite3_column_text(st, 2), slen);
		*node = sqlite3_column_int64(st, 3);
		found = 1;
	}
	sqlite3_finalize(st);
	if (!found)
		api_reply_error(r, 404, "not_found", "no site '%.253s'", h);
	return (found ? 0 : -1);
}

/* GET /v1/sites/{hostname} */
void
services_sites_get(struct api_req *r)
{
	char	 id[37], host[SERVICES_HOST_MAX + 1], status[16];
	int64_t	 node;

	if (services_sites_find(r, id, host, sizeof(host), status, sizeof(status),
	    &node) == -1)
		return;
	api_reply_json(r, 200, services_sites_json(id));
}

/* suspend, activate */
static void
sites_set_status(struct api_req *r, const char *to)
{
	char		 id[37], host[SERVICES_HOST_MAX + 1], cur[16], obj[300];
	int64_t		 node, gen;
	sqlite3_stmt	*st;

	if (services_sites_find(r, id, host, sizeof(host), cur, sizeof(cur),
	    &node) == -1)
		return;
	if (strcmp(cur, to) == 0) {
		api_reply_json(r, 200, services_sites_json(id));
		return;
	}
	if (services_begin(r) == -1)
		return;
	if ((gen = services_bump(node)) == -1)
		goto fail;
	st = store_prepare(ctl->db, "UPDATE sites SET status = ?, generation = "
	    "?, state = 'pending', message = '', updated_at = ? WHERE id = ?");
	sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, gen);
	sqlite3_bind_int64(st, 3, util_now());
	sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "site/%s", host);
	if (services_journal(node, gen, "site", id, host, *to == 's' ?
	    "suspend" : "activate") == -1 || audit_record(r, "site.status",
	    obj, json_pack("{s:s,s:s}", "from", cur, "to", to)) == -1)
		goto fail;
	if (store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "storing the change failed");
		return;
	}
	services_push(node);
	log_info("services: %s set site %s %s", api_principal(r)->ap_name,
	    host, to);
	api_reply_json(r, 200, services_sites_json(id));
	return;
fail:
	store_rollback(ctl->db);
	api_reply_error(r, 500, "internal", "storing the change failed");
}

/* POST /v1/sites/{hostname}/suspend */
void
services_sites_suspend(struct api_req *r)
{
	sites_set_status(r, "suspended");
}

/* POST /v1/sites/{hostname}/activate */
void
services_sites_activate(struct api_req *r)
{
	sites_set_status(r, "active");
}

/* DELETE /v1/sites/{hostname}: the backend removes its server block. */
void
services_sites_delete(struct api_req *r)
{
	char		 id[37], host[SERVICES_HOST_MAX + 1], cur[16], obj[300];
	int64_t		 node, gen;
	sqlite3_stmt	*st;

	if (services_sites_find(r, id, host, sizeof(host), cur, sizeof(cur),
	    &node) == -1)
		return;
	if (services_begin(r) == -1)
		return;
	st = store_prepare(ctl->db, "DELETE FROM sites WHERE id = ?");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "site/%s", host);
	if ((gen = services_bump(node)) == -1 || services_journal(node, gen,
	    "site", id, host, "delete") == -1 || audit_record(r, "site.delete",
	    obj, json_pack("{s:s}", "hostname", host)) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "deleting failed");
		return;
	}
	if (store_commit(ctl->db) == -1) {
		api_reply_error(r, 500, "internal", "deleting failed");
		return;
	}
	services_push(node);
	log_info("services: %s deleted site %s", api_principal(r)->ap_name,
	    host);
	api_reply_json(r, 200, json_pack("{s:s,s:b}", "hostname", host,
	    "deleted", 1));
}
