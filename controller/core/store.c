/*
 * The controller's SQLite store: WAL mode, numbered migrations applied at
 * start (PRAGMA user_version), prepared statements only.
 */
#include <pthread.h>
#include <stdint.h>
#include <sys/statvfs.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core.h"
#include "migrations.h"

/* The controller's state; set by main, read by every subsystem. */
struct ctl	*ctl;

/* A statement of the write connection's open transaction failed. */
static int	 store_doomed;
static int	 store_alone;	/* a store_begin_alone() transaction is open */
/* Tables whose changes are counted (store_table_watch). */
#define STORE_TABLES_MAX	8
static struct {
	const char	*tw_table;
	uint64_t	*tw_counter;
}		 store_tw[STORE_TABLES_MAX];
static size_t	 store_ntw;
/* The thread's own read connection (store_reader). */
static __thread struct {
	char		*sr_path;
	sqlite3		*sr_db;
} store_rd;
/* Statements of the write connection that failed. */
static uint64_t	 store_failures;

/*
 * A write failed with SQLITE_FULL: writes wait for space (1 MiB more than
 * then), or ten seconds, before they are tried again.
 */
#define STORE_FULL_SLACK	(1 << 20)
#define STORE_FULL_RETRY_MS	10000	/* or try again after this long */
/*
 * A measure of free space far above the floor is reused for a moment:
 * statvfs() at every write was 4 % of a small POST's cost, and 64 MiB
 * cannot go in 100 ms of writes of at most 1 MiB each.
 */
#define STORE_AVAIL_REUSE_MS	100
#define STORE_AVAIL_MARGIN	(64 << 20)
static int	 store_full;
static int64_t	 store_full_avail;
static uint64_t	 store_full_at;

static int64_t	 store_avail(void);
static void	 store_note_full(void);

/*
 * Read connections for the thread pool. The prototype belongs in ctl.h,
 * next to store_open(); it is repeated in each user until it moves there.
 */
int	store_open_reader(const char *path, sqlite3 **, char **cause);

static void	store_cache_drop(sqlite3 *);
static int	store_grouped(sqlite3 *);
static void	store_group_idle_cb(uv_idle_t *);
static void	store_group_wait_cb(uv_timer_t *);

static int
store_pragma_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	if (store_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

static void
store_sql_day(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	sqlite3_result_int64(ctx, calendar_day(sqlite3_value_int64(argv[0])));
}

static void
store_sql_month(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	sqlite3_result_int64(ctx, calendar_month(sqlite3_value_int64(
	    argv[0])));
}

static void
store_sql_tz(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	sqlite3_result_text(ctx, calendar_tz(), -1, SQLITE_STATIC);
}

/*
 * The operator's calendar in SQL, on every connection the store opens
 * (migrations use it): opsn_day(t) and opsn_month(t) are the local
 * midnights (UTC seconds) starting the day and the month holding t;
 * opsn_tz() names the zone.
 */
static int
store_sql_functions(sqlite3 *db)
{
	static const struct {
		const char	*name;
		int		 nargs;
		void		(*fn)(sqlite3_context *, int,
				    sqlite3_value **);
	} fns[] = {
		{ "opsn_day", 1, store_sql_day },
		{ "opsn_month", 1, store_sql_month },
		{ "opsn_tz", 0, store_sql_tz },
	};
	size_t	 i;

	for (i = 0; i < nitems(fns); i++)
		if (sqlite3_create_function(db, fns[i].name, fns[i].nargs,
		    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, fns[i].fn, NULL,
		    NULL) != SQLITE_OK)
			return (-1);
	return (0);
}

/*
 * Bring the schema to the latest version. Every pending migration runs in
 * one transaction with the version bump: a migration that fails rolls
 * back them all and the file is left as it was (the caller refuses to
 * start). A database newer than this binary is never touched.
 */
static int
store_migrate(sqlite3 *db, char **cause)
{
	int		 have, latest = 0;
	size_t		 i;
	char		*sql, *err = NULL;
	const char	*step = NULL;

	if (store_pragma_int(db, "PRAGMA user_version", &have) == -1) {
		xasprintf(cause, "reading the schema version: %s",
		    sqlite3_errmsg(db));
		return (-1);
	}
	for (i = 0; i < nmigrations; i++)
		if (migrations[i].m_version > latest)
			latest = migrations[i].m_version;
	if (have > latest) {
		xasprintf(cause, "the database has schema version %d, newer "
		    "than this controller knows (%d): it was upgraded by a "
		    "newer opsn-controller. Downgrades are refused; run that "
		    "version again, or restore a backup taken before the "
		    "upgrade (nothing was changed)", have, latest);
		return (-1);
	}
	if (have == latest)
		return (0);
#ifdef OPSN_TEST_BUILD
	/* The upgrade tests make one migration fail after it ran. */
	int		 fail = 0;

	if (getenv("OPSN_TEST_MIGRATION_FAIL") != NULL)
		fail = atoi(getenv("OPSN_TEST_MIGRATION_FAIL"));
#endif
	log_notice("store: upgrading the schema from version %d to %d", have,
	    latest);
	if (store_exec(db, "BEGIN IMMEDIATE", cause) == -1)
		return (-1);
	for (i = 0; i < nmigrations; i++) {
		const struct migration *m = &migrations[i];

		if (m->m_version <= have)
			continue;
		step = m->m_name;
		xasprintf(&sql, "%s\nPRAGMA user_version = %d;", m->m_sql,
		    m->m_version);
#ifdef OPSN_TEST_BUILD
		if (m->m_version == fail) {
			free(sql);
			xasprintf(&sql, "%s\nSELECT opsn_test_failure();",
			    m->m_sql);
		}
#endif
		if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
			free(sql);
			goto fail;
		}
		free(sql);
		log_info("store: applied migration %s", m->m_name);
	}
	step = "commit";
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK)
		goto fail;
	return (0);
fail:
	xasprintf(cause, "migration %s failed: %s; every migration was rolled "
	    "back, the database is still at schema version %d", step,
	    err ? err : sqlite3_errmsg(db), have);
	sqlite3_free(err);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return (-1);
}

/* Open (creating) the database, set WAL and apply pending migrations. */
int
store_open(const char *path, sqlite3 **dbp, char **cause)
{
	sqlite3	*db = NULL;
	char	*err = NULL;

#ifdef OPSN_TEST_BUILD
	faultvfs_install();
#endif
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		xasprintf(cause, "%s: %s", path, db ? sqlite3_errmsg(db) :
		    "out of memory");
		sqlite3_close(db);
		return (-1);
	}
	sqlite3_busy_timeout(db, 5000);
	if (store_sql_functions(db) == -1) {
		xasprintf(cause, "%s: SQL functions: %s", path,
		    sqlite3_errmsg(db));
		sqlite3_close(db);
		return (-1);
	}
	if (sqlite3_exec(db, "PRAGMA journal_mode = WAL;"
	    "PRAGMA synchronous = FULL;"
	    "PRAGMA foreign_keys = ON;", NULL, NULL, &err) != SQLITE_OK) {
		xasprintf(cause, "%s: %s", path, err);
		sqlite3_free(err);
		sqlite3_close(db);
		return (-1);
	}
	if (store_migrate(db, cause) == -1) {
		char *why = *cause;

		xasprintf(cause, "%s: %s", path, why);
		free(why);
		sqlite3_close(db);
		return (-1);
	}
	*dbp = db;
	return (0);
}

/*
 * The page cache of a read connection, KiB (SQLite's default: 2,000). The
 * writer commits at nearly every loop iteration, so a reader finds its
 * pages stale and drops them at the start of each job: its cache serves
 * only what one job reads twice (the upper pages of the b-trees it
 * searches). A rollup round or a whole-platform usage query fills the
 * default 2 MiB: four pool threads would hold 8 MiB. At 128 KiB, the
 * whole cache is one block (SQLITE_CONFIG_PAGECACHE in main.c), and a
 * member's month of usage at national scale answers in 1.5 ms (p50
 * under load; 0.29 s for every member's CSV). (A sort spills to a
 * temporary file past the larger of this and 250 pages.)
 */
#define STORE_READER_CACHE_KIB	128

/*
 * Open a read-only connection to the database at path, for work on the
 * thread pool: the write connection belongs to the loop thread. Open one
 * per job and use it from one thread at a time (SQLITE_OPEN_NOMUTEX). The
 * database must be in WAL mode (store_open() set it), where readers and
 * the writer never block each other; a reader holds a snapshot for as
 * long as its transaction (or statement) lasts.
 */
int
store_open_reader(const char *path, sqlite3 **dbp, char **cause)
{
	char		 sql[64];
	sqlite3		*db = NULL;
	sqlite3_stmt	*st = NULL;
	const char	*mode;
	int		 wal = 0;

	*dbp = NULL;
	if (path == NULL || *path == '\0') {
		*cause = xstrdup("a read connection needs a database file (not "
		    "an in-memory one)");
		return (-1);
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		xasprintf(cause, "%s: %s", path, db ? sqlite3_errmsg(db) :
		    "out of memory");
		sqlite3_close(db);
		return (-1);
	}
	sqlite3_busy_timeout(db, 5000);
	/* Before the first page is read: its cache's block is sized then. */
	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d",
	    STORE_READER_CACHE_KIB);
	sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (store_sql_functions(db) == -1) {
		xasprintf(cause, "%s: SQL functions: %s", path,
		    sqlite3_errmsg(db));
		sqlite3_close(db);
		return (-1);
	}
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st,
	    NULL) == SQLITE_OK && store_step(st) == SQLITE_ROW &&
	    (mode = (const char *)sqlite3_column_text(st, 0)) != NULL)
		wal = strcmp(mode, "wal") == 0;
	sqlite3_finalize(st);
	if (!wal) {
		xasprintf(cause, "%s: not in WAL mode, a reader would block "
		    "the writer", path);
		sqlite3_close(db);
		return (-1);
	}
	*dbp = db;
	return (0);
}

/*
 * The calling thread's read connection to path, opened at its first job
 * and kept: opening one parses the whole schema, two thirds of the time
 * of a small usage query. Statements from store_stmt() on it stay cached
 * in the thread. store_reader_done() ends what a job left open (a
 * statement not reset, a read transaction), so that no snapshot outlives
 * its job.
 */
int
store_reader(const char *path, sqlite3 **dbp, char **cause)
{
	if (store_rd.sr_db != NULL && path != NULL &&
	    strcmp(store_rd.sr_path, path) == 0) {
		*dbp = store_rd.sr_db;
		return (0);
	}
	store_reader_drop();
	if (store_open_reader(path, dbp, cause) == -1)
		return (-1);
	store_rd.sr_db = *dbp;
	store_rd.sr_path = xstrdup(path);
	return (0);
}

void
store_reader_done(sqlite3 *db)
{
	sqlite3_stmt	*st = NULL;

	if (db == NULL)
		return;
	if (db != store_rd.sr_db) {
		store_close(db);
		return;
	}
	while ((st = sqlite3_next_stmt(db, st)) != NULL)
		sqlite3_reset(st);
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* Close the thread's read connection (tests; a thread that ends). */
void
store_reader_drop(void)
{
	store_close(store_rd.sr_db);
	store_rd.sr_db = NULL;
	free(store_rd.sr_path);
	store_rd.sr_path = NULL;
}

/*
 * Close the database (NULL is fine), with its cached statements. The
 * cache is the loop thread's: a pool thread closing its reader (which
 * never has cached statements) leaves it alone.
 */
void
store_close(sqlite3 *db)
{
	if (db == NULL)
		return;
	if (store_grouped(db))
		store_group_stop();
	store_cache_drop(db);
	sqlite3_close(db);
}

/* Run SQL with no results. */
int
store_exec(sqlite3 *db, const char *sql, char **cause)
{
	char	*err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		if (cause != NULL)
			xasprintf(cause, "%s", err ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

/*
 * Group commit. Once store_group_start() names the loop's connection,
 * store_begin() on it opens (or joins) one transaction and a savepoint
 * per caller; store_commit() releases the savepoint, store_rollback()
 * undoes that caller's work only. The transaction commits (one fsync) in
 * the check phase of the first iteration that brings it no write from an
 * API client (see store_group_check_cb), after every request the
 * iteration read has been handled; until then the
 * API holds every reply (api_hold) and modules hold what they would
 * tell agents (store_group_open()), so that no one hears of a change
 * before it is durable. Watchers learn how each group ended.
 */
#define STORE_WATCH_MAX		8
/*
 * A group commits at the first iteration that brings no write, or once it
 * holds this many writes (or the limits of store_group_wait()).
 */
#define STORE_GROUP_MAX_WRITES	256
#define STORE_GROUP_WAIT_MS	1	/* for clients that did not come */

static struct {
	sqlite3		*g_db;		/* the grouped connection; NULL: off */
	uv_check_t	 g_check;
	uv_idle_t	 g_idle;	/* no poll wait while a group is open */
	uv_timer_t	 g_timer;	/* or a short one (store_group_wait_cb) */
	int		 g_waited;	/* that wait is over */
	int		 g_open;
	int		 g_depth;	/* savepoints open in the group */
	uint64_t	 g_joined;	/* savepoints released into it */
	uint64_t	 g_seen;	/* g_joined at the last check phase */
	int		 g_turns;	/* check phases it stayed open */
	uint64_t	 g_t0;		/* uv_hrtime() when it opened */
	int		 g_max_turns;
	uint64_t	 g_young_ns;
	uint64_t	(*g_waiting)(void);
	uint64_t	 g_wseen;	/* g_waiting() at the last check */
	uint64_t	 g_wopen;	/* g_waiting() when it opened */
	uint64_t	 g_answered;	/* clients the last group answered */
	struct store_stats g_stats;
	struct {
		void	(*w_fn)(int ok, void *);
		void	*w_arg;
	}		 g_watch[STORE_WATCH_MAX];
	size_t		 g_nwatch;
} store_group;

static int
store_step_sql(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st = store_stmt(db, sql);
	int		 rc = store_step(st);

	store_done(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* End the open group: commit (ok) or roll back, then tell everyone. */
static void
store_group_end(int ok)
{
	sqlite3	*db = store_group.g_db;
	size_t	 i;

	if (!store_group.g_open)
		return;
	if (store_group.g_depth > 0)
		log_warnx("store: %d savepoints still open at group commit",
		    store_group.g_depth);
	if (ok && !sqlite3_get_autocommit(db) && store_step_sql(db,
	    "COMMIT") == -1) {
		log_warnx("store: group commit of %llu changes failed: %s",
		    (unsigned long long)store_group.g_joined,
		    sqlite3_errmsg(db));
		ok = 0;
	}
	if (!ok) {
		store_group.g_stats.ss_failed++;
		if (!sqlite3_get_autocommit(db))
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	} else {
		store_group.g_stats.ss_commits++;
		store_group.g_stats.ss_joined += store_group.g_joined;
	}
	store_group.g_open = 0;
	store_group.g_depth = 0;
	store_group.g_joined = 0;
	store_group.g_seen = 0;
	store_group.g_turns = 0;
	store_group.g_waited = 0;
	/* They will write again once their replies are out. */
	store_group.g_answered = store_group.g_waiting != NULL ?
	    store_group.g_waiting() - store_group.g_wopen : 0;
	uv_idle_stop(&store_group.g_idle);
	uv_timer_stop(&store_group.g_timer);
	api_release(ok);
	for (i = 0; i < store_group.g_nwatch; i++)
		store_group.g_watch[i].w_fn(ok, store_group.g_watch[i].w_arg);
}

/*
 * SQLite rolls a whole transaction back on some errors (a full disk, an
 * I/O error): the group is lost, and every change in it.
 */
static int
store_group_lost(void)
{
	if (store_group.g_open && sqlite3_get_autocommit(store_group.g_db)) {
		log_warnx("store: the group transaction was rolled back by "
		    "SQLite: %s", sqlite3_errmsg(store_group.g_db));
		store_group_end(0);
		return (1);
	}
	return (0);
}

static void
store_group_check_cb(uv_check_t *h)
{
	uint64_t	 waiting = 0;
	int		 more, fresh, young;

	if (store_group_lost() || !store_group.g_open)
		return;
	if (store_group.g_waiting != NULL)
		waiting = store_group.g_waiting();
	more = store_group.g_waiting == NULL ||
	    waiting > store_group.g_wseen;
	fresh = store_group.g_joined > store_group.g_seen;
	store_group.g_wseen = waiting;
	store_group.g_seen = store_group.g_joined;
	young = store_group.g_joined < STORE_GROUP_MAX_WRITES &&
	    store_group.g_turns + 1 < store_group.g_max_turns &&
	    uv_hrtime() - store_group.g_t0 < store_group.g_young_ns;
	/*
	 * Writes joined in this iteration, and callers wait for the commit
	 * to send more (the API's clients): one more iteration (the idle
	 * handle keeps it from waiting) may bring the writes of the clients
	 * whose replies the last commit released, and which arrived while
	 * this one ran. Agents' writes do not come that way: waiting for
	 * them would hold every reply for one more iteration, however long.
	 */
	if (young && fresh && more) {
		store_group.g_turns++;
		uv_timer_stop(&store_group.g_timer);
		uv_idle_start(&store_group.g_idle, store_group_idle_cb);
		return;
	}
	/*
	 * None came, but not every client the last group answered has
	 * written again (a slow disk: their replies went out just now):
	 * wait for them a little, in the poll (store_group_wait_cb).
	 */
	if (young && store_group.g_waiting != NULL && !store_group.g_waited &&
	    waiting - store_group.g_wopen < store_group.g_answered) {
		store_group.g_turns++;
		uv_idle_stop(&store_group.g_idle);
		if (!uv_is_active((uv_handle_t *)&store_group.g_timer))
			uv_timer_start(&store_group.g_timer,
			    store_group_wait_cb, STORE_GROUP_WAIT_MS, 0);
		return;
	}
	/* The group is old, large, has waited enough, or no one comes. */
	store_group_end(1);
}

static void
store_group_idle_cb(uv_idle_t *h)
{
}

/* The short wait for the clients that did not come is over: commit. */
static void
store_group_wait_cb(uv_timer_t *t)
{
	store_group.g_waited = 1;
	uv_idle_start(&store_group.g_idle, store_group_idle_cb);
}

/* Group the writes of db (the loop's connection) from now on. */
void
store_group_start(sqlite3 *db, uv_loop_t *loop)
{
	store_group.g_db = db;
	store_group_wait(STORE_GROUP_TURNS, STORE_GROUP_YOUNG_NS, NULL);
	uv_check_init(loop, &store_group.g_check);
	uv_idle_init(loop, &store_group.g_idle);
	/* Like the idle handle, it keeps the loop alive while it runs. */
	uv_timer_init(loop, &store_group.g_timer);
	uv_check_start(&store_group.g_check, store_group_check_cb);
	/* An open group (its idle handle active) keeps the loop alive. */
	uv_unref((uv_handle_t *)&store_group.g_check);
}

/*
 * How long a group may wait for more writes (core.h), and when:
 * waiting() counts the writes whose callers wait for a commit before they
 * send more (NULL: every write).
 */
void
store_group_wait(int turns, uint64_t young_ns, uint64_t (*waiting)(void))
{
	store_group.g_max_turns = turns;
	store_group.g_young_ns = young_ns;
	store_group.g_waiting = waiting;
}

/* Commit what is open and stop grouping (at shutdown). */
void
store_group_stop(void)
{
	if (store_group.g_db == NULL)
		return;
	store_group_check_cb(&store_group.g_check);
	uv_close((uv_handle_t *)&store_group.g_check, NULL);
	uv_close((uv_handle_t *)&store_group.g_idle, NULL);
	uv_close((uv_handle_t *)&store_group.g_timer, NULL);
	store_group.g_db = NULL;
}

static int
store_grouped(sqlite3 *db)
{
	return (db != NULL && db == store_group.g_db);
}

/* Is a group transaction open (its changes not yet durable)? */
int
store_group_open(void)
{
	return (store_group.g_open);
}

/* Call fn(ok) after each group transaction ends (committed or not). */
void
store_group_watch(void (*fn)(int ok, void *), void *arg)
{
	size_t	 i;

	for (i = 0; i < store_group.g_nwatch; i++)
		if (store_group.g_watch[i].w_fn == fn &&
		    store_group.g_watch[i].w_arg == arg)
			return;
	if (store_group.g_nwatch == STORE_WATCH_MAX)
		fatalx("store: more than %d group watchers", STORE_WATCH_MAX);
	store_group.g_watch[store_group.g_nwatch].w_fn = fn;
	store_group.g_watch[store_group.g_nwatch].w_arg = arg;
	store_group.g_nwatch++;
}

static void
store_update_cb(void *arg, int op, const char *dbname, const char *table,
    sqlite3_int64 rowid)
{
	size_t	 i;

	for (i = 0; i < store_ntw; i++)
		if (strcmp(table, store_tw[i].tw_table) == 0)
			(*store_tw[i].tw_counter)++;
}

/* Whatever a rollback undid, every watched table may have changed. */
static void
store_rollback_cb(void *arg)
{
	size_t	 i;

	for (i = 0; i < store_ntw; i++)
		(*store_tw[i].tw_counter)++;
}

/*
 * Count a table's changes (see core.h) with SQLite's update hook. The
 * hook misses the truncate optimization of a DELETE without WHERE, which
 * SQLite does not use on a table other tables reference (foreign keys).
 */
void
store_table_watch(sqlite3 *db, const char *table, uint64_t *counter)
{
	if (store_ntw == STORE_TABLES_MAX)
		fatalx("store: more than %d watched tables", STORE_TABLES_MAX);
	store_tw[store_ntw].tw_table = table;
	store_tw[store_ntw].tw_counter = counter;
	store_ntw++;
	sqlite3_update_hook(db, store_update_cb, NULL);
	sqlite3_rollback_hook(db, store_rollback_cb, NULL);
}

int64_t
store_data_version(sqlite3 *db)
{
	sqlite3_stmt	*st = store_stmt(db, "PRAGMA data_version");
	int64_t		 v = -1;

	if (store_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	store_done(st);
	return (v);
}

/* Counters since start, for /metrics. */
void
store_group_stats(struct store_stats *out)
{
	*out = store_group.g_stats;
}

/* Start a write transaction (a savepoint in the group, when grouped). */
int
store_begin(sqlite3 *db)
{
	if (store_alone && db == store_group.g_db)
		return (-1);
	if (db != store_group.g_db) {
		if (store_exec(db, "BEGIN IMMEDIATE", NULL) == -1)
			return (-1);
		if (ctl != NULL && db == ctl->db)
			store_doomed = 0;
		return (0);
	}
	store_group_lost();
	if (!store_group.g_open) {
		if (store_step_sql(db, "BEGIN IMMEDIATE") == -1)
			return (-1);
		store_group.g_open = 1;
		store_group.g_t0 = uv_hrtime();
		if (store_group.g_waiting != NULL)
			store_group.g_wseen = store_group.g_wopen =
			    store_group.g_waiting();
		uv_idle_start(&store_group.g_idle, store_group_idle_cb);
		api_hold();
	}
	if (store_step_sql(db, "SAVEPOINT opsn") == -1)
		return (-1);
	if (++store_group.g_depth == 1)
		store_doomed = 0;
	return (0);
}

/*
 * A transaction of its own on the grouped connection. Inside the group's
 * savepoint SQLite copies each page a statement changes into the
 * statement journal (every statement here may abort: the triggers that
 * keep closed statements closed), and the copies pile up until the
 * savepoint ends: 470,000 page writes to a temporary file for a national
 * statement generation. With no savepoint open, each statement's copies
 * stay in memory and go when the statement ends.
 */
int
store_begin_alone(sqlite3 *db)
{
	if (db != store_group.g_db)
		return (store_begin(db));
	if (store_group.g_depth > 0 || store_alone) {
		log_warnx("store: a transaction of its own inside another");
		return (-1);
	}
	if (!store_group_lost())
		store_group_end(1);
	if (store_step_sql(db, "BEGIN IMMEDIATE") == -1)
		return (-1);
	store_alone = 1;
	store_doomed = 0;
	return (0);
}

/*
 * Commit; on failure the transaction is rolled back. A transaction in
 * which a statement failed (store_step) is rolled back, never committed
 * in part: the caller answers 500 as for a failed commit.
 */
int
store_commit(sqlite3 *db)
{
	int	 full;

	if (ctl != NULL && db == ctl->db && store_doomed) {
		log_warnx("store: a statement of this transaction failed: "
		    "rolled back");
		store_rollback(db);
		return (-1);
	}
	if (db != store_group.g_db || store_alone) {
		store_alone = 0;
		if (store_exec(db, "COMMIT", NULL) == -1) {
			full = (sqlite3_extended_errcode(db) & 0xff) ==
			    SQLITE_FULL;
			log_warnx("store: commit failed: %s",
			    sqlite3_errmsg(db));
			store_rollback(db);
			if (full && ctl != NULL && db == ctl->db)
				store_note_full();
			return (-1);
		}
		return (0);
	}
	/* A full disk met here or at the group's COMMIT is noted by store_step. */
	if (store_group_lost() || store_group.g_depth == 0)
		return (-1);
	if (store_step_sql(db, "RELEASE opsn") == -1) {
		log_warnx("store: release failed: %s", sqlite3_errmsg(db));
		store_rollback(db);
		return (-1);
	}
	store_group.g_depth--;
	store_group.g_joined++;
	return (0);
}

/* Refuse writes until space comes back (store_space_ok). */
static void
store_note_full(void)
{
	store_full = 1;
	store_full_avail = store_avail();
	store_full_at = util_mono_ms();
}

/* Bytes the controller may still use in its data folder (-1: unknown). */
static int64_t
store_avail(void)
{
	struct statvfs	 vf;

	if (ctl == NULL || ctl->conf.data_dir == NULL ||
	    statvfs(ctl->conf.data_dir, &vf) == -1)
		return (-1);
	return ((int64_t)vf.f_bavail * (int64_t)vf.f_frsize);
}

/* May the controller write (see core.h)? */
int
store_space_ok(char **why)
{
	static int64_t	 last;
	static uint64_t	 last_at;
	int64_t		 avail, min = ctl->conf.min_free_mib << 20;
	uint64_t	 now = util_mono_ms();

	if (!store_full && last >= min + STORE_AVAIL_MARGIN &&
	    now - last_at < STORE_AVAIL_REUSE_MS)
		return (0);
	last = avail = store_avail();
	last_at = now;
	if (avail < 0)
		return (0);
	if (avail < min) {
		xasprintf(why, "the controller's disk is full: %lld MiB left in "
		    "%s, under the %lld MiB it keeps free; free some space (or "
		    "lower min_free_mib)", (long long)(avail >> 20),
		    ctl->conf.data_dir, (long long)ctl->conf.min_free_mib);
		return (-1);
	}
	if (store_full && avail < store_full_avail + STORE_FULL_SLACK &&
	    now - store_full_at < STORE_FULL_RETRY_MS) {
		xasprintf(why, "the controller's disk is full: its last write "
		    "failed for want of space in %s", ctl->conf.data_dir);
		return (-1);
	}
	if (store_full)
		log_notice("store: space is back in %s (%lld MiB)",
		    ctl->conf.data_dir, (long long)(avail >> 20));
	store_full = 0;
	return (0);
}

/* Roll back the open transaction, if any (the caller's savepoint only). */
void
store_rollback(sqlite3 *db)
{
	if (ctl != NULL && db == ctl->db)
		store_doomed = 0;
	if (db != store_group.g_db || store_alone) {
		store_alone = 0;
		if (!sqlite3_get_autocommit(db))
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return;
	}
	if (store_group_lost() || store_group.g_depth == 0)
		return;
	/* SQLite's rollback hook misses a savepoint's. */
	store_rollback_cb(NULL);
	store_step_sql(db, "ROLLBACK TO opsn");
	store_step_sql(db, "RELEASE opsn");
	store_group.g_depth--;
}

/*
 * Statements prepared once per connection and kept (the loop's write
 * connection answers most API reads with the same few dozen SQL texts):
 * an open-addressing table keyed by connection and SQL text, grown when
 * half full. One per thread: the loop's holds the write connection's
 * statements, a pool thread's those of its reader (store_reader), so a
 * statement is only ever used by the thread of its connection.
 */
struct store_slot {
	sqlite3		*ss_db;
	uint64_t	 ss_hash;
	sqlite3_stmt	*ss_st;		/* NULL: free */
};

static __thread struct {
	struct store_slot	*sc_slots;
	size_t			 sc_cap, sc_n;
} store_cache;

#define STORE_HASH_K	0x9e3779b97f4a7c15ULL

/* The cache's hash of a connection and an SQL text. */
static uint64_t
store_hash(sqlite3 *db, const char *sql)
{
	size_t		 len = strlen(sql), i;
	uint64_t	 h = (uint64_t)(uintptr_t)db ^ (len * STORE_HASH_K), w;

	/* Eight bytes a step: the texts run to hundreds of bytes. */
	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, sql + i, 8);
		h = (h ^ w) * STORE_HASH_K;
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, sql + i, len - i);
	h = (h ^ w) * STORE_HASH_K;
	return (h ^ (h >> 29));
}

/* The slot of (db, sql): its statement, or the free slot to fill. */
static struct store_slot *
store_slot(sqlite3 *db, const char *sql, uint64_t h)
{
	struct store_slot	*s;
	size_t			 i;

	for (i = h & (store_cache.sc_cap - 1);; i = (i + 1) &
	    (store_cache.sc_cap - 1)) {
		s = &store_cache.sc_slots[i];
		if (s->ss_st == NULL || (s->ss_db == db && s->ss_hash == h &&
		    strcmp(sqlite3_sql(s->ss_st), sql) == 0))
			return (s);
	}
}

static void
store_cache_grow(void)
{
	struct store_slot	*old = store_cache.sc_slots, *s;
	size_t			 i, oldcap = store_cache.sc_cap;

	store_cache.sc_cap = oldcap ? oldcap * 2 : 256;
	store_cache.sc_slots = xcalloc(store_cache.sc_cap,
	    sizeof(*store_cache.sc_slots));
	for (i = 0; i < oldcap; i++) {
		if (old[i].ss_st == NULL)
			continue;
		s = store_slot(old[i].ss_db, sqlite3_sql(old[i].ss_st),
		    old[i].ss_hash);
		*s = old[i];
	}
	free(old);
}

/* Finalize the cached statements of db (before it closes). */
static void
store_cache_drop(sqlite3 *db)
{
	struct store_slot	*old = store_cache.sc_slots, *s;
	size_t			 i, oldcap = store_cache.sc_cap;

	if (oldcap == 0)
		return;
	store_cache.sc_slots = xcalloc(oldcap, sizeof(*store_cache.sc_slots));
	store_cache.sc_n = 0;
	for (i = 0; i < oldcap; i++) {
		if (old[i].ss_st == NULL)
			continue;
		if (old[i].ss_db == db) {
			sqlite3_finalize(old[i].ss_st);
			continue;
		}
		s = store_slot(old[i].ss_db, sqlite3_sql(old[i].ss_st),
		    old[i].ss_hash);
		*s = old[i];
		store_cache.sc_n++;
	}
	free(old);
	/* The thread's last connection: nothing is left to keep. */
	if (store_cache.sc_n == 0) {
		free(store_cache.sc_slots);
		store_cache.sc_slots = NULL;
		store_cache.sc_cap = 0;
	}
}

/*
 * A statement for sql on db, prepared once and kept: reset, bindings
 * cleared. Give it back with store_done(), never sqlite3_finalize(). A
 * statement still in use (the same SQL run inside its own loop) is not
 * handed out twice: the caller then gets a fresh one, which store_done()
 * finalizes. A bad SQL text is fatal, as with store_prepare().
 */
sqlite3_stmt *
store_stmt(sqlite3 *db, const char *sql)
{
	struct store_slot	*s;
	sqlite3_stmt		*st;
	uint64_t		 h = store_hash(db, sql);

	if (2 * (store_cache.sc_n + 1) > store_cache.sc_cap)
		store_cache_grow();
	s = store_slot(db, sql, h);
	if (s->ss_st != NULL) {
		if (sqlite3_stmt_busy(s->ss_st))
			return (store_prepare(db, sql));
		sqlite3_reset(s->ss_st);
		sqlite3_clear_bindings(s->ss_st);
		return (s->ss_st);
	}
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
	    NULL) != SQLITE_OK)
		fatalx("store: preparing '%.60s': %s", sql, sqlite3_errmsg(db));
	s->ss_db = db;
	s->ss_hash = h;
	s->ss_st = st;
	store_cache.sc_n++;
	return (st);
}

/*
 * Done with a statement from store_stmt() (NULL is fine): a cached one is
 * reset, which ends its read at once; a fresh one is finalized.
 */
void
store_done(sqlite3_stmt *st)
{
	struct store_slot	*s;
	sqlite3			*db;
	const char		*sql;

	if (st == NULL)
		return;
	db = sqlite3_db_handle(st);
	sql = sqlite3_sql(st);
	if (store_cache.sc_cap > 0 && sql != NULL) {
		s = store_slot(db, sql, store_hash(db, sql));
		if (s->ss_st == st) {
			sqlite3_reset(st);
			return;
		}
	}
	sqlite3_finalize(st);
}

int
store_step(sqlite3_stmt *st)
{
	sqlite3	*db = sqlite3_db_handle(st);
	int	 rc = sqlite3_step(st);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return (rc);
	/* A constraint is the caller's answer (409 and the like). */
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		log_debug("store: %.60s: %s", sqlite3_sql(st),
		    sqlite3_errmsg(db));
	else
		log_warnx("store: %.60s: %s", sqlite3_sql(st),
		    sqlite3_errmsg(db));
	/* Pool threads have their own (read) connections: never ctl->db. */
	if (ctl == NULL || db != ctl->db)
		return (rc);
	/* Grouped: inside a caller's savepoint, not between two. */
	if (!sqlite3_get_autocommit(db) && (db != store_group.g_db ||
	    store_group.g_depth > 0))
		store_doomed = 1;
	if ((rc & 0xff) == SQLITE_FULL)
		store_note_full();
	store_failures++;
	return (rc);
}

uint64_t
store_write_failures(void)
{
	return (store_failures);
}

/* Prepare a statement; failing here is a bug in our SQL, so it is fatal. */
sqlite3_stmt *
store_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fatalx("store: preparing '%.60s': %s", sql, sqlite3_errmsg(db));
	return (st);
}

/* The controller's epoch (0 until its first restore). */
int
store_epoch(sqlite3 *db, uint64_t *epoch)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	*epoch = 0;
	if (sqlite3_prepare_v2(db, "SELECT epoch FROM controller_epoch", -1,
	    &st, NULL) != SQLITE_OK)
		return (-1);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*epoch = (uint64_t)sqlite3_column_int64(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

/* A time column as RFC 3339 UTC text, or JSON null. */
json_t *
store_json_time(sqlite3_stmt *st, int col)
{
	char	 buf[32];

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return (json_null());
	util_time_fmt(sqlite3_column_int64(st, col), buf, sizeof(buf));
	return (json_string(buf));
}
