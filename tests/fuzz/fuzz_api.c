/*
 * libFuzzer target for the API's request parsing: every route of every
 * module, through the real router (authentication, authorization from the
 * route table, path and query decoding) and handlers, against a real
 * database, without h2o's I/O (api_fuzz_call, OPSN_FUZZ builds only).
 * Whatever the path, query and JSON body: no crash, no leak, no undefined
 * behaviour, and never a 5xx.
 *
 * Input: the route, as a line "METHOD /pattern" or as one byte (its
 * index); one byte for the caller (bit 0: a token bound to a member, bit
 * 1: no token) and whether a query string follows (bit 2); then the path
 * parameters separated by '/' up to a newline, the query up to the next
 * newline, and the body.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "access/access.h"
#include "agents/agents.h"
#include "billing/billing.h"
#include "compute/compute.h"
#include "members/members.h"
#include "metering/metering.h"
#include "services/services.h"
#include "console/console.h"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const struct ctl_module *const fuzz_modules[] = {
	&audit_module, &members_module, &access_module, &agents_module,
	&compute_module, &services_module, &metering_module, &billing_module,
	&console_module, NULL
};

static struct ctl	 fuzz_ctl;
static char		*fuzz_admin, *fuzz_member;
static const struct api_route *fuzz_routes;
static size_t		 fuzz_nroutes;

/* Run the loop until the thread pool's work for this call is answered. */
static void
fuzz_settle(void)
{
	while (fuzz_ctl.loop->active_reqs.count > 0)
		uv_run(fuzz_ctl.loop, UV_RUN_ONCE);
}

static int
fuzz_call(const char *method, const char *path, const char *token,
    const char *body, size_t len)
{
	char	*auth = NULL;
	int	 st;

	if (token != NULL)
		xasprintf(&auth, "Bearer %s", token);
	st = api_fuzz_call(method, path, auth, body, body != NULL ? len : 0);
	fuzz_settle();
	free(auth);
	return (st);
}

/* Every route once, to learn the table (the OpenAPI document lists it). */
static void
fuzz_learn_routes(void)
{
	json_t		*doc = api_openapi(), *item, *op;
	const char	*path, *method;
	struct api_route *r;
	size_t		 n = 0;

	json_object_foreach(json_object_get(doc, "paths"), path, item)
		n += json_object_size(item);
	r = xcalloc(n, sizeof(*r));
	n = 0;
	json_object_foreach(json_object_get(doc, "paths"), path, item) {
		json_object_foreach(item, method, op) {
			char *m = xstrdup(method), *p;

			for (p = m; *p != '\0'; p++)
				*p = (char)toupper((unsigned char)*p);
			r[n].ar_method = m;
			r[n].ar_pattern = xstrdup(path);
			n++;
		}
	}
	json_decref(doc);
	fuzz_routes = r;
	fuzz_nroutes = n;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		*tmpl, *path, *cause = NULL, *tok;
	const struct ctl_module *const *mp;
	size_t		 len;
	const char	*mk = "{\"kind\":\"commune\",\"name\":\"Fuzz\","
			    "\"insee\":\"31555\"}";
	int		 st;

	(void)argc;
	(void)argv;
	log_init("fuzz_api", LOG_LEVEL_ERR, NULL);
	tmpl = fuzz_file("controller");
	if (util_mkdirs(tmpl, 0700, &cause) == -1)
		fatalx("%s", cause);
	ctl = &fuzz_ctl;
	fuzz_ctl.conf.data_dir = xstrdup(tmpl);
	fuzz_ctl.conf.api_listen = xstrdup("127.0.0.1:0");
	fuzz_ctl.conf.agent_listen = xstrdup("127.0.0.1:0");
	fuzz_ctl.conf.server_names = xstrdup("");
	fuzz_ctl.conf.api_url = xstrdup("https://127.0.0.1:1");
	fuzz_ctl.conf.tz = xstrdup("Europe/Paris");
	fuzz_ctl.conf.sched_policy = xstrdup("spread");
	fuzz_ctl.conf.unreachable_ms = 30000;
	fuzz_ctl.conf.heartbeat_ms = 10000;
	fuzz_ctl.conf.node_token_ttl_ms = 3600000;
	fuzz_ctl.conf.max_agents = 100;
	/* The console's files, from the top of the tree (run.sh runs there). */
	fuzz_ctl.conf.console_dir = xstrdup(access("console/index.html",
	    R_OK) == 0 ? "console" : "");
	fuzz_ctl.conf.console_idle_ms = 1800000;
	fuzz_ctl.conf.mail_retention_ms = 30LL * 86400000;
	fuzz_ctl.conf.console_lifetime_ms = 43200000;
	xasprintf(&path, "%s/opsn.db", tmpl);
	if (store_open(path, &fuzz_ctl.db, &cause) == -1)
		fatalx("%s", cause);
	free(path);
	/* Speed, not durability: the database goes with the run. */
	sqlite3_exec(fuzz_ctl.db, "PRAGMA synchronous = OFF", NULL, NULL,
	    NULL);
	if (ca_init(&fuzz_ctl, &cause) == -1)
		fatalx("%s", cause);
	fuzz_ctl.loop = uv_default_loop();
	fuzz_ctl.modules = fuzz_modules;
	for (mp = fuzz_modules; *mp != NULL; mp++)
		if ((*mp)->m_init != NULL && (*mp)->m_init(&fuzz_ctl,
		    &cause) == -1)
			fatalx("%s: %s", (*mp)->m_name, cause);
	router_fuzz_start(&fuzz_ctl);
	fuzz_learn_routes();

	xasprintf(&path, "%s/admin.token", tmpl);
	free(tmpl);
	if (util_read_file(path, 4096, &fuzz_admin, &len, &cause) == -1)
		fatalx("%s", cause);
	free(path);
	/* A member and a token bound to it. */
	st = fuzz_call("POST", "/v1/tenants", fuzz_admin, mk, strlen(mk));
	if (st != 201)
		fatalx("fuzz_api: creating a member: %d", st);
	/* The token is in the reply, which api_fuzz_call does not keep. */
	tok = secret_new();
	xasprintf(&fuzz_member, "opsn_%s", tok);
	free(tok);
	{
		sqlite3_stmt	*s;
		char		 hash[65];

		secret_hash(fuzz_member, hash);
		s = store_prepare(fuzz_ctl.db, "INSERT INTO api_tokens (name, "
		    "role, hash, created_at, tenant_id) SELECT 'member', "
		    "'operator', ?, 0, id FROM tenants WHERE insee = '31555'");
		sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			fatalx("fuzz_api: member token: %s",
			    sqlite3_errmsg(fuzz_ctl.db));
		sqlite3_finalize(s);
	}
	return (0);
}

/*
 * An input may start with "METHOD /pattern" and a newline (the seeds do,
 * so they keep their route when the table grows): that route, and the
 * input after the line. NULL otherwise.
 */
static const struct api_route *
fuzz_named_route(const uint8_t **data, size_t *size)
{
	const uint8_t	*nl;
	size_t		 i, len;

	if (*size < 4 || (nl = memchr(*data, '\n', *size < 128 ? *size :
	    128)) == NULL)
		return (NULL);
	len = (size_t)(nl - *data);
	for (i = 0; i < fuzz_nroutes; i++) {
		const struct api_route *r = &fuzz_routes[i];
		size_t	 ml = strlen(r->ar_method), pl = strlen(r->ar_pattern);

		if (len == ml + 1 + pl &&
		    memcmp(*data, r->ar_method, ml) == 0 &&
		    (*data)[ml] == ' ' &&
		    memcmp(*data + ml + 1, r->ar_pattern, pl) == 0) {
			*size -= len + 1;
			*data = nl + 1;
			return (r);
		}
	}
	return (NULL);
}

/* Append s (len bytes) to b as a path or query would carry it. */
static void
fuzz_escape(char **b, size_t *blen, const uint8_t *s, size_t len, int query)
{
	size_t	 i;

	*b = xrealloc(*b, *blen + 3 * len + 1);
	for (i = 0; i < len; i++) {
		if (isalnum(s[i]) || strchr("-._~%+", s[i]) != NULL ||
		    (query && strchr("=&,:", s[i]) != NULL))
			(*b)[(*blen)++] = (char)s[i];
		else
			*blen += (size_t)snprintf(*b + *blen, 4, "%%%02X", s[i]);
	}
	(*b)[*blen] = '\0';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct api_route	*r;
	const uint8_t		*p, *end, *nl, *seg;
	const char		*pat, *token;
	char			*path = NULL;
	size_t			 plen = 0, slen;
	int			 flags, st;

	if (size < 2 || fuzz_nroutes == 0)
		return (0);
	if ((r = fuzz_named_route(&data, &size)) == NULL) {
		r = &fuzz_routes[data[0] % fuzz_nroutes];
		data++;
		size--;
	}
	if (size < 1)
		return (0);
	flags = data[0];
	p = data + 1;
	end = data + size;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL)
		nl = end;
	/* The pattern with each {param} replaced by the next value. */
	for (pat = r->ar_pattern; *pat != '\0'; ) {
		if (*pat != '{') {
			path = xrealloc(path, plen + 2);
			path[plen++] = *pat++;
			path[plen] = '\0';
			continue;
		}
		pat = strchr(pat, '}') + 1;
		seg = p;
		while (p < nl && *p != '/')
			p++;
		slen = (size_t)(p - seg);
		if (p < nl)
			p++;
		if (slen == 0)
			fuzz_escape(&path, &plen, (const uint8_t *)"x", 1, 0);
		else
			fuzz_escape(&path, &plen, seg, slen, 0);
	}
	p = nl < end ? nl + 1 : end;
	if (flags & 4) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		path = xrealloc(path, plen + 2);
		path[plen++] = '?';
		path[plen] = '\0';
		fuzz_escape(&path, &plen, p, (size_t)(nl - p), 1);
		p = nl < end ? nl + 1 : end;
	}
	token = (flags & 2) ? NULL : (flags & 1) ? fuzz_member : fuzz_admin;
	st = fuzz_call(r->ar_method, path, token, (const char *)p,
	    (size_t)(end - p));
	/* Revoked or expired tokens would end the run's reach. */
	sqlite3_exec(fuzz_ctl.db, "UPDATE api_tokens SET revoked_at = NULL, "
	    "expires_at = NULL WHERE name IN ('admin', 'member')", NULL, NULL,
	    NULL);
	/* A bad request is the client's fault: 4xx, never 5xx. */
	if (st >= 500 && st != 503) {
		fprintf(stderr, "fuzz_api: %s %s answered %d\n", r->ar_method,
		    path, st);
		abort();
	}
	free(path);
	return (0);
}
