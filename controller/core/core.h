/*
 * opsn-controller's core: the state every module shares (one uv loop
 * thread), the store, the CA, the audit trail, the operator's calendar,
 * and the module interface that joins the subsystems.
 */
#ifndef OPSN_CORE_H
#define OPSN_CORE_H

#include <stdint.h>
#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/http.h"

struct ctl_conf {
	char	*data_dir;
	char	*api_listen;
	char	*agent_listen;
	char	*server_names;		/* comma separated; empty = defaults */
	int64_t	 unreachable_ms;
	int64_t	 heartbeat_ms;
	int64_t	 node_token_ttl_ms;	/* default for opsnctl node token */
	int64_t	 max_agents;
	int64_t	 min_free_mib;		/* writes refused below it */
	char	*api_url;		/* what agents use; "" = derived */
	char	*tz;			/* [operator] tz: the calendar's zone */
	int64_t	 meter_raw_retention_ms;
	int64_t	 meter_rollup_ms;
	int64_t	 meter_hourly_retention_ms;	/* 0: kept */
	int64_t	 mail_retention_ms;	/* deleted mailboxes kept; 0: purge */
	char	*console_dir;		/* the web console's files; "" = found */
	int64_t	 console_idle_ms;	/* a session ends after this idle */
	int64_t	 console_lifetime_ms;	/* and after this in any case */
	int	 console_require_totp;	/* admin accounts need a second factor */
	int64_t	 audit_checkpoint_ms;	/* signed checkpoints; 0: default */
	char	*sched_policy;		/* spread or pack */
	char	*log_level;
	char	*log_file;
	/* [accounting]: the OPSN as the ordonnateur of its titres (PES V2) */
	char	*acc_siret;		/* IdColl */
	char	*acc_poste;		/* IdPost */
	char	*acc_poste_label;
	char	*acc_collectivity;	/* CodCol */
	char	*acc_budget;		/* CodBud */
	char	*acc_budget_label;
	char	*acc_products;		/* KEY=PRODUCT:NATURE ... */
	char	*acc_lines;		/* service | statement */
	char	*acc_fonction;
	char	*acc_object;
	int	 acc_signed;
	int64_t	 acc_first_bordereau;
	int64_t	 acc_first_titre;
	int64_t	 api_max_body;		/* bytes in one request */
	int64_t	 api_max_conns;
	int64_t	 api_handshake_ms;
	int64_t	 api_request_ms;
	int64_t	 api_rate;		/* requests/s per token, 0 = none */
	int64_t	 api_burst;
	int64_t	 api_max_buffered;	/* bytes of bodies being read */
};

struct ctl_module;

struct ctl {
	struct ctl_conf	 conf;
	uv_loop_t	*loop;
	sqlite3		*db;		/* the write connection, loop thread only */
	X509		*ca;
	EVP_PKEY	*ca_key;
	char		 ca_fpr[65];
	/* The names the server certificate answers to (CN, SAN). */
	char		**server_names;
	size_t		 nserver_names;
	SSL_CTX		*agent_ctx;	/* TLS 1.3, optional client certs */
	SSL_CTX		*api_ctx;
	uint32_t	 proto_min, proto_max;
	uint64_t	 epoch;		/* controller_epoch: 0 until a restore */
	const char	*conffile;	/* -c, or NULL (backups copy it) */
	/* The modules main.c lists, NULL-terminated, in start order. */
	const struct ctl_module *const *modules;
};

extern struct ctl	*ctl;

/*
 * A controller module (in the spirit of tmux's cmd_entry): everything the
 * rest of the controller knows of a subsystem. main.c lists the modules;
 * the router serves their routes, the agent listener hands them the
 * frames of their message ranges and tells them when nodes come and go.
 * Every member but the name may be NULL or zero.
 */
struct ctl_msg_range {
	uint16_t	 mr_min, mr_max;	/* frame types, inclusive */
	/* A frame from a node that said HELLO (payload not yet decoded). */
	void		(*mr_fn)(int64_t node_id, uint16_t type,
			    const uint8_t *, size_t);
};

struct ctl_module {
	const char			*m_name;
	/* At start, in list order, before the API and the listener open. */
	int				(*m_init)(struct ctl *, char **cause);
	/* At stop, in reverse order. */
	void				(*m_stop)(void);
	const struct api_route		*m_routes;
	size_t				 m_nroutes;
	const struct ctl_msg_range	*m_msgs;
	size_t				 m_nmsgs;
	/* A node said HELLO with its roles ("hypervisor,mail"). */
	void				(*m_hello)(int64_t node_id,
					    const char *roles);
	/* A node's connection is gone, or the node was revoked. */
	void				(*m_gone)(int64_t node_id);
	/* Write the module's families for GET /metrics (http/prom.c). */
	void				(*m_metrics)(struct prom *);
	/*
	 * The database was just restored from a backup (opsn-controller
	 * --restore, before any init, inside the restore's transaction):
	 * forget what the world may have changed since the backup.
	 */
	int				(*m_restored)(struct ctl *, char **cause);
	/*
	 * A credential of this module's own on a request that has neither
	 * a bearer token nor a node certificate (a console session): 0
	 * authenticated (*p filled), 1 none of this module's, -1 refused
	 * after replying.
	 */
	int				(*m_authenticate)(struct api_req *,
					    const struct api_route *,
					    struct api_principal *);
	/*
	 * Add what this module knows of a connected node to its JSON (node
	 * show and lists): node holds "state" (which it may change) when
	 * called; the keys it adds follow the node's own.
	 */
	void				(*m_node_json)(int64_t node_id,
					    json_t *node);
};

extern const struct ctl_module audit_module;	/* the audit trail's routes */

/* core/store.c */
int	store_open(const char *path, sqlite3 **, char **cause);
void	store_close(sqlite3 *);
int	store_exec(sqlite3 *, const char *sql, char **cause);
int	store_begin(sqlite3 *);
/*
 * A write transaction of its own, outside the group (whose open writes
 * commit first), for one long write such as a statement generation;
 * store_commit/rollback end it.
 */
int	store_begin_alone(sqlite3 *);
int	store_commit(sqlite3 *);
void	store_rollback(sqlite3 *);
/*
 * Group commit on the loop's connection (core/store.c): from
 * store_group_start() on, store_begin/commit/rollback on db are a
 * savepoint each inside one transaction, committed (one fsync) in the
 * check phase of the first loop iteration that brings it no write (from
 * a caller waiting for it, store_group_wait(); it waits a little for
 * those the last group answered), or once it is 1 ms old, has waited 4
 * check phases or holds 256 writes. Replies wait for it (the
 * API holds them); store_group_open() says whether a change made now is
 * not durable yet (hold what would announce it), store_group_watch()
 * calls fn(ok) once each group has ended.
 */
void	store_group_start(sqlite3 *, uv_loop_t *);
#define STORE_GROUP_TURNS	4		/* check phases */
#define STORE_GROUP_YOUNG_NS	(1000 * 1000)	/* 1 ms */
void	store_group_wait(int turns, uint64_t young_ns,
	    uint64_t (*waiting)(void));
void	store_group_stop(void);
int	store_group_open(void);
void	store_group_watch(void (*fn)(int ok, void *), void *);
/*
 * Count the changes to table on db (the loop's writer): *counter grows
 * at every row inserted, updated or deleted there, and at every rollback
 * (of a savepoint too), so that what was built from the table can be
 * kept for as long as the counter stays the same.
 */
void	store_table_watch(sqlite3 *db, const char *table, uint64_t *counter);
/* PRAGMA data_version: it changes when another connection commits. */
int64_t	store_data_version(sqlite3 *);
struct store_stats {
	uint64_t	ss_commits;	/* group transactions committed */
	uint64_t	ss_joined;	/* savepoints they held */
	uint64_t	ss_failed;	/* groups lost */
};
void	store_group_stats(struct store_stats *);
/* A read-only connection (WAL) for work on the thread pool. */
int	store_open_reader(const char *path, sqlite3 **, char **cause);
/*
 * The calling thread's read connection to path, kept open from job to
 * job (its statements from store_stmt() cached with it); give it back at
 * the end of each job with store_reader_done(), which resets what is
 * still running and ends an open read transaction.
 */
int	store_reader(const char *path, sqlite3 **, char **cause);
void	store_reader_done(sqlite3 *);
void	store_reader_drop(void);
/* The controller's epoch (controller_epoch), 0 until its first restore. */
int	store_epoch(sqlite3 *, uint64_t *);
/*
 * May the controller write? -1 with *why (the caller frees) when its data
 * folder has less than min_free_mib left, or when a commit found the disk
 * full and no space came back since: the API answers 507 and metering
 * acknowledges nothing until then.
 */
int	store_space_ok(char **why);
/* Prepare a statement; a failure here is a programming error: fatal. */
sqlite3_stmt	*store_prepare(sqlite3 *, const char *sql);
/* A time column (unix seconds) as RFC 3339 UTC text, or JSON null. */
json_t		*store_json_time(sqlite3_stmt *, int col);
/*
 * A statement prepared once per connection and kept: reset and unbound
 * when handed out; give it back with store_done(). Each thread has its
 * own cache: use a connection's statements on the thread that closes it.
 */
sqlite3_stmt	*store_stmt(sqlite3 *, const char *sql);
void		 store_done(sqlite3_stmt *);
/*
 * sqlite3_step, checked: SQLITE_ROW or SQLITE_DONE, or the error, logged
 * with the statement. An error in the write connection's transaction
 * dooms it: store_commit() then rolls it back and fails.
 */
int	store_step(sqlite3_stmt *);
/* How many statements of the write connection failed since start. */
uint64_t store_write_failures(void);

#ifdef OPSN_TEST_BUILD
/* core/faultvfs.c: storage that fails on demand (OPSN_TEST_FAULT_FILE). */
void	faultvfs_install(void);
#endif

/* core/ca.c */
int	ca_init(struct ctl *, char **cause);
/* A file in the data folder (caller frees). */
char	*ca_path(const struct ctl *, const char *file);
void	ca_free(struct ctl *);

/* core/secret.c: what is handed out once and stored hashed. */
#define SECRET_BYTES	20
/* SHA-256 of a secret as hex: what the database keeps. */
void	secret_hash(const char *secret, char out[65]);
/* SECRET_BYTES random bytes as hex (caller frees). */
char	*secret_new(void);

/*
 * core/calendar.c: the operator's calendar, one zone for metering's days
 * and billing's periods. calendar_init() runs once at start, before any
 * thread; the rest is safe on any thread.
 */
int	calendar_tz_ok(const char *tz);
int	calendar_init(const char *tz, char **cause);
const char *calendar_tz(void);
/* Seconds east of UTC at instant t. */
int64_t	calendar_offset(int64_t t);
/* Local midnight of y-m-d (the first instant of that local day), in UTC. */
int64_t	calendar_midnight(int y, int m, int d);
/* The local midnight starting the day, or the month, that holds t. */
int64_t	calendar_day(int64_t t);
int64_t	calendar_month(int64_t t);
struct tm;
/* The local calendar fields of t. */
void	calendar_local(int64_t t, struct tm *);

/* core/audit.c: call inside the mutation's transaction. */
int	audit_record(struct api_req *, const char *action, const char *object,
	    json_t *summary);

#endif
