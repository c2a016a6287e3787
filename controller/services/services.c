/*
 * Hosted services: the route table of the "services" module, backends
 * (nodes with role mail or web), placement, each backend's desired state
 * with its own generation, the status its agent reports, and the
 * provisioning journal.
 *
 * Every change follows the house path: validate, then in one transaction
 * change the rows, bump the backend's generation, write the journal row
 * (pending) and the audit record, commit, then push the backend what
 * changed (sync.c: a delta, or its whole state in parts; an agent of
 * protocol 1 its whole ServicesDesired). A lost push is healed by the
 * next one or by the one that follows the agent's HELLO.
 *
 * A member's suspension is read when the desired state is built; a timer
 * notices a member suspended or reactivated since a backend's last
 * generation and pushes a new one (tenants.c knows nothing of services).
 * The same timer drops deleted mailboxes whose retention is over.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "members/members.h"
#include "services.h"
#include "services.pb-c.h"

#define SERVICES_TICK_MS	1000
#define SERVICES_JOURNAL_DAYS	90	/* applied changes kept this long */
#define SERVICES_PRUNE_TICKS	3600
#define SERVICES_TENANT_REF	"coalesce(t.insee, t.siren, CAST(t.id AS TEXT))"
/* Role test on nodes.roles ("mail,web"). */
#define SERVICES_HAS_ROLE	"instr(',' || n.roles || ',', ',' || ?1 || ',') > 0"

static struct ctl	*sc;
static uv_timer_t	 services_timer;
static int64_t		 services_retention_s;	/* [services] mail_retention */

static void	services_backends_list(struct api_req *);
static void	services_backends_get(struct api_req *);
static void	services_backends_update(struct api_req *);
static void	services_changes_list(struct api_req *);

#define SVC_IMPORT_MAX	((size_t)16 << 20)

static const struct api_route services_routes[] = {
	{ "GET", "/v1/backends", "services.read",
	  API_PLATFORM, NULL, services_backends_list,
	  "List the mail and web backends, their load and generation" },
	{ "GET", "/v1/backends/{name}", "services.read",
	  API_PLATFORM, NULL, services_backends_get,
	  "Show one backend" },
	{ "PATCH", "/v1/backends/{name}", "services.write",
	  API_PLATFORM, NULL,
	  services_backends_update,
	  "Set a backend's public host name (the MX of its domains)" },
	{ "POST", "/v1/mail/domains", "services.write",
	  API_MEMBER, "body:tenant",
	  services_mail_domain_create,
	  "Add a mail domain for a member (a DKIM key is generated)" },
	{ "GET", "/v1/mail/domains", "services.read",
	  API_MEMBER, "query:tenant",
	  services_mail_domain_list, "List mail domains (tenant, backend)" },
	{ "GET", "/v1/mail/domains/{name}", "services.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:name)",
	  services_mail_domain_get, "Show a mail domain" },
	{ "GET", "/v1/mail/domains/{name}/dns", "services.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:name)",
	  services_mail_domain_dns,
	  "The DNS records to publish: MX, SPF, DKIM, DMARC" },
	{ "GET", "/v1/mail/domains/{name}/check", "services.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:name)",
	  services_mail_domain_check,
	  "Resolve the published MX, SPF, DKIM and DMARC records and compare "
	  "(resolver)" },
	{ "POST", "/v1/mail/domains/{name}/dkim/rotate", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:name)",
	  services_mail_domain_dkim_rotate,
	  "Make a new DKIM key; it signs once its record is published "
	  "(or at once with force)" },
	{ "DELETE", "/v1/mail/domains/{name}", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:name)",
	  services_mail_domain_delete,
	  "Delete a mail domain that has no mailbox left" },
	{ "POST", "/v1/mail/mailboxes", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(substr(:address, instr(:address, '@') + 1))",
	  services_mail_box_create, "Add a mailbox (password or hash)" },
	{ "GET", "/v1/mail/mailboxes", "services.read",
	  API_MEMBER, "query:tenant",
	  services_mail_box_list, "List mailboxes (domain, status)" },
	{ "POST", "/v1/mail/mailboxes/import", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(:domain)",
	  services_mail_box_import,
	  "Add many mailboxes to a domain, all or nothing", SVC_IMPORT_MAX },
	{ "GET", "/v1/mail/mailboxes/{address}", "services.read",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_get, "Show a mailbox and whether it is live (ETag)" },
	{ "PATCH", "/v1/mail/mailboxes/{address}", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_update,
	  "Change a mailbox's name or quota (If-Match)" },
	{ "POST", "/v1/mail/mailboxes/{address}/password", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_password, "Set a mailbox's password or hash" },
	{ "POST", "/v1/mail/mailboxes/{address}/suspend", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_suspend, "Suspend a mailbox" },
	{ "POST", "/v1/mail/mailboxes/{address}/activate", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_activate, "Reactivate a suspended mailbox" },
	{ "DELETE", "/v1/mail/mailboxes/{address}", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_delete,
	  "Delete a mailbox; its mail is kept for the retention period" },
	{ "POST", "/v1/mail/mailboxes/{address}/restore", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE m.address = lower(:address)",
	  services_mail_box_restore,
	  "Bring back a deleted mailbox within its retention period" },
	{ "POST", "/v1/mail/aliases", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM mail_domains WHERE name = lower(substr(:address, instr(:address, '@') + 1))",
	  services_mail_alias_create,
	  "Add an alias or forward (\"@domain\" is a catch-all)" },
	{ "GET", "/v1/mail/aliases", "services.read",
	  API_MEMBER, "query:tenant", services_mail_alias_list,
	  "List aliases (tenant, domain)" },
	{ "GET", "/v1/mail/aliases/{address}", "services.read",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM aliases a JOIN mail_domains d ON d.id = a.domain_id WHERE a.address = lower(:address)",
	  services_mail_alias_get, "Show an alias" },
	{ "DELETE", "/v1/mail/aliases/{address}", "services.write",
	  API_MEMBER, "sql:SELECT d.tenant_id FROM aliases a JOIN mail_domains d ON d.id = a.domain_id WHERE a.address = lower(:address)",
	  services_mail_alias_delete, "Delete an alias" },
	{ "POST", "/v1/sites", "services.write",
	  API_MEMBER, "body:tenant", services_sites_create,
	  "Add a website for a member" },
	{ "GET", "/v1/sites", "services.read",
	  API_MEMBER, "query:tenant", services_sites_list,
	  "List websites (tenant, backend)" },
	{ "GET", "/v1/sites/{hostname}", "services.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)", services_sites_get,
	  "Show a website (by host name or id)" },
	{ "POST", "/v1/sites/{hostname}/suspend", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_suspend, "Suspend a website (a \"suspended\" page)" },
	{ "POST", "/v1/sites/{hostname}/activate", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_activate, "Reactivate a suspended website" },
	{ "DELETE", "/v1/sites/{hostname}", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_delete, "Delete a website" },
	{ "POST", "/v1/sites/{hostname}/certificate", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_cert_set,
	  "Serve a website with its member's own certificate (the key goes "
	  "to the backend only)" },
	{ "DELETE", "/v1/sites/{hostname}/certificate", "services.write",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_cert_acme,
	  "Back to a certificate by ACME for a website" },
	{ "GET", "/v1/sites/{hostname}/check", "services.read",
	  API_MEMBER, "sql:SELECT tenant_id FROM sites WHERE hostname = lower(:hostname)",
	  services_sites_check,
	  "Resolve a website's A/AAAA/CNAME records and compare (resolver)" },
	{ "GET", "/v1/changes", "services.read",
	  API_PLATFORM, NULL, services_changes_list,
	  "The provisioning journal (pending, failed, node, limit, cursor)" },
};

int64_t
services_scope(struct api_req *r)
{
	const struct api_principal *p = api_principal(r);

	return (p != NULL ? p->ap_tenant : 0);
}

int
services_begin(struct api_req *r)
{
	if (store_begin(sc->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return (-1);
	}
	return (0);
}

int64_t
services_retention(void)
{
	return (services_retention_s);
}

void
services_tenant_ref(int64_t tenant, char *buf, size_t len)
{
	sqlite3_stmt	*st;

	snprintf(buf, len, "%lld", (long long)tenant);
	st = store_prepare(sc->db, "SELECT " SERVICES_TENANT_REF " FROM "
	    "tenants t WHERE t.id = ?");
	sqlite3_bind_int64(st, 1, tenant);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(buf, (const char *)sqlite3_column_text(st, 0), len);
	sqlite3_finalize(st);
}

void
services_tenant_status(int64_t tenant, char *buf, size_t len)
{
	sqlite3_stmt	*st;

	buf[0] = '\0';
	st = store_prepare(sc->db, "SELECT status FROM tenants WHERE id = ?");
	sqlite3_bind_int64(st, 1, tenant);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(buf, (const char *)sqlite3_column_text(st, 0), len);
	sqlite3_finalize(st);
}

json_t *
services_live_json(const char *state, const char *message,
    int64_t generation, int64_t applied)
{
	return (json_pack("{s:s,s:s,s:I,s:I}", "state", state, "message",
	    message, "generation", (json_int_t)generation,
	    "applied_generation", (json_int_t)applied));
}

int
services_quota_field(struct api_req *r, json_t *body, const char *name,
    int required, int64_t *out)
{
	json_t	*v = json_object_get(body, name);

	if (v == NULL && !required)
		return (0);
	if (v != NULL && json_is_null(v) && !required) {
		*out = -1;
		return (0);
	}
	if (v == NULL || !json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > SERVICES_QUOTA_MAX) {
		api_reply_error(r, 400, v == NULL ? "missing_field" :
		    "bad_field", "%s must be a number of bytes from 1 to %lld%s",
		    name, (long long)SERVICES_QUOTA_MAX, required ? "" :
		    ", or null for no limit");
		return (-1);
	}
	*out = json_integer_value(v);
	return (0);
}

/* A tenant reference in a body: a string, or a number (an id). */
static const char *
services_tenant_text(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return (json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
		return (buf);
	}
	return (NULL);
}

/*
 * The fields every new mail domain or site has: its host name in field
 * (checked, IDN to punycode, into host), its tenant, an optional quota and
 * an optional pinned backend. -1 after replying 400.
 */
int
services_new_args(struct api_req *r, json_t *body, const char *field,
    const char *example, char host[SERVICES_HOST_MAX + 1], int64_t *tenant,
    int64_t *quota, const char **backend)
{
	json_t	*v = json_object_get(body, field);
	char	*cause = NULL;

	if (!json_is_string(v)) {
		api_reply_error(r, 400, "missing_field", "%s (%s) is required",
		    field, example);
		return (-1);
	}
	if (services_util_host(json_string_value(v), host, &cause) == -1) {
		api_reply_error(r, 400, "bad_field", "%s: %s", field, cause);
		free(cause);
		return (-1);
	}
	if ((*tenant = services_tenant_arg(r, json_object_get(body,
	    "tenant"))) == -1)
		return (-1);
	if (services_quota_field(r, body, "quota_bytes", 0, quota) == -1)
		return (-1);
	*backend = NULL;
	if ((v = json_object_get(body, "backend")) != NULL) {
		if (!json_is_string(v)) {
			api_reply_error(r, 400, "bad_field", "backend must be a "
			    "node name");
			return (-1);
		}
		*backend = json_string_value(v);
	}
	return (0);
}

/*
 * The tenant a create names (or the scoped token's own), and that it may
 * grow; -1 after replying.
 */
int64_t
services_tenant_arg(struct api_req *r, json_t *v)
{
	int64_t		 scope = services_scope(r), tenant = -1;
	const char	*ref;
	char		 buf[32], *cause = NULL;

	if (v != NULL) {
		ref = services_tenant_text(v, buf, sizeof(buf));
		if (ref == NULL || (tenant = tenants_resolve(ref)) == -1 ||
		    (scope != 0 && tenant != scope)) {
			api_reply_error(r, 400, "bad_field", "tenant: no tenant "
			    "'%.64s' (use its id, INSEE code or SIREN)",
			    ref ? ref : "?");
			return (-1);
		}
	} else if (scope != 0)
		tenant = scope;
	else {
		api_reply_error(r, 400, "missing_field", "tenant is required");
		return (-1);
	}
	if (tenants_may_grow(tenant, &cause) == -1) {
		api_reply_error(r, 409, "tenant_inactive", "%s", cause);
		free(cause);
		return (-1);
	}
	return (tenant);
}

/* The load of a backend: what placement weighs and GET shows. */
struct services_load {
	int64_t	 domains, mailboxes, aliases, sites;
	int64_t	 mail_bytes, web_bytes;	/* sum of quotas */
};

static void
services_load(int64_t node_id, struct services_load *l)
{
	sqlite3_stmt	*st;

	memset(l, 0, sizeof(*l));
	/*
	 * A domain with a quota reserves it; one without counts what its
	 * mailboxes were given. Deleted mailboxes still hold their mail.
	 */
	st = store_prepare(sc->db, "SELECT "
	    "(SELECT count(*) FROM mail_domains WHERE node_id = ?1), "
	    "(SELECT count(*) FROM mailboxes m JOIN mail_domains d ON "
	    "d.id = m.domain_id WHERE d.node_id = ?1), "
	    "(SELECT count(*) FROM aliases a JOIN mail_domains d ON "
	    "d.id = a.domain_id WHERE d.node_id = ?1), "
	    "(SELECT count(*) FROM sites WHERE node_id = ?1), "
	    "(SELECT coalesce(sum(coalesce(d.quota_bytes, (SELECT "
	    "coalesce(sum(quota_bytes), 0) FROM mailboxes WHERE domain_id = "
	    "d.id))), 0) FROM mail_domains d WHERE d.node_id = ?1), "
	    "(SELECT coalesce(sum(quota_bytes), 0) FROM sites WHERE "
	    "node_id = ?1)");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW) {
		l->domains = sqlite3_column_int64(st, 0);
		l->mailboxes = sqlite3_column_int64(st, 1);
		l->aliases = sqlite3_column_int64(st, 2);
		l->sites = sqlite3_column_int64(st, 3);
		l->mail_bytes = sqlite3_column_int64(st, 4);
		l->web_bytes = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
}

int64_t
services_place(struct api_req *r, const char *role, const char *pinned)
{
	struct services_load	 l;
	sqlite3_stmt		*st;
	int64_t			 best = -1, id, objs, bytes;
	int64_t			 bobjs = 0, bbytes = 0;
	int			 has, revoked;

	if (pinned != NULL) {
		st = store_prepare(sc->db, "SELECT n.id, n.revoked, "
		    SERVICES_HAS_ROLE ", n.roles FROM nodes n WHERE n.name = ?2");
		sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, pinned, -1, SQLITE_STATIC);
		if (store_step(st) != SQLITE_ROW) {
			sqlite3_finalize(st);
			api_reply_error(r, 404, "not_found", "no backend named "
			    "'%.64s'", pinned);
			return (-1);
		}
		id = sqlite3_column_int64(st, 0);
		revoked = sqlite3_column_int(st, 1);
		has = sqlite3_column_int(st, 2);
		if (revoked || !has) {
			api_reply_error(r, 409, "not_a_backend", revoked ?
			    "node '%s' is revoked" : "node '%s' has no role %s "
			    "(its agent says: %s)", pinned, role, revoked ?
			    "" : (const char *)sqlite3_column_text(st, 3));
			sqlite3_finalize(st);
			return (-1);
		}
		sqlite3_finalize(st);
		return (id);
	}
	st = store_prepare(sc->db, "SELECT n.id FROM nodes n WHERE "
	    "n.revoked = 0 AND " SERVICES_HAS_ROLE " ORDER BY n.name");
	sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		if (!nodes_is_ready(id))
			continue;
		services_load(id, &l);
		if (strcmp(role, "mail") == 0) {
			objs = l.mailboxes;
			bytes = l.mail_bytes;
		} else {
			objs = l.sites;
			bytes = l.web_bytes;
		}
		/* Fewest objects, then least storage promised, then name. */
		if (best == -1 || objs < bobjs || (objs == bobjs &&
		    bytes < bbytes)) {
			best = id;
			bobjs = objs;
			bbytes = bytes;
		}
	}
	sqlite3_finalize(st);
	if (best == -1)
		api_reply_error(r, 409, "no_backend", "no ready backend with "
		    "role %s: start one, or pin a backend with \"backend\"",
		    role);
	return (best);
}

/* The suspended members with services on a backend: "3,17". */
static char *
services_suspended_set(int64_t node_id)
{
	sqlite3_stmt	*st;
	char		*s;

	st = store_prepare(sc->db, "SELECT coalesce(group_concat(id), '') "
	    "FROM (SELECT t.id FROM tenants t WHERE t.status = 'suspended' AND "
	    "(EXISTS (SELECT 1 FROM mail_domains d WHERE d.tenant_id = t.id "
	    "AND d.node_id = ?1) OR EXISTS (SELECT 1 FROM sites s WHERE "
	    "s.tenant_id = t.id AND s.node_id = ?1)) ORDER BY t.id)");
	sqlite3_bind_int64(st, 1, node_id);
	store_step(st);
	s = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return (s);
}

int64_t
services_bump(int64_t node_id)
{
	sqlite3_stmt	*st;
	int64_t		 gen = -1;
	char		*set = services_suspended_set(node_id);

	st = store_prepare(sc->db, "INSERT INTO services_backends (node_id) "
	    "VALUES (?) ON CONFLICT (node_id) DO NOTHING");
	sqlite3_bind_int64(st, 1, node_id);
	store_step(st);
	sqlite3_finalize(st);
	/* The generation records which members it carries as suspended. */
	st = store_prepare(sc->db, "UPDATE services_backends SET generation = "
	    "generation + 1, suspended_tenants = ? WHERE node_id = ? "
	    "RETURNING generation");
	sqlite3_bind_text(st, 1, set, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, node_id);
	if (store_step(st) == SQLITE_ROW)
		gen = sqlite3_column_int64(st, 0);
	else
		log_warnx("services: bumping the generation of %s: %s",
		    nodes_name(node_id), sqlite3_errmsg(sc->db));
	sqlite3_finalize(st);
	free(set);
	return (gen);
}

int
services_journal(int64_t node_id, int64_t generation, const char *kind,
    const char *object_id, const char *object, const char *action)
{
	sqlite3_stmt	*st;
	int		 rv;

	st = store_prepare(sc->db, "INSERT INTO services_changes (at, node_id, "
	    "generation, kind, object_id, object, action) VALUES "
	    "(?, ?, ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, util_now());
	sqlite3_bind_int64(st, 2, node_id);
	sqlite3_bind_int64(st, 3, generation);
	sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, object_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, object, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, action, -1, SQLITE_STATIC);
	rv = store_step(st) == SQLITE_DONE ? 0 : -1;
	if (rv == -1)
		log_warnx("services: journal: %s", sqlite3_errmsg(sc->db));
	sqlite3_finalize(st);
	return (rv);
}

/* Does a roles list ("mail,web") name a services role? */
static int
services_is_backend_roles(const char *roles)
{
	char	*copy = xstrdup(roles), *tok, *save = NULL;
	int	 yes = 0;

	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		if (strcmp(tok, "mail") == 0 || strcmp(tok, "web") == 0)
			yes = 1;
	free(copy);
	return (yes);
}

/* A mail or web agent said hello: it gets its whole desired state. */
void
services_agent_hello(int64_t node_id, const char *roles)
{
	sqlite3_stmt	*st;

	if (!services_is_backend_roles(roles))
		return;
	st = store_prepare(sc->db, "INSERT INTO services_backends (node_id) "
	    "VALUES (?) ON CONFLICT (node_id) DO NOTHING");
	sqlite3_bind_int64(st, 1, node_id);
	store_step(st);
	sqlite3_finalize(st);
	services_sync_hello(node_id);
}

void
services_agent_gone(int64_t node_id)
{
	services_sync_gone(node_id);
	log_debug("services: %s is gone; its changes wait for it",
	    nodes_name(node_id));
	services_certs_gone(node_id);
}

/* The controller stops: requests waiting for a backend get an answer. */
static void
services_stop(void)
{
	services_certs_stop();
	services_sync_stop();
}

/*
 * The table and the node test of one kind of object in a status. A
 * backend is believed only about objects placed on it, of its role.
 */
static const struct {
	const char	*kind;
	const char	*role;		/* the reporting node must hold it */
	const char	*reject;	/* kind of refusal, for /metrics */
	const char	*where;		/* ?1 id -> the node it is placed on */
	const char	*update;	/* ?1 state ?2 message ?3 gen ?4 id ?5 node */
	const char	*settle;	/* pending -> applied up to ?1 on ?2 */
	const char	*journal;	/* journal rows of this kind from the rows */
} services_kinds[] = {
	{ "domain", "mail", "status_domain",
	  "SELECT node_id FROM mail_domains WHERE name = ?1",
	  "UPDATE mail_domains SET state = ?1, message = ?2, "
	  "applied_generation = ?3 WHERE name = ?4 AND node_id = ?5 AND "
	  "generation <= ?3 AND (state, message, applied_generation) IS NOT "
	  "(?1, ?2, ?3)",
	  "UPDATE mail_domains SET state = 'applied', message = '', "
	  "applied_generation = ?1 WHERE node_id = ?2 AND state = 'pending' "
	  "AND generation <= ?1",
	  "SELECT name AS oid, state AS ostate, message AS omsg FROM "
	  "mail_domains WHERE node_id = ?1" },
	{ "mailbox", "mail", "status_mailbox",
	  "SELECT d.node_id FROM mailboxes m JOIN mail_domains d ON d.id = "
	  "m.domain_id WHERE m.id = ?1",
	  "UPDATE mailboxes SET state = ?1, message = ?2, applied_generation "
	  "= ?3 WHERE id = ?4 AND domain_id IN (SELECT id FROM mail_domains "
	  "WHERE node_id = ?5) AND generation <= ?3 AND (state, message, "
	  "applied_generation) IS NOT (?1, ?2, ?3)",
	  "UPDATE mailboxes SET state = 'applied', message = '', "
	  "applied_generation = ?1 WHERE domain_id IN (SELECT id FROM "
	  "mail_domains WHERE node_id = ?2) AND state = 'pending' AND "
	  "generation <= ?1",
	  "SELECT m.id AS oid, m.state AS ostate, m.message AS omsg FROM "
	  "mailboxes m JOIN mail_domains d ON d.id = m.domain_id WHERE "
	  "d.node_id = ?1" },
	{ "alias", "mail", "status_alias",
	  "SELECT d.node_id FROM aliases a JOIN mail_domains d ON d.id = "
	  "a.domain_id WHERE a.id = ?1",
	  "UPDATE aliases SET state = ?1, message = ?2, applied_generation = "
	  "?3 WHERE id = ?4 AND domain_id IN (SELECT id FROM mail_domains "
	  "WHERE node_id = ?5) AND generation <= ?3 AND (state, message, "
	  "applied_generation) IS NOT (?1, ?2, ?3)",
	  "UPDATE aliases SET state = 'applied', message = '', "
	  "applied_generation = ?1 WHERE domain_id IN (SELECT id FROM "
	  "mail_domains WHERE node_id = ?2) AND state = 'pending' AND "
	  "generation <= ?1",
	  "SELECT a.id AS oid, a.state AS ostate, a.message AS omsg FROM "
	  "aliases a JOIN mail_domains d ON d.id = a.domain_id WHERE "
	  "d.node_id = ?1" },
	{ "site", "web", "status_site",
	  "SELECT node_id FROM sites WHERE id = ?1",
	  "UPDATE sites SET state = ?1, message = ?2, applied_generation = ?3 "
	  "WHERE id = ?4 AND node_id = ?5 AND generation <= ?3 AND (state, "
	  "message, applied_generation) IS NOT (?1, ?2, ?3)",
	  "UPDATE sites SET state = 'applied', message = '', "
	  "applied_generation = ?1 WHERE node_id = ?2 AND state = 'pending' "
	  "AND generation <= ?1",
	  "SELECT id AS oid, state AS ostate, message AS omsg FROM sites "
	  "WHERE node_id = ?1" },
};

/*
 * Is an object a status names placed on the reporting node, in one of its
 * roles? One placed nowhere (deleted since) is skipped quietly; one placed
 * on another node, or outside the node's roles, is refused and counted.
 */
static int
services_status_ours(int64_t node_id, size_t k, const Opsn__ObjectStatus *o,
    int *roles)
{
	sqlite3_stmt	*st;
	int64_t		 on = -1;

	if (roles[k] == -1)
		roles[k] = reports_has_role(node_id, services_kinds[k].role);
	if (!roles[k]) {
		reports_reject(node_id, services_kinds[k].reject, "%.64s: the "
		    "node does not have the %s role", o->id,
		    services_kinds[k].role);
		return (0);
	}
	st = store_prepare(sc->db, services_kinds[k].where);
	sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		on = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (on != -1 && on != node_id)
		reports_reject(node_id, services_kinds[k].reject, "%.64s is "
		    "placed on %s", o->id, nodes_name(on));
	return (on == node_id);
}

/* MSG_SERVICES_STATUS: the generation a backend applied, per object. */
static void
services_status(int64_t node_id, const Opsn__ServicesStatus *m)
{
	sqlite3_stmt	*st, *upd[nitems(services_kinds)];
	int64_t		 gen = (int64_t)m->generation, have = -1, now = util_now();
	const char	*state;
	size_t		 i, k;
	int		 errors = 0, roles[nitems(services_kinds)];

	st = store_prepare(sc->db, "SELECT generation FROM services_backends "
	    "WHERE node_id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		have = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (have == -1 || gen > have) {
		log_warnx("services: %s reports generation %lld, but its "
		    "latest is %lld: ignored", nodes_name(node_id),
		    (long long)gen, (long long)have);
		return;
	}
	if (store_begin(sc->db) == -1)
		return;
	for (k = 0; k < nitems(services_kinds); k++) {
		upd[k] = store_prepare(sc->db, services_kinds[k].update);
		roles[k] = -1;
	}
	for (i = 0; i < m->n_objects; i++) {
		const Opsn__ObjectStatus *o = m->objects[i];

		for (k = 0; k < nitems(services_kinds); k++)
			if (strcmp(o->kind, services_kinds[k].kind) == 0)
				break;
		/* "purged": the folder of a mailbox we dropped is gone. */
		if (k == nitems(services_kinds) ||
		    strcmp(o->state, "purged") == 0 ||
		    !services_status_ours(node_id, k, o, roles))
			continue;
		state = strcmp(o->state, "applied") == 0 ? "applied" : "error";
		if (*state == 'e')
			errors++;
		sqlite3_reset(upd[k]);
		sqlite3_bind_text(upd[k], 1, state, -1, SQLITE_STATIC);
		sqlite3_bind_text(upd[k], 2, o->message, -1, SQLITE_STATIC);
		sqlite3_bind_int64(upd[k], 3, gen);
		sqlite3_bind_text(upd[k], 4, o->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(upd[k], 5, node_id);
		store_step(upd[k]);
	}
	for (k = 0; k < nitems(services_kinds); k++)
		sqlite3_finalize(upd[k]);

	if (m->ok) {
		/* What the agent did not list is taken as applied. */
		for (k = 0; k < nitems(services_kinds); k++) {
			st = store_prepare(sc->db, services_kinds[k].settle);
			sqlite3_bind_int64(st, 1, gen);
			sqlite3_bind_int64(st, 2, node_id);
			store_step(st);
			sqlite3_finalize(st);
		}
		/* A change is failed while its object reports an error. */
		for (k = 0; k < nitems(services_kinds); k++) {
			char *sql;

			xasprintf(&sql, "UPDATE services_changes SET state = "
			    "CASE WHEN o.ostate = 'error' THEN 'failed' ELSE "
			    "'applied' END, message = CASE WHEN o.ostate = "
			    "'error' THEN o.omsg ELSE '' END, done_at = ?3 "
			    "FROM (%s) AS o WHERE "
			    "services_changes.node_id = ?1 AND "
			    "services_changes.generation <= ?2 AND "
			    "services_changes.state != 'applied' AND "
			    "services_changes.kind = '%s' AND "
			    "services_changes.object_id = o.oid",
			    services_kinds[k].journal, services_kinds[k].kind);
			st = store_prepare(sc->db, sql);
			free(sql);
			sqlite3_bind_int64(st, 1, node_id);
			sqlite3_bind_int64(st, 2, gen);
			sqlite3_bind_int64(st, 3, now);
			store_step(st);
			sqlite3_finalize(st);
		}
		/* Objects since removed, and member status changes. */
		st = store_prepare(sc->db, "UPDATE services_changes SET state = "
		    "'applied', message = '', done_at = ?3 WHERE node_id = ?1 "
		    "AND generation <= ?2 AND state != 'applied' AND NOT EXISTS "
		    "(SELECT 1 FROM mail_domains WHERE kind = 'domain' AND "
		    "name = object_id) AND NOT EXISTS (SELECT 1 FROM mailboxes "
		    "WHERE kind = 'mailbox' AND id = object_id) AND NOT EXISTS "
		    "(SELECT 1 FROM aliases WHERE kind = 'alias' AND id = "
		    "object_id) AND NOT EXISTS (SELECT 1 FROM sites WHERE "
		    "kind = 'site' AND id = object_id)");
		sqlite3_bind_int64(st, 1, node_id);
		sqlite3_bind_int64(st, 2, gen);
		sqlite3_bind_int64(st, 3, now);
		store_step(st);
		sqlite3_finalize(st);
		st = store_prepare(sc->db, "UPDATE services_backends SET "
		    "applied_generation = max(applied_generation, ?1), "
		    "last_error = '', reported_at = ?2 WHERE node_id = ?3");
	} else {
		st = store_prepare(sc->db, "UPDATE services_changes SET state = "
		    "'failed', message = ?4, done_at = ?3 WHERE node_id = ?1 AND "
		    "generation <= ?2 AND state = 'pending'");
		sqlite3_bind_int64(st, 1, node_id);
		sqlite3_bind_int64(st, 2, gen);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_text(st, 4, m->error, -1, SQLITE_STATIC);
		store_step(st);
		sqlite3_finalize(st);
		st = store_prepare(sc->db, "UPDATE services_backends SET "
		    "last_error = ?4, reported_at = ?2 WHERE node_id = ?3");
		sqlite3_bind_text(st, 4, m->error, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(st, 1, gen);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, node_id);
	store_step(st);
	sqlite3_finalize(st);
	if (store_commit(sc->db) == -1)
		return;
	if (!m->ok)
		log_warnx("services: %s failed generation %lld: %s",
		    nodes_name(node_id), (long long)gen, m->error);
	else if (errors > 0)
		log_warnx("services: %s applied generation %lld with %d "
		    "object(s) in error", nodes_name(node_id), (long long)gen,
		    errors);
	else
		log_debug("services: %s applied generation %lld",
		    nodes_name(node_id), (long long)gen);
}

/* Frames in the services range from a node's agent. */
void
services_agent_msg(int64_t node_id, uint16_t type, const uint8_t *p,
    size_t len)
{
	Opsn__ServicesStatus	*m;

	if (type == MSG_SERVICES_CERTS) {
		services_certs_report(node_id, p, len);
		return;
	}
	if (type == MSG_SITE_CERT_RESULT) {
		services_certs_result(node_id, p, len);
		return;
	}
	if (type == MSG_SERVICES_HAVE) {
		services_sync_have(node_id, p, len);
		return;
	}
	if (type != MSG_SERVICES_STATUS) {
		log_debug("services: %s sent message type %u: ignored",
		    nodes_name(node_id), type);
		return;
	}
	if (!reports_has_role(node_id, "mail") &&
	    !reports_has_role(node_id, "web")) {
		reports_reject(node_id, "status", "the node has neither the "
		    "mail nor the web role");
		return;
	}
	if ((m = opsn__services_status__unpack(NULL, len, p)) == NULL) {
		log_warnx("services: %s sent a status that does not decode",
		    nodes_name(node_id));
		return;
	}
	services_status(node_id, m);
	opsn__services_status__free_unpacked(m, NULL);
}

/* Is id in the comma-separated list? */
static int
services_in_set(const char *set, const char *id)
{
	size_t	 n = strlen(id);
	const char *p = set;

	while ((p = strstr(p, id)) != NULL) {
		if ((p == set || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return (1);
		p += n;
	}
	return (0);
}

/* Journal the members whose suspension changed between two sets. */
static void
services_journal_tenants(int64_t node_id, int64_t gen, const char *was,
    const char *now)
{
	const char	*sets[2] = { now, was };
	char		*copy, *tok, *save = NULL, ref[64];
	int		 i;

	for (i = 0; i < 2; i++) {
		copy = xstrdup(sets[i]);
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save)) {
			if (services_in_set(sets[1 - i], tok))
				continue;
			services_tenant_ref(strtoll(tok, NULL, 10), ref,
			    sizeof(ref));
			services_journal(node_id, gen, "tenant", tok, ref,
			    i == 0 ? "suspend" : "activate");
		}
		free(copy);
	}
}

/* Mark a backend's objects of the members in set pending at gen. */
static void
services_mark_pending(int64_t node_id, int64_t gen)
{
	static const char *const sql[] = {
		"UPDATE mail_domains SET state = 'pending', generation = ?2 "
		"WHERE node_id = ?1",
		"UPDATE mailboxes SET state = 'pending', generation = ?2 WHERE "
		"domain_id IN (SELECT id FROM mail_domains WHERE node_id = ?1)",
		"UPDATE sites SET state = 'pending', generation = ?2 WHERE "
		"node_id = ?1",
	};
	sqlite3_stmt	*st;
	size_t		 i;

	for (i = 0; i < nitems(sql); i++) {
		st = store_prepare(sc->db, sql[i]);
		sqlite3_bind_int64(st, 1, node_id);
		sqlite3_bind_int64(st, 2, gen);
		store_step(st);
		sqlite3_finalize(st);
	}
}

/* Push backends whose members' suspensions changed since their last push. */
static void
services_check_tenants(void)
{
	sqlite3_stmt	*st;
	int64_t		*ids = NULL, gen;
	char		**was = NULL, *now;
	size_t		 n = 0, i;

	st = store_prepare(sc->db, "SELECT node_id, suspended_tenants FROM "
	    "services_backends");
	while (store_step(st) == SQLITE_ROW) {
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		was = xrealloc(was, (n + 1) * sizeof(*was));
		ids[n] = sqlite3_column_int64(st, 0);
		was[n++] = xstrdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	for (i = 0; i < n; i++) {
		now = services_suspended_set(ids[i]);
		if (strcmp(now, was[i]) == 0) {
			free(now);
			continue;
		}
		if (store_begin(sc->db) == -1) {
			free(now);
			break;
		}
		if ((gen = services_bump(ids[i])) == -1) {
			store_rollback(sc->db);
			free(now);
			continue;
		}
		/*
		 * Objects whose member changed status go pending again; the
		 * simplest correct set is the whole backend: one status
		 * report settles them all.
		 */
		services_mark_pending(ids[i], gen);
		services_journal_tenants(ids[i], gen, was[i], now);
		free(now);
		if (store_commit(sc->db) == -1)
			continue;
		log_info("services: members' suspensions changed on %s: "
		    "generation %lld", nodes_name(ids[i]), (long long)gen);
		services_push(ids[i]);
	}
	for (i = 0; i < n; i++)
		free(was[i]);
	free(was);
	free(ids);
}

/* Applied changes are history: keep SERVICES_JOURNAL_DAYS of them. */
static void
services_prune_journal(void)
{
	sqlite3_stmt	*st;

	/* Deltas cannot reach back past what goes (sync.c). */
	st = store_prepare(sc->db, "UPDATE services_backends SET journal_from "
	    "= max(journal_from, (SELECT max(generation) + 1 FROM "
	    "services_changes c WHERE c.node_id = services_backends.node_id "
	    "AND c.state = 'applied' AND c.done_at < ?1)) WHERE EXISTS "
	    "(SELECT 1 FROM services_changes c WHERE c.node_id = "
	    "services_backends.node_id AND c.state = 'applied' AND c.done_at "
	    "< ?1)");
	sqlite3_bind_int64(st, 1, util_now() - SERVICES_JOURNAL_DAYS * 86400);
	store_step(st);
	sqlite3_finalize(st);
	st = store_prepare(sc->db, "DELETE FROM services_changes WHERE state = "
	    "'applied' AND done_at < ?");
	sqlite3_bind_int64(st, 1, util_now() - SERVICES_JOURNAL_DAYS * 86400);
	store_step(st);
	sqlite3_finalize(st);
}

static void
services_timer_cb(uv_timer_t *t)
{
	static unsigned	 ticks;

	services_mail_purge(util_now());
	services_check_tenants();
	services_certs_tick();
	if (ticks++ % SERVICES_PRUNE_TICKS == 0)
		services_prune_journal();
}

/* Lists that span every member; -1 after refusing a scoped token. */
static int
services_platform_wide(struct api_req *r)
{
	if (services_scope(r) == 0)
		return (0);
	api_reply_error(r, 403, "forbidden", "this covers every member: a "
	    "token scoped to one member cannot read it");
	return (-1);
}

/* The module's start: settings, and the timer. */
int
services_init(struct ctl *c, char **cause)
{
	sc = c;
	/* The configuration's table bounds it (0 to 3650 days). */
	services_retention_s = c->conf.mail_retention_ms / 1000;
	uv_timer_init(c->loop, &services_timer);
	uv_timer_start(&services_timer, services_timer_cb, SERVICES_TICK_MS,
	    SERVICES_TICK_MS);
	/* The timer alone never keeps the controller running. */
	uv_unref((uv_handle_t *)&services_timer);
	services_sync_init(c->loop);
	log_info("services: deleted mailboxes are kept %lld days",
	    (long long)(services_retention_s / 86400));
	return (0);
}

/* JSON of one backend from a row of SERVICES_BACKEND_COLS. */
#define SERVICES_BACKEND_COLS "n.id, n.name, n.roles, n.state, n.hostname, " \
	"coalesce(b.generation, 0), coalesce(b.applied_generation, 0), " \
	"coalesce(b.public_name, ''), coalesce(b.last_error, ''), " \
	"b.reported_at, (SELECT count(*) FROM services_changes c WHERE " \
	"c.node_id = n.id AND c.state = 'pending'), (SELECT count(*) FROM " \
	"services_changes c WHERE c.node_id = n.id AND c.state = 'failed'), " \
	SERVICES_CERT_COLS
#define SERVICES_BACKEND_FROM " FROM nodes n LEFT JOIN services_backends b " \
	"ON b.node_id = n.id LEFT JOIN services_certs c ON c.node_id = n.id " \
	"AND c.kind = 'mail' WHERE (instr(',' || n.roles || ',', ',mail,') > 0 " \
	"OR instr(',' || n.roles || ',', ',web,') > 0 OR b.node_id IS NOT NULL) "

static json_t *
services_backend_json(sqlite3_stmt *st)
{
	struct services_load	 l;
	json_t			*o, *roles;
	int64_t			 id = sqlite3_column_int64(st, 0);
	const char		*pub = (const char *)sqlite3_column_text(st, 7);
	const char		*host = (const char *)sqlite3_column_text(st, 4);
	char			*copy, *tok, *save = NULL, buf[32];

	roles = json_array();
	copy = xstrdup((const char *)sqlite3_column_text(st, 2));
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		json_array_append_new(roles, json_string(tok));
	free(copy);
	services_load(id, &l);
	o = json_object();
	json_object_set_new(o, "name",
	    json_string((const char *)sqlite3_column_text(st, 1)));
	json_object_set_new(o, "roles", roles);
	json_object_set_new(o, "state",
	    json_string((const char *)sqlite3_column_text(st, 3)));
	json_object_set_new(o, "ready", json_boolean(nodes_is_ready(id)));
	json_object_set_new(o, "hostname", json_string(host));
	json_object_set_new(o, "public_name", json_string(pub));
	json_object_set_new(o, "mx", json_string(*pub ? pub : *host ? host :
	    (const char *)sqlite3_column_text(st, 1)));
	/* The same name: a mail backend's certificate carries it. */
	json_object_set_new(o, "mail_hostname", json_string(*pub ? pub :
	    *host ? host : (const char *)sqlite3_column_text(st, 1)));
	json_object_set_new(o, "domains", json_integer(l.domains));
	json_object_set_new(o, "mailboxes", json_integer(l.mailboxes));
	json_object_set_new(o, "aliases", json_integer(l.aliases));
	json_object_set_new(o, "sites", json_integer(l.sites));
	json_object_set_new(o, "objects", json_integer(l.domains +
	    l.mailboxes + l.aliases + l.sites));
	json_object_set_new(o, "storage_bytes", json_integer(l.mail_bytes +
	    l.web_bytes));
	json_object_set_new(o, "generation",
	    json_integer(sqlite3_column_int64(st, 5)));
	json_object_set_new(o, "applied_generation",
	    json_integer(sqlite3_column_int64(st, 6)));
	json_object_set_new(o, "last_error",
	    json_string((const char *)sqlite3_column_text(st, 8)));
	if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
		util_time_fmt(sqlite3_column_int64(st, 9), buf, sizeof(buf));
		json_object_set_new(o, "reported_at", json_string(buf));
	} else
		json_object_set_new(o, "reported_at", json_null());
	json_object_set_new(o, "pending_changes",
	    json_integer(sqlite3_column_int64(st, 10)));
	json_object_set_new(o, "failed_changes",
	    json_integer(sqlite3_column_int64(st, 11)));
	if (services_in_set((const char *)sqlite3_column_text(st, 2), "mail"))
		json_object_set_new(o, "certificate", services_certs_json(st,
		    12, NULL));
	return (o);
}

/* GET /v1/backends?role=&limit=&cursor= (cursor: the last name) */
static void
services_backends_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*cursor, *role = api_query(r, "role");
	char		*next = NULL;
	int		 limit, n = 0;
	json_t		*items;

	if (services_platform_wide(r) == -1 ||
	    params_page(r, &limit, &cursor) == -1)
		return;
	if (role != NULL && strcmp(role, "mail") != 0 &&
	    strcmp(role, "web") != 0) {
		api_reply_error(r, 400, "bad_parameter", "role must be mail or "
		    "web");
		return;
	}
	items = json_array();
	st = store_prepare(sc->db, "SELECT " SERVICES_BACKEND_COLS
	    SERVICES_BACKEND_FROM "AND n.name > ?1 AND (?2 IS NULL OR "
	    "instr(',' || n.roles || ',', ',' || ?2 || ',') > 0) ORDER BY "
	    "n.name LIMIT ?3");
	sqlite3_bind_text(st, 1, cursor ? cursor : "", -1, SQLITE_STATIC);
	if (role != NULL)
		sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			/* The cursor is the last name of this page. */
			next = params_last_key(items, "name");
			break;
		}
		json_array_append_new(items, services_backend_json(st));
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

static json_t *
services_backend_by_name(const char *name)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_prepare(sc->db, "SELECT " SERVICES_BACKEND_COLS
	    SERVICES_BACKEND_FROM "AND n.name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		o = services_backend_json(st);
	sqlite3_finalize(st);
	return (o);
}

/* GET /v1/backends/{name} */
static void
services_backends_get(struct api_req *r)
{
	json_t	*o;

	if (services_platform_wide(r) == -1)
		return;
	if ((o = services_backend_by_name(api_param(r, "name"))) == NULL) {
		api_reply_error(r, 404, "not_found", "no backend named '%s' "
		    "(a node whose agent has role mail or web)",
		    api_param(r, "name"));
		return;
	}
	api_reply_json(r, 200, o);
}

/* PATCH /v1/backends/{name} {"public_name": "mx1.opsn.example"} */
static void
services_backends_update(struct api_req *r)
{
	static const char *const known[] = { "public_name", NULL };
	const char	*name = api_param(r, "name");
	json_t		*body, *v, *o;
	sqlite3_stmt	*st;
	int64_t		 node_id;
	char		 host[SERVICES_HOST_MAX + 1] = "", *cause = NULL;
	char		 obj[96];
	int		 usable;

	if (services_platform_wide(r) == -1 ||
	    (body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	if ((o = services_backend_by_name(name)) == NULL) {
		api_reply_error(r, 404, "not_found", "no backend named '%s'",
		    name);
		goto out;
	}
	json_decref(o);
	node_id = nodes_id(name, &usable);
	v = json_object_get(body, "public_name");
	if (v != NULL && !json_is_null(v) && (!json_is_string(v) ||
	    (*json_string_value(v) != '\0' && services_util_host(
	    json_string_value(v), host, &cause) == -1))) {
		api_reply_error(r, 400, "bad_field", "public_name: %s", cause ?
		    cause : "must be a host name, or \"\" for the node's own");
		goto out;
	}
	if (services_begin(r) == -1)
		goto out;
	st = store_prepare(sc->db, "INSERT INTO services_backends (node_id, "
	    "public_name) VALUES (?1, ?2) ON CONFLICT (node_id) DO UPDATE SET "
	    "public_name = ?2");
	sqlite3_bind_int64(st, 1, node_id);
	sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	snprintf(obj, sizeof(obj), "backend/%s", name);
	/* Its certificate names the new host name: a new generation. */
	if (audit_record(r, "backend.update", obj, json_pack("{s:s}",
	    "public_name", host)) == -1 || services_bump(node_id) == -1 ||
	    store_commit(sc->db) == -1) {
		store_rollback(sc->db);
		api_reply_error(r, 500, "internal", "storing the change failed");
		goto out;
	}
	services_push(node_id);
	api_reply_json(r, 200, services_backend_by_name(name));
out:
	free(cause);
	json_decref(body);
}

/* The MX host of a backend: its public name, hostname or node name. */
char *
services_mx(int64_t node_id)
{
	sqlite3_stmt	*st;
	char		*mx = NULL;

	st = store_prepare(sc->db, "SELECT coalesce(nullif(b.public_name, ''), "
	    "nullif(n.hostname, ''), n.name) FROM nodes n LEFT JOIN "
	    "services_backends b ON b.node_id = n.id WHERE n.id = ?");
	sqlite3_bind_int64(st, 1, node_id);
	if (store_step(st) == SQLITE_ROW)
		mx = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return (mx != NULL ? mx : xstrdup("?"));
}

/* GET /v1/changes?pending=1&failed=1&node=&limit=&cursor= (newest first) */
static void
services_changes_list(struct api_req *r)
{
	sqlite3_stmt	*st;
	const char	*node = api_query(r, "node");
	const char	*pending = api_query(r, "pending");
	const char	*failed = api_query(r, "failed");
	int		 want_p, want_f, limit, n = 0;
	int64_t		 after;
	char		*next = NULL, buf[32];
	json_t		*items, *o;

	if (services_platform_wide(r) == -1 ||
	    params_page_id(r, &limit, &after) == -1)
		return;
	want_p = pending != NULL && strcmp(pending, "0") != 0;
	want_f = failed != NULL && strcmp(failed, "0") != 0;
	items = json_array();
	st = store_prepare(sc->db, "SELECT c.id, c.at, n.name, c.generation, "
	    "c.kind, c.object_id, c.object, c.action, c.state, c.message, "
	    "c.done_at FROM services_changes c JOIN nodes n ON n.id = "
	    "c.node_id WHERE (?1 = 0 OR c.id < ?1) AND (?2 IS NULL OR "
	    "n.name = ?2) AND ((?3 = 0 AND ?4 = 0) OR (?3 AND c.state = "
	    "'pending') OR (?4 AND c.state = 'failed')) ORDER BY c.id DESC "
	    "LIMIT ?5");
	sqlite3_bind_int64(st, 1, after);
	if (node != NULL)
		sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, want_p);
	sqlite3_bind_int(st, 4, want_f);
	sqlite3_bind_int(st, 5, limit + 1);
	while (store_step(st) == SQLITE_ROW) {
		if (n++ == limit) {
			xasprintf(&next, "%lld", (long long)json_integer_value(
			    json_object_get(json_array_get(items,
			    json_array_size(items) - 1), "id")));
			break;
		}
		o = json_object();
		json_object_set_new(o, "id", json_integer(
		    sqlite3_column_int64(st, 0)));
		util_time_fmt(sqlite3_column_int64(st, 1), buf, sizeof(buf));
		json_object_set_new(o, "at", json_string(buf));
		json_object_set_new(o, "node", json_string((const char *)
		    sqlite3_column_text(st, 2)));
		json_object_set_new(o, "generation", json_integer(
		    sqlite3_column_int64(st, 3)));
		json_object_set_new(o, "kind", json_string((const char *)
		    sqlite3_column_text(st, 4)));
		json_object_set_new(o, "object_id", json_string((const char *)
		    sqlite3_column_text(st, 5)));
		json_object_set_new(o, "object", json_string((const char *)
		    sqlite3_column_text(st, 6)));
		json_object_set_new(o, "action", json_string((const char *)
		    sqlite3_column_text(st, 7)));
		json_object_set_new(o, "state", json_string((const char *)
		    sqlite3_column_text(st, 8)));
		json_object_set_new(o, "message", json_string((const char *)
		    sqlite3_column_text(st, 9)));
		if (sqlite3_column_type(st, 10) != SQLITE_NULL) {
			util_time_fmt(sqlite3_column_int64(st, 10), buf,
			    sizeof(buf));
			json_object_set_new(o, "done_at", json_string(buf));
		} else
			json_object_set_new(o, "done_at", json_null());
		json_array_append_new(items, o);
	}
	sqlite3_finalize(st);
	params_reply_page(r, items, next);
}

static const struct ctl_msg_range services_msgs[] = {
	{ MSG_RANGE_SVC_MIN, MSG_RANGE_SVC_MAX, services_agent_msg },
};

/*
 * The certificates backends serve (sites' and mail hosts'), as their
 * agents last reported them: when each expires, and how many are in each
 * state (a failed one is a renewal that did not happen).
 */
static void
services_cert_metrics(struct prom *pr)
{
	sqlite3_stmt	*st;
	char		*b, *n;

	prom_family(pr, "opsn_services_certificate_expiry_timestamp_seconds",
	    "gauge", "When a certificate a backend serves expires (unix "
	    "seconds), by site or mail host name.");
	st = store_prepare(sc->db, "SELECT nd.name, c.kind, CASE c.kind WHEN "
	    "'site' THEN coalesce((SELECT hostname FROM sites WHERE id = "
	    "c.object_id), c.object_id) ELSE c.object_id END, c.not_after "
	    "FROM services_certs c JOIN nodes nd ON nd.id = c.node_id WHERE "
	    "nd.revoked = 0 AND c.not_after IS NOT NULL ORDER BY 1, 2, 3");
	while (store_step(st) == SQLITE_ROW) {
		b = prom_label((const char *)sqlite3_column_text(st, 0));
		n = prom_label((const char *)sqlite3_column_text(st, 2));
		prom_add(pr, "opsn_services_certificate_expiry_timestamp_seconds"
		    "{backend=\"%s\",kind=\"%s\",name=\"%s\"} %lld\n", b,
		    (const char *)sqlite3_column_text(st, 1), n,
		    (long long)sqlite3_column_int64(st, 3));
		free(n);
		free(b);
	}
	sqlite3_finalize(st);
	prom_family(pr, "opsn_services_certificates", "gauge",
	    "Certificates backends serve, by state (none, pending, valid, "
	    "failed).");
	st = store_prepare(sc->db, "SELECT nd.name, c.state, count(*) FROM "
	    "services_certs c JOIN nodes nd ON nd.id = c.node_id WHERE "
	    "nd.revoked = 0 GROUP BY 1, 2 ORDER BY 1, 2");
	while (store_step(st) == SQLITE_ROW) {
		b = prom_label((const char *)sqlite3_column_text(st, 0));
		prom_add(pr, "opsn_services_certificates{backend=\"%s\","
		    "state=\"%s\"} %lld\n", b,
		    (const char *)sqlite3_column_text(st, 1),
		    (long long)sqlite3_column_int64(st, 2));
		free(b);
	}
	sqlite3_finalize(st);
}

/*
 * Provisioning for GET /metrics: per backend, the journal's pending and
 * failed changes, the age of its oldest pending one, and how many
 * generations its agent is behind.
 */
static void
services_metrics(struct prom *pr)
{
	sqlite3_stmt	*st;
	int64_t		 now = util_now();
	char		*l;

	prom_family(pr, "opsn_services_changes", "gauge",
	    "Provisioning changes of a mail or web backend not applied yet "
	    "(pending) or failing (failed).");
	st = store_prepare(sc->db, "SELECT n.name, s.state, count(c.id) FROM "
	    "services_backends b JOIN nodes n ON n.id = b.node_id CROSS JOIN "
	    "(SELECT 'pending' AS state UNION ALL SELECT 'failed') s LEFT JOIN "
	    "services_changes c ON c.node_id = b.node_id AND c.state = s.state "
	    "WHERE n.revoked = 0 GROUP BY n.name, s.state ORDER BY n.name, "
	    "s.state");
	while (store_step(st) == SQLITE_ROW) {
		l = prom_label((const char *)sqlite3_column_text(st, 0));
		prom_add(pr, "opsn_services_changes{backend=\"%s\",state=\"%s\"} "
		    "%lld\n", l, (const char *)sqlite3_column_text(st, 1),
		    (long long)sqlite3_column_int64(st, 2));
		free(l);
	}
	sqlite3_finalize(st);
	prom_family(pr, "opsn_services_oldest_pending_change_age_seconds",
	    "gauge", "Age of a backend's oldest pending change (0: none).");
	prom_family(pr, "opsn_services_generation_lag", "gauge",
	    "Desired generations a backend's agent has not applied yet.");
	st = store_prepare(sc->db, "SELECT n.name, (SELECT min(c.at) FROM "
	    "services_changes c WHERE c.node_id = b.node_id AND c.state = "
	    "'pending'), b.generation - b.applied_generation FROM "
	    "services_backends b JOIN nodes n ON n.id = b.node_id WHERE "
	    "n.revoked = 0 ORDER BY n.name");
	while (store_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		int64_t oldest = sqlite3_column_type(st, 1) == SQLITE_NULL ?
		    now : sqlite3_column_int64(st, 1);

		prom_sample(pr, "opsn_services_oldest_pending_change_age_seconds",
		    "backend", name, (double)(now > oldest ? now - oldest : 0));
		prom_sample(pr, "opsn_services_generation_lag", "backend", name,
		    (double)sqlite3_column_int64(st, 2));
	}
	sqlite3_finalize(st);
	services_cert_metrics(pr);
}

/*
 * Restored from a backup (opsn-controller --restore): a backend may hold
 * a newer state than the backup's, under generations this database will
 * reuse. Every backend's generation jumps past any it can have seen, and
 * the journal starts there, so each gets its whole state again, never a
 * delta computed against a state it does not have.
 */
#define SERVICES_RESTORE_JUMP	((int64_t)1 << 32)

static int
services_restored(struct ctl *c, char **cause)
{
	sqlite3_stmt	*st;
	int		 rc;

	st = store_prepare(c->db, "UPDATE services_backends SET generation = "
	    "generation + ?1, journal_from = generation + ?1");
	sqlite3_bind_int64(st, 1, SERVICES_RESTORE_JUMP);
	rc = store_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "moving the backends' generations: %s",
		    sqlite3_errmsg(c->db));
		return (-1);
	}
	return (0);
}

const struct ctl_module services_module = {
	.m_name = "services",
	.m_init = services_init,
	.m_stop = services_stop,
	.m_routes = services_routes,
	.m_nroutes = nitems(services_routes),
	.m_msgs = services_msgs,
	.m_nmsgs = nitems(services_msgs),
	.m_hello = services_agent_hello,
	.m_gone = services_agent_gone,
	.m_metrics = services_metrics,
	.m_restored = services_restored,
};
