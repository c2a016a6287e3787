/*
 * The controller's SQLite store: WAL mode, numbered migrations applied at
 * start (PRAGMA user_version), prepared statements only.
 */
#include <stdint.h>
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

/*
 * Read connections for the thread pool. The prototype belongs in ctl.h,
 * next to store_open(); it is repeated in each user until it moves there.
 */
int	store_open_reader(const char *path, sqlite3 **, char **cause);

static void	store_cache_drop(sqlite3 *);

static int
store_pragma_int(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

static int
store_migrate(sqlite3 *db, char **cause)
{
	int	 have, latest = 0;
	size_t	 i;
	char	*sql, *err = NULL;

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
		    "than this controller knows (%d): refusing to start", have,
		    latest);
		return (-1);
	}
	for (i = 0; i < nmigrations; i++) {
		const struct migration *m = &migrations[i];

		if (m->m_version <= have)
			continue;
		/* Each migration and its version bump commit together. */
		xasprintf(&sql, "BEGIN IMMEDIATE;\n%s\nPRAGMA user_version = %d;"
		    "\nCOMMIT;", m->m_sql, m->m_version);
		if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
			xasprintf(cause, "migration %s: %s", m->m_name,
			    err ? err : sqlite3_errmsg(db));
			sqlite3_free(err);
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			free(sql);
			return (-1);
		}
		free(sql);
		log_info("store: applied migration %s", m->m_name);
	}
	return (0);
}

/* Open (creating) the database, set WAL and apply pending migrations. */
int
store_open(const char *path, sqlite3 **dbp, char **cause)
{
	sqlite3	*db = NULL;
	char	*err = NULL;

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
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
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

/* Close the database (NULL is fine), with its cached statements. */
void
store_close(sqlite3 *db)
{
	if (db == NULL)
		return;
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

/* Start a write transaction. */
int
store_begin(sqlite3 *db)
{
	return (store_exec(db, "BEGIN IMMEDIATE", NULL));
}

/* Commit; on failure the transaction is rolled back. */
int
store_commit(sqlite3 *db)
{
	if (store_exec(db, "COMMIT", NULL) == -1) {
		log_warnx("store: commit failed: %s", sqlite3_errmsg(db));
		store_rollback(db);
		return (-1);
	}
	return (0);
}

/* Roll back the open transaction, if any. */
void
store_rollback(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * Statements prepared once per connection and kept (the loop's write
 * connection answers most API reads with the same few dozen SQL texts):
 * an open-addressing table keyed by connection and SQL text, grown when
 * half full. Loop thread only, like the connection it serves.
 */
struct store_slot {
	sqlite3		*ss_db;
	uint64_t	 ss_hash;
	sqlite3_stmt	*ss_st;		/* NULL: free */
};

static struct {
	struct store_slot	*sc_slots;
	size_t			 sc_cap, sc_n;
} store_cache;

static uint64_t
store_hash(sqlite3 *db, const char *sql)
{
	uint64_t	 h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)db;

	for (; *sql != '\0'; sql++)
		h = (h ^ (unsigned char)*sql) * 1099511628211ULL;
	return (h);
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

/* Prepare a statement; failing here is a bug in our SQL, so it is fatal. */
sqlite3_stmt *
store_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt	*st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fatalx("store: preparing '%.60s': %s", sql, sqlite3_errmsg(db));
	return (st);
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
