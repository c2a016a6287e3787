/*
 * Console accounts: a person's name, a role and maybe a member, exactly
 * as an API token has (the router authorizes both from one table). The
 * password is set by its owner through a one-time link (only the link's
 * hash is kept) or given at creation; it is stored as a yescrypt hash,
 * made and checked on the thread pool (tens of milliseconds each).
 */
#include <crypt.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "access/access.h"
#include "members/members.h"
#include "session.h"

#define USERS_SETUP_TTL		(7 * 86400)
#define USERS_EMAIL_MAX		254

/* ---- password hashes on the thread pool -------------------------------- */

static void
users_pw_work_cb(uv_work_t *w)
{
	struct pw_job		*j = w->data;
	struct crypt_data	*cd = xcalloc(1, sizeof(*cd));
	char			 salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char		*h;

	j->pj_ok = 1;
	if (j->pj_password != NULL && j->pj_hash != NULL) {
		h = crypt_r(j->pj_password, j->pj_hash, cd);
		j->pj_ok = h != NULL && h[0] != '*' && strlen(h) ==
		    strlen(j->pj_hash) && CRYPTO_memcmp(h, j->pj_hash,
		    strlen(h)) == 0;
	}
	if (j->pj_ok && j->pj_make != NULL && crypt_gensalt_rn("$y$", 0,
	    NULL, 0, salt, sizeof(salt)) != NULL && (h = crypt_r(j->pj_make,
	    salt, cd)) != NULL && h[0] != '*')
		j->pj_new = xstrdup(h);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
}

static void
users_pw_after_cb(uv_work_t *w, int status)
{
	struct pw_job	*j = w->data;

	(void)status;
	j->pj_done(j);
	if (j->pj_password != NULL)
		OPENSSL_cleanse(j->pj_password, strlen(j->pj_password));
	if (j->pj_make != NULL)
		OPENSSL_cleanse(j->pj_make, strlen(j->pj_make));
	free(j->pj_password);
	free(j->pj_make);
	free(j->pj_hash);
	free(j->pj_new);
	free(j);
}

/* Make or check a hash away from the loop (see session.h). */
void
users_pw_run(struct pw_job *j)
{
	int	 r;

	j->pj_work.data = j;
	if ((r = uv_queue_work(ctl->loop, &j->pj_work, users_pw_work_cb,
	    users_pw_after_cb)) != 0)
		fatalx("users: uv_queue_work: %s", uv_strerror(r));
}

/* Why a new password is refused, or NULL (see session.h). */
const char *
users_pw_weak(const char *pw)
{
	size_t	 len = strlen(pw), chars = 0, i;

	/* Characters, not bytes: "é" counts once. */
	for (i = 0; i < len; i++)
		if (((unsigned char)pw[i] & 0xc0) != 0x80)
			chars++;
	if (chars < PASSWORD_MIN)
		return ("a password has at least 12 characters");
	if (len > PASSWORD_MAX)
		return ("a password has at most 1024 bytes");
	return (NULL);
}

/* ---- accounts ----------------------------------------------------------- */

/* Account names: what a person types at the login prompt. */
int
users_name_ok(const char *s)
{
	const char	*p;

	if (s == NULL || *s == '\0' || strlen(s) > USER_NAME_MAX)
		return (0);
	for (p = s; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("-_.@", *p) == NULL)
			return (0);
	return (1);
}

static int
users_email_ok(const char *s)
{
	const char	*at = strchr(s, '@');

	return (strlen(s) <= USERS_EMAIL_MAX && at != NULL && at != s &&
	    strchr(at + 1, '.') != NULL && strchr(at + 1, '@') == NULL &&
	    strpbrk(s, " \t\r\n<>\"',;") == NULL);
}

/*
 * A one-time link's secret for a user: stored as its SHA-256, valid for
 * USERS_SETUP_TTL; earlier links of the user stop working. Call inside
 * the caller's transaction. The secret (caller frees), or NULL.
 */
char *
users_setup_token(int64_t user, int64_t *expires, char **cause)
{
	sqlite3_stmt	*st;
	char		*secret, *token, hash[65];
	int64_t		 now = util_now();

	st = store_prepare(ctl->db, "DELETE FROM user_setup_tokens WHERE "
	    "user_id = ? OR expires_at <= ?");
	sqlite3_bind_int64(st, 1, user);
	sqlite3_bind_int64(st, 2, now);
	store_step(st);
	sqlite3_finalize(st);
	secret = secret_new();
	xasprintf(&token, "setup_%s", secret);
	free(secret);
	secret_hash(token, hash);
	*expires = now + USERS_SETUP_TTL;
	st = store_prepare(ctl->db, "INSERT INTO user_setup_tokens (hash, "
	    "user_id, created_at, expires_at) VALUES (?, ?, ?, ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, user);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, *expires);
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "storing a setup link: %s",
		    sqlite3_errmsg(ctl->db));
		sqlite3_finalize(st);
		free(token);
		return (NULL);
	}
	sqlite3_finalize(st);
	return (token);
}

#define USERS_COLS "u.name, u.role, u.tenant_id, t.name, t.insee, t.siren, " \
	"u.email, u.password_hash IS NOT NULL, u.totp_secret IS NOT NULL, " \
	"u.disabled_at, u.created_at, u.last_login_at, u.password_at, u.id"
#define USERS_FROM " FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id "

static json_t *
users_str(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	return (s != NULL ? json_string((const char *)s) : json_null());
}

static json_t *
users_row_json(sqlite3_stmt *st)
{
	json_t		*o = json_object(), *t = json_null();
	const char	*status;

	json_object_set_new(o, "name", users_str(st, 0));
	json_object_set_new(o, "role", users_str(st, 1));
	if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
		t = json_object();
		json_object_set_new(t, "id", json_integer(
		    sqlite3_column_int64(st, 2)));
		json_object_set_new(t, "name", users_str(st, 3));
		json_object_set_new(t, "insee", users_str(st, 4));
		json_object_set_new(t, "siren", users_str(st, 5));
	}
	json_object_set_new(o, "tenant", t);
	json_object_set_new(o, "email", users_str(st, 6));
	if (sqlite3_column_type(st, 9) != SQLITE_NULL)
		status = "disabled";
	else if (!sqlite3_column_int(st, 7))
		status = "pending";
	else
		status = "active";
	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "totp", json_boolean(sqlite3_column_int(st,
	    8)));
	json_object_set_new(o, "created_at", store_json_time(st, 10));
	json_object_set_new(o, "last_login_at", store_json_time(st, 11));
	json_object_set_new(o, "password_at", store_json_time(st, 12));
	return (o);
}

/* One account as JSON, or NULL; its id and role in *id and role. */
static json_t *
users_get_json(const char *name, int64_t *id, char role[16])
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_prepare(ctl->db, "SELECT " USERS_COLS USERS_FROM
	    "WHERE u.name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		o = users_row_json(st);
		if (id != NULL)
			*id = sqlite3_column_int64(st, 13);
		if (role != NULL)
			strlcpy(role, (const char *)sqlite3_column_text(st, 1),
			    16);
	}
	sqlite3_finalize(st);
	return (o);
}

/*
 * No account acts on an account that may do more than itself: -1 after
 * replying 403 if role outranks the caller.
 */
static int
users_outranked(struct api_req *r, const char *role)
{
	const struct api_principal *p = api_principal(r);

	if (router_role_rank(role) <= router_role_rank(p->ap_role))
		return (0);
	api_reply_error(r, 403, "forbidden", "'%s' (role %s) may not manage "
	    "an account of role %s", p->ap_name, p->ap_role, role);
	return (-1);
}

/* What POST /v1/users asks for, kept while the password is hashed. */
struct users_new {
	char		 un_name[USER_NAME_MAX + 1];
	char		 un_role[16];
	char		 un_email[USERS_EMAIL_MAX + 1];
	int64_t		 un_tenant;
	struct api_defer *un_defer;
};

/*
 * Store a new account (hash NULL: its owner sets the password through a
 * one-time link) and reply 201 through d or r.
 */
static void
users_insert(struct api_req *r, struct api_defer *d,
    const struct users_new *in, const char *hash)
{
	struct api_req	*ar = d != NULL ? api_defer_req(d) : r;
	sqlite3_stmt	*st;
	json_t		*o, *sum;
	char		*token = NULL, *cause = NULL, obj[96], buf[32];
	int64_t		 id, now = util_now(), expires = 0;
	int		 status = 500;
	const char	*code = "internal", *msg = "storing the account failed";

	if (store_begin(ctl->db) == -1) {
		status = 503;
		code = "busy";
		msg = "the database is busy";
		goto fail;
	}
	st = store_prepare(ctl->db, "INSERT INTO users (name, role, tenant_id, "
	    "email, password_hash, password_at, created_at) VALUES (?, ?, ?, "
	    "?, ?, ?, ?) ON CONFLICT DO NOTHING");
	sqlite3_bind_text(st, 1, in->un_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, in->un_role, -1, SQLITE_STATIC);
	if (in->un_tenant > 0)
		sqlite3_bind_int64(st, 3, in->un_tenant);
	if (in->un_email[0] != '\0')
		sqlite3_bind_text(st, 4, in->un_email, -1, SQLITE_STATIC);
	if (hash != NULL) {
		sqlite3_bind_text(st, 5, hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, now);
	}
	sqlite3_bind_int64(st, 7, now);
	store_step(st);
	sqlite3_finalize(st);
	if (sqlite3_changes(ctl->db) == 0) {
		store_rollback(ctl->db);
		status = 409;
		code = "exists";
		msg = "an account of that name exists";
		goto fail;
	}
	id = sqlite3_last_insert_rowid(ctl->db);
	if (hash == NULL && (token = users_setup_token(id, &expires,
	    &cause)) == NULL) {
		log_warnx("users: %s", cause);
		store_rollback(ctl->db);
		goto fail;
	}
	snprintf(obj, sizeof(obj), "user/%s", in->un_name);
	sum = json_pack("{s:s,s:s,s:s}", "name", in->un_name, "role",
	    in->un_role, "password", hash != NULL ? "given" : "link");
	if (in->un_tenant > 0)
		json_object_set_new(sum, "tenant", json_integer(in->un_tenant));
	if (in->un_email[0] != '\0')
		json_object_set_new(sum, "email", json_string(in->un_email));
	if (audit_record(ar, "user.create", obj, sum) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		goto fail;
	}
	log_info("users: %s created account %s (%s)", api_principal(ar) ?
	    api_principal(ar)->ap_name : "?", in->un_name, in->un_role);
	o = users_get_json(in->un_name, NULL, NULL);
	if (token != NULL) {
		json_object_set_new(o, "setup_token", json_string(token));
		util_time_fmt(expires, buf, sizeof(buf));
		json_object_set_new(o, "setup_expires_at", json_string(buf));
		explicit_bzero(token, strlen(token));
		free(token);
	}
	if (d != NULL)
		api_defer_reply_json(d, 201, o);
	else
		api_reply_json(r, 201, o);
	return;
fail:
	free(cause);
	if (d != NULL)
		api_defer_reply_error(d, status, code, "%s", msg);
	else
		api_reply_error(r, status, code, "%s", msg);
}

static void
users_create_hashed(struct pw_job *j)
{
	struct users_new	*in = j->pj_arg;

	if (j->pj_new == NULL) {
		log_warnx("users: yescrypt failed");
		api_defer_reply_error(in->un_defer, 500, "internal",
		    "hashing the password failed");
	} else
		users_insert(NULL, in->un_defer, in, j->pj_new);
	free(in);
}

/* POST /v1/users {"name", "role", "tenant"?, "email"?, "password"?} */
void
users_create(struct api_req *r)
{
	static const char *const known[] = { "name", "role", "tenant",
	    "email", "password", NULL };
	struct users_new	 in;
	struct pw_job		*j;
	json_t			*body, *v;
	const char		*s, *why;

	memset(&in, 0, sizeof(in));
	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	s = json_string_value(json_object_get(body, "name"));
	if (!users_name_ok(s)) {
		api_reply_error(r, 400, "bad_field", "name must be 1 to 64 "
		    "letters, digits, '-', '_', '.' or '@'");
		goto out;
	}
	strlcpy(in.un_name, s, sizeof(in.un_name));
	s = json_string_value(json_object_get(body, "role"));
	if (s == NULL || router_role_rank(s) < 0) {
		api_reply_error(r, 400, "bad_field", "role must be admin, "
		    "operator, finance or auditor");
		goto out;
	}
	strlcpy(in.un_role, s, sizeof(in.un_role));
	if (users_outranked(r, in.un_role) == -1)
		goto out;
	if ((v = json_object_get(body, "tenant")) != NULL && !json_is_null(v) &&
	    (!json_is_string(v) || (in.un_tenant = tenants_resolve(
	    json_string_value(v))) == -1)) {
		api_reply_error(r, 400, "bad_field", "tenant: no member "
		    "'%.64s'", json_is_string(v) ? json_string_value(v) : "?");
		goto out;
	}
	if ((v = json_object_get(body, "email")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || !users_email_ok(json_string_value(v))) {
			api_reply_error(r, 400, "bad_field", "email is not an "
			    "address");
			goto out;
		}
		strlcpy(in.un_email, json_string_value(v), sizeof(in.un_email));
	}
	if ((v = json_object_get(body, "password")) == NULL ||
	    json_is_null(v)) {
		users_insert(r, NULL, &in, NULL);
		goto out;
	}
	if (!json_is_string(v) || (why = users_pw_weak(json_string_value(v))) !=
	    NULL) {
		api_reply_error(r, 400, "weak_password", "%s", json_is_string(v) ?
		    why : "password must be a string");
		goto out;
	}
	j = xcalloc(1, sizeof(*j));
	j->pj_make = xstrdup(json_string_value(v));
	j->pj_done = users_create_hashed;
	j->pj_arg = xmalloc(sizeof(in));
	in.un_defer = api_defer(r);
	memcpy(j->pj_arg, &in, sizeof(in));
	users_pw_run(j);
out:
	json_decref(body);
}

/* GET /v1/users?tenant= */
void
users_list(struct api_req *r)
{
	const char	*ref = api_query(r, "tenant");
	sqlite3_stmt	*st;
	json_t		*items = json_array();
	int64_t		 tenant = 0;

	if (ref != NULL && (tenant = tenants_resolve(ref)) == -1) {
		json_decref(items);
		api_reply_error(r, 404, "not_found", "no member '%.64s'", ref);
		return;
	}
	st = store_prepare(ctl->db, "SELECT " USERS_COLS USERS_FROM
	    "WHERE ?1 = 0 OR u.tenant_id = ?1 ORDER BY u.name");
	sqlite3_bind_int64(st, 1, tenant);
	while (store_step(st) == SQLITE_ROW)
		json_array_append_new(items, users_row_json(st));
	sqlite3_finalize(st);
	params_reply_page(r, items, NULL);
}

/* The account {name} names, or -1 after replying 404 (or 403). */
static int64_t
users_target(struct api_req *r, json_t **o)
{
	const char	*name = api_param(r, "name");
	char		 role[16];
	int64_t		 id;

	if ((*o = users_get_json(name, &id, role)) == NULL) {
		api_reply_error(r, 404, "not_found", "no account named '%.64s'",
		    name);
		return (-1);
	}
	if (users_outranked(r, role) == -1) {
		json_decref(*o);
		*o = NULL;
		return (-1);
	}
	return (id);
}

/* GET /v1/users/{name} */
void
users_show(struct api_req *r)
{
	json_t	*o;

	if ((o = users_get_json(api_param(r, "name"), NULL, NULL)) == NULL) {
		api_reply_error(r, 404, "not_found", "no account named '%.64s'",
		    api_param(r, "name"));
		return;
	}
	api_reply_json(r, 200, o);
}

/* The account {name} names, in a transaction begun; -1 after replying. */
static int64_t
users_begin(struct api_req *r, json_t **o)
{
	int64_t	 id;

	if ((id = users_target(r, o)) == -1)
		return (-1);
	if (store_begin(ctl->db) == -1) {
		json_decref(*o);
		*o = NULL;
		api_reply_error(r, 503, "busy", "the database is busy");
		return (-1);
	}
	return (id);
}

/*
 * One statement on the account {name} with its audit record, in a
 * transaction; reply with the account as it is now (as it was, if it is
 * gone). sql binds ?1 = the account's id, ?2 = now.
 */
static void
users_change(struct api_req *r, const char *sql, const char *action,
    int drop_sessions)
{
	sqlite3_stmt	*st;
	json_t		*o, *now;
	char		 obj[96];
	int64_t		 id;

	if ((id = users_begin(r, &o)) == -1)
		return;
	st = store_prepare(ctl->db, sql);
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, util_now());
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "user/%s", api_param(r, "name"));
	if (audit_record(r, action, obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		json_decref(o);
		api_reply_error(r, 500, "internal", "changing the account "
		    "failed");
		return;
	}
	if (drop_sessions)
		session_drop_user(id, NULL);
	if ((now = users_get_json(api_param(r, "name"), NULL, NULL)) != NULL) {
		json_decref(o);
		o = now;
	}
	api_reply_json(r, 200, o);
}

void
users_disable(struct api_req *r)
{
	users_change(r, "UPDATE users SET disabled_at = ?2 WHERE id = ?1 AND "
	    "disabled_at IS NULL", "user.disable", 1);
}

void
users_enable(struct api_req *r)
{
	users_change(r, "UPDATE users SET disabled_at = NULL WHERE id = ?1",
	    "user.enable", 0);
}

void
users_totp_reset(struct api_req *r)
{
	users_change(r, "UPDATE users SET totp_secret = NULL, totp_pending = "
	    "NULL WHERE id = ?1", "user.totp_reset", 1);
}

/* DELETE /v1/users/{name}: the account, its links and its sessions. */
void
users_delete(struct api_req *r)
{
	users_change(r, "DELETE FROM users WHERE id = ?1", "user.delete", 1);
}

/*
 * POST /v1/users/{name}/reset: a new one-time link. The password keeps
 * working until the link is used (disable the account to stop it).
 */
void
users_reset(struct api_req *r)
{
	char		*token, *cause = NULL, obj[96], buf[32];
	json_t		*o;
	int64_t		 id, expires;

	if ((id = users_begin(r, &o)) == -1)
		return;
	snprintf(obj, sizeof(obj), "user/%s", api_param(r, "name"));
	if ((token = users_setup_token(id, &expires, &cause)) == NULL ||
	    audit_record(r, "user.link", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		log_warnx("users: %s", cause ? cause : "link");
		free(cause);
		free(token);
		json_decref(o);
		api_reply_error(r, 500, "internal", "making a link failed");
		return;
	}
	json_object_set_new(o, "setup_token", json_string(token));
	util_time_fmt(expires, buf, sizeof(buf));
	json_object_set_new(o, "setup_expires_at", json_string(buf));
	explicit_bzero(token, strlen(token));
	free(token);
	api_reply_json(r, 200, o);
}
