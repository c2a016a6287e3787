/*
 * The controller's SQLite store: WAL mode, numbered migrations applied at
 * start (PRAGMA user_version), prepared statements only.
 */
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
/* Statements of the write connection that failed. */
static uint64_t	 store_failures;

/*
 * A write failed with SQLITE_FULL: writes wait for space (1 MiB more than
 * then), or ten seconds, before they are tried again.
 */
#define STORE_FULL_SLACK	(1 << 20)
#define STORE_FULL_RETRY_MS	10000	/* or try again after this long */
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

/* Close the database (NULL is fine). */
void
store_close(sqlite3 *db)
{
	if (db != NULL)
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

/* Start a write transaction. */
int
store_begin(sqlite3 *db)
{
	if (store_exec(db, "BEGIN IMMEDIATE", NULL) == -1)
		return (-1);
	if (ctl != NULL && db == ctl->db)
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
	if (store_exec(db, "COMMIT", NULL) == -1) {
		full = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_FULL;
		log_warnx("store: commit failed: %s", sqlite3_errmsg(db));
		store_rollback(db);
		if (full)
			store_note_full();
		return (-1);
	}
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
	int64_t	 avail = store_avail(), min = ctl->conf.min_free_mib << 20;

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
	    util_mono_ms() - store_full_at < STORE_FULL_RETRY_MS) {
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

/* Roll back the open transaction, if any. */
void
store_rollback(sqlite3 *db)
{
	if (ctl != NULL && db == ctl->db)
		store_doomed = 0;
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
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
	if (!sqlite3_get_autocommit(db))
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
