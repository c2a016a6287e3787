/*
 * The router: serves every module's routes, authenticates bearer tokens
 * and node certificates, and authorizes each call from the route table
 * alone. A call passes when the caller's role holds the route's
 * permission and the route's scope admits the caller: platform routes
 * only tokens bound to no member; member routes a bound token only for
 * its own member, found where the route says the request names it.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "access.h"

static struct api_route	*router_all;	/* every module's routes */
static size_t		 router_nall;

/*
 * What each role may do: a permission matches an entry exactly, or a
 * "prefix.*" entry, or "*.read" for any read.
 */
static const struct {
	const char	*role;
	const char	*perms[12];
} router_roles[] = {
	{ "admin",	{ "*" } },
	{ "operator",	{ "nodes.*", "tenants.*", "vms.*", "images.*",
			  "tariffs.*",
			  "services.*", "usage.*", "statements.*", "audit.read",
			  "*.read", "account.*" } },
	{ "auditor",	{ "*.read", "account.*" } },
	{ "finance",	{ "tenants.read", "usage.read", "statements.read",
			  "statements.titres", "tariffs.read", "account.*" } },
	{ "node",	{ "images.download" } },
};

static int
router_perm_match(const char *pat, const char *perm)
{
	size_t	 len = strlen(pat);
	const char *dot;

	if (strcmp(pat, "*") == 0 || strcmp(pat, perm) == 0)
		return (1);
	if (len > 2 && strcmp(pat + len - 2, ".*") == 0)
		return (strncmp(pat, perm, len - 1) == 0);
	if (strncmp(pat, "*.", 2) == 0 && (dot = strrchr(perm, '.')) != NULL)
		return (strcmp(dot + 1, pat + 2) == 0);
	return (0);
}

/* Does role hold perm? 0 yes, -1 no. */
static int
router_role_may(const char *role, const char *perm)
{
	size_t	 i, j;

	for (i = 0; i < nitems(router_roles); i++) {
		if (strcmp(router_roles[i].role, role) != 0)
			continue;
		for (j = 0; j < nitems(router_roles[i].perms) &&
		    router_roles[i].perms[j] != NULL; j++)
			if (router_perm_match(router_roles[i].perms[j], perm))
				return (0);
	}
	return (-1);
}

static int
router_authenticate(const char *token, struct api_principal *p, void *arg)
{
	sqlite3_stmt	*st;
	char		 hash[65];
	int		 rv = -1;

	if (strlen(token) > 256)
		return (-1);
	secret_hash(token, hash);
	st = store_stmt(ctl->db, "SELECT name, role, coalesce(tenant_id, 0) "
	    "FROM api_tokens WHERE hash = ? AND revoked_at IS NULL AND "
	    "(expires_at IS NULL OR expires_at > ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (store_step(st) == SQLITE_ROW) {
		strlcpy(p->ap_name, (const char *)sqlite3_column_text(st, 0),
		    sizeof(p->ap_name));
		strlcpy(p->ap_role, (const char *)sqlite3_column_text(st, 1),
		    sizeof(p->ap_role));
		p->ap_tenant = sqlite3_column_int64(st, 2);
		rv = 0;
	}
	store_done(st);
	return (rv);
}

/* An agent's client certificate authenticates it as role "node". */
static int
router_authenticate_cert(X509 *cert, struct api_principal *p, void *arg)
{
	char	 name[64];

	if (nodes_cert_ok(cert, name, sizeof(name)) == -1)
		return (-1);
	snprintf(p->ap_name, sizeof(p->ap_name), "node:%s", name);
	strlcpy(p->ap_role, "node", sizeof(p->ap_role));
	p->ap_tenant = 0;
	return (0);
}

/*
 * Another credential than a bearer token or a node certificate: the
 * first module that recognizes one (a console session) decides.
 */
static int
router_authenticate_request(struct api_req *r, const struct api_route *rt,
    struct api_principal *p, void *arg)
{
	const struct ctl_module *const	*mp;
	int				 rv;

	for (mp = ctl->modules; *mp != NULL; mp++) {
		if ((*mp)->m_authenticate == NULL)
			continue;
		if ((rv = (*mp)->m_authenticate(r, rt, p)) != 1)
			return (rv);
	}
	return (1);
}

/*
 * Would the router let p call rt? The same table and scopes as a call
 * (a member route is allowed to a bound caller: for its own member).
 */
int
router_allows(const struct api_principal *p, const struct api_route *rt)
{
	if (rt->ar_perm == NULL || router_role_may(p->ap_role,
	    rt->ar_perm) == -1)
		return (0);
	return (p->ap_tenant == 0 || rt->ar_scope == API_MEMBER);
}

/* Every route the router serves (valid once it has started). */
const struct api_route *
router_routes(size_t *n)
{
	*n = router_nall;
	return (router_all);
}

/* A role's rank: a token may create tokens of its rank or lower only. */
int
router_role_rank(const char *role)
{
	static const struct {
		const char	*role;
		int		 rank;
	} ranks[] = {
		{ "admin", 3 }, { "operator", 2 }, { "finance", 1 },
		{ "auditor", 1 },
	};
	size_t	 i;

	for (i = 0; i < nitems(ranks); i++)
		if (strcmp(ranks[i].role, role) == 0)
			return (ranks[i].rank);
	return (-1);
}

/* A value named by the request: path parameter, query, or body field. */
static const char *
router_value(struct api_req *r, json_t *body, const char *where,
    const char *name)
{
	json_t	*v;

	if (strcmp(where, "path") == 0)
		return (api_param(r, name));
	if (strcmp(where, "query") == 0)
		return (api_query(r, name));
	if (body != NULL && (v = json_object_get(body, name)) != NULL &&
	    json_is_string(v))
		return (json_string_value(v));
	return (NULL);
}

/*
 * The owner query of a member route: does any resource it names belong
 * to tenant? Each :name parameter is bound from the path, the query
 * string or the body, in that order.
 */
static int
router_owner_is(struct api_req *r, json_t *body, const char *sql,
    int64_t tenant)
{
	sqlite3_stmt	*st = store_prepare(ctl->db, sql);
	const char	*name, *v;
	int		 i, n = sqlite3_bind_parameter_count(st), found = 0;

	for (i = 1; i <= n; i++) {
		if ((name = sqlite3_bind_parameter_name(st, i)) == NULL)
			fatalx("router: unnamed parameter in '%s'", sql);
		name++;		/* ":vm" */
		if ((v = api_param(r, name)) == NULL &&
		    (v = api_query(r, name)) == NULL)
			v = router_value(r, body, "body", name);
		if (v != NULL)
			sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	}
	while (!found && store_step(st) == SQLITE_ROW)
		found = sqlite3_column_type(st, 0) == SQLITE_INTEGER &&
		    sqlite3_column_int64(st, 0) == tenant;
	sqlite3_finalize(st);
	return (found);
}

/*
 * A member route called with a bound token: the member the request names
 * must be the token's own, and where it names none it is the token's.
 * 0, or -1 after replying 404: a member never learns whether another
 * member's object exists.
 */
static int
router_member(struct api_req *r, const struct api_route *rt, int64_t tenant)
{
	const char	*loc = rt->ar_member, *name, *ref;
	char		 where[8], idref[32];
	json_t		*body = NULL;
	const void	*raw;
	size_t		 len;
	char		*dump;
	int		 rv = 0;

	if (loc == NULL)
		return (0);
	raw = api_body(r, &len);
	if (len > 0)
		body = json_loadb(raw, len, JSON_REJECT_DUPLICATES, NULL);
	if (strncmp(loc, "sql:", 4) == 0) {
		if (!router_owner_is(r, body, loc + 4, tenant))
			goto notfound;
		goto out;
	}
	if ((name = strchr(loc, ':')) == NULL || (size_t)(name - loc) >=
	    sizeof(where))
		fatalx("router: bad member locator '%s'", loc);
	memcpy(where, loc, name - loc);
	where[name - loc] = '\0';
	name++;
	snprintf(idref, sizeof(idref), "id:%lld", (long long)tenant);
	if ((ref = router_value(r, body, where, name)) != NULL) {
		if (tenants_resolve(ref) != tenant)
			goto notfound;
		goto out;
	}
	/* The member is implied: make it explicit for the handler. */
	if (strcmp(where, "query") == 0)
		api_set_query(r, name, idref);
	else if (strcmp(where, "body") == 0 && (body != NULL || len == 0)) {
		if (body == NULL)
			body = json_object();
		if (json_is_object(body)) {
			json_object_set_new(body, name, json_string(idref));
			if ((dump = json_dumps(body, JSON_COMPACT)) == NULL)
				fatalx("router: json_dumps");
			api_set_body(r, dump, strlen(dump));
			free(dump);
		}
	}
	/* A body the handler cannot read gets its 400 there. */
	goto out;
notfound:
	api_reply_error(r, 404, "not_found", "not found: %s",
	    rt->ar_pattern);
	rv = -1;
out:
	json_decref(body);
	return (rv);
}

/* Does p's role hold rt's permission (before a body in parts is kept)? */
static int
router_permits(const struct api_principal *p, const struct api_route *rt,
    void *arg)
{
	return (router_role_may(p->ap_role, rt->ar_perm));
}

/* May p call rt? The role's permissions, then the route's scope. */
static int
router_decide(struct api_req *r, const struct api_principal *p,
    const struct api_route *rt)
{
	if (router_role_may(p->ap_role, rt->ar_perm) == -1) {
		api_reply_error(r, 403, "forbidden", "token '%s' (role %s) "
		    "lacks permission '%s'", p->ap_name, p->ap_role,
		    rt->ar_perm);
		return (-1);
	}
	if (p->ap_tenant == 0)
		return (0);
	switch (rt->ar_scope) {
	case API_MEMBER:
		return (router_member(r, rt, p->ap_tenant));
	case API_PUBLIC:
		return (0);
	default:
		api_reply_error(r, 403, "forbidden", "token '%s' is bound to "
		    "a member; %s %s is for the platform's own tokens",
		    p->ap_name, rt->ar_method, rt->ar_pattern);
		return (-1);
	}
}

static int
router_authorize(struct api_req *r, const struct api_principal *p,
    const struct api_route *rt, void *arg)
{
	char	*why;

	if (router_decide(r, p, rt) == -1)
		return (-1);
#ifdef OPSN_TEST_BUILD
	/*
	 * The authorization matrix test (tests/e2e/test_authz_matrix.py)
	 * asks for the decision alone on calls that would change things.
	 */
	if (api_header(r, "x-opsn-test-authorize-only") != NULL) {
		api_reply_json(r, 200, json_pack("{s:b}", "authorized", 1));
		return (-1);
	}
#endif
	/* A full disk refuses every write before it starts; reads go on. */
	if (strcmp(rt->ar_method, "GET") != 0 &&
	    strcmp(rt->ar_method, "HEAD") != 0 && store_space_ok(&why) == -1) {
		api_reply_error(r, 507, "insufficient_storage", "%s", why);
		free(why);
		return (-1);
	}
	return (0);
}

static uint64_t
router_write_failures(void *arg)
{
	return (store_write_failures());
}

static const struct api_hooks router_hooks = {
	router_authenticate, router_authorize, NULL,
	router_authenticate_cert, router_authenticate_request,
	router_write_failures, router_permits
};

/* Gather every module's routes into router_all; their number. */
static size_t
router_collect(struct ctl *c)
{
	const struct ctl_module *const	*mp;
	size_t				 n = 0;

	for (mp = c->modules; *mp != NULL; mp++)
		n += (*mp)->m_nroutes;
	router_all = xcalloc(n, sizeof(*router_all));
	n = 0;
	for (mp = c->modules; *mp != NULL; mp++) {
		if ((*mp)->m_nroutes == 0)
			continue;
		memcpy(router_all + n, (*mp)->m_routes, (*mp)->m_nroutes *
		    sizeof(*router_all));
		n += (*mp)->m_nroutes;
	}
	router_nall = n;
	return (n);
}

#ifdef OPSN_FUZZ
/* Fuzzing builds: every module's routes, served to api_fuzz_call(). */
void
router_fuzz_start(struct ctl *c)
{
	size_t	 n = router_collect(c);

	api_fuzz_init(c->loop, router_all, n, &router_hooks);
}
#endif

/* Serve every module's routes on the configured address. */
int
router_start(struct ctl *c, char **cause)
{
	struct api_limits	 lim;
	char			*staging, *host = NULL;
	int			 port, rv;
	size_t			 n;

	if (util_parse_hostport(c->conf.api_listen, &host, &port, cause) == -1)
		return (-1);
	n = router_collect(c);
	memset(&lim, 0, sizeof(lim));
	lim.al_max_body = (size_t)c->conf.api_max_body;
	lim.al_max_conns = (size_t)c->conf.api_max_conns;
	lim.al_handshake_ms = (uint64_t)c->conf.api_handshake_ms;
	lim.al_request_ms = (uint64_t)c->conf.api_request_ms;
	lim.al_rate = c->conf.api_rate > 0 ? (double)c->conf.api_rate : -1;
	lim.al_burst = (double)c->conf.api_burst;
	lim.al_max_buffered = (size_t)c->conf.api_max_buffered;
	xasprintf(&staging, "%s/parts", c->conf.data_dir);
	lim.al_staging = staging;
	api_configure(&lim);
	rv = api_start(c->loop, host, port, c->api_ctx, router_all, n,
	    &router_hooks, cause);
	free(staging);
	free(host);
	if (rv == 0)
		log_info("api: listening on https://%s", c->conf.api_listen);
	return (rv);
}
