/*
 * Statements: one per member active in a period, with a line per metric
 * and resource class for each tariff version in force during the period
 * (a tariff change inside the period splits it), the monthly fee and the
 * membership contribution pro rata, then corrections: usage that arrived
 * after a period was closed, and adjustments an operator entered. Both go
 * on the member's earliest open statement.
 *
 * Usage hours are read once per stretch of the period between two tariff
 * changes, summed per member and metric in memory (one pass over the rows
 * in key order, no sort). Everything happens in the caller's transaction:
 * a generation is all or nothing.
 *
 * The API splits a generation in two: the usage sums, the long part, are
 * read ahead on the thread pool with a read connection (billing_usage_*),
 * then the statements are written on the loop thread in one transaction
 * from those sums (billing_generate_usage). The read covers every tariff
 * boundary inside the period, every tenant, and the ranges of the closed
 * statements the late usage is compared with; what the write needs and
 * the read lacks (a tariff version added in between) fails with a
 * conflict, never with wrong amounts.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "metering/metering.h"
#include "billing.h"

/*
 * How far back usage is compared with closed statements: every closed
 * period that ended within this many days before the generated one. Each
 * costs one pass over its usage rows; older late usage is not billed.
 */
#define BILLING_LATE_DAYS	190
#define BILLING_CUTS_MAX	64


/* Usage sums over one range of hours: [tenant id][metric]. */
struct usage_range {
	int64_t		 r_start, r_end;	/* UTC seconds */
	int64_t		*r_sums;
};

/*
 * A member of a closed period whose usage in that period changed since
 * it was generated, and what its usage is now in one of its segments.
 */
struct late_cand {
	int64_t		 lc_tenant;
	char		 lc_period[PERIOD_LABEL_MAX];
};
struct late_sum {
	int64_t		 ls_tenant, ls_start, ls_end;
	int64_t		 ls_sums[BILLING_NMETRICS];
};

struct billing_usage {
	int64_t		 u_first;	/* the period's first day */
	int64_t		 u_maxid;	/* tenant ids 0..u_maxid are summed */
	/* The period's stretches between tariff boundaries, in order. */
	struct usage_range *u_r;
	size_t		 u_nr;
	/* The late usage candidates, and their segments' sums (sorted). */
	struct late_cand *u_cand;
	size_t		 u_ncand;
	struct late_sum	*u_late;
	size_t		 u_nlate;
	int64_t		 u_seq;		/* meter_state.change_seq read */
	int64_t		 u_ms;		/* reading */
};

struct gen_member {
	int64_t		 id;
	char		*kind, *name, *insee, *siren;
	int64_t		 population;
	int64_t		 join, left;	/* membership [join, left) */
	const char	*tariff;	/* name; points into the member or set */
	char		*bound;
	int		 earliest;	/* no earlier open statement */
	int		 active;
};

/* A stretch with one version of one tariff. */
struct gen_seg {
	const struct tariff *s_t;
	int64_t		 s_from, s_end;		/* days */
};

/* The version stretches of one tariff name over the period. */
struct gen_name {
	const char	*n_name;
	struct gen_seg	 n_segs[BILLING_CUTS_MAX];
	size_t		 n_nsegs;
};

struct gen_line {
	const char	*l_type;
	const char	*l_class;
	char		 l_metric[48];
	char		 l_label[200];
	const char	*l_unit;
	int		 l_has_used;
	int64_t		 l_used, l_allow;
	int64_t		 l_qbase, l_div;
	struct money	 l_price;
	struct cents	 l_amount;
	int		 l_has_basis;
	struct cents	 l_basis;
	int64_t		 l_tariff;	/* 0: none */
	char		 l_band[33];
	int		 l_has_range;
	int64_t		 l_day_from, l_day_end, l_start, l_end;
	char		 l_corrects[PERIOD_LABEL_MAX];
	int64_t		 l_corrects_stmt;
	int64_t		 l_adjustment;
	char		*l_reason;
};

struct gen {
	sqlite3			*db;
	const char		*tz;
	const struct period	*p;
	struct tariff_set	 ts;
	struct gen_member	*m;
	size_t			 nm;
	int32_t			*idx;		/* tenant id -> member index */
	int64_t			 maxid;
	struct gen_name		*names;
	size_t			 nnames;
	int64_t			 cuts[BILLING_CUTS_MAX + 1];
	int64_t			 cut_utc[BILLING_CUTS_MAX + 1];
	size_t			 ncuts;
	int64_t			*sums;		/* [member][stretch][metric] */
	struct gen_line		*lines;
	size_t			 nlines, alines;
	struct billing_gen_result *res;
	const struct billing_usage *usage;	/* NULL: read usage here */
	int			 stale;		/* usage lacks a needed range */
	/* Late usage: corrections per member, collected before writing. */
	struct gen_line		**late;
	size_t			*nlate;
	sqlite3_stmt		*st_upsert, *st_dlines, *st_dsegs, *st_line,
				*st_seg, *st_earlier;
};

#define SUM(g, mi, k, m) ((g)->sums[((size_t)(mi) * ((g)->ncuts - 1) + \
	(size_t)(k)) * BILLING_NMETRICS + (size_t)(m)])

static void
gen_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s != NULL && *s != '\0')
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static char *
gen_col_dup(sqlite3_stmt *st, int col)
{
	return (sqlite3_column_type(st, col) == SQLITE_NULL ? NULL :
	    xstrdup((const char *)sqlite3_column_text(st, col)));
}

/* Does metering's usage table exist (it may be built without it)? */
int
billing_have_usage(sqlite3 *db)
{
	sqlite3_stmt	*st;
	int		 found;

	st = store_prepare(db, "SELECT 1 FROM sqlite_master WHERE type = "
	    "'table' AND name = 'usage_hourly'");
	found = store_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return (found);
}

/*
 * A quick key for the usage metric names (length, first and fifth
 * character, which tell the eleven apart); confirmed with memcmp. The
 * names are distinct across kinds (a unit test checks it), so the kind
 * column is not read: one column less per row of the hottest loop.
 */
static int
gen_metric_key(const char *s, int len)
{
	return ((len << 16) | ((unsigned char)s[0] << 8) |
	    (len > 4 ? (unsigned char)s[4] : 0));
}

static int	 gen_keys[BILLING_NMETRICS];
static int	 gen_keys_ready;

/* Fill gen_keys once, on the loop thread, before any worker reads them. */
static void
gen_keys_init(void)
{
	size_t	 i;

	if (gen_keys_ready)
		return;
	for (i = 0; i < BILLING_NMETRICS; i++)
		gen_keys[i] = gen_metric_key(billing_metrics[i].bm_usage,
		    (int)strlen(billing_metrics[i].bm_usage));
	gen_keys_ready = 1;
}

static int
gen_metric_lookup(const char *metric, int len)
{
	int	 key = gen_metric_key(metric, len);
	size_t	 i;

	for (i = 0; i < BILLING_NMETRICS; i++)
		if (gen_keys[i] == key && memcmp(billing_metrics[i].bm_usage,
		    metric, (size_t)len) == 0)
			return ((int)i);
	return (-1);
}

/*
 * Add the usage of hours [start, end) into sums out[row * stride +
 * metric], where row is idx[tenant id] (rows below 0 are skipped), or the
 * tenant id itself without idx; tenant > 0: that member's only (in row
 * 0 without idx). Tenant
 * ids above maxid are skipped. Whole months are read from the monthly
 * totals, the rest from VMs' hours and mailboxes' and sites' days
 * (metering_usage_sql), summed in one pass without a sort. Runs on the
 * loop thread or a worker (its own db).
 */
static int
gen_sum_usage(sqlite3 *db, int64_t start, int64_t end, int64_t tenant,
    const int32_t *idx, int64_t maxid, int64_t *out, size_t stride,
    char **cause)
{
	sqlite3_stmt	*st;
	int64_t		 tid, q, *slot, row, m1, m2;
	char		*src, *sql;
	int		 m, rc;

	src = metering_usage_sql(METER_BY_TOTAL, tenant, start, end, &m1, &m2);
	xasprintf(&sql, "SELECT tid, metric, q FROM (%s)", src);
	st = store_prepare(db, sql);
	free(src);
	free(sql);
	sqlite3_bind_int64(st, 1, start);
	sqlite3_bind_int64(st, 2, end);
	sqlite3_bind_int64(st, 3, tenant);
	sqlite3_bind_int64(st, 4, m1);
	sqlite3_bind_int64(st, 5, m2);
	while ((rc = store_step(st)) == SQLITE_ROW) {
		tid = sqlite3_column_int64(st, 0);
		if (tid < 1 || tid > maxid)
			continue;
		/* One member's usage goes in the first row. */
		if ((row = idx != NULL ? idx[tid] : tenant > 0 ? 0 : tid) < 0)
			continue;
		m = gen_metric_lookup((const char *)sqlite3_column_text(st, 1),
		    sqlite3_column_bytes(st, 1));
		if (m < 0)
			continue;
		q = sqlite3_column_int64(st, 2);
		slot = &out[(size_t)row * stride + (size_t)m];
		if (__builtin_add_overflow(*slot, q, slot)) {
			xasprintf(cause, "usage of tenant %lld overflows",
			    (long long)tid);
			sqlite3_finalize(st);
			return (-1);
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "reading usage: %s", sqlite3_errmsg(db));
		return (-1);
	}
	return (0);
}

/* Add range r of the read-ahead usage into the members' sums. */
static int
gen_snap_add(struct gen *g, const struct usage_range *r, int64_t *out,
    size_t stride, char **cause)
{
	const int64_t	*src;
	int64_t		*slot, tid;
	size_t		 mi;
	int		 mx;

	if (r->r_sums == NULL)
		return (0);	/* no usage table when read */
	for (mi = 0; mi < g->nm; mi++) {
		/* A tenant added since the read had no usage then. */
		if ((tid = g->m[mi].id) > g->usage->u_maxid)
			continue;
		src = &r->r_sums[(size_t)tid * BILLING_NMETRICS];
		for (mx = 0; mx < BILLING_NMETRICS; mx++) {
			slot = &out[mi * stride + (size_t)mx];
			if (__builtin_add_overflow(*slot, src[mx], slot)) {
				xasprintf(cause, "usage of tenant %lld "
				    "overflows", (long long)tid);
				return (-1);
			}
		}
	}
	return (0);
}

/*
 * The read-ahead usage of hours [start, end): a run of the period's
 * stretches. Missing: the tariffs changed since the read (g->stale).
 */
static int
gen_snap_usage(struct gen *g, int64_t start, int64_t end, int64_t *out,
    size_t stride, char **cause)
{
	const struct billing_usage *u = g->usage;
	size_t		 i, j;

	for (i = 0; i < u->u_nr && u->u_r[i].r_start != start; i++)
		continue;
	for (j = i; j < u->u_nr && u->u_r[j].r_end < end; j++)
		continue;
	if (j < u->u_nr && u->u_r[j].r_end == end) {
		for (; i <= j; i++)
			if (gen_snap_add(g, &u->u_r[i], out, stride,
			    cause) == -1)
				return (-1);
		return (0);
	}
	g->stale = 1;
	xasprintf(cause, "tariffs changed while the usage of %s was read: "
	    "generate it again", g->p->p_label);
	return (-1);
}

/*
 * Add the usage of hours [start, end) into per-member sums (out[mi *
 * stride + metric]) for every member that has an index: read here, or
 * taken from the usage read ahead.
 */
static int
gen_read_usage(struct gen *g, int64_t start, int64_t end, int64_t *out,
    size_t stride, char **cause)
{
	if (g->usage != NULL)
		return (gen_snap_usage(g, start, end, out, stride, cause));
	return (gen_sum_usage(g->db, start, end, 0, g->idx, g->maxid, out,
	    stride, cause));
}

static void
gen_members_free(struct gen *g)
{
	size_t	 i;

	for (i = 0; i < g->nm; i++) {
		free(g->m[i].kind);
		free(g->m[i].name);
		free(g->m[i].insee);
		free(g->m[i].siren);
		free(g->m[i].bound);
	}
	free(g->m);
	g->m = NULL;
	g->nm = 0;
}

static void
gen_line_reset(struct gen *g)
{
	size_t	 i;

	for (i = 0; i < g->nlines; i++)
		free(g->lines[i].l_reason);
	g->nlines = 0;
}

static struct gen_line *
gen_line_new(struct gen *g)
{
	struct gen_line	*l;

	if (g->nlines == g->alines) {
		g->alines = g->alines ? g->alines * 2 : 32;
		g->lines = xrealloc(g->lines, g->alines * sizeof(*g->lines));
	}
	l = &g->lines[g->nlines++];
	memset(l, 0, sizeof(*l));
	return (l);
}

/* Members active in the period, with their tariff name. */
static int
gen_members(struct gen *g, int *status, char **cause)
{
	sqlite3_stmt	*st;
	struct gen_member *mm;
	int64_t		 day;

	st = store_prepare(g->db, "SELECT t.id, t.kind, t.name, t.insee, "
	    "t.siren, t.population, t.joined_on, t.left_on, b.tariff FROM "
	    "tenants t LEFT JOIN tenant_tariffs b ON b.tenant_id = t.id ORDER "
	    "BY t.id");
	while (store_step(st) == SQLITE_ROW) {
		int64_t join = INT64_MIN, left = INT64_MAX;

		if (sqlite3_column_type(st, 6) != SQLITE_NULL &&
		    period_parse_day((const char *)sqlite3_column_text(st, 6),
		    &day) == 0)
			join = day;
		if (sqlite3_column_type(st, 7) != SQLITE_NULL &&
		    period_parse_day((const char *)sqlite3_column_text(st, 7),
		    &day) == 0)
			left = day;
		if (join >= g->p->p_end || left <= g->p->p_first)
			continue;
		g->m = xrealloc(g->m, (g->nm + 1) * sizeof(*g->m));
		mm = &g->m[g->nm++];
		memset(mm, 0, sizeof(*mm));
		mm->id = sqlite3_column_int64(st, 0);
		mm->kind = gen_col_dup(st, 1);
		mm->name = gen_col_dup(st, 2);
		mm->insee = gen_col_dup(st, 3);
		mm->siren = gen_col_dup(st, 4);
		mm->population = sqlite3_column_int64(st, 5);
		mm->join = join;
		mm->left = left;
		mm->bound = gen_col_dup(st, 8);
		mm->tariff = mm->bound != NULL ? mm->bound : g->ts.ts_default;
		if (*mm->tariff == '\0') {
			xasprintf(cause, "member %s (%s) is bound to no tariff "
			    "and there is no default tariff (opsnctl tariff "
			    "default NAME)", mm->insee ? mm->insee : mm->siren ?
			    mm->siren : "-", mm->name);
			*status = BILLING_ECONFLICT;
			sqlite3_finalize(st);
			return (-1);
		}
		if (mm->id > g->maxid)
			g->maxid = mm->id;
	}
	sqlite3_finalize(st);
	return (0);
}

/* The version stretches of a tariff name (gaps allowed; checked later). */
static struct gen_name *
gen_name(struct gen *g, const char *name)
{
	struct gen_name	*n;
	const struct tariff *t;
	size_t		 i;
	int64_t		 from, end;

	for (i = 0; i < g->nnames; i++)
		if (strcmp(g->names[i].n_name, name) == 0)
			return (&g->names[i]);
	g->names = xrealloc(g->names, (g->nnames + 1) * sizeof(*g->names));
	n = &g->names[g->nnames++];
	memset(n, 0, sizeof(*n));
	n->n_name = name;
	for (i = 0; i < g->ts.ts_n; i++) {
		t = &g->ts.ts_v[i];
		if (strcmp(t->t_name, name) != 0)
			continue;
		from = t->t_from > g->p->p_first ? t->t_from : g->p->p_first;
		end = t->t_end < g->p->p_end ? t->t_end : g->p->p_end;
		if (from >= end || n->n_nsegs == BILLING_CUTS_MAX)
			continue;
		n->n_segs[n->n_nsegs].s_t = t;
		n->n_segs[n->n_nsegs].s_from = from;
		n->n_segs[n->n_nsegs].s_end = end;
		n->n_nsegs++;
	}
	return (n);
}

/* Is every day of [from, end) in a stretch of n? */
static int
gen_covered(const struct gen_name *n, int64_t from, int64_t end,
    int64_t *gap)
{
	int64_t	 cur = from;
	size_t	 i;

	for (i = 0; i < n->n_nsegs && cur < end; i++) {
		if (n->n_segs[i].s_end <= cur)
			continue;
		if (n->n_segs[i].s_from > cur)
			break;
		cur = n->n_segs[i].s_end;
	}
	*gap = cur;
	return (cur >= end);
}

static int
gen_cut_add(struct gen *g, int64_t day, char **cause)
{
	size_t	 i;

	for (i = 0; i < g->ncuts; i++)
		if (g->cuts[i] == day)
			return (0);
	if (g->ncuts == BILLING_CUTS_MAX + 1) {
		xasprintf(cause, "more than %d tariff changes in the period",
		    BILLING_CUTS_MAX);
		return (-1);
	}
	g->cuts[g->ncuts++] = day;
	return (0);
}

static int
gen_cmp64(const void *a, const void *b)
{
	int64_t	 x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y ? -1 : x > y);
}

/* Tariffs per member, their stretches, and the cuts of the period. */
static int
gen_plan(struct gen *g, int *status, char **cause)
{
	struct gen_name	*n;
	int64_t		 from, end, gap;
	char		 day[11];
	size_t		 i, j;

	g->ncuts = 0;
	if (gen_cut_add(g, g->p->p_first, cause) == -1 ||
	    gen_cut_add(g, g->p->p_end, cause) == -1)
		goto fail;
	for (i = 0; i < g->nm; i++) {
		n = gen_name(g, g->m[i].tariff);
		if (n->n_nsegs == 0) {
			xasprintf(cause, "tariff '%s' (of member %s) has no "
			    "version in force in %s", g->m[i].tariff,
			    g->m[i].name, g->p->p_label);
			goto conflict;
		}
		from = g->m[i].join > g->p->p_first ? g->m[i].join :
		    g->p->p_first;
		end = g->m[i].left < g->p->p_end ? g->m[i].left : g->p->p_end;
		if (!gen_covered(n, from, end, &gap)) {
			period_fmt_day(gap, day, sizeof(day));
			xasprintf(cause, "tariff '%s' (of member %s) has no "
			    "version in force on %s", g->m[i].tariff,
			    g->m[i].name, day);
			goto conflict;
		}
	}
	for (i = 0; i < g->nnames; i++)
		for (j = 0; j < g->names[i].n_nsegs; j++)
			if (gen_cut_add(g, g->names[i].n_segs[j].s_from,
			    cause) == -1 || gen_cut_add(g,
			    g->names[i].n_segs[j].s_end, cause) == -1)
				goto fail;
	qsort(g->cuts, g->ncuts, sizeof(g->cuts[0]), gen_cmp64);
	period_utc(g->cuts, g->cut_utc, g->ncuts);
	return (0);
conflict:
	*status = BILLING_ECONFLICT;
	return (-1);
fail:
	*status = BILLING_EINTERNAL;
	return (-1);
}

static size_t
gen_cut_index(const struct gen *g, int64_t day)
{
	size_t	 k;

	for (k = 0; k < g->ncuts; k++)
		if (g->cuts[k] == day)
			return (k);
	return (0);
}

/* Days of membership of m in [from, end). */
static void
gen_member_days(const struct gen_member *m, int64_t from, int64_t end,
    int64_t *days, int64_t *mf)
{
	int64_t	 a = m->join > from ? m->join : from;
	int64_t	 b = m->left < end ? m->left : end;

	*days = b > a ? b - a : 0;
	*mf = b > a ? period_month_fraction(a, b) : 0;
}

/* The free quantity (base units) of metric mi in a stretch of mf months. */
static int64_t
gen_allowance(const struct tariff *t, int mi, size_t band, int64_t mf)
{
	__int128	 v;

	v = (__int128)t->t_allow[mi][band] * billing_metrics[mi].bm_div * mf;
	return ((int64_t)(v / ((__int128)PERIOD_MONTH_DIV *
	    MONEY_MICRO_PER_EUR)));
}

static void
gen_line_tariff(struct gen_line *l, const struct tariff *t, size_t band)
{
	l->l_tariff = t->t_id;
	strlcpy(l->l_band, t->t_bands[band].tb_name, sizeof(l->l_band));
}

/* A line whose amount (or quantity) does not fit: the generation fails. */
static int
gen_too_large(const struct gen_member *m, const char *what, char **cause)
{
	xasprintf(cause, "the %s of member %lld is too large to bill: check "
	    "its usage and its tariff", what, (long long)m->id);
	return (-1);
}

/*
 * The lines of one member for one version stretch; -1 with *cause when a
 * quantity or an amount would not fit (never wrapped).
 */
static int
gen_segment_lines(struct gen *g, size_t mi, const struct gen_seg *s,
    int64_t member_days, int64_t mf, char **cause)
{
	const struct gen_member *m = &g->m[mi];
	const struct tariff *t = s->s_t;
	const struct billing_metric *bm;
	struct gen_line	*l;
	size_t		 band = tariff_band(t, m->population), k, k0, k1;
	int64_t		 used, start = g->cut_utc[gen_cut_index(g, s->s_from)];
	int64_t		 end = g->cut_utc[gen_cut_index(g, s->s_end)];
	int		 mx;

	k0 = gen_cut_index(g, s->s_from);
	k1 = gen_cut_index(g, s->s_end);
	for (mx = 0; mx < BILLING_NMETRICS; mx++) {
		if (!t->t_has_rate[mx])
			continue;
		used = 0;
		for (k = k0; k < k1; k++)
			if (__builtin_add_overflow(used, SUM(g, mi, k, mx),
			    &used))
				return (gen_too_large(m, "usage", cause));
		if (used <= 0)
			continue;
		bm = &billing_metrics[mx];
		l = gen_line_new(g);
		l->l_type = "usage";
		l->l_class = bm->bm_kind;
		strlcpy(l->l_metric, bm->bm_key, sizeof(l->l_metric));
		strlcpy(l->l_label, bm->bm_label, sizeof(l->l_label));
		l->l_unit = bm->bm_unit;
		l->l_has_used = 1;
		l->l_used = used;
		l->l_allow = gen_allowance(t, mx, band, mf);
		l->l_qbase = used > l->l_allow ? used - l->l_allow : 0;
		l->l_div = bm->bm_div;
		l->l_price = t->t_rate[mx][band];
		if (money_line(l->l_qbase, l->l_div, l->l_price,
		    &l->l_amount) == -1)
			return (gen_too_large(m, bm->bm_key, cause));
		gen_line_tariff(l, t, band);
		l->l_has_range = 1;
		l->l_day_from = s->s_from;
		l->l_day_end = s->s_end;
		l->l_start = start;
		l->l_end = end;
	}
	if (t->t_has_fee && member_days > 0 && t->t_fee[band].micro > 0) {
		l = gen_line_new(g);
		l->l_type = "fee";
		strlcpy(l->l_metric, "fee.monthly", sizeof(l->l_metric));
		snprintf(l->l_label, sizeof(l->l_label), "monthly fee, band %s",
		    t->t_bands[band].tb_name);
		l->l_unit = "month";
		l->l_qbase = mf;
		l->l_div = PERIOD_MONTH_DIV;
		l->l_price = t->t_fee[band];
		if (money_line(l->l_qbase, l->l_div, l->l_price,
		    &l->l_amount) == -1)
			return (gen_too_large(m, "monthly fee", cause));
		gen_line_tariff(l, t, band);
		l->l_has_range = 1;
		l->l_day_from = s->s_from;
		l->l_day_end = s->s_end;
		l->l_start = start;
		l->l_end = end;
	}
	if (t->t_has_contrib && member_days > 0 && m->population > 0 &&
	    t->t_contrib[band].micro > 0) {
		l = gen_line_new(g);
		l->l_type = "contribution";
		strlcpy(l->l_metric, "contribution", sizeof(l->l_metric));
		snprintf(l->l_label, sizeof(l->l_label), "membership "
		    "contribution: %lld inhabitants, %lld of %d days",
		    (long long)m->population, (long long)member_days,
		    period_days_in_year(g->p->p_year));
		l->l_unit = "inhabitant-year";
		l->l_div = period_days_in_year(g->p->p_year);
		l->l_price = t->t_contrib[band];
		if (__builtin_mul_overflow(m->population, member_days,
		    &l->l_qbase) || money_line(l->l_qbase, l->l_div,
		    l->l_price, &l->l_amount) == -1)
			return (gen_too_large(m, "contribution", cause));
		gen_line_tariff(l, t, band);
		l->l_has_range = 1;
		l->l_day_from = s->s_from;
		l->l_day_end = s->s_end;
		l->l_start = start;
		l->l_end = end;
	}
	return (0);
}

/* ---- late usage ---- */

/* A closed segment, as the comparison needs it. */
struct late_seg {
	int64_t		 stmt, tariff, start, end, day_from, day_end;
	int64_t		 mf;
	char		 band[33];
};

/* The last known state of a closed line: metered quantity and amount. */
struct late_base {
	int64_t		 used, allow, amount;
	int		 has_allow, seen, prio;
};

/*
 * The members of the closed periods that ended within BILLING_LATE_DAYS
 * before day first whose usage in the period changed since it was
 * generated: metering stamps every change of a monthly total with its
 * change sequence, and each generation kept the one of its read
 * (billing_periods.usage_seq). A total stamped with that very sequence
 * may predate the read: it is compared again, which changes nothing if
 * nothing changed. No month is read again, only the totals' stamps.
 * In the order of the periods.
 */
static int
gen_late_candidates(sqlite3 *db, int64_t first, struct late_cand **out,
    size_t *nout, char **cause)
{
	sqlite3_stmt	*sp, *sc;
	struct late_cand *c = NULL;
	size_t		 n = 0;
	int		 rc;

	*out = NULL;
	*nout = 0;
	if (!billing_have_usage(db))
		return (0);
	sp = store_prepare(db, "SELECT period, usage_seq, start_utc, end_utc "
	    "FROM billing_periods WHERE status = 'closed' AND end_day > ? "
	    "ORDER BY start_utc");
	sc = store_prepare(db, "SELECT DISTINCT tenant_id FROM usage_monthly "
	    "WHERE month >= ? AND month < ? AND changed >= ? AND tenant_id > 0 "
	    "ORDER BY tenant_id");
	sqlite3_bind_int64(sp, 1, first - BILLING_LATE_DAYS);
	while ((rc = store_step(sp)) == SQLITE_ROW) {
		sqlite3_reset(sc);
		sqlite3_bind_int64(sc, 1, calendar_month(sqlite3_column_int64(
		    sp, 2)));
		sqlite3_bind_int64(sc, 2, sqlite3_column_int64(sp, 3));
		sqlite3_bind_int64(sc, 3, sqlite3_column_int64(sp, 1));
		while ((rc = store_step(sc)) == SQLITE_ROW) {
			c = xrealloc(c, (n + 1) * sizeof(*c));
			c[n].lc_tenant = sqlite3_column_int64(sc, 0);
			strlcpy(c[n].lc_period, (const char *)
			    sqlite3_column_text(sp, 0), sizeof(c[n].lc_period));
			n++;
		}
		if (rc != SQLITE_DONE)
			break;
	}
	sqlite3_finalize(sp);
	sqlite3_finalize(sc);
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "finding late usage: %s", sqlite3_errmsg(db));
		free(c);
		return (-1);
	}
	*out = c;
	*nout = n;
	return (0);
}

/* The segments of a member's closed statement of a period. */
static sqlite3_stmt *
gen_late_segments(sqlite3 *db, const struct late_cand *c)
{
	sqlite3_stmt	*st;

	st = store_prepare(db, "SELECT g.statement_id, g.tariff_id, "
	    "g.start_utc, g.end_utc, g.day_from, g.day_end, g.member_mf, "
	    "g.band FROM statements s JOIN statement_segments g ON "
	    "g.statement_id = s.id WHERE s.tenant_id = ? AND s.period = ? AND "
	    "s.status = 'closed' ORDER BY g.start_utc, g.end_utc");
	sqlite3_bind_int64(st, 1, c->lc_tenant);
	sqlite3_bind_text(st, 2, c->lc_period, -1, SQLITE_TRANSIENT);
	return (st);
}

static int
gen_late_sum_cmp(const void *a, const void *b)
{
	const struct late_sum *x = a, *y = b;

	if (x->ls_tenant != y->ls_tenant)
		return (x->ls_tenant < y->ls_tenant ? -1 : 1);
	if (x->ls_start != y->ls_start)
		return (x->ls_start < y->ls_start ? -1 : 1);
	if (x->ls_end != y->ls_end)
		return (x->ls_end < y->ls_end ? -1 : 1);
	return (0);
}

static int
gen_late_sum_range_cmp(const void *a, const void *b)
{
	const struct late_sum *x = a, *y = b;

	if (x->ls_start != y->ls_start)
		return (x->ls_start < y->ls_start ? -1 : 1);
	if (x->ls_end != y->ls_end)
		return (x->ls_end < y->ls_end ? -1 : 1);
	return (x->ls_tenant < y->ls_tenant ? -1 : x->ls_tenant >
	    y->ls_tenant);
}

/*
 * The usage now of every segment of the candidates, sorted by tenant and
 * range: per member (an index serves it), or in one pass over a range
 * for every member when many share it (the first generation after an
 * upgrade compares everything once).
 */
static int
gen_late_sums(sqlite3 *db, const struct late_cand *c, size_t nc,
    int64_t maxid, struct late_sum **out, size_t *nout, char **cause)
{
	struct late_sum	*ls = NULL;
	sqlite3_stmt	*st;
	int64_t		*all = NULL;
	size_t		 n = 0, i, j, k;
	int		 rc = 0;

	for (i = 0; i < nc; i++) {
		st = gen_late_segments(db, &c[i]);
		while ((rc = store_step(st)) == SQLITE_ROW) {
			ls = xrealloc(ls, (n + 1) * sizeof(*ls));
			memset(&ls[n], 0, sizeof(ls[n]));
			ls[n].ls_tenant = c[i].lc_tenant;
			ls[n].ls_start = sqlite3_column_int64(st, 2);
			ls[n].ls_end = sqlite3_column_int64(st, 3);
			n++;
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			xasprintf(cause, "reading closed segments: %s",
			    sqlite3_errmsg(db));
			goto fail;
		}
	}
	if (n > 0)
		qsort(ls, n, sizeof(*ls), gen_late_sum_range_cmp);
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && ls[j].ls_start == ls[i].ls_start &&
		    ls[j].ls_end == ls[i].ls_end; j++)
			continue;
		if (j - i <= 64) {
			for (k = i; k < j; k++)
				if (gen_sum_usage(db, ls[k].ls_start,
				    ls[k].ls_end, ls[k].ls_tenant, NULL, maxid,
				    ls[k].ls_sums, BILLING_NMETRICS,
				    cause) == -1)
					goto fail;
			continue;
		}
		all = xcalloc(((size_t)maxid + 1) * BILLING_NMETRICS,
		    sizeof(*all));
		if (gen_sum_usage(db, ls[i].ls_start, ls[i].ls_end, 0, NULL,
		    maxid, all, BILLING_NMETRICS, cause) == -1)
			goto fail;
		for (k = i; k < j; k++)
			if (ls[k].ls_tenant <= maxid)
				memcpy(ls[k].ls_sums, &all[(size_t)ls[k].ls_tenant *
				    BILLING_NMETRICS], sizeof(ls[k].ls_sums));
		free(all);
		all = NULL;
	}
	if (n > 0)
		qsort(ls, n, sizeof(*ls), gen_late_sum_cmp);
	*out = ls;
	*nout = n;
	return (0);
fail:
	free(all);
	free(ls);
	return (-1);
}

/*
 * The usage now of a candidate's segment: from the read ahead, or read
 * here. Missing from the read ahead: a statement was closed since (stale).
 */
static int
gen_late_now(struct gen *g, int64_t tenant, int64_t start, int64_t end,
    int64_t *sums, char **cause)
{
	const struct billing_usage *u = g->usage;
	struct late_sum	 key, *ls;

	memset(sums, 0, BILLING_NMETRICS * sizeof(*sums));
	if (u == NULL)
		return (gen_sum_usage(g->db, start, end, tenant, NULL, g->maxid,
		    sums, BILLING_NMETRICS, cause));
	key.ls_tenant = tenant;
	key.ls_start = start;
	key.ls_end = end;
	if ((ls = bsearch(&key, u->u_late, u->u_nlate, sizeof(*u->u_late),
	    gen_late_sum_cmp)) == NULL) {
		g->stale = 1;
		xasprintf(cause, "closed statements changed while the usage of "
		    "%s was read: generate it again", g->p->p_label);
		return (-1);
	}
	memcpy(sums, ls->ls_sums, sizeof(ls->ls_sums));
	return (0);
}

/* The baseline of a member's closed range, per metric. */
static void
gen_late_base(struct gen *g, sqlite3_stmt *sb, int64_t tenant, int64_t start,
    int64_t end, struct late_base *base)
{
	struct late_base *bb;
	int		 mx, prio;

	memset(base, 0, BILLING_NMETRICS * sizeof(*base));
	sqlite3_reset(sb);
	sqlite3_bind_int64(sb, 1, tenant);
	sqlite3_bind_int64(sb, 2, start);
	sqlite3_bind_int64(sb, 3, end);
	while (store_step(sb) == SQLITE_ROW) {
		if ((mx = tariff_metric((const char *)sqlite3_column_text(sb,
		    0))) < 0)
			continue;
		prio = sqlite3_column_int(sb, 4);
		bb = &base[mx];
		if (bb->seen && bb->prio >= prio)
			continue;
		bb->seen = 1;
		bb->prio = prio;
		bb->used = sqlite3_column_int64(sb, 1);
		bb->amount = sqlite3_column_int64(sb, 2);
		bb->has_allow = sqlite3_column_type(sb, 3) != SQLITE_NULL;
		bb->allow = sqlite3_column_int64(sb, 3);
	}
}

/*
 * The late_usage lines of one closed segment of member mi; -1 with *cause
 * when an amount would not fit (never wrapped).
 */
static int
gen_late_lines(struct gen *g, size_t mi, const struct late_seg *sg,
    const char *period, const int64_t *cur, const struct late_base *base,
    char **cause)
{
	const struct late_base *bb;
	const struct tariff *t;
	struct gen_line	*l;
	int64_t		 bill_old, bill_new, allow;
	size_t		 band;
	int		 mx;
	char		 from[11], last[11];

	if ((t = tariff_by_id(&g->ts, sg->tariff)) == NULL)
		return (0);
	for (band = 0; band + 1 < t->t_nbands; band++)
		if (strcmp(t->t_bands[band].tb_name, sg->band) == 0)
			break;
	for (mx = 0; mx < BILLING_NMETRICS; mx++) {
		bb = &base[mx];
		if (!t->t_has_rate[mx] || cur[mx] == bb->used)
			continue;
		allow = bb->has_allow ? bb->allow : gen_allowance(t, mx, band,
		    sg->mf);
		bill_old = bb->used > allow ? bb->used - allow : 0;
		g->late[mi] = xrealloc(g->late[mi], (g->nlate[mi] + 1) *
		    sizeof(*g->late[mi]));
		l = &g->late[mi][g->nlate[mi]++];
		memset(l, 0, sizeof(*l));
		l->l_type = "late_usage";
		l->l_class = billing_metrics[mx].bm_kind;
		strlcpy(l->l_metric, billing_metrics[mx].bm_key,
		    sizeof(l->l_metric));
		period_fmt_day(sg->day_from, from, sizeof(from));
		period_fmt_day(sg->day_end - 1, last, sizeof(last));
		snprintf(l->l_label, sizeof(l->l_label), "%s: usage metered "
		    "after %s was closed (%s to %s)",
		    billing_metrics[mx].bm_label, period, from, last);
		l->l_unit = billing_metrics[mx].bm_unit;
		l->l_has_used = 1;
		l->l_used = cur[mx];
		l->l_allow = allow;
		bill_new = l->l_used > allow ? l->l_used - allow : 0;
		l->l_qbase = bill_new - bill_old;
		l->l_div = billing_metrics[mx].bm_div;
		l->l_price = t->t_rate[mx][band];
		l->l_has_basis = 1;
		if (money_line(bill_new, l->l_div, l->l_price,
		    &l->l_basis) == -1) {
			xasprintf(cause, "the late usage of member %lld is too "
			    "large to bill", (long long)g->m[mi].id);
			return (-1);
		}
		/* Both within MONEY_MAX_CENTS: no overflow. */
		l->l_amount.c = l->l_basis.c - bb->amount;
		gen_line_tariff(l, t, band);
		l->l_has_range = 1;
		l->l_day_from = sg->day_from;
		l->l_day_end = sg->day_end;
		l->l_start = sg->start;
		l->l_end = sg->end;
		strlcpy(l->l_corrects, period, sizeof(l->l_corrects));
		l->l_corrects_stmt = sg->stmt;
		xasprintf(&l->l_reason, "late usage for %s: %s metered after "
		    "the statement was closed", period,
		    billing_metrics[mx].bm_key);
	}
	return (0);
}

/*
 * Compare usage now with what the closed statements of the last
 * BILLING_LATE_DAYS billed (or later corrections already closed), for
 * the members whose usage there changed since (gen_late_candidates) and
 * whose statement in this generation is their earliest open one; the
 * differences become late_usage lines for them.
 */
static int
gen_late(struct gen *g, char **cause)
{
	sqlite3_stmt	*st, *sb;
	struct late_cand *c = NULL;
	struct late_seg	 sg;
	struct late_base base[BILLING_NMETRICS];
	int64_t		 cur[BILLING_NMETRICS];
	size_t		 nc = 0, i, nm = g->nm;
	int32_t		 mi;
	int		 rc, rv = -1;

	g->late = xcalloc(nm ? nm : 1, sizeof(*g->late));
	g->nlate = xcalloc(nm ? nm : 1, sizeof(*g->nlate));
	if (g->usage != NULL) {
		c = g->usage->u_cand;
		nc = g->usage->u_ncand;
	} else if (gen_late_candidates(g->db, g->p->p_first, &c, &nc,
	    cause) == -1)
		return (-1);
	/*
	 * The baseline of a (member, range) per metric: the closed usage
	 * line, or the most recently closed late_usage line correcting it.
	 */
	sb = store_prepare(g->db, "SELECT l.metric, l.used_base, "
	    "coalesce(l.basis_cents, l.amount_cents), l.allowance_base, "
	    "CASE l.type WHEN 'usage' THEN 0 ELSE p.close_seq END FROM "
	    "statements s JOIN statement_lines l ON l.statement_id = s.id "
	    "JOIN billing_periods p ON p.period = s.period WHERE s.tenant_id = "
	    "? AND s.status = 'closed' AND l.type IN ('usage', 'late_usage') "
	    "AND l.start_utc = ? AND l.end_utc = ?");
	for (i = 0; i < nc; i++) {
		if (c[i].lc_tenant > g->maxid ||
		    (mi = g->idx[c[i].lc_tenant]) < 0 || !g->m[mi].earliest)
			continue;
		st = gen_late_segments(g->db, &c[i]);
		while ((rc = store_step(st)) == SQLITE_ROW) {
			memset(&sg, 0, sizeof(sg));
			sg.stmt = sqlite3_column_int64(st, 0);
			sg.tariff = sqlite3_column_int64(st, 1);
			sg.start = sqlite3_column_int64(st, 2);
			sg.end = sqlite3_column_int64(st, 3);
			sg.day_from = sqlite3_column_int64(st, 4);
			sg.day_end = sqlite3_column_int64(st, 5);
			sg.mf = sqlite3_column_int64(st, 6);
			strlcpy(sg.band, (const char *)sqlite3_column_text(st,
			    7), sizeof(sg.band));
			if (gen_late_now(g, c[i].lc_tenant, sg.start, sg.end,
			    cur, cause) == -1) {
				sqlite3_finalize(st);
				goto out;
			}
			gen_late_base(g, sb, c[i].lc_tenant, sg.start, sg.end,
			    base);
			if (gen_late_lines(g, (size_t)mi, &sg, c[i].lc_period,
			    cur, base, cause) == -1) {
				sqlite3_finalize(st);
				goto out;
			}
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			xasprintf(cause, "reading closed segments: %s",
			    sqlite3_errmsg(g->db));
			goto out;
		}
	}
	rv = 0;
out:
	sqlite3_finalize(sb);
	if (g->usage == NULL)
		free(c);
	return (rv);
}

/* ---- writing ---- */

static int
gen_write_line(struct gen *g, int64_t stmt, int seq, const struct gen_line *l)
{
	sqlite3_stmt	*st = g->st_line;
	int		 rc;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sqlite3_bind_int64(st, 1, stmt);
	sqlite3_bind_int(st, 2, seq);
	sqlite3_bind_text(st, 3, l->l_type, -1, SQLITE_STATIC);
	gen_bind_text(st, 4, l->l_class);
	sqlite3_bind_text(st, 5, l->l_metric, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, l->l_label, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, l->l_unit, -1, SQLITE_STATIC);
	if (l->l_has_used) {
		sqlite3_bind_int64(st, 8, l->l_used);
		sqlite3_bind_int64(st, 9, l->l_allow);
	}
	sqlite3_bind_int64(st, 10, l->l_qbase);
	sqlite3_bind_int64(st, 11, l->l_div);
	sqlite3_bind_int64(st, 12, l->l_price.micro);
	sqlite3_bind_int64(st, 13, l->l_amount.c);
	if (l->l_has_basis)
		sqlite3_bind_int64(st, 14, l->l_basis.c);
	if (l->l_tariff != 0) {
		sqlite3_bind_int64(st, 15, l->l_tariff);
		gen_bind_text(st, 16, l->l_band);
	}
	if (l->l_has_range) {
		sqlite3_bind_int64(st, 17, l->l_day_from);
		sqlite3_bind_int64(st, 18, l->l_day_end);
		sqlite3_bind_int64(st, 19, l->l_start);
		sqlite3_bind_int64(st, 20, l->l_end);
	}
	gen_bind_text(st, 21, l->l_corrects);
	if (l->l_corrects_stmt != 0)
		sqlite3_bind_int64(st, 22, l->l_corrects_stmt);
	if (l->l_adjustment != 0)
		sqlite3_bind_int64(st, 23, l->l_adjustment);
	gen_bind_text(st, 24, l->l_reason);
	rc = store_step(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

static void
gen_prepare(struct gen *g)
{
	g->st_upsert = store_prepare(g->db, "INSERT INTO statements "
	    "(tenant_id, period, first_day, end_day, tz, member_kind, "
	    "member_name, insee, siren, population, generated_at) VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT "
	    "(tenant_id, period) DO UPDATE SET revision = revision + 1, "
	    "first_day = ?3, end_day = ?4, tz = ?5, member_kind = ?6, "
	    "member_name = ?7, insee = ?8, siren = ?9, population = ?10, "
	    "generated_at = ?11 RETURNING id");
	g->st_dlines = store_prepare(g->db, "DELETE FROM statement_lines "
	    "WHERE statement_id = ?");
	g->st_dsegs = store_prepare(g->db, "DELETE FROM statement_segments "
	    "WHERE statement_id = ?");
	g->st_line = store_prepare(g->db, "INSERT INTO statement_lines "
	    "(statement_id, seq, type, class, metric, label, unit, used_base, "
	    "allowance_base, quantity_base, divisor, unit_price_micro, "
	    "amount_cents, basis_cents, tariff_id, band, day_from, day_end, "
	    "start_utc, end_utc, corrects_period, corrects_statement, "
	    "adjustment_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
	    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	g->st_seg = store_prepare(g->db, "INSERT INTO statement_segments "
	    "(statement_id, seq, tariff_id, band, day_from, day_end, "
	    "start_utc, end_utc, member_days, member_mf) VALUES (?, ?, ?, ?, "
	    "?, ?, ?, ?, ?, ?)");
	g->st_earlier = store_prepare(g->db, "SELECT 1 FROM statements WHERE "
	    "tenant_id = ? AND status = 'draft' AND first_day < ? LIMIT 1");
}

static void
gen_finalize(struct gen *g)
{
	sqlite3_finalize(g->st_upsert);
	sqlite3_finalize(g->st_dlines);
	sqlite3_finalize(g->st_dsegs);
	sqlite3_finalize(g->st_line);
	sqlite3_finalize(g->st_seg);
	sqlite3_finalize(g->st_earlier);
}

/* The adjustment lines of a statement: pending ones, and its own. */
static int
gen_adjustments(struct gen *g, int64_t tenant, int64_t stmt)
{
	sqlite3_stmt	*st;
	struct gen_line	*l;
	int		 n = 0;

	st = store_stmt(g->db, "SELECT id, amount_cents, reason, "
	    "corrects_period FROM adjustments WHERE tenant_id = ? AND "
	    "(statement_id IS NULL OR statement_id = ?) ORDER BY id");
	sqlite3_bind_int64(st, 1, tenant);
	sqlite3_bind_int64(st, 2, stmt);
	while (store_step(st) == SQLITE_ROW) {
		l = gen_line_new(g);
		l->l_type = "adjustment";
		strlcpy(l->l_metric, "adjustment", sizeof(l->l_metric));
		snprintf(l->l_label, sizeof(l->l_label), "adjustment %lld",
		    (long long)sqlite3_column_int64(st, 0));
		l->l_unit = "EUR";
		l->l_qbase = 1;
		l->l_div = 1;
		l->l_price.micro = sqlite3_column_int64(st, 1) *
		    MONEY_MICRO_PER_CENT;
		l->l_amount.c = sqlite3_column_int64(st, 1);
		l->l_adjustment = sqlite3_column_int64(st, 0);
		l->l_reason = gen_col_dup(st, 2);
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			strlcpy(l->l_corrects, (const char *)
			    sqlite3_column_text(st, 3), sizeof(l->l_corrects));
		n++;
	}
	store_done(st);
	st = store_stmt(g->db, "UPDATE adjustments SET statement_id = ?1 "
	    "WHERE tenant_id = ?2 AND (statement_id IS NULL OR statement_id "
	    "= ?1)");
	sqlite3_bind_int64(st, 1, stmt);
	sqlite3_bind_int64(st, 2, tenant);
	store_step(st);
	store_done(st);
	return (n);
}

static int
gen_member_write(struct gen *g, size_t mi, char **cause)
{
	struct gen_member *m = &g->m[mi];
	struct gen_name	*n = gen_name(g, m->tariff);
	const struct gen_seg *s;
	sqlite3_stmt	*st;
	struct gen_line	*l;
	int64_t		 stmt, days, mf;
	size_t		 i, band;
	int		 seq;

	gen_line_reset(g);
	st = g->st_upsert;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_text(st, 2, g->p->p_label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, g->p->p_first);
	sqlite3_bind_int64(st, 4, g->p->p_end);
	sqlite3_bind_text(st, 5, g->tz, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, m->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, m->name, -1, SQLITE_STATIC);
	gen_bind_text(st, 8, m->insee);
	gen_bind_text(st, 9, m->siren);
	sqlite3_bind_int64(st, 10, m->population);
	sqlite3_bind_int64(st, 11, util_now());
	if (store_step(st) != SQLITE_ROW)
		goto fail;
	stmt = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_reset(g->st_dlines);
	sqlite3_bind_int64(g->st_dlines, 1, stmt);
	sqlite3_reset(g->st_dsegs);
	sqlite3_bind_int64(g->st_dsegs, 1, stmt);
	if (store_step(g->st_dlines) != SQLITE_DONE ||
	    store_step(g->st_dsegs) != SQLITE_DONE)
		goto fail;

	for (i = 0; i < n->n_nsegs; i++) {
		s = &n->n_segs[i];
		gen_member_days(m, s->s_from, s->s_end, &days, &mf);
		band = tariff_band(s->s_t, m->population);
		if (gen_segment_lines(g, mi, s, days, mf, cause) == -1)
			return (-1);
		st = g->st_seg;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, stmt);
		sqlite3_bind_int(st, 2, (int)i + 1);
		sqlite3_bind_int64(st, 3, s->s_t->t_id);
		sqlite3_bind_text(st, 4, s->s_t->t_bands[band].tb_name, -1,
		    SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, s->s_from);
		sqlite3_bind_int64(st, 6, s->s_end);
		sqlite3_bind_int64(st, 7, g->cut_utc[gen_cut_index(g,
		    s->s_from)]);
		sqlite3_bind_int64(st, 8, g->cut_utc[gen_cut_index(g,
		    s->s_end)]);
		sqlite3_bind_int64(st, 9, days);
		sqlite3_bind_int64(st, 10, mf);
		if (store_step(st) != SQLITE_DONE)
			goto fail;
	}
	if (m->earliest) {
		for (i = 0; i < g->nlate[mi]; i++) {
			l = gen_line_new(g);
			*l = g->late[mi][i];
			g->late[mi][i].l_reason = NULL;
			g->res->g_late_lines++;
		}
		g->res->g_adjustments += gen_adjustments(g, m->id, stmt);
	} else {
		/* Its adjustments belong on the earlier open statement. */
		st = store_stmt(g->db, "UPDATE adjustments SET "
		    "statement_id = NULL WHERE statement_id = ?");
		sqlite3_bind_int64(st, 1, stmt);
		store_step(st);
		store_done(st);
	}
	for (i = 0, seq = 1; i < g->nlines; i++, seq++)
		if (gen_write_line(g, stmt, seq, &g->lines[i]) == -1)
			goto fail;
	g->res->g_lines += (int64_t)g->nlines;
	if (billing_seal(g->db, stmt, cause) == -1)
		return (-1);
	g->res->g_statements++;
	return (0);
fail:
	xasprintf(cause, "writing the statement of member %lld: %s",
	    (long long)m->id, sqlite3_errmsg(g->db));
	return (-1);
}

/* Put the sealed totals of a statement into the generation's. */
static int
gen_total(struct gen *g, char **cause)
{
	sqlite3_stmt	*st;
	int		 rv = 0;

	st = store_prepare(g->db, "SELECT coalesce(sum(total_cents), 0) FROM "
	    "statements WHERE period = ?");
	sqlite3_bind_text(st, 1, g->p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		g->res->g_total.c = sqlite3_column_int64(st, 0);
	else {
		xasprintf(cause, "summing the period: %s",
		    sqlite3_errmsg(g->db));
		rv = -1;
	}
	sqlite3_finalize(st);
	return (rv);
}

/* Drafts of this period whose member is no longer active in it. */
static int
gen_prune(struct gen *g, char **cause)
{
	sqlite3_stmt	*st, *du, *dd;
	int64_t		 tid, sid;
	int		 rv = 0;

	st = store_prepare(g->db, "SELECT id, tenant_id FROM statements WHERE "
	    "period = ? AND status = 'draft'");
	du = store_prepare(g->db, "UPDATE adjustments SET statement_id = NULL "
	    "WHERE statement_id = ?");
	dd = store_prepare(g->db, "DELETE FROM statements WHERE id = ?");
	sqlite3_bind_text(st, 1, g->p->p_label, -1, SQLITE_STATIC);
	while (store_step(st) == SQLITE_ROW) {
		sid = sqlite3_column_int64(st, 0);
		tid = sqlite3_column_int64(st, 1);
		if (tid >= 1 && tid <= g->maxid && g->idx[tid] >= 0)
			continue;
		sqlite3_reset(du);
		sqlite3_bind_int64(du, 1, sid);
		sqlite3_reset(dd);
		sqlite3_bind_int64(dd, 1, sid);
		if (store_step(du) != SQLITE_DONE ||
		    store_step(dd) != SQLITE_DONE) {
			xasprintf(cause, "removing statement %lld: %s",
			    (long long)sid, sqlite3_errmsg(g->db));
			rv = -1;
			break;
		}
		g->res->g_removed++;
	}
	sqlite3_finalize(st);
	sqlite3_finalize(du);
	sqlite3_finalize(dd);
	return (rv);
}

/* May period p be generated: not closed, overlapping no other? */
static int
gen_check_period(sqlite3 *db, const struct period *p, int *status,
    char **cause)
{
	sqlite3_stmt	*st;
	int		 closed = 0;
	char		*other = NULL;

	st = store_prepare(db, "SELECT status FROM billing_periods WHERE "
	    "period = ?");
	sqlite3_bind_text(st, 1, p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		closed = strcmp((const char *)sqlite3_column_text(st, 0),
		    "closed") == 0;
	sqlite3_finalize(st);
	if (closed) {
		xasprintf(cause, "period %s is closed: its statements never "
		    "change; corrections go on the next statement (opsnctl "
		    "adjustment add)", p->p_label);
		*status = BILLING_ECONFLICT;
		return (-1);
	}
	st = store_prepare(db, "SELECT period FROM billing_periods WHERE "
	    "period != ? AND first_day < ? AND end_day > ? LIMIT 1");
	sqlite3_bind_text(st, 1, p->p_label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p->p_end);
	sqlite3_bind_int64(st, 3, p->p_first);
	if (store_step(st) == SQLITE_ROW)
		other = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (other != NULL) {
		xasprintf(cause, "period %s overlaps period %s, which has "
		    "statements: a day is billed once", p->p_label, other);
		free(other);
		*status = BILLING_ECONFLICT;
		return (-1);
	}
	return (0);
}

/* Metering's usage change sequence now (0 without metering). */
static int64_t
gen_usage_seq(sqlite3 *db)
{
	sqlite3_stmt	*st;
	int64_t		 seq = 0;

	if (!billing_have_usage(db))
		return (0);
	st = store_prepare(db, "SELECT change_seq FROM meter_state");
	if (store_step(st) == SQLITE_ROW)
		seq = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (seq);
}

/* Generate the period's drafts, reading usage here or from usage. */
static int
gen_run(sqlite3 *db, const struct period *p,
    const struct billing_usage *usage, struct billing_gen_result *res,
    int *status, char **cause)
{
	struct gen	 g;
	sqlite3_stmt	*st;
	int64_t		 bounds[2], utc[2], t0 = (int64_t)util_mono_ms(), t1;
	size_t		 i, k;
	int		 rv = -1;

	memset(&g, 0, sizeof(g));
	memset(res, 0, sizeof(*res));
	g.db = db;
	g.tz = calendar_tz();
	g.p = p;
	g.res = res;
	g.usage = usage;
	*status = BILLING_EINTERNAL;
	gen_keys_init();
	if (gen_check_period(db, p, status, cause) == -1)
		return (-1);
	bounds[0] = p->p_first;
	bounds[1] = p->p_end;
	period_utc(bounds, utc, 2);
	if (tariff_load(db, &g.ts, cause) == -1)
		return (-1);
	if (gen_members(&g, status, cause) == -1 ||
	    gen_plan(&g, status, cause) == -1)
		goto out;
	*status = BILLING_EINTERNAL;

	g.idx = xmalloc(((size_t)g.maxid + 1) * sizeof(*g.idx));
	memset(g.idx, 0xff, ((size_t)g.maxid + 1) * sizeof(*g.idx));
	for (i = 0; i < g.nm; i++)
		g.idx[g.m[i].id] = (int32_t)i;
	g.sums = xcalloc((g.nm ? g.nm : 1) * (g.ncuts - 1) * BILLING_NMETRICS,
	    sizeof(*g.sums));
	if (billing_have_usage(db)) {
		int64_t *part = xcalloc((g.nm ? g.nm : 1) * BILLING_NMETRICS,
		    sizeof(*part));
		size_t	 mi;
		int	 mx;

		for (k = 0; k + 1 < g.ncuts; k++) {
			memset(part, 0, (g.nm ? g.nm : 1) * BILLING_NMETRICS *
			    sizeof(*part));
			if (gen_read_usage(&g, g.cut_utc[k], g.cut_utc[k + 1],
			    part, BILLING_NMETRICS, cause) == -1) {
				free(part);
				goto out;
			}
			for (mi = 0; mi < g.nm; mi++)
				for (mx = 0; mx < BILLING_NMETRICS; mx++)
					SUM(&g, mi, k, mx) = part[mi *
					    BILLING_NMETRICS + mx];
		}
		free(part);
	} else
		log_info("billing: no usage_hourly table (metering not built "
		    "in): statements hold fees and contributions only");
	t1 = (int64_t)util_mono_ms();
	res->g_usage_ms = usage != NULL ? usage->u_ms : t1 - t0;

	gen_prepare(&g);
	for (i = 0; i < g.nm; i++) {
		sqlite3_reset(g.st_earlier);
		sqlite3_bind_int64(g.st_earlier, 1, g.m[i].id);
		sqlite3_bind_int64(g.st_earlier, 2, p->p_first);
		g.m[i].earliest = store_step(g.st_earlier) != SQLITE_ROW;
	}
	sqlite3_reset(g.st_earlier);
	if (gen_late(&g, cause) == -1)
		goto out;

	/*
	 * The usage change sequence the statements were computed at: late
	 * usage is what changes after it (gen_late_candidates).
	 */
	st = store_prepare(db, "INSERT INTO billing_periods (period, "
	    "first_day, end_day, tz, start_utc, end_utc, revision, "
	    "generated_at, usage_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, "
	    "?8) ON CONFLICT (period) DO UPDATE SET revision = revision + 1, "
	    "tz = ?4, start_utc = ?5, end_utc = ?6, generated_at = ?7, "
	    "usage_seq = ?8 RETURNING revision");
	sqlite3_bind_text(st, 1, p->p_label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p->p_first);
	sqlite3_bind_int64(st, 3, p->p_end);
	sqlite3_bind_text(st, 4, g.tz, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, utc[0]);
	sqlite3_bind_int64(st, 6, utc[1]);
	sqlite3_bind_int64(st, 7, util_now());
	sqlite3_bind_int64(st, 8, usage != NULL ? usage->u_seq :
	    gen_usage_seq(db));
	if (store_step(st) != SQLITE_ROW) {
		xasprintf(cause, "recording the period: %s",
		    sqlite3_errmsg(db));
		sqlite3_finalize(st);
		goto out;
	}
	res->g_revision = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);

	for (i = 0; i < g.nm; i++)
		if (gen_member_write(&g, i, cause) == -1)
			goto out;
	if (gen_prune(&g, cause) == -1)
		goto out;
	/* Adjustments set free by this generation go to an open statement. */
	st = store_prepare(db, "SELECT DISTINCT tenant_id FROM adjustments "
	    "WHERE statement_id IS NULL");
	while (store_step(st) == SQLITE_ROW)
		if (billing_attach_pending(db, sqlite3_column_int64(st, 0),
		    cause) == -1) {
			sqlite3_finalize(st);
			goto out;
		}
	sqlite3_finalize(st);
	if (gen_total(&g, cause) == -1)
		goto out;
	res->g_total_ms = (int64_t)util_mono_ms() - t0;
	if (usage != NULL)
		res->g_total_ms += usage->u_ms;
	rv = 0;
out:
	if (rv == -1 && g.stale)
		*status = BILLING_ECONFLICT;
	gen_finalize(&g);
	gen_line_reset(&g);
	free(g.lines);
	if (g.late != NULL) {
		for (i = 0; i < g.nm; i++) {
			for (k = 0; k < g.nlate[i]; k++)
				free(g.late[i][k].l_reason);
			free(g.late[i]);
		}
	}
	free(g.late);
	free(g.nlate);
	free(g.sums);
	free(g.idx);
	free(g.names);
	gen_members_free(&g);
	tariff_set_free(&g.ts);
	return (rv);
}

/* Generate the period's drafts; see billing.h. */
int
billing_generate(sqlite3 *db, const struct period *p,
    struct billing_gen_result *res, int *status, char **cause)
{
	return (gen_run(db, p, NULL, res, status, cause));
}

/*
 * As billing_generate(), with the usage read ahead by billing_usage_read()
 * (the write connection, the caller's transaction). A needed range the
 * read lacks is a conflict (409): generate again.
 */
int
billing_generate_usage(sqlite3 *db, const struct period *p,
    const struct billing_usage *u, struct billing_gen_result *res,
    int *status, char **cause)
{
	return (gen_run(db, p, u, res, status, cause));
}

/* ---- usage read ahead, on the thread pool ---- */

/*
 * Plan the read ahead of generating p, on the loop thread: the period
 * must be open and overlap no other; its stretches run between every
 * boundary of every tariff version inside it, whichever members use.
 * NULL with *status and *cause.
 */
struct billing_usage *
billing_usage_plan(sqlite3 *db, const struct period *p, int *status,
    char **cause)
{
	struct billing_usage *u;
	struct tariff_set ts;
	int64_t		*days, *utc;
	size_t		 i, j, n = 0;

	*status = BILLING_EINTERNAL;
	gen_keys_init();
	if (gen_check_period(db, p, status, cause) == -1)
		return (NULL);
	memset(&ts, 0, sizeof(ts));
	if (tariff_load(db, &ts, cause) == -1)
		return (NULL);
	days = xcalloc(2 * ts.ts_n + 2, sizeof(*days));
	days[n++] = p->p_first;
	days[n++] = p->p_end;
	for (i = 0; i < ts.ts_n; i++) {
		if (ts.ts_v[i].t_from > p->p_first &&
		    ts.ts_v[i].t_from < p->p_end)
			days[n++] = ts.ts_v[i].t_from;
		if (ts.ts_v[i].t_end > p->p_first &&
		    ts.ts_v[i].t_end < p->p_end)
			days[n++] = ts.ts_v[i].t_end;
	}
	tariff_set_free(&ts);
	qsort(days, n, sizeof(*days), gen_cmp64);
	for (i = 1, j = 1; i < n; i++)
		if (days[i] != days[j - 1])
			days[j++] = days[i];
	n = j;
	utc = xcalloc(n, sizeof(*utc));
	period_utc(days, utc, n);
	u = xcalloc(1, sizeof(*u));
	u->u_first = p->p_first;
	u->u_nr = n - 1;
	u->u_r = xcalloc(n - 1, sizeof(*u->u_r));
	for (i = 0; i + 1 < n; i++) {
		u->u_r[i].r_start = utc[i];
		u->u_r[i].r_end = utc[i + 1];
	}
	free(days);
	free(utc);
	return (u);
}

/* Sum one range of usage for every tenant. */
static int
gen_usage_range(sqlite3 *db, struct billing_usage *u, struct usage_range *r,
    char **cause)
{
	r->r_sums = xcalloc(((size_t)u->u_maxid + 1) * BILLING_NMETRICS,
	    sizeof(*r->r_sums));
	return (gen_sum_usage(db, r->r_start, r->r_end, 0, NULL, u->u_maxid,
	    r->r_sums, BILLING_NMETRICS, cause));
}

/*
 * Read the usage that billing_generate_usage() will need, on a read
 * connection (any thread; one snapshot): the planned stretches, then the
 * members of closed periods whose usage changed since they were generated
 * and their closed segments' usage now. -1 with *cause.
 */
int
billing_usage_read(struct billing_usage *u, sqlite3 *db, char **cause)
{
	sqlite3_stmt	*st;
	uint64_t	 t0 = util_mono_ms();
	size_t		 i;
	int		 rc, rv = -1;

	if (store_exec(db, "BEGIN", cause) == -1)
		return (-1);
	if (!billing_have_usage(db)) {
		rv = 0;
		goto out;
	}
	st = store_prepare(db, "SELECT coalesce(max(id), 0), (SELECT "
	    "change_seq FROM meter_state) FROM tenants");
	if ((rc = store_step(st)) == SQLITE_ROW) {
		u->u_maxid = sqlite3_column_int64(st, 0);
		u->u_seq = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		xasprintf(cause, "reading tenants: %s", sqlite3_errmsg(db));
		goto out;
	}
	for (i = 0; i < u->u_nr; i++)
		if (gen_usage_range(db, u, &u->u_r[i], cause) == -1)
			goto out;
	if (gen_late_candidates(db, u->u_first, &u->u_cand, &u->u_ncand,
	    cause) == -1 || gen_late_sums(db, u->u_cand, u->u_ncand,
	    u->u_maxid, &u->u_late, &u->u_nlate, cause) == -1)
		goto out;
	rv = 0;
out:
	store_exec(db, "COMMIT", NULL);
	u->u_ms = (int64_t)(util_mono_ms() - t0);
	return (rv);
}

/* Free a read ahead (NULL is fine). */
void
billing_usage_free(struct billing_usage *u)
{
	size_t	 i;

	if (u == NULL)
		return;
	for (i = 0; i < u->u_nr; i++)
		free(u->u_r[i].r_sums);
	free(u->u_r);
	free(u->u_cand);
	free(u->u_late);
	free(u);
}

/* Total and checksum of a statement, from its lines. */
int
billing_seal(sqlite3 *db, int64_t id, char **cause)
{
	sqlite3_stmt	*st;
	struct cents	 total;
	char		 sum[72];
	int		 rv = -1;

	if (billing_statement_sum(db, id, &total, sum) == -1) {
		xasprintf(cause, "statement %lld vanished", (long long)id);
		return (-1);
	}
	/* One UPDATE: each costs a statement journal (the triggers). */
	st = store_stmt(db, "UPDATE statements SET total_cents = ?, "
	    "checksum = ? WHERE id = ?");
	sqlite3_bind_int64(st, 1, total.c);
	sqlite3_bind_text(st, 2, sum, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, id);
	if (store_step(st) == SQLITE_DONE)
		rv = 0;
	else
		xasprintf(cause, "statement %lld: %s", (long long)id,
		    sqlite3_errmsg(db));
	store_done(st);
	return (rv);
}

/* Pending adjustments of a member onto its earliest open statement. */
int
billing_attach_pending(sqlite3 *db, int64_t tenant, char **cause)
{
	sqlite3_stmt	*st, *ins;
	int64_t		 stmt = 0;
	int		 seq = 0, n = 0;

	st = store_prepare(db, "SELECT id FROM statements WHERE tenant_id = ? "
	    "AND status = 'draft' ORDER BY first_day LIMIT 1");
	sqlite3_bind_int64(st, 1, tenant);
	if (store_step(st) == SQLITE_ROW)
		stmt = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (stmt == 0)
		return (0);
	st = store_prepare(db, "SELECT coalesce(max(seq), 0) FROM "
	    "statement_lines WHERE statement_id = ?");
	sqlite3_bind_int64(st, 1, stmt);
	if (store_step(st) == SQLITE_ROW)
		seq = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = store_prepare(db, "SELECT id, amount_cents, reason, "
	    "corrects_period FROM adjustments WHERE tenant_id = ? AND "
	    "statement_id IS NULL ORDER BY id");
	ins = store_prepare(db, "INSERT INTO statement_lines (statement_id, "
	    "seq, type, metric, label, unit, quantity_base, divisor, "
	    "unit_price_micro, amount_cents, corrects_period, adjustment_id, "
	    "reason) VALUES (?1, ?2, 'adjustment', 'adjustment', "
	    "'adjustment ' || ?3, 'EUR', 1, 1, ?4 * 10000, ?4, ?5, ?3, ?6)");
	sqlite3_bind_int64(st, 1, tenant);
	while (store_step(st) == SQLITE_ROW) {
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, stmt);
		sqlite3_bind_int(ins, 2, ++seq);
		sqlite3_bind_int64(ins, 3, sqlite3_column_int64(st, 0));
		sqlite3_bind_int64(ins, 4, sqlite3_column_int64(st, 1));
		sqlite3_bind_value(ins, 5, sqlite3_column_value(st, 3));
		sqlite3_bind_value(ins, 6, sqlite3_column_value(st, 2));
		if (store_step(ins) != SQLITE_DONE) {
			xasprintf(cause, "adjustment: %s", sqlite3_errmsg(db));
			sqlite3_finalize(st);
			sqlite3_finalize(ins);
			return (-1);
		}
		n++;
	}
	sqlite3_finalize(st);
	sqlite3_finalize(ins);
	if (n == 0)
		return (0);
	st = store_prepare(db, "UPDATE adjustments SET statement_id = ? WHERE "
	    "tenant_id = ? AND statement_id IS NULL");
	sqlite3_bind_int64(st, 1, stmt);
	sqlite3_bind_int64(st, 2, tenant);
	store_step(st);
	sqlite3_finalize(st);
	if (billing_seal(db, stmt, cause) == -1)
		return (-1);
	return (n);
}

/* Freeze a period; see billing.h. */
int
billing_close(sqlite3 *db, const struct period *p, int64_t *count,
    char checksum[72], int *status, char **cause)
{
	sqlite3_stmt	*st;
	char		 cur[16] = "";
	int64_t		 now = util_now();

	*status = BILLING_EINTERNAL;
	st = store_prepare(db, "SELECT status FROM billing_periods WHERE "
	    "period = ?");
	sqlite3_bind_text(st, 1, p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		strlcpy(cur, (const char *)sqlite3_column_text(st, 0),
		    sizeof(cur));
	sqlite3_finalize(st);
	if (*cur == '\0') {
		xasprintf(cause, "period %s has no statements: generate them "
		    "first", p->p_label);
		*status = BILLING_ECONFLICT;
		return (-1);
	}
	if (strcmp(cur, "closed") == 0) {
		xasprintf(cause, "period %s is already closed", p->p_label);
		*status = BILLING_ECONFLICT;
		return (-1);
	}
	st = store_prepare(db, "UPDATE statements SET status = 'closed', "
	    "closed_at = ? WHERE period = ? AND status = 'draft'");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "closing: %s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return (-1);
	}
	sqlite3_finalize(st);
	if (billing_period_checksum(db, p->p_label, 0, count, checksum) == -1) {
		xasprintf(cause, "checksum: %s", sqlite3_errmsg(db));
		return (-1);
	}
	st = store_prepare(db, "UPDATE billing_periods SET status = 'closed', "
	    "closed_at = ?1, checksum = ?2, close_seq = (SELECT "
	    "coalesce(max(close_seq), 0) + 1 FROM billing_periods) WHERE "
	    "period = ?3");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, checksum, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, p->p_label, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "closing: %s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return (-1);
	}
	sqlite3_finalize(st);
	return (0);
}
