/*
 * API tokens: each carries a role, and may be bound to one member. Only
 * SHA-256 hashes are stored; a token is shown once, when it is created.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "members/members.h"
#include "access.h"

#define TOKEN_OWNER	"sql:SELECT tenant_id FROM api_tokens WHERE name = :name"

/* Create the first admin token, written once to DATA_DIR/admin.token. */
static int
tokens_admin_init(struct ctl *c, char **cause)
{
	sqlite3_stmt	*st;
	char		*secret, *token, *path, hash[65];
	int		 n, rv = -1;

	st = store_prepare(c->db, "SELECT count(*) FROM api_tokens");
	n = store_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (n > 0)
		return (0);

	secret = secret_new();
	xasprintf(&token, "opsn_%s", secret);
	secret_hash(token, hash);
	xasprintf(&path, "%s/admin.token", c->conf.data_dir);
	/* The file first: a stored hash whose token nobody has is a lockout. */
	if (util_write_file(path, token, strlen(token), 0600, cause) == -1)
		goto out;
	st = store_prepare(c->db, "INSERT INTO api_tokens (name, role, hash, "
	    "created_at) VALUES ('admin', 'admin', ?, ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "storing the admin token: %s",
		    sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		unlink(path);
		goto out;
	}
	sqlite3_finalize(st);
	log_notice("tokens: wrote the admin API token to %s", path);
	rv = 0;
out:
	explicit_bzero(token, strlen(token));
	free(secret);
	free(token);
	free(path);
	return (rv);
}

static json_t *
tokens_row_json(sqlite3_stmt *st)
{
	json_t	*o = json_object();
	char	 buf[32];
	int	 i;
	static const char *const times[] = { "created_at", "expires_at",
	    "revoked_at" };

	json_object_set_new(o, "name",
	    json_string((const char *)sqlite3_column_text(st, 0)));
	json_object_set_new(o, "role",
	    json_string((const char *)sqlite3_column_text(st, 1)));
	json_object_set_new(o, "tenant", sqlite3_column_type(st, 2) ==
	    SQLITE_NULL ? json_null() : json_integer(sqlite3_column_int64(st,
	    2)));
	for (i = 0; i < 3; i++) {
		if (sqlite3_column_type(st, 3 + i) == SQLITE_NULL) {
			json_object_set_new(o, times[i], json_null());
			continue;
		}
		util_time_fmt(sqlite3_column_int64(st, 3 + i), buf, sizeof(buf));
		json_object_set_new(o, times[i], json_string(buf));
	}
	return (o);
}

/* POST /v1/tokens {"name", "role", "tenant"?, "ttl"?}: shown once. */
static void
tokens_api_create(struct api_req *r)
{
	static const char *const known[] = { "name", "role", "tenant", "ttl",
	    NULL };
	json_t		*body, *v, *o;
	const char	*name, *role, *p;
	char		*secret = NULL, *token = NULL, hash[65], *cause = NULL;
	char		 obj[160], buf[32];
	int64_t		 tenant = 0, ttl = 0, now = util_now();
	sqlite3_stmt	*st;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	name = json_string_value(json_object_get(body, "name"));
	for (p = name ? name : ""; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("-_.@", *p) == NULL)
			break;
	if (name == NULL || *name == '\0' || *p != '\0' || strlen(name) > 64) {
		api_reply_error(r, 400, "bad_field", "name must be 1 to 64 "
		    "letters, digits, '-', '_', '.' or '@'");
		goto out;
	}
	role = json_string_value(json_object_get(body, "role"));
	if (role == NULL || (strcmp(role, "admin") != 0 &&
	    strcmp(role, "operator") != 0 && strcmp(role, "finance") != 0 &&
	    strcmp(role, "auditor") != 0)) {
		api_reply_error(r, 400, "bad_field", "role must be admin, "
		    "operator, finance or auditor");
		goto out;
	}
	/* No token makes a token that may do more than itself. */
	if (router_role_rank(role) > router_role_rank(api_principal(r)->ap_role)) {
		api_reply_error(r, 403, "forbidden", "token '%s' (role %s) may "
		    "not create a token of role %s", api_principal(r)->ap_name,
		    api_principal(r)->ap_role, role);
		goto out;
	}
	if ((v = json_object_get(body, "tenant")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || (tenant = tenants_resolve(
		    json_string_value(v))) == -1) {
			api_reply_error(r, 400, "bad_field", "tenant: no tenant "
			    "'%.64s'", json_is_string(v) ? json_string_value(v) :
			    "?");
			goto out;
		}
	}
	if ((v = json_object_get(body, "ttl")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || util_parse_duration(
		    json_string_value(v), &ttl, &cause) == -1 || ttl < 60 ||
		    ttl > 3660 * 86400) {
			api_reply_error(r, 400, "bad_field", "ttl must be a "
			    "duration from 1m to 3660d, such as 90d");
			goto out;
		}
	}
	secret = secret_new();
	xasprintf(&token, "opsn_%s", secret);
	secret_hash(token, hash);
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "INSERT INTO api_tokens (name, role, "
	    "tenant_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
	    "ON CONFLICT DO NOTHING");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
	if (tenant > 0)
		sqlite3_bind_int64(st, 3, tenant);
	sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, now);
	if (ttl > 0)
		sqlite3_bind_int64(st, 6, now + ttl);
	store_step(st);
	sqlite3_finalize(st);
	if (sqlite3_changes(ctl->db) == 0) {
		store_rollback(ctl->db);
		api_reply_error(r, 409, "exists", "a token named '%s' exists",
		    name);
		goto out;
	}
	snprintf(obj, sizeof(obj), "token/%s", name);
	o = json_pack("{s:s,s:s}", "name", name, "role", role);
	if (tenant > 0)
		json_object_set_new(o, "tenant", json_integer(tenant));
	if (ttl > 0)
		json_object_set_new(o, "ttl_seconds", json_integer(ttl));
	if (audit_record(r, "token.create", obj, o) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the token failed");
		goto out;
	}
	o = json_pack("{s:s,s:s,s:s}", "name", name, "role", role, "token",
	    token);
	json_object_set_new(o, "tenant", tenant > 0 ? json_integer(tenant) :
	    json_null());
	if (ttl > 0) {
		util_time_fmt(now + ttl, buf, sizeof(buf));
		json_object_set_new(o, "expires_at", json_string(buf));
	} else
		json_object_set_new(o, "expires_at", json_null());
	api_reply_json(r, 201, o);
out:
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	free(token);
	free(secret);
	free(cause);
	json_decref(body);
}

/*
 * GET /v1/tokens?tenant=: names, roles and dates; never a token or its
 * hash.
 */
static void
tokens_api_list(struct api_req *r)
{
	const char	*ref = api_query(r, "tenant");
	sqlite3_stmt	*st;
	json_t		*items;
	int64_t		 tenant = 0;

	if (ref != NULL && (tenant = tenants_resolve(ref)) == -1) {
		api_reply_error(r, 404, "not_found", "no tenant '%.64s'", ref);
		return;
	}
	items = json_array();
	st = store_prepare(ctl->db, "SELECT name, role, tenant_id, created_at, "
	    "expires_at, revoked_at FROM api_tokens WHERE ?1 = 0 OR "
	    "tenant_id = ?1 ORDER BY name");
	sqlite3_bind_int64(st, 1, tenant);
	while (store_step(st) == SQLITE_ROW)
		json_array_append_new(items, tokens_row_json(st));
	sqlite3_finalize(st);
	params_reply_page(r, items, NULL);
}

/* POST /v1/tokens/{name}/revoke */
static void
tokens_api_revoke(struct api_req *r)
{
	const char	*name = api_param(r, "name");
	sqlite3_stmt	*st;
	char		 obj[160];

	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	st = store_prepare(ctl->db, "UPDATE api_tokens SET revoked_at = ? "
	    "WHERE name = ? AND revoked_at IS NULL");
	sqlite3_bind_int64(st, 1, util_now());
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	if (sqlite3_changes(ctl->db) == 0) {
		store_rollback(ctl->db);
		api_reply_error(r, 404, "not_found", "no active token named "
		    "'%s'", name);
		return;
	}
	snprintf(obj, sizeof(obj), "token/%s", name);
	if (audit_record(r, "token.revoke", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "revoking failed");
		return;
	}
	st = store_prepare(ctl->db, "SELECT name, role, tenant_id, created_at, "
	    "expires_at, revoked_at FROM api_tokens WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	store_step(st);
	api_reply_json(r, 200, tokens_row_json(st));
	sqlite3_finalize(st);
}

static int
tokens_init(struct ctl *c, char **cause)
{
	return (tokens_admin_init(c, cause));
}

static const struct api_route tokens_routes[] = {
	{ "POST", "/v1/tokens", "tokens.write",
	  API_MEMBER, "body:tenant", tokens_api_create,
	  "Create an API token (shown once)" },
	{ "GET", "/v1/tokens", "tokens.read",
	  API_MEMBER, "query:tenant", tokens_api_list,
	  "List API tokens (never the tokens themselves)" },
	{ "POST", "/v1/tokens/{name}/revoke", "tokens.write",
	  API_MEMBER, TOKEN_OWNER, tokens_api_revoke,
	  "Revoke an API token" },
};

const struct ctl_module access_module = {
	.m_name = "access",
	.m_init = tokens_init,
	.m_routes = tokens_routes,
	.m_nroutes = nitems(tokens_routes),
};
