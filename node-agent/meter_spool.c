/*
 * The metering spool: every sample is numbered and committed here
 * (synchronous=FULL) before it is sent, and stays until the controller
 * acknowledges it. Sequence numbers only grow: the next one is stored in
 * the same transaction as the samples that used the previous ones, and a
 * new spool starts from the current time in microseconds, above anything
 * an earlier spool of this node can have used (the controller ignores a
 * (node, seq) it already has, so reusing one would lose a sample).
 *
 * Blocking calls: the agent runs them on the thread pool, one at a time.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "meter.h"

#define SPOOL_WARN_PCT	80

Opsn__Sample *
meter_list_add(struct meter_list *l, const char *kind, const char *resource,
    int64_t ts_ms)
{
	Opsn__Sample	*s;

	if (l->ml_n == l->ml_cap) {
		l->ml_cap = l->ml_cap ? 2 * l->ml_cap : 64;
		l->ml_v = xrealloc(l->ml_v, l->ml_cap * sizeof(*l->ml_v));
	}
	s = xcalloc(1, sizeof(*s));
	opsn__sample__init(s);
	s->kind = xstrdup(kind);
	s->resource = xstrdup(resource);
	s->tenant = xstrdup("");
	s->boot = xstrdup("");
	s->ts_ms = ts_ms;
	l->ml_v[l->ml_n++] = s;
	return (s);
}

/* Free a sample made by meter_list_add or unpacked (all strings owned). */
void
meter_sample_free(Opsn__Sample *s)
{
	if (s == NULL)
		return;
	free(s->kind);
	free(s->resource);
	free(s->tenant);
	free(s->boot);
	free(s);
}

void
meter_list_clear(struct meter_list *l)
{
	size_t	 i;

	for (i = 0; i < l->ml_n; i++)
		meter_sample_free(l->ml_v[i]);
	free(l->ml_v);
	memset(l, 0, sizeof(*l));
}

static int
spool_err(struct meter_spool *sp, char **cause, const char *what)
{
	xasprintf(cause, "spool: %s: %s", what, sqlite3_errmsg(sp->sp_db));
	return (-1);
}

static int
spool_exec(struct meter_spool *sp, const char *sql, char **cause)
{
	if (sqlite3_exec(sp->sp_db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return (spool_err(sp, cause, sql));
	return (0);
}

static int
spool_int(struct meter_spool *sp, const char *sql, int64_t *out)
{
	sqlite3_stmt	*st;
	int		 rv = -1;

	if (sqlite3_prepare_v2(sp->sp_db, sql, -1, &st, NULL) != SQLITE_OK)
		return (-1);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return (rv);
}

/* Open or create the spool. */
int
meter_spool_open(struct meter_spool *sp, const char *path, uint64_t max_count,
    uint64_t max_bytes, char **cause)
{
	struct timeval	 tv;
	int64_t		 v;

	memset(sp, 0, sizeof(*sp));
	sp->sp_max_count = max_count;
	sp->sp_max_bytes = max_bytes;
	if (sqlite3_open_v2(path, &sp->sp_db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		xasprintf(cause, "spool %s: %s", path, sp->sp_db ?
		    sqlite3_errmsg(sp->sp_db) : "out of memory");
		meter_spool_close(sp);
		return (-1);
	}
	sqlite3_busy_timeout(sp->sp_db, 5000);
	gettimeofday(&tv, NULL);
	if (spool_exec(sp, "PRAGMA journal_mode = WAL; PRAGMA synchronous = "
	    "FULL; CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, "
	    "ts_ms INTEGER NOT NULL, sample BLOB NOT NULL); CREATE TABLE IF "
	    "NOT EXISTS spool_meta (one INTEGER PRIMARY KEY CHECK (one = 1), "
	    "next_seq INTEGER NOT NULL)", cause) == -1)
		goto fail;
	if (spool_int(sp, "SELECT next_seq FROM spool_meta", &v) == -1) {
		char *sql;

		v = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
		xasprintf(&sql, "INSERT INTO spool_meta VALUES (1, %lld)",
		    (long long)v);
		if (spool_exec(sp, sql, cause) == -1) {
			free(sql);
			goto fail;
		}
		free(sql);
		log_info("metering: new spool %s, sequence numbers from %lld",
		    path, (long long)v);
	}
	sp->sp_next = (uint64_t)v;
	if (spool_int(sp, "SELECT count(*) FROM spool", &v) == 0)
		sp->sp_count = (uint64_t)v;
	if (spool_int(sp, "SELECT coalesce(sum(length(sample)), 0) FROM spool",
	    &v) == 0)
		sp->sp_bytes = (uint64_t)v;
	return (0);
fail:
	meter_spool_close(sp);
	return (-1);
}

void
meter_spool_close(struct meter_spool *sp)
{
	if (sp->sp_db != NULL)
		sqlite3_close(sp->sp_db);
	sp->sp_db = NULL;
}

/* Number and commit the samples of l (see meter.h). */
int
meter_spool_append(struct meter_spool *sp, struct meter_list *l,
    char **cause)
{
	sqlite3_stmt	*ins = NULL, *meta = NULL;
	uint64_t	 seq = sp->sp_next, bytes = 0, kept = 0;
	uint8_t		*buf = NULL;
	size_t		 i, len, cap = 0;

	if (l->ml_n == 0)
		return (0);
	if (spool_exec(sp, "BEGIN IMMEDIATE", cause) == -1)
		return (-1);
	if (sqlite3_prepare_v2(sp->sp_db, "INSERT INTO spool (seq, ts_ms, "
	    "sample) VALUES (?, ?, ?)", -1, &ins, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(sp->sp_db, "UPDATE spool_meta SET next_seq = ?",
	    -1, &meta, NULL) != SQLITE_OK) {
		spool_err(sp, cause, "prepare");
		goto fail;
	}
	for (i = 0; i < l->ml_n; i++) {
		Opsn__Sample *s = l->ml_v[i];

		s->seq = seq;
		len = opsn__sample__get_packed_size(s);
		if (sp->sp_count + kept + 1 > sp->sp_max_count ||
		    sp->sp_bytes + bytes + len > sp->sp_max_bytes) {
			s->seq = 0;
			sp->sp_dropped++;
			continue;
		}
		if (len > cap) {
			cap = len;
			buf = xrealloc(buf, cap);
		}
		opsn__sample__pack(s, buf);
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, (int64_t)seq);
		sqlite3_bind_int64(ins, 2, s->ts_ms);
		sqlite3_bind_blob(ins, 3, buf, (int)len, SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE) {
			spool_err(sp, cause, "insert");
			goto fail;
		}
		seq++;
		kept++;
		bytes += len;
	}
	sqlite3_bind_int64(meta, 1, (int64_t)seq);
	if (sqlite3_step(meta) != SQLITE_DONE) {
		spool_err(sp, cause, "next_seq");
		goto fail;
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(meta);
	ins = meta = NULL;
	if (spool_exec(sp, "COMMIT", cause) == -1)
		goto fail;
	free(buf);
	sp->sp_next = seq;
	sp->sp_count += kept;
	sp->sp_bytes += bytes;
	if (kept < l->ml_n)
		log_warnx("metering: the spool is full (%llu samples, %llu "
		    "bytes): %zu new samples refused, %llu in all",
		    (unsigned long long)sp->sp_count,
		    (unsigned long long)sp->sp_bytes, l->ml_n - (size_t)kept,
		    (unsigned long long)sp->sp_dropped);
	else if (!sp->sp_warned && (sp->sp_count * 100 >= sp->sp_max_count *
	    SPOOL_WARN_PCT || sp->sp_bytes * 100 >= sp->sp_max_bytes *
	    SPOOL_WARN_PCT)) {
		sp->sp_warned = 1;
		log_warnx("metering: the spool is %d %% full (%llu samples, "
		    "%llu bytes): is the controller reachable?",
		    SPOOL_WARN_PCT, (unsigned long long)sp->sp_count,
		    (unsigned long long)sp->sp_bytes);
	}
	return ((int)kept);
fail:
	free(buf);
	sqlite3_finalize(ins);
	sqlite3_finalize(meta);
	sqlite3_exec(sp->sp_db, "ROLLBACK", NULL, NULL, NULL);
	for (i = 0; i < l->ml_n; i++)
		l->ml_v[i]->seq = 0;
	/*
	 * Not stored, so lost (a full disk, a failing one): counted with the
	 * samples a full spool refuses, and reported to the controller.
	 */
	sp->sp_dropped += l->ml_n;
	if (*cause != NULL) {
		char	*why = *cause;

		xasprintf(cause, "%zu samples lost (%llu in all): %s", l->ml_n,
		    (unsigned long long)sp->sp_dropped, why);
		free(why);
	}
	return (-1);
}

/* Read consecutive samples from seq `from` (0: the lowest). */
int
meter_spool_read(struct meter_spool *sp, uint64_t from, size_t max,
    struct meter_list *l, uint64_t *low, int64_t *oldest_ms, char **cause)
{
	sqlite3_stmt	*st;
	Opsn__Sample	*s, *c;
	int		 rc;

	*low = 0;
	*oldest_ms = 0;
	if (sqlite3_prepare_v2(sp->sp_db, "SELECT seq, ts_ms FROM spool ORDER "
	    "BY seq LIMIT 1", -1, &st, NULL) != SQLITE_OK)
		return (spool_err(sp, cause, "read"));
	if (sqlite3_step(st) == SQLITE_ROW) {
		*low = (uint64_t)sqlite3_column_int64(st, 0);
		*oldest_ms = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(sp->sp_db, "SELECT seq, sample FROM spool WHERE "
	    "seq >= ? ORDER BY seq LIMIT ?", -1, &st, NULL) != SQLITE_OK)
		return (spool_err(sp, cause, "read"));
	sqlite3_bind_int64(st, 1, (int64_t)from);
	sqlite3_bind_int64(st, 2, (int64_t)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		s = opsn__sample__unpack(NULL, (size_t)sqlite3_column_bytes(st,
		    1), sqlite3_column_blob(st, 1));
		if (s == NULL) {
			/* Our own bytes: only a damaged disk gets here. */
			log_warnx("metering: spool sample %lld does not decode",
			    (long long)sqlite3_column_int64(st, 0));
			continue;
		}
		/* A copy in the list's ownership (plain malloc'd strings). */
		c = meter_list_add(l, s->kind, s->resource, s->ts_ms);
		free(c->tenant);
		free(c->boot);
		c->tenant = xstrdup(s->tenant);
		c->boot = xstrdup(s->boot);
		c->seq = (uint64_t)sqlite3_column_int64(st, 0);
		c->state = s->state;
		c->boot_started_ms = s->boot_started_ms;
		c->vcpus = s->vcpus;
		c->memory_mib = s->memory_mib;
		c->memory_used_mib = s->memory_used_mib;
		c->disk_bytes = s->disk_bytes;
		c->disk_used_bytes = s->disk_used_bytes;
		c->has_cpu = s->has_cpu;
		c->cpu_ns = s->cpu_ns;
		c->has_net = s->has_net;
		c->net_rx_bytes = s->net_rx_bytes;
		c->net_tx_bytes = s->net_tx_bytes;
		c->used_bytes = s->used_bytes;
		c->interval_ms = s->interval_ms;
		opsn__sample__free_unpacked(s, NULL);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return (spool_err(sp, cause, "read"));
	return (0);
}

/* Forget everything up to and including seq. */
int
meter_spool_ack(struct meter_spool *sp, uint64_t seq, char **cause)
{
	sqlite3_stmt	*st;
	int64_t		 n = 0, b = 0;

	if (seq > INT64_MAX)
		seq = INT64_MAX;
	if (sqlite3_prepare_v2(sp->sp_db, "SELECT count(*), "
	    "coalesce(sum(length(sample)), 0) FROM spool WHERE seq <= ?", -1,
	    &st, NULL) != SQLITE_OK)
		return (spool_err(sp, cause, "ack"));
	sqlite3_bind_int64(st, 1, (int64_t)seq);
	if (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
		b = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (n == 0)
		return (0);
	if (sqlite3_prepare_v2(sp->sp_db, "DELETE FROM spool WHERE seq <= ?",
	    -1, &st, NULL) != SQLITE_OK)
		return (spool_err(sp, cause, "ack"));
	sqlite3_bind_int64(st, 1, (int64_t)seq);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_finalize(st);
		return (spool_err(sp, cause, "ack"));
	}
	sqlite3_finalize(st);
	sp->sp_count = sp->sp_count > (uint64_t)n ? sp->sp_count - (uint64_t)n :
	    0;
	sp->sp_bytes = sp->sp_bytes > (uint64_t)b ? sp->sp_bytes - (uint64_t)b :
	    0;
	if (sp->sp_count * 100 < sp->sp_max_count * SPOOL_WARN_PCT / 2)
		sp->sp_warned = 0;
	return (0);
}
