/*
 * Console sessions: a login with a password (and a one-time code where
 * the account has one) opens a session named by a random cookie
 * (__Host-, Secure, HttpOnly, SameSite=Strict); the controller keeps only
 * the cookie's SHA-256, in memory, with the session's CSRF token. A
 * session ends after [console] idle_timeout without a request, after
 * session_lifetime in any case, at logout, when its account is disabled
 * or its password changes, and when the controller restarts.
 *
 * Every write made with a session cookie must carry the session's CSRF
 * token (X-CSRF-Token): a page of another site can make the browser send
 * the cookie, never read the token. Logins are throttled per account and
 * per address, and every login, logout and failure is in the audit trail.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "access/access.h"
#include "session.h"

#define SESSION_COOKIE		"__Host-opsn_session"
#define SESSION_MAX		10000
#define SESSION_ADDR_MAX	64

/* Throttling: free failures, then a lock that doubles up to a cap. */
#define THROTTLE_ACCOUNT_FREE	5
#define THROTTLE_ADDRESS_FREE	20
#define THROTTLE_BASE		30
#define THROTTLE_CAP		900
#define THROTTLE_FORGET		900	/* failures forgotten after this */
#define THROTTLE_MAX		4096	/* keys remembered */

struct session {
	TAILQ_ENTRY(session)	 s_entry;
	char			 s_hash[65];	/* SHA-256 of the cookie */
	char			 s_csrf[2 * SECRET_BYTES + 1];
	int64_t			 s_user;
	int64_t			 s_created;
	int64_t			 s_seen;
	int			 s_restricted;	/* must enrol a second factor */
	char			 s_addr[SESSION_ADDR_MAX];
};

static TAILQ_HEAD(, session)	 sessions = TAILQ_HEAD_INITIALIZER(sessions);
static size_t			 nsessions;
static int64_t			 session_idle, session_life;
/* A hash to check unknown accounts against: a refusal takes as long. */
static char			*session_dummy_hash;

/* ---- throttling --------------------------------------------------------- */

struct throttle {
	char		 t_key[USER_NAME_MAX + SESSION_ADDR_MAX];
	int		 t_fails;
	int64_t		 t_last;
	int64_t		 t_until;
	int64_t		 t_told;	/* t_until when its refusal was audited */
};

static struct throttle	*throttles;
static size_t		 nthrottles;

static struct throttle *
session_throttle_find(const char *key, int create)
{
	size_t	 i, old = 0;

	for (i = 0; i < nthrottles; i++)
		if (strcmp(throttles[i].t_key, key) == 0)
			return (&throttles[i]);
	if (!create)
		return (NULL);
	if (throttles == NULL)
		throttles = xcalloc(THROTTLE_MAX, sizeof(*throttles));
	if (nthrottles < THROTTLE_MAX)
		i = nthrottles++;
	else {
		/* Full: forget the key whose last failure is oldest. */
		for (i = 1; i < nthrottles; i++)
			if (throttles[i].t_last < throttles[old].t_last)
				old = i;
		i = old;
	}
	memset(&throttles[i], 0, sizeof(throttles[i]));
	strlcpy(throttles[i].t_key, key, sizeof(throttles[i].t_key));
	return (&throttles[i]);
}

/* Seconds until key may try again (see session.h). */
int64_t
session_throttle_wait(const char *key, int64_t now, int *first)
{
	struct throttle	*t = session_throttle_find(key, 0);

	*first = 0;
	if (t == NULL || t->t_until <= now)
		return (0);
	if (t->t_told != t->t_until) {
		t->t_told = t->t_until;
		*first = 1;
	}
	return (t->t_until - now);
}

/* A failure for key (see session.h). */
int64_t
session_throttle_fail(const char *key, int64_t now, int free_fails, int *first)
{
	struct throttle	*t = session_throttle_find(key, 1);
	int		 over;

	if (now - t->t_last > THROTTLE_FORGET && t->t_until <= now)
		t->t_fails = 0;
	t->t_fails++;
	t->t_last = now;
	*first = t->t_fails == free_fails;
	if (t->t_fails < free_fails)
		return (0);
	over = t->t_fails - free_fails;
	t->t_until = now + (over >= 5 ? THROTTLE_CAP : THROTTLE_BASE << over);
	if (t->t_until > now + THROTTLE_CAP)
		t->t_until = now + THROTTLE_CAP;
	return (t->t_until - now);
}

/* A success: key starts afresh. */
void
session_throttle_ok(const char *key)
{
	struct throttle	*t = session_throttle_find(key, 0);

	if (t != NULL) {
		*t = throttles[nthrottles - 1];
		nthrottles--;
	}
}

/* Forget every key (tests, and the module's stop). */
void
session_throttle_reset(void)
{
	free(throttles);
	throttles = NULL;
	nthrottles = 0;
}

/* ---- sessions ----------------------------------------------------------- */

static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&sessions, s, s_entry);
	nsessions--;
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

static int
session_expired(const struct session *s, int64_t now)
{
	return (now - s->s_seen >= session_idle ||
	    now - s->s_created >= session_life);
}

/* The cookie's value in the request, or NULL (copied into buf). */
static const char *
session_cookie(struct api_req *r, char *buf, size_t len)
{
	const char	*h = api_header(r, "cookie"), *p, *end;
	size_t		 n = strlen(SESSION_COOKIE);

	for (p = h; p != NULL && (p = strstr(p, SESSION_COOKIE)) != NULL;
	    p += n) {
		if ((p != h && p[-1] != ' ' && p[-1] != ';') || p[n] != '=')
			continue;
		p += n + 1;
		end = p + strcspn(p, "; ");
		if ((size_t)(end - p) == 0 || (size_t)(end - p) >= len)
			return (NULL);
		memcpy(buf, p, end - p);
		buf[end - p] = '\0';
		return (buf);
	}
	return (NULL);
}

/* The live session the request's cookie names, or NULL. */
static struct session *
session_of(struct api_req *r)
{
	struct session	*s;
	char		 cookie[128], hash[65];
	int64_t		 now = util_now();

	if (session_cookie(r, cookie, sizeof(cookie)) == NULL)
		return (NULL);
	secret_hash(cookie, hash);
	OPENSSL_cleanse(cookie, sizeof(cookie));
	TAILQ_FOREACH(s, &sessions, s_entry) {
		if (CRYPTO_memcmp(s->s_hash, hash, sizeof(hash)) != 0)
			continue;
		if (session_expired(s, now)) {
			session_free(s);
			return (NULL);
		}
		return (s);
	}
	return (NULL);
}

/* End every session of user but keep_hash's (see session.h). */
void
session_drop_user(int64_t user, const char *keep_hash)
{
	struct session	*s, *next;

	for (s = TAILQ_FIRST(&sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, s_entry);
		if (s->s_user == user && (keep_hash == NULL ||
		    strcmp(s->s_hash, keep_hash) != 0))
			session_free(s);
	}
}

/* A new session; the cookie's value in *cookie (caller frees). */
static struct session *
session_new(int64_t user, const char *addr, int restricted, char **cookie)
{
	struct session	*s, *next, *oldest = NULL;
	char		*csrf;
	int64_t		 now = util_now();

	for (s = TAILQ_FIRST(&sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, s_entry);
		if (session_expired(s, now))
			session_free(s);
		else if (oldest == NULL || s->s_seen < oldest->s_seen)
			oldest = s;
	}
	if (nsessions >= SESSION_MAX && oldest != NULL)
		session_free(oldest);
	s = xcalloc(1, sizeof(*s));
	*cookie = secret_new();
	secret_hash(*cookie, s->s_hash);
	csrf = secret_new();
	strlcpy(s->s_csrf, csrf, sizeof(s->s_csrf));
	free(csrf);
	s->s_user = user;
	s->s_created = s->s_seen = now;
	s->s_restricted = restricted;
	strlcpy(s->s_addr, addr, sizeof(s->s_addr));
	TAILQ_INSERT_TAIL(&sessions, s, s_entry);
	nsessions++;
	return (s);
}

/* An account as a session sees it. */
struct session_user {
	char		 su_name[USER_NAME_MAX + 1];
	char		 su_role[16];
	int64_t		 su_tenant;
	int		 su_disabled;
	int		 su_has_password;
	char		*su_hash;	/* owned */
	char		*su_totp;	/* owned */
	char		*su_pending;	/* owned */
	int64_t		 su_last_step;
};

static void
session_user_free(struct session_user *u)
{
	free(u->su_hash);
	free(u->su_totp);
	free(u->su_pending);
	memset(u, 0, sizeof(*u));
}

static char *
session_col(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	return (s != NULL ? xstrdup((const char *)s) : NULL);
}

/* Read account id (or the one named name when id is 0); -1 if none. */
static int64_t
session_user_load(int64_t id, const char *name, struct session_user *u)
{
	sqlite3_stmt	*st;
	int64_t		 found = -1;

	memset(u, 0, sizeof(*u));
	st = store_prepare(ctl->db, "SELECT id, name, role, coalesce(tenant_id, "
	    "0), disabled_at IS NOT NULL, password_hash, totp_secret, "
	    "totp_pending, totp_last_step FROM users WHERE id = ?1 OR "
	    "(?1 = 0 AND name = ?2)");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name != NULL ? name : "", -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW) {
		found = sqlite3_column_int64(st, 0);
		strlcpy(u->su_name, (const char *)sqlite3_column_text(st, 1),
		    sizeof(u->su_name));
		strlcpy(u->su_role, (const char *)sqlite3_column_text(st, 2),
		    sizeof(u->su_role));
		u->su_tenant = sqlite3_column_int64(st, 3);
		u->su_disabled = sqlite3_column_int(st, 4);
		u->su_hash = session_col(st, 5);
		u->su_has_password = u->su_hash != NULL;
		u->su_totp = session_col(st, 6);
		u->su_pending = session_col(st, 7);
		u->su_last_step = sqlite3_column_int64(st, 8);
	}
	sqlite3_finalize(st);
	return (found);
}

static void
session_principal(const struct session_user *u, struct api_principal *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->ap_name, sizeof(p->ap_name), "user:%s", u->su_name);
	strlcpy(p->ap_role, u->su_role, sizeof(p->ap_role));
	p->ap_tenant = u->su_tenant;
}

static int
session_must_enrol(const struct session_user *u)
{
	return (ctl->conf.console_require_totp && strcmp(u->su_role,
	    "admin") == 0 && u->su_totp == NULL);
}

/*
 * The session's document: who, until when, the CSRF token for writes,
 * and the routes the account may call (the router's own verdict, so that
 * the console offers nothing the API would refuse).
 */
static json_t *
session_json(const struct session *s, const struct session_user *u)
{
	struct api_principal	 p;
	const struct api_route	*rt;
	sqlite3_stmt		*st;
	json_t			*o = json_object(), *allowed = json_array();
	json_t			*t = json_null();
	char			 buf[32], line[160];
	size_t			 i, n;

	session_principal(u, &p);
	json_object_set_new(o, "user", json_string(u->su_name));
	json_object_set_new(o, "role", json_string(u->su_role));
	if (u->su_tenant != 0) {
		st = store_prepare(ctl->db, "SELECT id, name, insee, siren, "
		    "kind FROM tenants WHERE id = ?");
		sqlite3_bind_int64(st, 1, u->su_tenant);
		if (store_step(st) == SQLITE_ROW)
			t = json_pack("{s:I,s:s,s:s?,s:s?,s:s}", "id",
			    (json_int_t)sqlite3_column_int64(st, 0), "name",
			    sqlite3_column_text(st, 1), "insee",
			    sqlite3_column_text(st, 2), "siren",
			    sqlite3_column_text(st, 3), "kind",
			    sqlite3_column_text(st, 4));
		sqlite3_finalize(st);
	}
	json_object_set_new(o, "tenant", t);
	st = store_prepare(ctl->db, "SELECT email FROM users WHERE name = ?");
	sqlite3_bind_text(st, 1, u->su_name, -1, SQLITE_STATIC);
	json_object_set_new(o, "email", store_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL ? json_string((const
	    char *)sqlite3_column_text(st, 0)) : json_null());
	sqlite3_finalize(st);
	json_object_set_new(o, "csrf_token", json_string(s->s_csrf));
	util_time_fmt(s->s_created, buf, sizeof(buf));
	json_object_set_new(o, "created_at", json_string(buf));
	util_time_fmt(s->s_created + session_life, buf, sizeof(buf));
	json_object_set_new(o, "expires_at", json_string(buf));
	json_object_set_new(o, "idle_timeout", json_integer(session_idle));
	json_object_set_new(o, "totp", json_pack("{s:b,s:b,s:b}", "enabled",
	    u->su_totp != NULL, "required", ctl->conf.console_require_totp &&
	    strcmp(u->su_role, "admin") == 0, "must_enrol", s->s_restricted));
	rt = router_routes(&n);
	for (i = 0; i < n; i++) {
		if (!router_allows(&p, &rt[i]) || (s->s_restricted &&
		    strncmp(rt[i].ar_perm, "account.", 8) != 0))
			continue;
		snprintf(line, sizeof(line), "%s %s", rt[i].ar_method,
		    rt[i].ar_pattern);
		json_array_append_new(allowed, json_string(line));
	}
	json_object_set_new(o, "allowed", allowed);
	return (o);
}

static void
session_set_cookie(struct api_req *r, struct api_defer *d, const char *v)
{
	char	*c;

	xasprintf(&c, SESSION_COOKIE "=%s; Path=/; Secure; HttpOnly; "
	    "SameSite=Strict%s", v, *v == '\0' ? "; Max-Age=0" : "");
	if (d != NULL)
		api_defer_set_header(d, "Set-Cookie", c);
	else
		api_set_header(r, "Set-Cookie", c);
	free(c);
}

/*
 * A request with neither a bearer token nor a node certificate: its
 * session cookie, if any (the module's m_authenticate). Writes need the
 * session's CSRF token; a session that must first enrol a second factor
 * reaches only the account routes.
 */
int
session_authenticate(struct api_req *r, const struct api_route *rt,
    struct api_principal *p)
{
	struct session_user	 u;
	struct session		*s;
	const char		*tok, *origin, *host;
	char			 cookie[128];

	if (session_cookie(r, cookie, sizeof(cookie)) == NULL)
		return (1);
	OPENSSL_cleanse(cookie, sizeof(cookie));
	if ((s = session_of(r)) == NULL) {
		session_set_cookie(r, NULL, "");
		api_reply_error(r, 401, "session_ended", "the console session "
		    "has ended: log in again");
		return (-1);
	}
	if (session_user_load(s->s_user, NULL, &u) == -1 || u.su_disabled ||
	    !u.su_has_password) {
		session_user_free(&u);
		session_free(s);
		session_set_cookie(r, NULL, "");
		api_reply_error(r, 401, "session_ended", "the console session "
		    "has ended: log in again");
		return (-1);
	}
	if (strcmp(rt->ar_method, "GET") != 0) {
		tok = api_header(r, "x-csrf-token");
		origin = api_header(r, "origin");
		host = api_host(r);
		if (tok == NULL || strlen(tok) != strlen(s->s_csrf) ||
		    CRYPTO_memcmp(tok, s->s_csrf, strlen(tok)) != 0 ||
		    (origin != NULL && (host == NULL || strncmp(origin,
		    "https://", 8) != 0 || strcmp(origin + 8, host) != 0))) {
			log_notice("console: %s: %s %s without the session's "
			    "CSRF token refused", u.su_name, rt->ar_method,
			    rt->ar_pattern);
			session_user_free(&u);
			api_reply_error(r, 403, "csrf", "a write from a console "
			    "session needs the session's X-CSRF-Token header "
			    "(and the console's own origin)");
			return (-1);
		}
	}
	if (s->s_restricted && strncmp(rt->ar_perm, "account.", 8) != 0) {
		session_user_free(&u);
		api_reply_error(r, 403, "totp_enrolment_required", "this "
		    "account must set up its second factor (TOTP) first");
		return (-1);
	}
	s->s_seen = util_now();
	session_principal(&u, p);
	session_user_free(&u);
	return (0);
}

/* ---- login -------------------------------------------------------------- */

struct login {
	struct api_defer	*l_defer;
	int64_t			 l_user;	/* 0: no such usable account */
	char			 l_name[USER_NAME_MAX + 1];
	char			 l_addr[SESSION_ADDR_MAX];
	char			 l_code[8];
	int			 l_has_code;
	char			 l_old[65];	/* the session being replaced */
};

/* Audit a refused login in its own transaction. */
static void
session_audit_failure(struct api_req *r, const char *name, const char *addr,
    const char *reason, int64_t locked)
{
	char	 obj[96];
	json_t	*sum;

	snprintf(obj, sizeof(obj), "user/%s", name[0] != '\0' ? name : "?");
	sum = json_pack("{s:s,s:s}", "address", addr, "reason", reason);
	if (locked > 0)
		json_object_set_new(sum, "locked_seconds", json_integer(locked));
	if (store_begin(ctl->db) == -1)
		return;
	if (audit_record(r, "session.login_failed", obj, sum) == -1 ||
	    store_commit(ctl->db) == -1)
		store_rollback(ctl->db);
}

/* A wrong password or code: count it, audit it, answer 401. */
static void
session_login_refused(struct login *l, const char *reason, const char *code,
    const char *msg)
{
	char	 key[128];
	int64_t	 now = util_now(), la, lb;
	int	 first;

	snprintf(key, sizeof(key), "u:%s", l->l_name);
	la = session_throttle_fail(key, now, THROTTLE_ACCOUNT_FREE, &first);
	snprintf(key, sizeof(key), "a:%s", l->l_addr);
	lb = session_throttle_fail(key, now, THROTTLE_ADDRESS_FREE, &first);
	log_notice("console: login of '%s' from %s refused (%s)", l->l_name,
	    l->l_addr, reason);
	session_audit_failure(api_defer_req(l->l_defer), l->l_name, l->l_addr,
	    reason, la > lb ? la : lb);
	api_defer_reply_error(l->l_defer, 401, code, "%s", msg);
}

static void
session_login_checked(struct pw_job *j)
{
	struct login		*l = j->pj_arg;
	struct session_user	 u;
	struct api_principal	 p;
	struct session		*s, *old;
	sqlite3_stmt		*st;
	char			*cookie = NULL, key[128], obj[96];
	int64_t			 step = 0, now = util_now();

	memset(&u, 0, sizeof(u));
	if (!j->pj_ok || l->l_user == 0 || session_user_load(l->l_user, NULL,
	    &u) == -1 || u.su_disabled || !u.su_has_password) {
		session_login_refused(l, "password", "bad_credentials",
		    "wrong user name or password");
		goto out;
	}
	if (u.su_totp != NULL && !l->l_has_code) {
		/* The password was right: asking for the code is no failure. */
		api_defer_reply_error(l->l_defer, 401, "totp_required", "this "
		    "account needs its one-time code (\"totp\")");
		goto out;
	}
	if (u.su_totp != NULL && !totp_check(u.su_totp, l->l_code, now,
	    u.su_last_step, &step)) {
		session_login_refused(l, "totp", "bad_totp", "the one-time "
		    "code is wrong, or was already used");
		goto out;
	}
	session_principal(&u, &p);
	api_set_principal(api_defer_req(l->l_defer), &p);
	snprintf(obj, sizeof(obj), "user/%s", u.su_name);
	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(l->l_defer, 503, "busy", "the database is "
		    "busy");
		goto out;
	}
	st = store_prepare(ctl->db, "UPDATE users SET last_login_at = ?, "
	    "totp_last_step = max(totp_last_step, ?) WHERE id = ?");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, step);
	sqlite3_bind_int64(st, 3, l->l_user);
	store_step(st);
	sqlite3_finalize(st);
	if (audit_record(api_defer_req(l->l_defer), "session.login", obj,
	    json_pack("{s:s,s:b}", "address", l->l_addr, "totp",
	    u.su_totp != NULL)) == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(l->l_defer, 500, "internal", "opening "
		    "the session failed");
		goto out;
	}
	TAILQ_FOREACH(old, &sessions, s_entry)
		if (l->l_old[0] != '\0' && strcmp(old->s_hash, l->l_old) == 0) {
			session_free(old);
			break;
		}
	snprintf(key, sizeof(key), "u:%s", l->l_name);
	session_throttle_ok(key);
	s = session_new(l->l_user, l->l_addr, session_must_enrol(&u), &cookie);
	log_info("console: %s logged in from %s%s", u.su_name, l->l_addr,
	    s->s_restricted ? " (must set up a second factor)" : "");
	session_set_cookie(NULL, l->l_defer, cookie);
	api_defer_reply_json(l->l_defer, 201, session_json(s, &u));
out:
	if (cookie != NULL)
		OPENSSL_cleanse(cookie, strlen(cookie));
	free(cookie);
	session_user_free(&u);
	free(l);
}

/* POST /v1/session {"user", "password", "totp"?}: log in. */
void
session_login(struct api_req *r)
{
	static const char *const known[] = { "user", "password", "totp",
	    NULL };
	struct session_user	 u;
	struct session		*cur;
	struct login		*l;
	struct pw_job		*j;
	json_t			*body, *v;
	const char		*name, *pw;
	char			 key[128];
	int64_t			 wait, w2, now = util_now();
	int			 first, first2;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	name = json_string_value(json_object_get(body, "user"));
	pw = json_string_value(json_object_get(body, "password"));
	if (name == NULL || pw == NULL || strlen(name) > USER_NAME_MAX ||
	    strlen(pw) > PASSWORD_MAX) {
		api_reply_error(r, 400, "bad_field", "user and password are "
		    "required (at most 64 and 1024 bytes)");
		goto out;
	}
	l = xcalloc(1, sizeof(*l));
	if (users_name_ok(name))
		strlcpy(l->l_name, name, sizeof(l->l_name));
	api_peer(r, l->l_addr, sizeof(l->l_addr));
	if ((v = json_object_get(body, "totp")) != NULL && json_is_string(v) &&
	    strlen(json_string_value(v)) < sizeof(l->l_code)) {
		strlcpy(l->l_code, json_string_value(v), sizeof(l->l_code));
		l->l_has_code = l->l_code[0] != '\0';
	}
	/* Throttled: refused before any password is looked at. */
	snprintf(key, sizeof(key), "u:%s", l->l_name);
	wait = session_throttle_wait(key, now, &first);
	snprintf(key, sizeof(key), "a:%s", l->l_addr);
	w2 = session_throttle_wait(key, now, &first2);
	if (wait > 0 || w2 > 0) {
		char	 ra[24];

		if (w2 > wait)
			wait = w2;
		if (first || first2)
			session_audit_failure(r, l->l_name, l->l_addr,
			    "throttled", wait);
		log_notice("console: login of '%s' from %s throttled for "
		    "%lld s", l->l_name, l->l_addr, (long long)wait);
		snprintf(ra, sizeof(ra), "%lld", (long long)wait);
		api_set_header(r, "Retry-After", ra);
		api_reply_error(r, 429, "throttled", "too many failed logins: "
		    "try again in %lld s", (long long)wait);
		free(l);
		goto out;
	}
	if ((cur = session_of(r)) != NULL)
		strlcpy(l->l_old, cur->s_hash, sizeof(l->l_old));
	j = xcalloc(1, sizeof(*j));
	j->pj_password = xstrdup(pw);
	memset(&u, 0, sizeof(u));
	if (l->l_name[0] != '\0' && (l->l_user = session_user_load(0, l->l_name,
	    &u)) > 0 && !u.su_disabled && u.su_hash != NULL)
		j->pj_hash = xstrdup(u.su_hash);
	else {
		/* Check against a dummy: an unknown name takes as long. */
		l->l_user = 0;
		j->pj_hash = xstrdup(session_dummy_hash);
	}
	session_user_free(&u);
	j->pj_done = session_login_checked;
	j->pj_arg = l;
	l->l_defer = api_defer(r);
	users_pw_run(j);
out:
	json_decref(body);
}

/*
 * The session of a call made with a session cookie, its account in *u
 * (freed by the caller); NULL after replying 400 to a bearer token.
 */
static struct session *
session_need(struct api_req *r, struct session_user *u)
{
	struct session	*s;

	memset(u, 0, sizeof(*u));
	if ((s = session_of(r)) == NULL || session_user_load(s->s_user, NULL,
	    u) == -1) {
		session_user_free(u);
		api_reply_error(r, 400, "no_session", "this call is for a "
		    "console session (a bearer token has none)");
		return (NULL);
	}
	return (s);
}

/* GET /v1/session: the session a cookie names. */
void
session_show(struct api_req *r)
{
	struct session_user	 u;
	struct session		*s;

	if ((s = session_need(r, &u)) == NULL)
		return;
	api_reply_json(r, 200, session_json(s, &u));
	session_user_free(&u);
}

/* DELETE /v1/session: log out. */
void
session_logout(struct api_req *r)
{
	struct session_user	 u;
	struct session	*s;
	char		 obj[160];

	if ((s = session_need(r, &u)) == NULL)
		return;
	snprintf(obj, sizeof(obj), "user/%s", u.su_name);
	session_user_free(&u);
	if (store_begin(ctl->db) == 0 && (audit_record(r, "session.logout",
	    obj, NULL) == -1 || store_commit(ctl->db) == -1))
		store_rollback(ctl->db);
	log_info("console: %s logged out", api_principal(r)->ap_name);
	session_free(s);
	session_set_cookie(r, NULL, "");
	api_reply_json(r, 200, json_pack("{s:s}", "status", "logged_out"));
}

/* ---- password and second factor ----------------------------------------- */

struct pw_change {
	struct api_defer	*pc_defer;
	int64_t			 pc_user;
	char			 pc_keep[65];	/* this session stays */
	char			 pc_name[USER_NAME_MAX + 1];
	char			 pc_addr[SESSION_ADDR_MAX];
};

/*
 * Store a new password hash for user (inside a transaction the caller
 * commits), with its audit record.
 */
static int
session_store_hash(struct api_req *r, int64_t user, const char *name,
    const char *hash, const char *action)
{
	sqlite3_stmt	*st;
	char		 obj[96];

	st = store_prepare(ctl->db, "UPDATE users SET password_hash = ?, "
	    "password_at = ? WHERE id = ?");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	sqlite3_bind_int64(st, 3, user);
	if (store_step(st) != SQLITE_DONE) {
		sqlite3_finalize(st);
		return (-1);
	}
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "DELETE FROM user_setup_tokens WHERE "
	    "user_id = ?");
	sqlite3_bind_int64(st, 1, user);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "user/%s", name);
	return (audit_record(r, action, obj, NULL));
}

static void
session_password_hashed(struct pw_job *j)
{
	struct pw_change	*c = j->pj_arg;
	struct api_req		*ar = api_defer_req(c->pc_defer);
	char			 key[128];
	int			 first;

	if (!j->pj_ok) {
		snprintf(key, sizeof(key), "u:%s", c->pc_name);
		session_throttle_fail(key, util_now(), THROTTLE_ACCOUNT_FREE,
		    &first);
		session_audit_failure(ar, c->pc_name, c->pc_addr,
		    "current password", 0);
		api_defer_reply_error(c->pc_defer, 403, "bad_credentials",
		    "the current password is wrong");
	} else if (j->pj_new == NULL) {
		api_defer_reply_error(c->pc_defer, 500, "internal", "hashing "
		    "the password failed");
	} else if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(c->pc_defer, 503, "busy", "the database "
		    "is busy");
	} else if (session_store_hash(ar, c->pc_user, c->pc_name, j->pj_new,
	    "user.password") == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(c->pc_defer, 500, "internal", "storing "
		    "the password failed");
	} else {
		/* Everywhere else this account is logged out. */
		session_drop_user(c->pc_user, c->pc_keep);
		api_defer_reply_json(c->pc_defer, 200, json_pack("{s:s}",
		    "status", "changed"));
	}
	free(c);
}

/* POST /v1/session/password {"current", "password"} */
void
session_password(struct api_req *r)
{
	static const char *const known[] = { "current", "password", NULL };
	struct session_user	 u;
	struct session		*s;
	struct pw_change	*c;
	struct pw_job		*j;
	json_t			*body;
	const char		*cur, *pw, *why;

	if ((s = session_need(r, &u)) == NULL)
		return;
	if ((body = api_body_json(r)) == NULL) {
		session_user_free(&u);
		return;
	}
	cur = json_string_value(json_object_get(body, "current"));
	pw = json_string_value(json_object_get(body, "password"));
	if (params_known_fields(r, body, known) == -1)
		goto out;
	if (cur == NULL || pw == NULL || strlen(cur) > PASSWORD_MAX) {
		api_reply_error(r, 400, "bad_field", "current and password are "
		    "required");
		goto out;
	}
	if ((why = users_pw_weak(pw)) != NULL) {
		api_reply_error(r, 400, "weak_password", "%s", why);
		goto out;
	}
	c = xcalloc(1, sizeof(*c));
	c->pc_user = s->s_user;
	strlcpy(c->pc_keep, s->s_hash, sizeof(c->pc_keep));
	strlcpy(c->pc_name, u.su_name, sizeof(c->pc_name));
	api_peer(r, c->pc_addr, sizeof(c->pc_addr));
	j = xcalloc(1, sizeof(*j));
	j->pj_password = xstrdup(cur);
	j->pj_hash = xstrdup(u.su_hash != NULL ? u.su_hash :
	    session_dummy_hash);
	j->pj_make = xstrdup(pw);
	j->pj_done = session_password_hashed;
	j->pj_arg = c;
	session_user_free(&u);
	c->pc_defer = api_defer(r);
	users_pw_run(j);
out:
	session_user_free(&u);
	json_decref(body);
}

/* POST /v1/session/totp: a new secret to enrol (confirmed by a code). */
void
session_totp_start(struct api_req *r)
{
	struct session_user	 u;
	struct session		*s;
	sqlite3_stmt		*st;
	char			*secret, *uri, *label, *q, obj[96];
	const char		*p;

	if ((s = session_need(r, &u)) == NULL)
		return;
	if (u.su_totp != NULL) {
		session_user_free(&u);
		api_reply_error(r, 409, "totp_enabled", "this account has a "
		    "second factor already (an administrator can remove it)");
		return;
	}
	secret = totp_new_secret();
	snprintf(obj, sizeof(obj), "user/%s", u.su_name);
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "UPDATE users SET totp_pending = ? WHERE "
	    "id = ?");
	sqlite3_bind_text(st, 1, secret, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, s->s_user);
	store_step(st);
	sqlite3_finalize(st);
	if (audit_record(r, "user.totp_start", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the secret failed");
		goto out;
	}
	/* The URI's label escapes the '@' an account's name may hold. */
	label = xcalloc(3, strlen(u.su_name) + 1);
	for (p = u.su_name, q = label; *p != '\0'; p++)
		if (*p == '@') {
			memcpy(q, "%40", 3);
			q += 3;
		} else
			*q++ = *p;
	xasprintf(&uri, "otpauth://totp/opsn:%s?secret=%s&issuer=opsn&"
	    "algorithm=SHA1&digits=6&period=30", label, secret);
	free(label);
	api_reply_json(r, 200, json_pack("{s:s,s:s}", "secret", secret,
	    "uri", uri));
	free(uri);
out:
	OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
	session_user_free(&u);
}

/* POST /v1/session/totp/confirm {"code"}: the second factor is on. */
void
session_totp_confirm(struct api_req *r)
{
	struct session_user	 u;
	struct session		*s, *o;
	sqlite3_stmt		*st;
	json_t			*body;
	const char		*code;
	char			 obj[96];
	int64_t			 step;

	if ((s = session_need(r, &u)) == NULL)
		return;
	if ((body = api_body_json(r)) == NULL) {
		session_user_free(&u);
		return;
	}
	code = json_string_value(json_object_get(body, "code"));
	if (u.su_pending == NULL) {
		api_reply_error(r, 409, "no_enrolment", "start with POST "
		    "/v1/session/totp");
		goto out;
	}
	if (code == NULL || !totp_check(u.su_pending, code, util_now(), 0,
	    &step)) {
		api_reply_error(r, 400, "bad_totp", "the one-time code is wrong: "
		    "check the phone's clock and the key typed");
		goto out;
	}
	snprintf(obj, sizeof(obj), "user/%s", u.su_name);
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "UPDATE users SET totp_secret = "
	    "totp_pending, totp_pending = NULL, totp_last_step = ? WHERE id = ?");
	sqlite3_bind_int64(st, 1, step);
	sqlite3_bind_int64(st, 2, s->s_user);
	store_step(st);
	sqlite3_finalize(st);
	if (audit_record(r, "user.totp_enable", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the second factor "
		    "failed");
		goto out;
	}
	TAILQ_FOREACH(o, &sessions, s_entry)
		if (o->s_user == s->s_user)
			o->s_restricted = 0;
	session_user_free(&u);
	session_user_load(s->s_user, NULL, &u);
	api_reply_json(r, 200, session_json(s, &u));
out:
	session_user_free(&u);
	json_decref(body);
}

/* ---- one-time links ----------------------------------------------------- */

struct setup {
	struct api_defer	*st_defer;
	char			 st_hash[65];
	char			 st_addr[SESSION_ADDR_MAX];
};

static void
session_setup_hashed(struct pw_job *j)
{
	struct setup		*su = j->pj_arg;
	struct api_req		*ar = api_defer_req(su->st_defer);
	struct session_user	 u;
	struct api_principal	 p;
	sqlite3_stmt		*st;
	int64_t			 user = 0;

	memset(&u, 0, sizeof(u));
	if (j->pj_new == NULL) {
		api_defer_reply_error(su->st_defer, 500, "internal", "hashing "
		    "the password failed");
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(su->st_defer, 503, "busy", "the database "
		    "is busy");
		goto out;
	}
	/* Used once: the link is gone with this transaction. */
	st = store_prepare(ctl->db, "DELETE FROM user_setup_tokens WHERE "
	    "hash = ? AND expires_at > ? RETURNING user_id");
	sqlite3_bind_text(st, 1, su->st_hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (store_step(st) == SQLITE_ROW)
		user = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (user == 0 || session_user_load(user, NULL, &u) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(su->st_defer, 400, "bad_link", "this link "
		    "is unknown, used or expired: ask for a new one");
		goto out;
	}
	session_principal(&u, &p);
	api_set_principal(ar, &p);
	if (session_store_hash(ar, user, u.su_name, j->pj_new,
	    "user.password_set") == -1 || store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(su->st_defer, 500, "internal", "storing "
		    "the password failed");
		goto out;
	}
	session_drop_user(user, NULL);
	log_info("console: %s set a password through a one-time link",
	    u.su_name);
	api_defer_reply_json(su->st_defer, 200, json_pack("{s:s}", "user",
	    u.su_name));
out:
	session_user_free(&u);
	free(su);
}

/* POST /v1/password-setup {"token", "password"}: a one-time link used. */
void
session_setup(struct api_req *r)
{
	static const char *const known[] = { "token", "password", NULL };
	struct setup	*su;
	struct pw_job	*j;
	sqlite3_stmt	*st;
	json_t		*body;
	const char	*tok, *pw, *why;
	char		 key[96], addr[SESSION_ADDR_MAX], hash[65];
	int64_t		 wait, now = util_now();
	int		 found, first;

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	api_peer(r, addr, sizeof(addr));
	snprintf(key, sizeof(key), "a:%s", addr);
	if ((wait = session_throttle_wait(key, now, &first)) > 0) {
		api_reply_error(r, 429, "throttled", "too many failed attempts: "
		    "try again in %lld s", (long long)wait);
		goto out;
	}
	tok = json_string_value(json_object_get(body, "token"));
	pw = json_string_value(json_object_get(body, "password"));
	if (tok == NULL || pw == NULL || strlen(tok) > 128) {
		api_reply_error(r, 400, "bad_field", "token and password are "
		    "required");
		goto out;
	}
	secret_hash(tok, hash);
	st = store_prepare(ctl->db, "SELECT 1 FROM user_setup_tokens WHERE "
	    "hash = ? AND expires_at > ?");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	found = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (!found) {
		session_throttle_fail(key, now, THROTTLE_ADDRESS_FREE, &first);
		api_reply_error(r, 400, "bad_link", "this link is unknown, used "
		    "or expired: ask for a new one");
		goto out;
	}
	if ((why = users_pw_weak(pw)) != NULL) {
		api_reply_error(r, 400, "weak_password", "%s", why);
		goto out;
	}
	su = xcalloc(1, sizeof(*su));
	strlcpy(su->st_hash, hash, sizeof(su->st_hash));
	strlcpy(su->st_addr, addr, sizeof(su->st_addr));
	j = xcalloc(1, sizeof(*j));
	j->pj_make = xstrdup(pw);
	j->pj_done = session_setup_hashed;
	j->pj_arg = su;
	su->st_defer = api_defer(r);
	users_pw_run(j);
out:
	json_decref(body);
}

/* ---- start and stop ----------------------------------------------------- */

static void
session_dummy_done(struct pw_job *j)
{
	if (j->pj_new != NULL) {
		free(session_dummy_hash);
		session_dummy_hash = xstrdup(j->pj_new);
	}
}

/* Timeouts from the configuration; a dummy hash for unknown accounts. */
int
session_init(struct ctl *c, char **cause)
{
	struct pw_job	*j;
	char		*pw;

	session_idle = c->conf.console_idle_ms / 1000;
	session_life = c->conf.console_lifetime_ms / 1000;
#ifdef OPSN_TEST_BUILD
	{
		/* Sessions that end in seconds, for the tests: "IDLE,LIFE". */
		const char	*e = getenv("OPSN_TEST_CONSOLE_TIMEOUTS");
		long long	 idle, life;

		if (e != NULL && sscanf(e, "%lld,%lld", &idle, &life) == 2) {
			session_idle = idle;
			session_life = life;
		}
	}
#endif
	if (session_life < session_idle) {
		xasprintf(cause, "[console] session_lifetime is shorter than "
		    "idle_timeout");
		return (-1);
	}
	/*
	 * Until the pool has made a real one, a malformed hash: crypt_r
	 * refuses it at once, which only the first seconds could tell.
	 */
	session_dummy_hash = xstrdup("$y$j9T$opsnopsnopsnopsnopsnop$"
	    "opsnopsnopsnopsnopsnopsnopsnopsnopsnopsnops");
	j = xcalloc(1, sizeof(*j));
	pw = secret_new();
	j->pj_make = pw;
	j->pj_done = session_dummy_done;
	users_pw_run(j);
	return (0);
}

void
session_stop(void)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL)
		session_free(s);
	session_throttle_reset();
	free(session_dummy_hash);
	session_dummy_hash = NULL;
}
