/* The /v1 routes: a table of handlers, bearer tokens, role permissions. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "api.h"
#include "ctl.h"

#define LIST_LIMIT_DEFAULT	100
#define LIST_LIMIT_MAX		1000
/* h2o keeps a request body in memory (or a temporary file past 32 MiB). */
#define APIV1_MAX_UPLOAD	((size_t)4 << 30)
#define APIV1_MAX_IMPORT	((size_t)64 << 20)

static struct ctl	*ac;
static struct api_route	*apiv1_all;	/* core + subsystem routes */

static void	apiv1_health(struct api_req *);
static void	apiv1_nodes_list(struct api_req *);
static void	apiv1_node_get(struct api_req *);
static void	apiv1_node_tokens(struct api_req *);
static void	apiv1_node_revoke(struct api_req *);

static const struct api_route apiv1_routes[] = {
	{ "GET", "/v1/health", NULL, apiv1_health,
	  "Liveness, version and nodes by state" },
	{ "GET", "/v1/nodes", "nodes.read", apiv1_nodes_list,
	  "List nodes (limit, cursor)" },
	{ "GET", "/v1/nodes/{name}", "nodes.read", apiv1_node_get,
	  "Show one node" },
	{ "POST", "/v1/node-tokens", "nodes.enrol", apiv1_node_tokens,
	  "Create a one-time join token for an agent" },
	{ "POST", "/v1/nodes/{name}/revoke", "nodes.revoke", apiv1_node_revoke,
	  "Revoke a node's certificate and drop its connection" },
	{ "POST", "/v1/images", "images.write", images_create,
	  "Declare an image: the SHA-256 and size of its disk, kernel, initrd" },
	{ "GET", "/v1/images", "images.read", images_list, "List images" },
	{ "GET", "/v1/images/{name}", "images.read", images_get,
	  "Show one image" },
	{ "PUT", "/v1/images/{name}/{part}", "images.write", images_upload,
	  "Upload one part (disk, kernel, initrd), checked against its SHA-256",
	  APIV1_MAX_UPLOAD },
	{ "GET", "/v1/images/{name}/{part}", "images.download", images_download,
	  "Download one part (agents, with their node certificate; Range)" },
	{ "POST", "/v1/vms", "vms.write", vms_create,
	  "Create a VM on a node" },
	{ "GET", "/v1/vms", "vms.read", vms_list, "List VMs (node, limit, cursor)" },
	{ "GET", "/v1/vms/{vm}", "vms.read", vms_get,
	  "Show a VM, desired and observed" },
	{ "POST", "/v1/vms/{vm}/start", "vms.write", vms_start, "Start a VM" },
	{ "POST", "/v1/vms/{vm}/stop", "vms.write", vms_stop, "Stop a VM" },
	{ "POST", "/v1/vms/{vm}/reboot", "vms.write", vms_reboot,
	  "Reboot a running VM" },
	{ "DELETE", "/v1/vms/{vm}", "vms.write", vms_delete,
	  "Delete a VM, its domain and its disk" },
	{ "PATCH", "/v1/vms/{vm}", "vms.write", vms_resize,
	  "Resize a VM (vcpus, memory_mib); applied while it is stopped" },
	{ "GET", "/v1/vms/{vm}/console", "vms.read", vms_console,
	  "The tail of a VM's serial console (offset)" },
	{ "POST", "/v1/tenants", "tenants.write", tenants_create,
	  "Add a member (commune, EPCI, syndicat, department, other)" },
	{ "GET", "/v1/tenants", "tenants.read", tenants_list,
	  "List members (kind, status, parent, limit, cursor)" },
	{ "POST", "/v1/tenants/import", "tenants.write", import_tenants,
	  "Import members (Etalab or CSV records), all or nothing",
	  APIV1_MAX_IMPORT },
	{ "GET", "/v1/tenants/{tenant}", "tenants.read", tenants_get,
	  "Show a member by id, INSEE code or SIREN (ETag)" },
	{ "PATCH", "/v1/tenants/{tenant}", "tenants.write", tenants_update,
	  "Change a member's fields or quotas (If-Match)" },
	{ "POST", "/v1/tenants/{tenant}/suspend", "tenants.write",
	  tenants_suspend, "Suspend a member" },
	{ "POST", "/v1/tenants/{tenant}/withdraw", "tenants.write",
	  tenants_withdraw, "A member withdraws: history kept, no new service" },
	{ "POST", "/v1/tenants/{tenant}/activate", "tenants.write",
	  tenants_activate, "Reactivate a suspended member" },
	{ "POST", "/v1/plans", "vms.write", plans_create, "Add a plan" },
	{ "GET", "/v1/plans", "vms.read", plans_list, "List plans" },
	{ "POST", "/v1/tokens", "tokens.write", tokens_api_create,
	  "Create an API token (shown once)" },
	{ "GET", "/v1/tokens", "tokens.read", tokens_api_list,
	  "List API tokens (never the tokens themselves)" },
	{ "POST", "/v1/tokens/{name}/revoke", "tokens.write", tokens_api_revoke,
	  "Revoke an API token" },
	{ "GET", "/v1/audit", "audit.read", audit_list,
	  "The audit trail (since, object, limit, cursor)" },
	{ "GET", "/v1/audit/verify", "audit.read", audit_verify_route,
	  "Check the audit trail's hash chain" },
};

/*
 * What each role may do: a permission matches an entry exactly, or a
 * "prefix.*" entry, or "*.read" for any read.
 */
static const struct {
	const char	*role;
	const char	*perms[12];
} apiv1_roles[] = {
	{ "admin",	{ "*" } },
	{ "operator",	{ "nodes.*", "tenants.*", "vms.*", "images.*",
			  "tariffs.*",
			  "services.*", "usage.*", "statements.*", "audit.read",
			  "*.read" } },
	{ "auditor",	{ "*.read" } },
	{ "finance",	{ "tenants.read", "usage.read", "statements.read",
			  "tariffs.read" } },
	{ "node",	{ "images.download" } },
};

static int
apiv1_perm_match(const char *pat, const char *perm)
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

static int
apiv1_authorize(const struct api_principal *p, const char *perm, void *arg)
{
	size_t	 i, j;

	for (i = 0; i < nitems(apiv1_roles); i++) {
		if (strcmp(apiv1_roles[i].role, p->ap_role) != 0)
			continue;
		for (j = 0; j < nitems(apiv1_roles[i].perms) &&
		    apiv1_roles[i].perms[j] != NULL; j++)
			if (apiv1_perm_match(apiv1_roles[i].perms[j], perm))
				return (0);
	}
	return (-1);
}

static int
apiv1_authenticate(const char *token, struct api_principal *p, void *arg)
{
	sqlite3_stmt	*st;
	char		 hash[65];
	int		 rv = -1;

	if (strlen(token) > 256)
		return (-1);
	tokens_hash(token, hash);
	st = store_prepare(ac->db, "SELECT name, role, coalesce(tenant_id, 0) "
	    "FROM api_tokens WHERE hash = ? AND revoked_at IS NULL AND "
	    "(expires_at IS NULL OR expires_at > ?)");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, util_now());
	if (sqlite3_step(st) == SQLITE_ROW) {
		strlcpy(p->ap_name, (const char *)sqlite3_column_text(st, 0),
		    sizeof(p->ap_name));
		strlcpy(p->ap_role, (const char *)sqlite3_column_text(st, 1),
		    sizeof(p->ap_role));
		p->ap_tenant = sqlite3_column_int64(st, 2);
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

/* An agent's client certificate authenticates it as role "node". */
static int
apiv1_authenticate_cert(X509 *cert, struct api_principal *p, void *arg)
{
	char	 name[64];

	if (nodes_cert_ok(cert, name, sizeof(name)) == -1)
		return (-1);
	snprintf(p->ap_name, sizeof(p->ap_name), "node:%s", name);
	strlcpy(p->ap_role, "node", sizeof(p->ap_role));
	p->ap_tenant = 0;
	return (0);
}

/* Refuse fields not in known; -1 after replying 400. */
int
apiv1_known_fields(struct api_req *r, json_t *body, const char *const *known)
{
	const char	*k, *const *kk;
	json_t		*v;

	json_object_foreach(body, k, v) {
		for (kk = known; *kk != NULL; kk++)
			if (strcmp(*kk, k) == 0)
				break;
		if (*kk == NULL) {
			api_reply_error(r, 400, "unknown_field", "unknown field "
			    "'%.64s'", k);
			return (-1);
		}
	}
	return (0);
}

/* A required whole number within [min, max]; -1 after replying 400. */
int
apiv1_int_field(struct api_req *r, json_t *body, const char *name,
    int64_t min, int64_t max, int64_t *out)
{
	json_t	*v = json_object_get(body, name);

	if (v == NULL) {
		api_reply_error(r, 400, "missing_field", "%s is required", name);
		return (-1);
	}
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		api_reply_error(r, 400, "bad_field", "%s must be a whole number "
		    "from %lld to %lld", name, (long long)min, (long long)max);
		return (-1);
	}
	*out = json_integer_value(v);
	return (0);
}

/* A time as YYYY-MM-DD, RFC 3339 UTC, or unix seconds. */
int
apiv1_parse_time(const char *s, int64_t *out)
{
	struct tm	 tm;
	const char	*end;
	char		*e;
	long long	 n;

	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) != NULL &&
	    *end == '\0') {
		*out = (int64_t)timegm(&tm);
		return (0);
	}
	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%d", &tm)) != NULL && *end == '\0') {
		*out = (int64_t)timegm(&tm);
		return (0);
	}
	n = strtoll(s, &e, 10);
	if (*s != '\0' && *e == '\0' && n >= 0) {
		*out = n;
		return (0);
	}
	return (-1);
}

/* limit and cursor query parameters; -1 after replying 400. */
int
apiv1_page(struct api_req *r, int *limit, const char **cursor)
{
	const char	*s = api_query(r, "limit");
	char		*end;
	long		 n;

	*limit = LIST_LIMIT_DEFAULT;
	*cursor = api_query(r, "cursor");
	if (s == NULL)
		return (0);
	n = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || n < 1 || n > LIST_LIMIT_MAX) {
		api_reply_error(r, 400, "bad_parameter", "limit must be a "
		    "number from 1 to %d", LIST_LIMIT_MAX);
		return (-1);
	}
	*limit = (int)n;
	return (0);
}

/* The cursor of the next page: key of the last item of this one (copy). */
char *
apiv1_last_key(json_t *items, const char *key)
{
	return (xstrdup(json_string_value(json_object_get(json_array_get(items,
	    json_array_size(items) - 1), key))));
}

/* Reply with a page of items and the cursor of the next page. */
void
apiv1_reply_page(struct api_req *r, json_t *items, char *next)
{
	json_t	*o = json_object();

	json_object_set_new(o, "items", items);
	json_object_set_new(o, "next_cursor", next ? json_string(next) :
	    json_null());
	free(next);
	api_reply_json(r, 200, o);
}

static void
apiv1_health(struct api_req *r)
{
	json_t	*o = json_object();

	json_object_set_new(o, "status", json_string("ok"));
	json_object_set_new(o, "version", json_string(OPSN_VERSION));
	json_object_set_new(o, "nodes", nodes_state_counts());
	api_reply_json(r, 200, o);
}

static void
apiv1_nodes_list(struct api_req *r)
{
	const char	*cursor;
	char		*next;
	int		 limit;
	json_t		*items;

	if (apiv1_page(r, &limit, &cursor) == -1)
		return;
	items = nodes_list_json(cursor, limit, &next);
	apiv1_reply_page(r, items, next);
}

static void
apiv1_node_get(struct api_req *r)
{
	json_t	*o;

	if ((o = nodes_json(api_param(r, "name"))) == NULL) {
		api_reply_error(r, 404, "not_found", "no node named '%s'",
		    api_param(r, "name"));
		return;
	}
	api_reply_json(r, 200, o);
}

static void
apiv1_node_tokens(struct api_req *r)
{
	json_t		*body, *v, *o;
	int64_t		 ttl = ac->conf.node_token_ttl_ms / 1000, expires;
	static const char *const known[] = { "ttl", NULL };
	char		*cause = NULL, *token, buf[32];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (apiv1_known_fields(r, body, known) == -1)
		goto out;
	if ((v = json_object_get(body, "ttl")) != NULL) {
		if (json_is_integer(v))
			ttl = json_integer_value(v);
		else if (!json_is_string(v) || util_parse_duration(
		    json_string_value(v), &ttl, &cause) == -1) {
			api_reply_error(r, 400, "bad_field", "ttl: %s", cause ?
			    cause : "must be a duration such as \"1h\"");
			goto out;
		}
		if (ttl < 60 || ttl > 30 * 86400) {
			api_reply_error(r, 400, "bad_field", "ttl must be from "
			    "1m to 30d");
			goto out;
		}
	}
	if (store_begin(ac->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (tokens_join_create(ac, ttl, &token, &expires, &cause) == -1 ||
	    audit_record(r, "node.token", "nodes", json_pack("{s:I}",
	    "ttl_seconds", (json_int_t)ttl)) == -1 ||
	    store_commit(ac->db) == -1) {
		store_rollback(ac->db);
		log_warnx("api: %s", cause ? cause : "join token");
		api_reply_error(r, 500, "internal", "could not create a token");
		goto out;
	}
	log_info("api: %s created a join token valid until %lld",
	    api_principal(r)->ap_name, (long long)expires);
	o = json_object();
	json_object_set_new(o, "token", json_string(token));
	util_time_fmt(expires, buf, sizeof(buf));
	json_object_set_new(o, "expires_at", json_string(buf));
	explicit_bzero(token, strlen(token));
	free(token);
	api_reply_json(r, 201, o);
out:
	free(cause);
	json_decref(body);
}

static void
apiv1_node_revoke(struct api_req *r)
{
	const char	*name = api_param(r, "name");
	char		*cause = NULL;

	char		 obj[96];

	if (store_begin(ac->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	snprintf(obj, sizeof(obj), "node/%s", name);
	if (nodes_revoke(name, &cause) == -1) {
		store_rollback(ac->db);
		api_reply_error(r, 404, "not_found", "%s", cause);
		free(cause);
		return;
	}
	if (audit_record(r, "node.revoke", obj, NULL) == -1 ||
	    store_commit(ac->db) == -1) {
		store_rollback(ac->db);
		api_reply_error(r, 500, "internal", "revoking failed");
		return;
	}
	log_notice("api: %s revoked node %s", api_principal(r)->ap_name, name);
	api_reply_json(r, 200, nodes_json(name));
}

/* Serve the API on the configured address. */
int
apiv1_start(struct ctl *c, char **cause)
{
	static const struct api_hooks hooks = {
		apiv1_authenticate, apiv1_authorize, NULL,
		apiv1_authenticate_cert
	};
	char	*host = NULL;
	int	 port, rv;

	ac = c;
	if (util_parse_hostport(c->conf.api_listen, &host, &port, cause) == -1)
		return (-1);
	/* The core table, then each subsystem's own table. */
	struct {
		const struct api_route	*r;
		const size_t		*n;
	} mods[] = {
		{ services_routes, &services_nroutes },
		{ metering_routes, &metering_nroutes },
		{ billing_routes, &billing_nroutes },
	};
	size_t	 i, n = nitems(apiv1_routes);

	for (i = 0; i < nitems(mods); i++)
		if (mods[i].r != NULL && mods[i].n != NULL)
			n += *mods[i].n;
	apiv1_all = xcalloc(n, sizeof(*apiv1_all));
	memcpy(apiv1_all, apiv1_routes, sizeof(apiv1_routes));
	n = nitems(apiv1_routes);
	for (i = 0; i < nitems(mods); i++) {
		if (mods[i].r == NULL || mods[i].n == NULL)
			continue;
		memcpy(apiv1_all + n, mods[i].r, *mods[i].n *
		    sizeof(*apiv1_all));
		n += *mods[i].n;
	}
	rv = api_start(c->loop, host, port, c->api_ctx, apiv1_all, n, &hooks,
	    cause);
	free(host);
	if (rv == 0)
		log_info("api: listening on https://%s", c->conf.api_listen);
	return (rv);
}
