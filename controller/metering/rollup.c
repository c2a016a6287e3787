/*
 * Hourly rollups: raw samples -> usage_hourly.
 *
 * The rules (docs/metering.md says the same for finance):
 *  - Allocated metrics (gauges) integrate between consecutive samples of a
 *    resource: the state and sizes a sample shows hold from its time until
 *    the next sample, for at most twice the sampling interval (an agent
 *    that was down invents nothing). The integral is split at hour
 *    boundaries.
 *  - Used counters (CPU time, network bytes) are cumulative per QEMU
 *    process ("boot"): a sample's usage is its value minus the previous
 *    sample of the same node and boot, counted in the hour of the later
 *    sample. A new boot counts from zero; a counter that went down
 *    restarted. Never negative, never counted twice.
 *  - A round recomputes every hour that the samples it has not seen yet
 *    can change, from the raw samples only, so a late sample lands where
 *    its timestamp says and a recomputation always gives the same numbers.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "metering.h"

static const char *const metering_vm_metrics[] = {
	"vcpu_seconds", "memory_mib_seconds", "disk_mib_seconds",
	"disk_used_mib_seconds", "cpu_ns", "net_rx_bytes", "net_tx_bytes",
	NULL
};
enum { M_VCPU, M_MEM, M_DISK, M_DISK_USED, M_CPU, M_RX, M_TX, M_VM_N };

static const char *const metering_mailbox_metrics[] = {
	"mailbox_seconds", "mailbox_mib_seconds", NULL
};
static const char *const metering_site_metrics[] = {
	"site_seconds", "site_mib_seconds", NULL
};
enum { M_EXIST, M_USED, M_SVC_N };

/* The metrics of a kind (NULL-terminated), NULL if unknown. */
const char *const *
metering_metrics(const char *kind)
{
	if (strcmp(kind, "vm") == 0)
		return (metering_vm_metrics);
	if (strcmp(kind, "mailbox") == 0)
		return (metering_mailbox_metrics);
	if (strcmp(kind, "site") == 0)
		return (metering_site_metrics);
	return (NULL);
}

static int64_t
hour_of(int64_t ms)
{
	int64_t	 s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);

	return (s - ((s % METER_HOUR) + METER_HOUR) % METER_HOUR);
}

struct rollup_acc {
	int64_t		  h0;
	size_t		  nh, nm;
	__int128	 *gauge;	/* [hour][metric]: value x ms */
	int64_t		 *counter;	/* [hour][metric] */
};

/* Add value x [a, b) ms to the hours it covers within the range. */
static void
rollup_integrate(struct rollup_acc *acc, int m, int64_t value, int64_t a,
    int64_t b)
{
	int64_t	 lo = acc->h0 * 1000, hi = lo + (int64_t)acc->nh * METER_HOUR_MS;
	int64_t	 end;
	size_t	 h;

	if (value <= 0)
		return;
	if (a < lo)
		a = lo;
	if (b > hi)
		b = hi;
	while (a < b) {
		h = (size_t)((a - lo) / METER_HOUR_MS);
		end = lo + (int64_t)(h + 1) * METER_HOUR_MS;
		if (end > b)
			end = b;
		acc->gauge[h * acc->nm + m] += (__int128)value * (end - a);
		a = end;
	}
}

static void
rollup_count(struct rollup_acc *acc, int m, int64_t ts, int64_t delta)
{
	int64_t	 lo = acc->h0 * 1000, sum;
	size_t	 h;

	if (delta <= 0 || ts < lo)
		return;
	h = (size_t)((ts - lo) / METER_HOUR_MS);
	if (h >= acc->nh)
		return;
	/*
	 * Each sample's counter is below 2^63 (ingest refuses more), but
	 * an hour of restarts could still add up past it: such growth is
	 * impossible, dropped and said, never wrapped.
	 */
	if (__builtin_add_overflow(acc->counter[h * acc->nm + m], delta,
	    &sum))
		log_warnx("metering: a counter grows past 2^63 in one hour at "
		    "%lld: its growth there is dropped", (long long)ts);
	else
		acc->counter[h * acc->nm + m] = sum;
}

static int64_t
rollup_cap(const struct meter_sample *s)
{
	int64_t	 iv = s->ms_interval > 0 ? s->ms_interval :
	    METER_INTERVAL_DEFAULT_MS;

	return (2 * iv);
}

/* The usage a counter sample adds: never negative, never counted twice. */
static int64_t
rollup_delta(const struct meter_sample *arr, size_t i, int which)
{
	const struct meter_sample	*s = &arr[i], *q;
	int64_t				 cur, prev;
	size_t				 j;

	cur = which == 0 ? s->ms_cpu_ns : which == 1 ? s->ms_net_rx :
	    s->ms_net_tx;
	if (cur <= 0)
		return (0);
	for (j = i; j-- > 0;) {
		q = &arr[j];
		if (q->ms_node != s->ms_node || strcmp(q->ms_boot,
		    s->ms_boot) != 0)
			continue;
		if (which == 0 ? !q->ms_has_cpu : !q->ms_has_net)
			continue;
		prev = which == 0 ? q->ms_cpu_ns : which == 1 ? q->ms_net_rx :
		    q->ms_net_tx;
		/* Went down: the counter restarted within the same boot. */
		return (cur >= prev ? cur - prev : cur);
	}
	/*
	 * The first sample of this boot. After earlier samples of the
	 * resource the process is new: all it counted is usage since. With
	 * no earlier sample at all, count it only if the process started
	 * just before (a VM running before metering began is a baseline).
	 */
	if (i > 0)
		return (cur);
	if (s->ms_boot_started > 0 && s->ms_ts - s->ms_boot_started <=
	    rollup_cap(s))
		return (cur);
	return (0);
}

/* Compute one resource's hours h0..h1 (see metering.h). */
int
metering_rollup_compute(const char *kind, const struct meter_sample *s,
    size_t n, int64_t h0, int64_t h1, struct meter_row **rowsp,
    size_t *nrowsp)
{
	const char *const	*metrics = metering_metrics(kind);
	struct rollup_acc	 acc;
	struct meter_row	*rows = NULL;
	size_t			 i, h, m, nrows = 0;
	int64_t			 lo, hi, end, gap, q;
	int			 vm;

	*rowsp = NULL;
	*nrowsp = 0;
	if (metrics == NULL || h1 < h0)
		return (-1);
	vm = strcmp(kind, "vm") == 0;
	memset(&acc, 0, sizeof(acc));
	acc.h0 = h0;
	acc.nh = (size_t)((h1 - h0) / METER_HOUR + 1);
	acc.nm = vm ? M_VM_N : M_SVC_N;
	acc.gauge = xcalloc(acc.nh * acc.nm, sizeof(*acc.gauge));
	acc.counter = xcalloc(acc.nh * acc.nm, sizeof(*acc.counter));
	lo = h0 * 1000;
	hi = (h1 + METER_HOUR) * 1000;

	for (i = 0; i < n; i++) {
		const struct meter_sample *c = &s[i];

		/* Gauges: from this sample to the next, capped. */
		if (i + 1 < n && c->ms_ts < hi) {
			gap = s[i + 1].ms_ts - c->ms_ts;
			if (gap > rollup_cap(c))
				gap = rollup_cap(c);
			end = c->ms_ts + gap;
			if (vm) {
				if (c->ms_state == METER_STATE_RUNNING) {
					rollup_integrate(&acc, M_VCPU,
					    c->ms_vcpus, c->ms_ts, end);
					rollup_integrate(&acc, M_MEM,
					    c->ms_memory_mib, c->ms_ts, end);
				}
				rollup_integrate(&acc, M_DISK, c->ms_disk_mib,
				    c->ms_ts, end);
				rollup_integrate(&acc, M_DISK_USED,
				    c->ms_disk_used_mib, c->ms_ts, end);
			} else {
				rollup_integrate(&acc, M_EXIST, 1, c->ms_ts,
				    end);
				if (c->ms_has_used)
					rollup_integrate(&acc, M_USED,
					    c->ms_used_bytes, c->ms_ts, end);
			}
		}
		/* Counters: in the hour of the sample. */
		if (!vm || c->ms_ts < lo || c->ms_ts >= hi)
			continue;
		if (c->ms_has_cpu)
			rollup_count(&acc, M_CPU, c->ms_ts,
			    rollup_delta(s, i, 0));
		if (c->ms_has_net) {
			rollup_count(&acc, M_RX, c->ms_ts,
			    rollup_delta(s, i, 1));
			rollup_count(&acc, M_TX, c->ms_ts,
			    rollup_delta(s, i, 2));
		}
	}

	for (h = 0; h < acc.nh; h++) {
		for (m = 0; m < acc.nm; m++) {
			__int128 g = acc.gauge[h * acc.nm + m];

			if (vm && (m == M_CPU || m == M_RX || m == M_TX))
				q = acc.counter[h * acc.nm + m];
			else if (!vm && m == M_USED)	/* bytes x ms */
				q = (int64_t)((g + METER_MIB * 500) /
				    (METER_MIB * 1000));
			else				/* units x ms */
				q = (int64_t)((g + 500) / 1000);
			if (q == 0)
				continue;
			rows = xrealloc(rows, (nrows + 1) * sizeof(*rows));
			rows[nrows].mr_hour = h0 + (int64_t)h * METER_HOUR;
			rows[nrows].mr_metric = metrics[m];
			rows[nrows].mr_quantity = q;
			nrows++;
		}
	}
	free(acc.gauge);
	free(acc.counter);
	*rowsp = rows;
	*nrowsp = nrows;
	return (0);
}

/* ---- a round: read and compute on a read connection ------------------ */

struct round_res {
	char		*rr_kind;
	char		*rr_resource;
	int64_t		 rr_tenant;	/* 0: NULL */
	int64_t		 rr_h0, rr_h1;
	struct meter_row *rr_rows;
	size_t		 rr_nrows;
};

struct meter_round {
	int64_t		  r_from_id, r_to_id;	/* (from, to] */
	int64_t		  r_samples;
	struct round_res *r_res;
	size_t		  r_nres;
};

#define SAMPLE_COLS "id, ts_ms, node_id, state, boot, boot_started_ms, " \
	"vcpus, memory_mib, disk_mib, disk_used_mib, cpu_ns, net_rx, net_tx, " \
	"used_bytes, interval_ms"

static void
round_read_sample(sqlite3_stmt *st, struct meter_sample *m)
{
	const unsigned char	*b;

	memset(m, 0, sizeof(*m));
	m->ms_id = sqlite3_column_int64(st, 0);
	m->ms_ts = sqlite3_column_int64(st, 1);
	m->ms_node = sqlite3_column_int64(st, 2);
	m->ms_state = sqlite3_column_int(st, 3);
	if ((b = sqlite3_column_text(st, 4)) != NULL)
		strlcpy(m->ms_boot, (const char *)b, sizeof(m->ms_boot));
	m->ms_boot_started = sqlite3_column_int64(st, 5);
	m->ms_vcpus = sqlite3_column_int64(st, 6);
	m->ms_memory_mib = sqlite3_column_int64(st, 7);
	m->ms_disk_mib = sqlite3_column_int64(st, 8);
	m->ms_disk_used_mib = sqlite3_column_int64(st, 9);
	if ((m->ms_has_cpu = sqlite3_column_type(st, 10) != SQLITE_NULL))
		m->ms_cpu_ns = sqlite3_column_int64(st, 10);
	if ((m->ms_has_net = sqlite3_column_type(st, 11) != SQLITE_NULL)) {
		m->ms_net_rx = sqlite3_column_int64(st, 11);
		m->ms_net_tx = sqlite3_column_int64(st, 12);
	}
	if ((m->ms_has_used = sqlite3_column_type(st, 13) != SQLITE_NULL))
		m->ms_used_bytes = sqlite3_column_int64(st, 13);
	m->ms_interval = sqlite3_column_int64(st, 14);
}

struct sample_vec {
	struct meter_sample	*v;
	size_t			 n, cap;
};

static struct meter_sample *
vec_push(struct sample_vec *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 256;
		v->v = xrealloc(v->v, v->cap * sizeof(*v->v));
	}
	return (&v->v[v->n++]);
}

static int
sample_cmp(const void *a, const void *b)
{
	const struct meter_sample *x = a, *y = b;

	if (x->ms_ts != y->ms_ts)
		return (x->ms_ts < y->ms_ts ? -1 : 1);
	if (x->ms_id != y->ms_id)
		return (x->ms_id < y->ms_id ? -1 : 1);
	return (0);
}

/* Run st (bound by the caller) and append every row. */
static int
round_collect(sqlite3_stmt *st, struct sample_vec *v)
{
	int	 rc;

	while ((rc = store_step(st)) == SQLITE_ROW)
		round_read_sample(st, vec_push(v));
	return (rc == SQLITE_DONE ? 0 : -1);
}

static int
round_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char **cause)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
		xasprintf(cause, "preparing '%.40s': %s", sql,
		    sqlite3_errmsg(db));
		return (-1);
	}
	return (0);
}

enum {
	Q_GROUPS, Q_PREV, Q_NEXT, Q_RANGE, Q_LINEAGE, Q_TENANT, Q_N
};
static const char *const round_sql[Q_N] = {
	"SELECT kind, resource, min(ts_ms), max(ts_ms) FROM samples WHERE "
	    "id > ?1 AND id <= ?2 GROUP BY kind, resource",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms < ?3 ORDER BY ts_ms DESC, id DESC LIMIT 1",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms >= ?3 ORDER BY ts_ms, id LIMIT 1",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms >= ?3 AND ts_ms < ?4 ORDER BY ts_ms, id",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms < ?3 AND node_id = ?4 AND boot = ?5 ORDER BY ts_ms DESC, "
	    "id DESC LIMIT 1",
	"SELECT tenant_id FROM meter_resources WHERE kind = ?1 AND "
	    "resource = ?2",
};

static void
round_bind_res(sqlite3_stmt *st, const char *kind, const char *res)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, res, -1, SQLITE_STATIC);
}

/* One sample or none from a LIMIT 1 query; 1 found, 0 none, -1 error. */
static int
round_one(sqlite3_stmt *st, struct meter_sample *m)
{
	int	 rc = store_step(st);

	if (rc == SQLITE_ROW) {
		round_read_sample(st, m);
		return (1);
	}
	return (rc == SQLITE_DONE ? 0 : -1);
}

/* Recompute one resource whose new samples span [tmin, tmax] ms. */
static int
round_resource(sqlite3 *db, sqlite3_stmt **q, const char *kind,
    const char *res, int64_t tmin, int64_t tmax, int64_t frozen_ms,
    struct round_res *out)
{
	struct sample_vec	 v = { NULL, 0, 0 };
	struct meter_sample	 m;
	int64_t			 lo = hour_of(tmin), hi = hour_of(tmax);
	int64_t			 frozen_h;
	size_t			 i, j, nwin;
	int			 rc;

	memset(out, 0, sizeof(*out));
	/* Hours a change of these samples can reach: neighbours included. */
	round_bind_res(q[Q_PREV], kind, res);
	sqlite3_bind_int64(q[Q_PREV], 3, lo * 1000);
	if ((rc = round_one(q[Q_PREV], &m)) == -1)
		return (-1);
	if (rc == 1)
		lo = hour_of(m.ms_ts);
	round_bind_res(q[Q_NEXT], kind, res);
	sqlite3_bind_int64(q[Q_NEXT], 3, (hi + METER_HOUR) * 1000);
	if ((rc = round_one(q[Q_NEXT], &m)) == -1)
		return (-1);
	if (rc == 1)
		hi = hour_of(m.ms_ts);
	if (frozen_ms > 0) {
		frozen_h = hour_of(frozen_ms + METER_HOUR_MS - 1);
		if (lo < frozen_h)
			lo = frozen_h;
	}
	if (lo > hi)
		return (0);		/* only frozen hours: nothing to do */

	/* The window, then its neighbours and each boot's last before it. */
	round_bind_res(q[Q_RANGE], kind, res);
	sqlite3_bind_int64(q[Q_RANGE], 3, lo * 1000);
	sqlite3_bind_int64(q[Q_RANGE], 4, (hi + METER_HOUR) * 1000);
	if (round_collect(q[Q_RANGE], &v) == -1)
		goto fail;
	nwin = v.n;
	round_bind_res(q[Q_PREV], kind, res);
	sqlite3_bind_int64(q[Q_PREV], 3, lo * 1000);
	if ((rc = round_one(q[Q_PREV], &m)) == -1)
		goto fail;
	if (rc == 1)
		*vec_push(&v) = m;
	round_bind_res(q[Q_NEXT], kind, res);
	sqlite3_bind_int64(q[Q_NEXT], 3, (hi + METER_HOUR) * 1000);
	if ((rc = round_one(q[Q_NEXT], &m)) == -1)
		goto fail;
	if (rc == 1)
		*vec_push(&v) = m;
	for (i = 0; i < nwin; i++) {
		/* First sample of its (node, boot) in the window? */
		for (j = 0; j < i; j++)
			if (v.v[j].ms_node == v.v[i].ms_node &&
			    strcmp(v.v[j].ms_boot, v.v[i].ms_boot) == 0)
				break;
		if (j < i)
			continue;
		round_bind_res(q[Q_LINEAGE], kind, res);
		sqlite3_bind_int64(q[Q_LINEAGE], 3, lo * 1000);
		sqlite3_bind_int64(q[Q_LINEAGE], 4, v.v[i].ms_node);
		sqlite3_bind_text(q[Q_LINEAGE], 5, v.v[i].ms_boot, -1,
		    SQLITE_TRANSIENT);
		if ((rc = round_one(q[Q_LINEAGE], &m)) == -1)
			goto fail;
		if (rc == 1)
			*vec_push(&v) = m;
	}
	/* Sort, and drop a sample fetched twice (an anchor of both kinds). */
	qsort(v.v, v.n, sizeof(*v.v), sample_cmp);
	for (i = j = 0; i < v.n; i++) {
		if (j > 0 && v.v[j - 1].ms_id == v.v[i].ms_id)
			continue;
		v.v[j++] = v.v[i];
	}
	v.n = j;

	round_bind_res(q[Q_TENANT], kind, res);
	if (store_step(q[Q_TENANT]) == SQLITE_ROW)
		out->rr_tenant = sqlite3_column_int64(q[Q_TENANT], 0);
	if (metering_rollup_compute(kind, v.v, v.n, lo, hi, &out->rr_rows,
	    &out->rr_nrows) == -1) {
		/* An unknown kind: stored, never rolled up. */
		free(v.v);
		return (0);
	}
	out->rr_kind = xstrdup(kind);
	out->rr_resource = xstrdup(res);
	out->rr_h0 = lo;
	out->rr_h1 = hi;
	free(v.v);
	return (0);
fail:
	free(v.v);
	return (-1);
}

/* Read the samples not rolled up yet (at most max) and compute. */
struct meter_round *
metering_round_compute(sqlite3 *db, int64_t max, char **cause)
{
	struct meter_round	*r;
	sqlite3_stmt		*q[Q_N] = { NULL }, *st = NULL;
	int64_t			 frozen = 0;
	size_t			 i, cap = 0;
	int			 rc;

	r = xcalloc(1, sizeof(*r));
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		xasprintf(cause, "BEGIN: %s", sqlite3_errmsg(db));
		free(r);
		return (NULL);
	}
	if (round_prepare(db, "SELECT rolled_id, frozen_ms, (SELECT "
	    "coalesce(max(id), 0) FROM samples) FROM meter_state", &st,
	    cause) == -1)
		goto fail;
	if (store_step(st) != SQLITE_ROW) {
		xasprintf(cause, "reading meter_state: %s", sqlite3_errmsg(db));
		goto fail;
	}
	r->r_from_id = sqlite3_column_int64(st, 0);
	frozen = sqlite3_column_int64(st, 1);
	r->r_to_id = sqlite3_column_int64(st, 2);
	sqlite3_finalize(st);
	st = NULL;
	if (r->r_to_id > r->r_from_id + max)
		r->r_to_id = r->r_from_id + max;
	r->r_samples = r->r_to_id - r->r_from_id;
	if (r->r_to_id <= r->r_from_id)
		goto done;

	for (i = 0; i < Q_N; i++)
		if (round_prepare(db, round_sql[i], &q[i], cause) == -1)
			goto fail;
	sqlite3_bind_int64(q[Q_GROUPS], 1, r->r_from_id);
	sqlite3_bind_int64(q[Q_GROUPS], 2, r->r_to_id);
	while ((rc = store_step(q[Q_GROUPS])) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(
		    q[Q_GROUPS], 0);
		const char *res = (const char *)sqlite3_column_text(
		    q[Q_GROUPS], 1);

		if (r->r_nres == cap) {
			cap = cap ? cap * 2 : 64;
			r->r_res = xrealloc(r->r_res, cap * sizeof(*r->r_res));
		}
		if (round_resource(db, q, kind, res, sqlite3_column_int64(
		    q[Q_GROUPS], 2), sqlite3_column_int64(q[Q_GROUPS], 3),
		    frozen, &r->r_res[r->r_nres]) == -1) {
			xasprintf(cause, "rollup of %s %s: %s", kind, res,
			    sqlite3_errmsg(db));
			goto fail;
		}
		if (r->r_res[r->r_nres].rr_kind != NULL)
			r->r_nres++;
	}
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "listing new samples: %s", sqlite3_errmsg(db));
		goto fail;
	}
done:
	for (i = 0; i < Q_N; i++)
		sqlite3_finalize(q[i]);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	return (r);
fail:
	sqlite3_finalize(st);
	for (i = 0; i < Q_N; i++)
		sqlite3_finalize(q[i]);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	metering_round_free(r);
	return (NULL);
}

/* Replace the computed hours and move the mark, in one transaction. */
int
metering_round_write(sqlite3 *db, struct meter_round *r, char **cause)
{
	sqlite3_stmt	*del = NULL, *ins = NULL, *mark = NULL;
	size_t		 i, j;
	int		 ok = 0;

	if (r->r_to_id <= r->r_from_id)
		return (0);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		xasprintf(cause, "BEGIN: %s", sqlite3_errmsg(db));
		return (-1);
	}
	if (round_prepare(db, "DELETE FROM usage_hourly WHERE kind = ?1 AND "
	    "resource = ?2 AND hour >= ?3 AND hour <= ?4", &del, cause) == -1 ||
	    round_prepare(db, "INSERT INTO usage_hourly (tenant_id, hour, kind, "
	    "resource, metric, quantity) VALUES (?, ?, ?, ?, ?, ?)", &ins,
	    cause) == -1 ||
	    round_prepare(db, "UPDATE meter_state SET rolled_id = ?2 WHERE "
	    "rolled_id = ?1", &mark, cause) == -1)
		goto out;
	for (i = 0; i < r->r_nres; i++) {
		struct round_res *rr = &r->r_res[i];

		sqlite3_reset(del);
		sqlite3_bind_text(del, 1, rr->rr_kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(del, 2, rr->rr_resource, -1, SQLITE_STATIC);
		sqlite3_bind_int64(del, 3, rr->rr_h0);
		sqlite3_bind_int64(del, 4, rr->rr_h1);
		if (store_step(del) != SQLITE_DONE)
			goto sqlerr;
		for (j = 0; j < rr->rr_nrows; j++) {
			sqlite3_reset(ins);
			if (rr->rr_tenant > 0)
				sqlite3_bind_int64(ins, 1, rr->rr_tenant);
			else
				sqlite3_bind_null(ins, 1);
			sqlite3_bind_int64(ins, 2, rr->rr_rows[j].mr_hour);
			sqlite3_bind_text(ins, 3, rr->rr_kind, -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(ins, 4, rr->rr_resource, -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(ins, 5, rr->rr_rows[j].mr_metric, -1,
			    SQLITE_STATIC);
			sqlite3_bind_int64(ins, 6, rr->rr_rows[j].mr_quantity);
			if (store_step(ins) != SQLITE_DONE)
				goto sqlerr;
		}
	}
	sqlite3_bind_int64(mark, 1, r->r_from_id);
	sqlite3_bind_int64(mark, 2, r->r_to_id);
	if (store_step(mark) != SQLITE_DONE)
		goto sqlerr;
	if (sqlite3_changes(db) != 1) {
		xasprintf(cause, "another rollup moved the mark");
		goto out;
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto sqlerr;
	ok = 1;
	goto out;
sqlerr:
	xasprintf(cause, "writing usage_hourly: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	sqlite3_finalize(mark);
	if (!ok && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return (ok ? 0 : -1);
}

int64_t
metering_round_samples(const struct meter_round *r)
{
	return (r->r_samples);
}

int64_t
metering_round_resources(const struct meter_round *r)
{
	return ((int64_t)r->r_nres);
}

/* Free a round; NULL is fine. */
void
metering_round_free(struct meter_round *r)
{
	size_t	 i;

	if (r == NULL)
		return;
	for (i = 0; i < r->r_nres; i++) {
		free(r->r_res[i].rr_kind);
		free(r->r_res[i].rr_resource);
		free(r->r_res[i].rr_rows);
	}
	free(r->r_res);
	free(r);
}

/* ---- the operator's calendar in SQL ---------------------------------- */

static void
sql_local_period(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	int64_t		 t = sqlite3_value_int64(argv[0]);

	sqlite3_result_int64(ctx, sqlite3_value_int(argv[1]) ?
	    calendar_month(t) : calendar_day(t));
}

/* opsn_local_period(t, month): the local day (0) or month (1) start. */
int
metering_sql_functions(sqlite3 *db)
{
	return (sqlite3_create_function(db, "opsn_local_period", 2,
	    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, sql_local_period,
	    NULL, NULL) == SQLITE_OK ? 0 : -1);
}
