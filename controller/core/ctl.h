/* opsn-controller: state shared by its subsystems (one uv loop thread). */
#ifndef OPSN_CTL_H
#define OPSN_CTL_H

#include <stdint.h>
#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <protobuf-c/protobuf-c.h>

#include "opsn.pb-c.h"
#include "api.h"

struct ctl_conf {
	char	*data_dir;
	char	*api_listen;
	char	*agent_listen;
	char	*server_names;		/* comma separated; empty = defaults */
	int64_t	 unreachable_ms;
	int64_t	 heartbeat_ms;
	int64_t	 node_token_ttl_ms;	/* default for opsnctl node token */
	int64_t	 max_agents;
	char	*api_url;		/* what agents use; "" = derived */
	char	*tz;			/* billing periods' time zone */
	int64_t	 meter_raw_retention_ms;
	int64_t	 meter_rollup_ms;
	char	*log_level;
	char	*log_file;
};

#define CTL_CONF_METERING 1

struct ctl {
	struct ctl_conf	 conf;
	uv_loop_t	*loop;
	sqlite3		*db;		/* the write connection, loop thread only */
	X509		*ca;
	EVP_PKEY	*ca_key;
	char		 ca_fpr[65];
	SSL_CTX		*agent_ctx;	/* TLS 1.3, optional client certs */
	SSL_CTX		*api_ctx;
	uint32_t	 proto_min, proto_max;
};

extern struct ctl	*ctl;

/* controller/store.c */
int	store_open(const char *path, sqlite3 **, char **cause);
void	store_close(sqlite3 *);
int	store_exec(sqlite3 *, const char *sql, char **cause);
int	store_begin(sqlite3 *);
int	store_commit(sqlite3 *);
void	store_rollback(sqlite3 *);
/* A read-only connection (WAL) for work on the thread pool. */
int	store_open_reader(const char *path, sqlite3 **, char **cause);
/* Prepare a statement; a failure here is a programming error: fatal. */
sqlite3_stmt	*store_prepare(sqlite3 *, const char *sql);

/* controller/ca.c */
int	ca_init(struct ctl *, char **cause);
void	ca_free(struct ctl *);

/* controller/tokens.c */
int	tokens_admin_init(struct ctl *, char **cause);
/* A new join token valid for ttl seconds (caller frees the token). */
int	tokens_join_create(struct ctl *, int64_t ttl, char **token,
	    int64_t *expires, char **cause);
/* Consume a join token for node name: 0, or -1 with a reason for the agent. */
int	tokens_join_consume(struct ctl *, const char *token, const char *name,
	    char **cause);
/* Fingerprint part of a join token; it names the CA the agent should pin. */
void	tokens_hash(const char *token, char out[65]);

/* controller/nodes.c */
int	nodes_init(struct ctl *, char **cause);
void	nodes_stop(void);
/* Mark a node revoked and drop its connection; -1 if there is no such node. */
int	nodes_revoke(const char *name, char **cause);
/* JSON of one node (NULL if none) and of all nodes (array). */
json_t	*nodes_json(const char *name);
json_t	*nodes_list_json(const char *after, int limit, char **next);
json_t	*nodes_state_counts(void);
/* Send a frame to a connected node; -1 if it is not connected. */
int	nodes_send(int64_t node_id, uint16_t type, const ProtobufCMessage *);
/* Node id by name, and whether it may get new work (enrolled, not revoked). */
int64_t	nodes_id(const char *name, int *usable);
const char *nodes_name(int64_t id);
/* Check a client certificate presented to the API: 0 and the node name. */
int	nodes_cert_ok(X509 *, char *name, size_t len);
int	nodes_is_ready(int64_t id);

/*
 * Subsystems that are optional at link time (weak): each defines its own
 * route table and agent message handlers in its own file.
 *   services (mail, web):	 controller/services*.c
 *   metering:			 controller/metering*.c
 *   billing:			 controller/billing*.c
 */
#define CTL_MODULE(name)						\
	extern const struct api_route name##_routes[]			\
	    __attribute__((weak));					\
	extern const size_t name##_nroutes __attribute__((weak));	\
	int	name##_init(struct ctl *, char **cause)			\
	    __attribute__((weak));					\
	void	name##_agent_msg(int64_t node_id, uint16_t type,	\
	    const uint8_t *, size_t) __attribute__((weak));		\
	void	name##_agent_hello(int64_t node_id, const char *roles)	\
	    __attribute__((weak));					\
	void	name##_agent_gone(int64_t node_id) __attribute__((weak));
CTL_MODULE(services)
CTL_MODULE(metering)
CTL_MODULE(billing)

/* controller/apiv1.c */
struct api_req;
int	apiv1_start(struct ctl *, char **cause);
/* limit and cursor query parameters; -1 after replying 400. */
int	apiv1_page(struct api_req *, int *limit, const char **cursor);
/* The next page's cursor: the key of the last item of this page (copy). */
char	*apiv1_last_key(json_t *items, const char *key);
/* Reply {"items": items, "next_cursor": next}; consumes both. */
void	apiv1_reply_page(struct api_req *, json_t *items, char *next);
/* Refuse fields not in the NULL-terminated list; -1 after replying 400. */
int	apiv1_known_fields(struct api_req *, json_t *body,
	    const char *const *known);
/* A required whole number in [min, max]; -1 after replying 400. */
int	apiv1_int_field(struct api_req *, json_t *body, const char *name,
	    int64_t min, int64_t max, int64_t *out);
/* YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or unix seconds. */
int	apiv1_parse_time(const char *, int64_t *);

/* controller/audit.c: call inside the mutation's transaction. */
int	audit_record(struct api_req *, const char *action, const char *object,
	    json_t *summary);
int	audit_verify(int64_t *checked, int64_t *bad_id, char **why);
void	audit_list(struct api_req *);
void	audit_verify_route(struct api_req *);

/* controller/tenants.c */
int	tenants_insee_ok(const char *);
int	tenants_siren_ok(const char *);
int	tenants_text_ok(const char *, size_t max);
int64_t	tenants_resolve(const char *ref);
int64_t	tenants_from_path(struct api_req *, const char *ref);
json_t	*tenants_json(int64_t id);
int	tenants_may_grow(int64_t id, char **cause);
void	tenants_create(struct api_req *);
void	tenants_list(struct api_req *);
void	tenants_get(struct api_req *);
void	tenants_update(struct api_req *);
void	tenants_suspend(struct api_req *);
void	tenants_withdraw(struct api_req *);
void	tenants_activate(struct api_req *);

/* controller/import.c */
void	import_tenants(struct api_req *);

/* controller/plans.c */
int64_t	plans_find(const char *, int64_t *vcpus, int64_t *mem, int64_t *disk);
void	plans_create(struct api_req *);
void	plans_list(struct api_req *);

/* controller/sched.c */
int64_t	sched_place(int64_t vcpus, int64_t mem_mib, int64_t disk,
	    char **cause);

/* controller/tokens.c: the API's tokens */
void	tokens_api_create(struct api_req *);
void	tokens_api_list(struct api_req *);
void	tokens_api_revoke(struct api_req *);

/* controller/images.c */
void	images_create(struct api_req *);
void	images_upload(struct api_req *);
void	images_list(struct api_req *);
void	images_get(struct api_req *);
void	images_download(struct api_req *);
/* Image id by name if it is ready; -1 otherwise (with *cause). */
int64_t	images_ready_id(const char *name, char **cause);
/* Fill ref for image id (strings owned by the caller: images_ref_free). */
int	images_ref(int64_t id, Opsn__ImageRef *ref);
void	images_ref_free(Opsn__ImageRef *ref);

/* controller/vms.c */
void	vms_create(struct api_req *);
void	vms_list(struct api_req *);
void	vms_get(struct api_req *);
void	vms_start(struct api_req *);
void	vms_stop(struct api_req *);
void	vms_reboot(struct api_req *);
void	vms_delete(struct api_req *);
void	vms_resize(struct api_req *);
void	vms_console(struct api_req *);
/* Send a node its whole desired state (after HELLO and every change). */
void	vms_push(int64_t node_id);
/* Messages from a node's agent. */
void	vms_observed(int64_t node_id, const uint8_t *, size_t);
void	vms_image_progress(int64_t node_id, const uint8_t *, size_t);
void	vms_console_data(int64_t node_id, const uint8_t *, size_t);

#endif
