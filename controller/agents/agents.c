/*
 * The agents module: the agent listener (nodes.c), enrolment (enrol.c)
 * and the API's view of nodes: health, list, join tokens, revocation.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents.h"
#include "nodes.h"

static void	agents_health(struct api_req *);
static void	agents_nodes_list(struct api_req *);
static void	agents_node_get(struct api_req *);
static void	agents_node_tokens(struct api_req *);
static void	agents_node_revoke(struct api_req *);

static const struct api_route agents_routes[] = {
	{ "GET", "/v1/health", NULL,
	  API_PUBLIC, NULL, agents_health,
	  "Liveness, version and nodes by state" },
	{ "GET", "/v1/nodes", "nodes.read",
	  API_PLATFORM, NULL, agents_nodes_list,
	  "List nodes (limit, cursor)" },
	{ "GET", "/v1/nodes/{name}", "nodes.read",
	  API_PLATFORM, NULL, agents_node_get,
	  "Show one node" },
	{ "POST", "/v1/node-tokens", "nodes.enrol",
	  API_PLATFORM, NULL, agents_node_tokens,
	  "Create a one-time join token for an agent" },
	{ "POST", "/v1/nodes/{name}/revoke", "nodes.revoke",
	  API_PLATFORM, NULL, agents_node_revoke,
	  "Revoke a node's certificate and drop its connection" },
};

static void
agents_health(struct api_req *r)
{
	json_t	*o = json_object();

	json_object_set_new(o, "status", json_string("ok"));
	json_object_set_new(o, "version", json_string(OPSN_VERSION));
	json_object_set_new(o, "nodes", nodes_state_counts());
	api_reply_json(r, 200, o);
}

static void
agents_nodes_list(struct api_req *r)
{
	const char	*cursor;
	char		*next;
	int		 limit;
	struct jsonw	 w;

	if (params_page(r, &limit, &cursor) == -1)
		return;
	params_page_open(&w);
	nodes_list_write(&w, cursor, limit, &next);
	params_page_reply(r, &w, next);
	free(next);
}

static void
agents_node_get(struct api_req *r)
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
agents_node_tokens(struct api_req *r)
{
	json_t		*body, *v, *o;
	int64_t		 ttl = ctl->conf.node_token_ttl_ms / 1000, expires;
	static const char *const known[] = { "ttl", NULL };
	char		*cause = NULL, *token, buf[32];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
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
	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	if (enrol_join_create(ctl, ttl, &token, &expires, &cause) == -1 ||
	    audit_record(r, "node.token", "nodes", json_pack("{s:I}",
	    "ttl_seconds", (json_int_t)ttl)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
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
agents_node_revoke(struct api_req *r)
{
	const char	*name = api_param(r, "name");
	char		*cause = NULL, obj[96];
	int64_t		 id;

	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		return;
	}
	snprintf(obj, sizeof(obj), "node/%s", name);
	if (nodes_revoke(name, &id, &cause) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 404, "not_found", "%s", cause);
		free(cause);
		return;
	}
	if (audit_record(r, "node.revoke", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "revoking failed");
		return;
	}
	nodes_revoked(id);
	log_notice("api: %s revoked node %s", api_principal(r)->ap_name, name);
	api_reply_json(r, 200, nodes_json(name));
}

const struct ctl_module agents_module = {
	.m_name = "agents",
	.m_init = nodes_init,
	.m_stop = nodes_stop,
	.m_routes = agents_routes,
	.m_nroutes = nitems(agents_routes),
	.m_metrics = nodes_metrics,
};
