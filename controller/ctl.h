/* opsn-controller: state shared by its subsystems (one uv loop thread). */
#ifndef OPSN_CTL_H
#define OPSN_CTL_H

#include <stdint.h>
#include <sqlite3.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct ctl_conf {
	char	*data_dir;
	char	*api_listen;
	char	*agent_listen;
	char	*server_names;		/* comma separated; empty = defaults */
	int64_t	 unreachable_ms;
	int64_t	 heartbeat_ms;
	int64_t	 node_token_ttl_ms;	/* default for opsnctl node token */
	int64_t	 max_agents;
	char	*log_level;
	char	*log_file;
};

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
struct json_t;
struct json_t	*nodes_json(const char *name);
struct json_t	*nodes_list_json(const char *after, int limit, char **next);
struct json_t	*nodes_state_counts(void);

/* controller/apiv1.c */
int	apiv1_start(struct ctl *, char **cause);

#endif
