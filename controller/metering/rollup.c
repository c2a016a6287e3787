/*
 * Usage rollups: raw samples -> usage_hourly (VMs), usage_daily (mailboxes
 * and sites), and through triggers usage_monthly.
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
 *  - VMs keep those hours (usage_hourly). Mailboxes and sites keep days
 *    (usage_daily): a round adds to each day what its new samples changed
 *    in that day's hours. A round adds what it changed to the monthly
 *    totals per member (usage_monthly) too; any other writer's changes
 *    reach them through triggers (migration 012).
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
rollup_hour_of(int64_t ms)
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

/*
 * What a round found for one resource. VMs: the hours h0..h1 recomputed
 * (rr_rows, hour starts), which replace what usage_hourly holds there.
 * Mailboxes and sites (rr_daily): what the new samples changed, per
 * local day (rr_rows, day starts): each day's quantity moves by that
 * much, so a day is never recomputed from samples retention dropped.
 */
struct round_res {
	char		*rr_kind;
	char		*rr_resource;
	int64_t		 rr_tenant;	/* 0: NULL */
	int		 rr_daily;
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
rollup_round_read_sample(sqlite3_stmt *st, struct meter_sample *m)
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
rollup_vec_push(struct sample_vec *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 256;
		v->v = xrealloc(v->v, v->cap * sizeof(*v->v));
	}
	return (&v->v[v->n++]);
}

static int
rollup_sample_cmp(const void *a, const void *b)
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
rollup_round_collect(sqlite3_stmt *st, struct sample_vec *v)
{
	int	 rc;

	while ((rc = store_step(st)) == SQLITE_ROW)
		rollup_round_read_sample(st, rollup_vec_push(v));
	return (rc == SQLITE_DONE ? 0 : -1);
}

static int
rollup_round_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st,
    char **cause)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
		xasprintf(cause, "preparing '%.40s': %s", sql,
		    sqlite3_errmsg(db));
		return (-1);
	}
	return (0);
}

/*
 * Every query but the first sees only samples up to an id (?6): the
 * round's end for what the usage is now, its start for what the earlier
 * rounds counted.
 */
enum {
	Q_GROUPS, Q_PREV, Q_NEXT, Q_RANGE, Q_LINEAGE, Q_TENANT, Q_N
};
static const char *const round_sql[Q_N] = {
	"SELECT kind, resource, min(ts_ms), max(ts_ms) FROM samples WHERE "
	    "id > ?1 AND id <= ?2 GROUP BY kind, resource",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms < ?3 AND id <= ?6 ORDER BY ts_ms DESC, id DESC LIMIT 1",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms >= ?3 AND id <= ?6 ORDER BY ts_ms, id LIMIT 1",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms >= ?3 AND ts_ms < ?4 AND id <= ?6 ORDER BY ts_ms, id",
	"SELECT " SAMPLE_COLS " FROM samples WHERE kind = ?1 AND resource = ?2 "
	    "AND ts_ms < ?3 AND node_id = ?4 AND boot = ?5 AND id <= ?6 ORDER "
	    "BY ts_ms DESC, id DESC LIMIT 1",
	"SELECT tenant_id FROM meter_resources WHERE kind = ?1 AND "
	    "resource = ?2",
};

static void
rollup_round_bind_res(sqlite3_stmt *st, const char *kind, const char *res,
    int64_t upto)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, res, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 6)
		sqlite3_bind_int64(st, 6, upto);
}

/* One sample or none from a LIMIT 1 query; 1 found, 0 none, -1 error. */
static int
rollup_round_one(sqlite3_stmt *st, struct meter_sample *m)
{
	int	 rc = store_step(st);

	if (rc == SQLITE_ROW) {
		rollup_round_read_sample(st, m);
		return (1);
	}
	return (rc == SQLITE_DONE ? 0 : -1);
}

/*
 * The hours [lo, hi] that samples of a resource spanning [tmin, tmax] ms
 * can change, among the samples up to id upto: from the hour of the
 * sample before them to the hour of the one after. Hours before frozen
 * are left out. 1 with the window, 0 if it is all frozen, -1 on error.
 */
static int
rollup_round_window(sqlite3_stmt **q, const char *kind, const char *res,
    int64_t tmin, int64_t tmax, int64_t upto, int64_t frozen_ms,
    int64_t *lop, int64_t *hip)
{
	struct meter_sample	 m;
	int64_t			 lo = rollup_hour_of(tmin),
	    hi = rollup_hour_of(tmax);
	int64_t			 frozen_h;
	int			 rc;

	rollup_round_bind_res(q[Q_PREV], kind, res, upto);
	sqlite3_bind_int64(q[Q_PREV], 3, lo * 1000);
	if ((rc = rollup_round_one(q[Q_PREV], &m)) == -1)
		return (-1);
	if (rc == 1)
		lo = rollup_hour_of(m.ms_ts);
	rollup_round_bind_res(q[Q_NEXT], kind, res, upto);
	sqlite3_bind_int64(q[Q_NEXT], 3, (hi + METER_HOUR) * 1000);
	if ((rc = rollup_round_one(q[Q_NEXT], &m)) == -1)
		return (-1);
	if (rc == 1)
		hi = rollup_hour_of(m.ms_ts);
	if (frozen_ms > 0) {
		frozen_h = rollup_hour_of(frozen_ms + METER_FROZEN_MARGIN_MS +
		    METER_HOUR_MS - 1);
		if (lo < frozen_h)
			lo = frozen_h;
	}
	*lop = lo;
	*hip = hi;
	return (lo <= hi);
}

/*
 * The hours lo..hi of a resource computed from its samples up to id
 * upto: the window, its neighbours and each boot's last sample before it.
 * 0 with *rows (the caller frees), 1 for a kind that is not rolled up,
 * -1 on error.
 */
static int
rollup_round_hours(sqlite3_stmt **q, const char *kind, const char *res,
    int64_t lo, int64_t hi, int64_t upto, struct meter_row **rows,
    size_t *nrows)
{
	struct sample_vec	 v = { NULL, 0, 0 };
	struct meter_sample	 m;
	size_t			 i, j, nwin;
	int			 rc;

	rollup_round_bind_res(q[Q_RANGE], kind, res, upto);
	sqlite3_bind_int64(q[Q_RANGE], 3, lo * 1000);
	sqlite3_bind_int64(q[Q_RANGE], 4, (hi + METER_HOUR) * 1000);
	if (rollup_round_collect(q[Q_RANGE], &v) == -1)
		goto fail;
	nwin = v.n;
	rollup_round_bind_res(q[Q_PREV], kind, res, upto);
	sqlite3_bind_int64(q[Q_PREV], 3, lo * 1000);
	if ((rc = rollup_round_one(q[Q_PREV], &m)) == -1)
		goto fail;
	if (rc == 1)
		*rollup_vec_push(&v) = m;
	rollup_round_bind_res(q[Q_NEXT], kind, res, upto);
	sqlite3_bind_int64(q[Q_NEXT], 3, (hi + METER_HOUR) * 1000);
	if ((rc = rollup_round_one(q[Q_NEXT], &m)) == -1)
		goto fail;
	if (rc == 1)
		*rollup_vec_push(&v) = m;
	for (i = 0; i < nwin; i++) {
		/* First sample of its (node, boot) in the window? */
		for (j = 0; j < i; j++)
			if (v.v[j].ms_node == v.v[i].ms_node &&
			    strcmp(v.v[j].ms_boot, v.v[i].ms_boot) == 0)
				break;
		if (j < i)
			continue;
		rollup_round_bind_res(q[Q_LINEAGE], kind, res, upto);
		sqlite3_bind_int64(q[Q_LINEAGE], 3, lo * 1000);
		sqlite3_bind_int64(q[Q_LINEAGE], 4, v.v[i].ms_node);
		sqlite3_bind_text(q[Q_LINEAGE], 5, v.v[i].ms_boot, -1,
		    SQLITE_TRANSIENT);
		if ((rc = rollup_round_one(q[Q_LINEAGE], &m)) == -1)
			goto fail;
		if (rc == 1)
			*rollup_vec_push(&v) = m;
	}
	/* Sort, and drop a sample fetched twice (an anchor of both kinds). */
	qsort(v.v, v.n, sizeof(*v.v), rollup_sample_cmp);
	for (i = j = 0; i < v.n; i++) {
		if (j > 0 && v.v[j - 1].ms_id == v.v[i].ms_id)
			continue;
		v.v[j++] = v.v[i];
	}
	v.n = j;
	rc = metering_rollup_compute(kind, v.v, v.n, lo, hi, rows, nrows) ==
	    -1 ? 1 : 0;
	free(v.v);
	return (rc);
fail:
	free(v.v);
	return (-1);
}

/* Add q to the (day, metric) row of rows, or append one. */
static void
rollup_round_day_add(struct meter_row **rows, size_t *n, int64_t day,
    const char *metric, int64_t q)
{
	size_t	 i;

	for (i = 0; i < *n; i++)
		if ((*rows)[i].mr_hour == day && (*rows)[i].mr_metric == metric)
			break;
	if (i == *n) {
		*rows = xrealloc(*rows, (*n + 1) * sizeof(**rows));
		(*rows)[i].mr_hour = day;
		(*rows)[i].mr_metric = metric;
		(*rows)[i].mr_quantity = 0;
		(*n)++;
	}
	(*rows)[i].mr_quantity += q;
}

/*
 * What the samples (from, to] change in the days of a mailbox or site:
 * the hours of the window computed with them, minus the same hours as
 * the earlier rounds computed them (samples up to from), summed per local
 * day. Exact: a gauge's hours outside the window do not move.
 */
static int
rollup_round_days(sqlite3_stmt **q, const char *kind, const char *res,
    int64_t lo, int64_t hi, int64_t from, int64_t to, struct meter_row **out,
    size_t *nout)
{
	struct meter_row	*now = NULL, *was = NULL, *rows = NULL;
	size_t			 nnow = 0, nwas = 0, n = 0, i, k;
	int			 rc;

	if ((rc = rollup_round_hours(q, kind, res, lo, hi, to, &now,
	    &nnow)) != 0 ||
	    (rc = rollup_round_hours(q, kind, res, lo, hi, from, &was,
	    &nwas)) != 0) {
		free(now);
		return (rc);
	}
	for (i = 0; i < nnow; i++)
		rollup_round_day_add(&rows, &n, calendar_day(now[i].mr_hour),
		    now[i].mr_metric, now[i].mr_quantity);
	for (i = 0; i < nwas; i++)
		rollup_round_day_add(&rows, &n, calendar_day(was[i].mr_hour),
		    was[i].mr_metric, -was[i].mr_quantity);
	for (i = k = 0; i < n; i++)
		if (rows[i].mr_quantity != 0)
			rows[k++] = rows[i];
	free(now);
	free(was);
	*out = rows;
	*nout = k;
	return (0);
}

/* Recompute one resource whose new samples span [tmin, tmax] ms. */
static int
rollup_round_resource(sqlite3_stmt **q, const char *kind, const char *res,
    int64_t tmin, int64_t tmax, int64_t frozen_ms, int64_t from, int64_t to,
    struct round_res *out)
{
	int64_t		 lo, hi;
	int		 rc;

	memset(out, 0, sizeof(*out));
	if (metering_metrics(kind) == NULL)
		return (0);		/* an unknown kind: stored, not rolled */
	if ((rc = rollup_round_window(q, kind, res, tmin, tmax, to, frozen_ms,
	    &lo,
	    &hi)) <= 0)
		return (rc);		/* only frozen hours: nothing to do */
	out->rr_daily = strcmp(kind, "vm") != 0;
	if (out->rr_daily)
		rc = rollup_round_days(q, kind, res, lo, hi, from, to,
		    &out->rr_rows,
		    &out->rr_nrows);
	else
		rc = rollup_round_hours(q, kind, res, lo, hi, to, &out->rr_rows,
		    &out->rr_nrows);
	if (rc != 0)
		return (rc == 1 ? 0 : -1);
	rollup_round_bind_res(q[Q_TENANT], kind, res, to);
	if (store_step(q[Q_TENANT]) == SQLITE_ROW)
		out->rr_tenant = sqlite3_column_int64(q[Q_TENANT], 0);
	out->rr_kind = xstrdup(kind);
	out->rr_resource = xstrdup(res);
	out->rr_h0 = lo;
	out->rr_h1 = hi;
	return (0);
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
	if (rollup_round_prepare(db, "SELECT rolled_id, frozen_ms, (SELECT "
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
		if (rollup_round_prepare(db, round_sql[i], &q[i], cause) == -1)
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
		if (rollup_round_resource(q, kind, res, sqlite3_column_int64(
		    q[Q_GROUPS], 2), sqlite3_column_int64(q[Q_GROUPS], 3),
		    frozen, r->r_from_id, r->r_to_id,
		    &r->r_res[r->r_nres]) == -1) {
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

/* ---- a round: write on the loop's connection ------------------------- */

enum {
	W_HOURS, W_HOUR_SET, W_HOUR_ADD, W_HOUR_DEL, W_DAY_ADD, W_MONTH_ADD,
	W_QUIET, W_MARK, W_N
};
static const char *const round_wsql[W_N] = {
	"SELECT hour, metric, quantity, tenant_id FROM usage_hourly WHERE "
	    "kind = ?1 AND resource = ?2 AND hour >= ?3 AND hour <= ?4",
	"UPDATE usage_hourly SET quantity = ?5, tenant_id = ?6 WHERE hour = ?1 "
	    "AND kind = ?2 AND resource = ?3 AND metric = ?4",
	"INSERT INTO usage_hourly (hour, kind, resource, metric, quantity, "
	    "tenant_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	"DELETE FROM usage_hourly WHERE hour = ?1 AND kind = ?2 AND "
	    "resource = ?3 AND metric = ?4",
	"INSERT INTO usage_daily (day, kind, resource, metric, tenant_id, "
	    "month, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT "
	    "(day, kind, resource, metric) DO UPDATE SET quantity = quantity + "
	    "excluded.quantity",
	"INSERT INTO usage_monthly (month, tenant_id, kind, metric, quantity, "
	    "changed) VALUES (?1, ?2, ?3, ?4, ?5, (SELECT change_seq FROM "
	    "meter_state)) ON CONFLICT (month, tenant_id, kind, metric) DO "
	    "UPDATE SET quantity = quantity + excluded.quantity, changed = "
	    "excluded.changed",
	"UPDATE meter_state SET quiet = ?1, change_seq = change_seq + ?1",
	"UPDATE meter_state SET rolled_id = ?2 WHERE rolled_id = ?1",
};

/*
 * What a round's writes change in the monthly totals, added up per
 * member, month, resource class and metric: written once per round
 * (the triggers stand aside while meter_state.quiet is set).
 */
struct month_delta {
	int64_t		 md_tenant, md_month;
	const char	*md_kind;	/* the round's string */
	char		 md_metric[32];
	int64_t		 md_q;
};

struct month_acc {
	struct month_delta	*ma_v;
	size_t			 ma_n, ma_cap;	/* ma_cap: a power of 2 */
};

static uint64_t
rollup_month_hash(int64_t tenant, int64_t month, const char *kind,
    const char *metric)
{
	uint64_t	 h = (uint64_t)tenant * 1000003 ^ (uint64_t)month;

	for (; *kind != '\0'; kind++)
		h = (h ^ (unsigned char)*kind) * 1099511628211ULL;
	for (; *metric != '\0'; metric++)
		h = (h ^ (unsigned char)*metric) * 1099511628211ULL;
	return (h);
}

static struct month_delta *
rollup_month_slot(struct month_acc *a, int64_t tenant, int64_t month,
    const char *kind, const char *metric)
{
	struct month_delta	*d;
	size_t			 i;

	for (i = rollup_month_hash(tenant, month, kind,
	    metric) & (a->ma_cap - 1);;
	    i = (i + 1) & (a->ma_cap - 1)) {
		d = &a->ma_v[i];
		if (d->md_kind == NULL || (d->md_tenant == tenant &&
		    d->md_month == month && strcmp(d->md_kind, kind) == 0 &&
		    strcmp(d->md_metric, metric) == 0))
			return (d);
	}
}

/* Add q to the total of (tenant, month of t, kind, metric). */
static void
rollup_month_add(struct month_acc *a, int64_t tenant, int64_t t,
    const char *kind,
    const char *metric, int64_t q)
{
	struct month_delta	*d, *old;
	size_t			 i, oldcap;
	int64_t			 month = calendar_month(t);

	if (q == 0)
		return;
	if (2 * (a->ma_n + 1) > a->ma_cap) {
		old = a->ma_v;
		oldcap = a->ma_cap;
		a->ma_cap = oldcap ? oldcap * 2 : 1024;
		a->ma_v = xcalloc(a->ma_cap, sizeof(*a->ma_v));
		for (i = 0; i < oldcap; i++)
			if (old[i].md_kind != NULL)
				*rollup_month_slot(a, old[i].md_tenant,
				    old[i].md_month, old[i].md_kind,
				    old[i].md_metric) = old[i];
		free(old);
	}
	d = rollup_month_slot(a, tenant, month, kind, metric);
	if (d->md_kind == NULL) {
		d->md_tenant = tenant;
		d->md_month = month;
		d->md_kind = kind;
		strlcpy(d->md_metric, metric, sizeof(d->md_metric));
		a->ma_n++;
	}
	d->md_q += q;
}

/* Write the round's changes to the monthly totals. */
static int
rollup_month_write(sqlite3_stmt *st, const struct month_acc *a)
{
	const struct month_delta	*d;
	size_t				 i;

	for (i = 0; i < a->ma_cap; i++) {
		d = &a->ma_v[i];
		if (d->md_kind == NULL || d->md_q == 0)
			continue;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, d->md_month);
		sqlite3_bind_int64(st, 2, d->md_tenant);
		sqlite3_bind_text(st, 3, d->md_kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, d->md_metric, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, d->md_q);
		if (store_step(st) != SQLITE_DONE)
			return (-1);
	}
	return (0);
}

static void
rollup_round_bind_tenant(sqlite3_stmt *st, int i, int64_t tenant)
{
	if (tenant > 0)
		sqlite3_bind_int64(st, i, tenant);
	else
		sqlite3_bind_null(st, i);
}

/* Bind (hour, kind, resource, metric) of a usage_hourly row. */
static void
rollup_round_bind_hour(sqlite3_stmt *st, const struct round_res *rr,
    int64_t hour,
    const char *metric)
{
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, hour);
	sqlite3_bind_text(st, 2, rr->rr_kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, rr->rr_resource, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, metric, -1, SQLITE_TRANSIENT);
}

/* What usage_hourly holds for a VM's hour and metric. */
struct round_old {
	int64_t		 ro_hour;
	char		 ro_metric[32];
	int64_t		 ro_quantity;
	int64_t		 ro_tenant;	/* 0: NULL */
};

/*
 * A VM's hours h0..h1 become rr_rows: rows that did not change are not
 * written (the monthly totals' triggers then have nothing to do).
 */
static int
rollup_round_write_hours(sqlite3_stmt **w, const struct round_res *rr,
    struct month_acc *ma)
{
	const struct meter_row	*nr;
	struct round_old	*old = NULL, *o;
	sqlite3_stmt		*st = w[W_HOURS];
	size_t			 i, j, nold = 0;
	unsigned char		*seen;
	int			 rc = 0;

	/* What is there, read whole before anything changes it. */
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, rr->rr_kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rr->rr_resource, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, rr->rr_h0);
	sqlite3_bind_int64(st, 4, rr->rr_h1);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		old = xrealloc(old, (nold + 1) * sizeof(*old));
		o = &old[nold++];
		o->ro_hour = sqlite3_column_int64(st, 0);
		strlcpy(o->ro_metric, (const char *)sqlite3_column_text(st, 1),
		    sizeof(o->ro_metric));
		o->ro_quantity = sqlite3_column_int64(st, 2);
		o->ro_tenant = sqlite3_column_int64(st, 3);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		free(old);
		return (-1);
	}
	seen = xcalloc(rr->rr_nrows ? rr->rr_nrows : 1, 1);
	rc = -1;
	for (j = 0; j < nold; j++) {
		o = &old[j];
		for (i = 0, nr = NULL; i < rr->rr_nrows; i++)
			if (rr->rr_rows[i].mr_hour == o->ro_hour &&
			    strcmp(rr->rr_rows[i].mr_metric, o->ro_metric) ==
			    0) {
				nr = &rr->rr_rows[i];
				seen[i] = 1;
				break;
			}
		if (nr != NULL && nr->mr_quantity == o->ro_quantity &&
		    o->ro_tenant == rr->rr_tenant)
			continue;
		rollup_month_add(ma, o->ro_tenant, o->ro_hour, rr->rr_kind,
		    o->ro_metric, -o->ro_quantity);
		if (nr != NULL) {
			rollup_month_add(ma, rr->rr_tenant, o->ro_hour,
			    rr->rr_kind,
			    o->ro_metric, nr->mr_quantity);
			rollup_round_bind_hour(w[W_HOUR_SET], rr, o->ro_hour,
			    o->ro_metric);
			sqlite3_bind_int64(w[W_HOUR_SET], 5, nr->mr_quantity);
			rollup_round_bind_tenant(w[W_HOUR_SET], 6,
			    rr->rr_tenant);
			if (store_step(w[W_HOUR_SET]) != SQLITE_DONE)
				goto out;
		} else {
			rollup_round_bind_hour(w[W_HOUR_DEL], rr, o->ro_hour,
			    o->ro_metric);
			if (store_step(w[W_HOUR_DEL]) != SQLITE_DONE)
				goto out;
		}
	}
	for (i = 0; i < rr->rr_nrows; i++) {
		if (seen[i])
			continue;
		nr = &rr->rr_rows[i];
		rollup_month_add(ma, rr->rr_tenant, nr->mr_hour, rr->rr_kind,
		    nr->mr_metric, nr->mr_quantity);
		rollup_round_bind_hour(w[W_HOUR_ADD], rr, nr->mr_hour,
		    nr->mr_metric);
		sqlite3_bind_int64(w[W_HOUR_ADD], 5, nr->mr_quantity);
		rollup_round_bind_tenant(w[W_HOUR_ADD], 6, rr->rr_tenant);
		if (store_step(w[W_HOUR_ADD]) != SQLITE_DONE)
			goto out;
	}
	rc = 0;
out:
	free(seen);
	free(old);
	return (rc);
}

/* A mailbox's or site's days move by rr_rows. */
static int
rollup_round_write_days(sqlite3_stmt **w, const struct round_res *rr,
    struct month_acc *ma)
{
	sqlite3_stmt	*st = w[W_DAY_ADD];
	size_t		 i;

	for (i = 0; i < rr->rr_nrows; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, rr->rr_rows[i].mr_hour);
		sqlite3_bind_text(st, 2, rr->rr_kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, rr->rr_resource, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, rr->rr_rows[i].mr_metric, -1,
		    SQLITE_STATIC);
		rollup_round_bind_tenant(st, 5, rr->rr_tenant);
		sqlite3_bind_int64(st, 6, calendar_month(
		    rr->rr_rows[i].mr_hour));
		sqlite3_bind_int64(st, 7, rr->rr_rows[i].mr_quantity);
		if (store_step(st) != SQLITE_DONE)
			return (-1);
		rollup_month_add(ma, rr->rr_tenant, rr->rr_rows[i].mr_hour,
		    rr->rr_kind, rr->rr_rows[i].mr_metric,
		    rr->rr_rows[i].mr_quantity);
	}
	return (0);
}

/*
 * Write a computed round and move the mark, in one transaction: the
 * round counts once, or not at all (another round then computes it
 * again from the same mark).
 */
int
metering_round_write(sqlite3 *db, struct meter_round *r, char **cause)
{
	sqlite3_stmt	*w[W_N];
	struct month_acc ma;
	size_t		 i;
	int		 ok = 0, rc;

	if (r->r_to_id <= r->r_from_id)
		return (0);
	/*
	 * Its own transaction (store_begin_alone): thousands of upserts
	 * under triggers, whose statement journals would pile up in the
	 * group's savepoint.
	 */
	if (store_begin_alone(db) == -1) {
		xasprintf(cause, "BEGIN: %s", sqlite3_errmsg(db));
		return (-1);
	}
	memset(&ma, 0, sizeof(ma));
	for (i = 0; i < W_N; i++)
		w[i] = store_stmt(db, round_wsql[i]);
	/* The mark first: a round computed from a stale one writes nothing. */
	sqlite3_bind_int64(w[W_MARK], 1, r->r_from_id);
	sqlite3_bind_int64(w[W_MARK], 2, r->r_to_id);
	if (store_step(w[W_MARK]) != SQLITE_DONE)
		goto sqlerr;
	if (sqlite3_changes(db) != 1) {
		xasprintf(cause, "another rollup moved the mark");
		goto out;
	}
	/* A new change_seq for the totals this round moves. */
	sqlite3_bind_int(w[W_QUIET], 1, 1);
	if (store_step(w[W_QUIET]) != SQLITE_DONE)
		goto sqlerr;
	for (i = 0; i < r->r_nres; i++) {
		rc = r->r_res[i].rr_daily ?
		    rollup_round_write_days(w, &r->r_res[i], &ma) :
		    rollup_round_write_hours(w, &r->r_res[i], &ma);
		if (rc == -1)
			goto sqlerr;
	}
	if (rollup_month_write(w[W_MONTH_ADD], &ma) == -1)
		goto sqlerr;
	sqlite3_reset(w[W_QUIET]);
	sqlite3_bind_int(w[W_QUIET], 1, 0);
	if (store_step(w[W_QUIET]) != SQLITE_DONE)
		goto sqlerr;
	for (i = 0; i < W_N; i++) {
		store_done(w[i]);
		w[i] = NULL;
	}
	free(ma.ma_v);
	if (store_commit(db) == -1) {
		xasprintf(cause, "committing the rollup: %s",
		    sqlite3_errmsg(db));
		return (-1);
	}
	return (0);
sqlerr:
	xasprintf(cause, "writing usage: %s", sqlite3_errmsg(db));
out:
	for (i = 0; i < W_N; i++)
		store_done(w[i]);
	free(ma.ma_v);
	if (!ok)
		store_rollback(db);
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
