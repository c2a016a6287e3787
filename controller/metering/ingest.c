/*
 * Metering, the controller's side of the delivery path: MSG_SAMPLES from
 * the agents are inserted (INSERT OR IGNORE on (node, seq): a resent
 * sample is a no-op), committed with synchronous=FULL, and only then
 * acknowledged with MSG_SAMPLES_ACK. Batches that arrive in the same loop
 * iteration, from any agents, share one transaction (group commit).
 *
 * Rollups run on a timer: the reading and arithmetic on the thread pool
 * with a read connection of their own (WAL), the writing here on the loop
 * thread, which owns the write connection. Retention deletes raw samples
 * older than raw_retention once they are rolled up.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "metering.h"
#include "metering.pb-c.h"

#define METER_BATCH_MAX		100000	/* samples in one MSG_SAMPLES */
/*
 * Samples one rollup round reads: its writes run on the loop, which
 * answers nothing meanwhile, so a round is kept short and rounds follow
 * each other while there is more. How many fit in METER_ROUND_WRITE_MS
 * of writing depends on the database (a VM's hourly rows cost 190 us a
 * sample at 50,000 VMs, a mailbox's daily ones 15 us): the size of the
 * next round follows the time the last one took to write.
 */
#define METER_ROUND_MAX		5000
/*
 * The loop time one flush of received samples may take: four mail
 * backends each sending their 25,000 mailboxes at once held it 600 ms.
 * What is left waits for the next iteration, unacknowledged.
 */
#define METER_FLUSH_MS		20
#define METER_ROUND_MIN		50
#define METER_ROUND_WRITE_MS	20
#define METER_RETAIN_STEP	20000	/* sample ids one retention step spans */
#define METER_ROLLUP_MS		60000
#define METER_RETENTION_MS	(35 * 86400 * 1000LL)
#define METER_TS_MIN_MS		1577836800000LL	/* 2020-01-01 */
#define METER_TS_AHEAD_MS	(86400 * 1000LL)

struct meter_batch {
	TAILQ_ENTRY(meter_batch) b_entry;
	int64_t		 b_node;
	Opsn__Samples	*b_msg;
	int64_t		 b_received;
};
TAILQ_HEAD(meter_batches, meter_batch);

/* What we know of each node's spool, for /metrics. Memory only. */
struct meter_node {
	TAILQ_ENTRY(meter_node) mn_entry;
	int64_t		 mn_id;
	uint64_t	 mn_acked;	/* highest contiguous seq committed */
	uint64_t	 mn_spool_samples;
	uint64_t	 mn_spool_bytes;
	int64_t		 mn_spool_oldest_ms;
	uint64_t	 mn_spool_dropped;
	uint64_t	 mn_spool_max_samples;
	uint64_t	 mn_spool_max_bytes;
	uint64_t	 mn_ingested;
	int		 mn_connected;
};
TAILQ_HEAD(meter_nodes, meter_node);

#define METER_FULL_WARN_MS	60000
static uint64_t			 meter_full_warned;
static struct ctl		*mc;
static struct meter_batches	 meter_pending =
    TAILQ_HEAD_INITIALIZER(meter_pending);
static struct meter_nodes	 meter_nodes =
    TAILQ_HEAD_INITIALIZER(meter_nodes);
static uv_check_t		 meter_check;
static uv_idle_t		 meter_idle;	/* more to flush: no waiting */
static uv_timer_t		 meter_timer;
static int			 meter_round_busy;
static int64_t			 meter_round_max = METER_ROUND_MAX;
static uint64_t			 meter_round_us;	/* a sample's write */
static char			*meter_dbpath;
static int64_t			 meter_rollup_ms = METER_ROLLUP_MS;
static int64_t			 meter_retention_ms = METER_RETENTION_MS;
static int64_t			 meter_hourly_ms;	/* 0: kept */

/* Counters for /metrics (metering_api.c reads them). */
struct meter_stats	 meter_stats;

/* Known resources (hash of kind and name): skip the tenant lookup. */
static uint64_t		*meter_known;
static size_t		 meter_known_cap, meter_known_n;

static uint64_t
ingest_hash(const char *kind, const char *res)
{
	uint64_t	 h = 1469598103934665603ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)kind; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (p = (const unsigned char *)res; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (h ? h : 1);
}

static int
ingest_known_has(uint64_t h)
{
	size_t	 i;

	if (meter_known_cap == 0)
		return (0);
	for (i = h % meter_known_cap; meter_known[i] != 0;
	    i = (i + 1) % meter_known_cap)
		if (meter_known[i] == h)
			return (1);
	return (0);
}

static void
ingest_known_add(uint64_t h)
{
	uint64_t	*old = meter_known;
	size_t		 i, oldcap = meter_known_cap;

	if (ingest_known_has(h))
		return;
	if (2 * (meter_known_n + 1) > meter_known_cap) {
		meter_known_cap = oldcap ? 2 * oldcap : 1024;
		meter_known = xcalloc(meter_known_cap, sizeof(*meter_known));
		meter_known_n = 0;
		for (i = 0; i < oldcap; i++)
			if (old[i] != 0)
				ingest_known_add(old[i]);
		free(old);
	}
	for (i = h % meter_known_cap; meter_known[i] != 0;
	    i = (i + 1) % meter_known_cap)
		;
	meter_known[i] = h;
	meter_known_n++;
}

static struct meter_node *
ingest_node(int64_t id)
{
	struct meter_node	*n;

	TAILQ_FOREACH(n, &meter_nodes, mn_entry)
		if (n->mn_id == id)
			return (n);
	n = xcalloc(1, sizeof(*n));
	n->mn_id = id;
	TAILQ_INSERT_TAIL(&meter_nodes, n, mn_entry);
	return (n);
}

/* Each node's spool as its last batch described it, for /metrics. */
void
metering_node_metrics(struct prom *pr)
{
	static const struct {
		const char	*name, *type, *help;
		size_t		 off;
	} fam[] = {
#define F(n, t, h, m) { n, t, h, offsetof(struct meter_node, m) }
		F("opsn_meter_spool_samples", "gauge", "Unacknowledged samples "
		  "in a node's spool (at its last batch).", mn_spool_samples),
		F("opsn_meter_spool_bytes", "gauge", "Bytes of a node's spool "
		  "(at its last batch).", mn_spool_bytes),
		F("opsn_meter_spool_max_samples", "gauge", "The most samples a "
		  "node's spool holds (0: unknown).", mn_spool_max_samples),
		F("opsn_meter_spool_max_bytes", "gauge", "The most bytes a "
		  "node's spool holds (0: unknown).", mn_spool_max_bytes),
		F("opsn_meter_spool_dropped_total", "counter", "Samples a node "
		  "refused because its spool was full.", mn_spool_dropped),
		F("opsn_meter_node_samples_ingested_total", "counter", "Samples "
		  "of a node committed (new) since start.", mn_ingested),
#undef F
	};
	struct meter_node	*n;
	double			 lag, now_ms = (double)util_now() * 1000;
	size_t			 i;

	for (i = 0; i < nitems(fam); i++) {
		prom_family(pr, fam[i].name, fam[i].type, fam[i].help);
		TAILQ_FOREACH(n, &meter_nodes, mn_entry)
			prom_sample(pr, fam[i].name, "node", nodes_name(n->mn_id),
			    (double)*(const uint64_t *)((const char *)n +
			    fam[i].off));
	}
	prom_family(pr, "opsn_meter_spool_lag_seconds", "gauge",
	    "Age of the oldest unacknowledged sample in a node's spool.");
	TAILQ_FOREACH(n, &meter_nodes, mn_entry) {
		lag = 0;
		if (n->mn_spool_samples > 0 && n->mn_spool_oldest_ms > 0)
			lag = (now_ms - (double)n->mn_spool_oldest_ms) / 1000;
		prom_sample(pr, "opsn_meter_spool_lag_seconds", "node",
		    nodes_name(n->mn_id), lag < 0 ? 0 : lag);
	}
}

static int
ingest_kind_ok(const char *k)
{
	size_t	 i, n = strlen(k);

	if (n == 0 || n > 16)
		return (0);
	for (i = 0; i < n; i++)
		if (!islower((unsigned char)k[i]))
			return (0);
	return (1);
}

/*
 * Check a batch before anything is queued: seqs strictly consecutive,
 * fields within bounds. A sample whose clock is absurd is counted and
 * skipped, not refused: refusing would wedge the agent's spool forever.
 */
static int
ingest_batch_check(const Opsn__Samples *m, char **cause)
{
	size_t	 i;
	const Opsn__Sample *s;

	if (m->n_samples == 0 || m->n_samples > METER_BATCH_MAX) {
		xasprintf(cause, "a batch holds 1 to %d samples, not %zu",
		    METER_BATCH_MAX, m->n_samples);
		return (-1);
	}
	for (i = 0; i < m->n_samples; i++) {
		s = m->samples[i];
		if (s->seq == 0 || s->seq > INT64_MAX ||
		    (i > 0 && s->seq != m->samples[i - 1]->seq + 1)) {
			xasprintf(cause, "sample %zu: sequence numbers must be "
			    "consecutive", i);
			return (-1);
		}
		if (!ingest_kind_ok(s->kind) || strlen(s->resource) == 0 ||
		    strlen(s->resource) > METER_RESOURCE_MAX ||
		    strlen(s->boot) > METER_BOOT_MAX) {
			xasprintf(cause, "sample %llu: bad kind, resource or "
			    "boot", (unsigned long long)s->seq);
			return (-1);
		}
	}
	return (0);
}

/*
 * What each kind of sample is about, and where the controller placed it.
 * An agent names a VM by its UUID and a mailbox or a site by the id the
 * controller gave it; usage is kept by UUID, address and host name. The
 * node and the tenant come from the controller's tables, never from the
 * sample: an agent is believed only about what is placed on its node.
 */
static const struct meter_kind {
	const char	*mk_kind;
	const char	*mk_reject;	/* kind of refusal, for /metrics */
	const char	*mk_role;	/* the reporting node must hold it */
	/*
	 * ?1 the agent's id (?2 the reporting node, ?3 the sample's time in
	 * ms, where used) -> the name usage is kept by, node, tenant
	 */
	const char	*mk_place;
	/* ?1 bytes, ?2 the agent's id: the figure services list */
	const char	*mk_used;
} meter_kinds[] = {
	/*
	 * A VM migrated away is still the node's for samples of the time it
	 * ran there (the source's spool may send them after the move).
	 */
	{ "vm", "sample_vm", "hypervisor",
	  "SELECT v.uuid, CASE WHEN v.node_id != ?2 AND EXISTS (SELECT 1 "
	  "FROM migrations m WHERE m.vm_id = v.id AND m.src_node = ?2 AND "
	  "m.state IN ('stopping', 'copying', 'starting', 'done') AND "
	  "?3 <= coalesce(m.finished_at, 1 << 40) * 1000) THEN ?2 ELSE "
	  "v.node_id END, v.tenant_id FROM vms v WHERE v.uuid = ?1", NULL },
	{ "mailbox", "sample_mailbox", "mail",
	  "SELECT m.address, d.node_id, d.tenant_id FROM mailboxes m JOIN "
	  "mail_domains d ON d.id = m.domain_id WHERE m.id = ?1",
	  "UPDATE mailboxes SET used_bytes = ?1 WHERE id = ?2" },
	{ "site", "sample_site", "web",
	  "SELECT hostname, node_id, tenant_id FROM sites WHERE id = ?1",
	  "UPDATE sites SET used_bytes = ?1 WHERE id = ?2" },
};

/* The statements of one flush, and what is known of the batch's node. */
struct meter_stmts {
	sqlite3_stmt	*q_ins, *q_res, *q_gone;
	sqlite3_stmt	*q_place[nitems(meter_kinds)];
	sqlite3_stmt	*q_used[nitems(meter_kinds)];
	int64_t		 q_node;
	int		 q_role[nitems(meter_kinds)];	/* -1 unknown */
};

/* Where a sample's resource is: what its usage is kept by, and whose. */
struct meter_place {
	char		 mp_name[METER_RESOURCE_MAX + 1];
	int64_t		 mp_tenant;	/* 0: the platform */
	const struct meter_kind *mp_kind;
	int		 mp_live;	/* the object still exists */
};

/*
 * Counters and sizes beyond these are impossible (the VM limits of the
 * schema; bytes below 2^60): such a sample is skipped, never clamped.
 */
#define METER_VCPUS_MAX		256
#define METER_MEMORY_MIB_MAX	4194304
#define METER_BYTES_MAX		((uint64_t)1 << 60)

static int
ingest_sample_ok(const Opsn__Sample *s, int64_t now_ms, const char **why)
{
	if (s->ts_ms < METER_TS_MIN_MS || s->ts_ms > now_ms +
	    METER_TS_AHEAD_MS)
		*why = "an impossible time";
	else if (s->vcpus > METER_VCPUS_MAX ||
	    s->memory_mib > METER_MEMORY_MIB_MAX)
		*why = "impossible vCPUs or memory";
	else if (s->disk_bytes > METER_BYTES_MAX ||
	    s->disk_used_bytes > METER_BYTES_MAX ||
	    s->used_bytes > METER_BYTES_MAX)
		*why = "an impossible size";
	else if ((s->has_cpu && s->cpu_ns > INT64_MAX) || (s->has_net &&
	    (s->net_rx_bytes > INT64_MAX || s->net_tx_bytes > INT64_MAX)))
		*why = "an impossible counter";
	else if (s->interval_ms > INT32_MAX || s->boot_started_ms < 0)
		*why = "an impossible interval or boot time";
	else
		return (1);
	return (0);
}

/*
 * Where the controller placed what a sample is about: 0 with *p when it
 * is on the reporting node and of the node's role; -1 once the refusal
 * is counted. A resource deleted since (a VM gone, a site removed) is
 * still taken from the node it was on when its first sample arrived.
 */
static int
ingest_place(struct meter_stmts *q, int64_t node, const Opsn__Sample *s,
    struct meter_place *p)
{
	const struct meter_kind	*k = NULL;
	sqlite3_stmt		*st;
	const char		*name;
	size_t			 i, ki;
	int64_t			 on;

	for (i = 0; i < nitems(meter_kinds); i++)
		if (strcmp(meter_kinds[i].mk_kind, s->kind) == 0)
			k = &meter_kinds[i];
	if (k == NULL) {
		reports_reject(node, "sample", "kind '%s' is not metered",
		    s->kind);
		return (-1);
	}
	ki = (size_t)(k - meter_kinds);
#ifdef OPSN_TEST_BUILD
	{
		/*
		 * The agent's test source (OPSN_TEST_METER_SYNTHETIC) makes
		 * up VMs named synthetic-NODE-i: the platform's, from NODE
		 * only. Test builds only.
		 */
		char	 pfx[96];

		snprintf(pfx, sizeof(pfx), "synthetic-%s-", nodes_name(node));
		if (ki == 0 && strncmp(s->resource, pfx, strlen(pfx)) == 0) {
			strlcpy(p->mp_name, s->resource, sizeof(p->mp_name));
			p->mp_tenant = 0;
			p->mp_kind = k;
			p->mp_live = 0;
			return (0);
		}
	}
#endif
	if (q->q_node != node) {
		q->q_node = node;
		for (i = 0; i < nitems(meter_kinds); i++)
			q->q_role[i] = -1;
	}
	if (q->q_role[ki] == -1)
		q->q_role[ki] = reports_has_role(node, k->mk_role);
	if (!q->q_role[ki]) {
		reports_reject(node, k->mk_reject, "%.64s: the node does not "
		    "have the %s role", s->resource, k->mk_role);
		return (-1);
	}
	st = q->q_place[ki];
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, s->resource, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 3) {
		sqlite3_bind_int64(st, 2, node);
		sqlite3_bind_int64(st, 3, (int64_t)s->ts_ms);
	}
	p->mp_live = 1;
	if (store_step(st) != SQLITE_ROW) {
		st = q->q_gone;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, k->mk_kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, s->resource, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, node);
		p->mp_live = 0;
		if (store_step(st) != SQLITE_ROW) {
			reports_reject(node, k->mk_reject, "%.64s is placed on "
			    "no node", s->resource);
			return (-1);
		}
	}
	on = sqlite3_column_int64(st, 1);
	if (on != node) {
		reports_reject(node, k->mk_reject, "%.64s is placed on %s",
		    s->resource, nodes_name(on));
		return (-1);
	}
	name = (const char *)sqlite3_column_text(st, 0);
	strlcpy(p->mp_name, name != NULL ? name : s->resource,
	    sizeof(p->mp_name));
	p->mp_tenant = sqlite3_column_int64(st, 2);
	p->mp_kind = k;
	return (0);
}

/* The latest storage figure of a live mailbox or site, for listings. */
static int
ingest_used_bytes(struct meter_stmts *q, const Opsn__Sample *s,
    const struct meter_place *p, int64_t now_ms)
{
	sqlite3_stmt	*st = q->q_used[p->mp_kind - meter_kinds];

	if (st == NULL || !p->mp_live)
		return (0);
	if (now_ms - s->ts_ms > 2LL * (s->interval_ms ? s->interval_ms :
	    METER_INTERVAL_DEFAULT_MS))
		return (0);	/* a late sample: older than what is there */
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, (int64_t)s->used_bytes);
	sqlite3_bind_text(st, 2, s->resource, -1, SQLITE_STATIC);
	return (store_step(st) == SQLITE_DONE ? 0 : -1);
}

/* Insert one batch inside the open transaction; -1 on a database error. */
static int
ingest_insert(struct meter_stmts *q, struct meter_batch *b, int64_t now_ms,
    uint64_t *fresh)
{
	sqlite3_stmt		*ins = q->q_ins, *res = q->q_res;
	struct meter_place	 p;
	Opsn__Sample		*s;
	const char		*why;
	size_t			 i;
	uint64_t		 h;

	*fresh = 0;
	for (i = 0; i < b->b_msg->n_samples; i++) {
		s = b->b_msg->samples[i];
		if (!ingest_sample_ok(s, now_ms, &why)) {
			meter_stats.ms_rejected++;
			log_warnx("metering: %s: sample %llu has %s: skipped",
			    nodes_name(b->b_node), (unsigned long long)s->seq,
			    why);
			continue;
		}
		if (ingest_place(q, b->b_node, s, &p) == -1) {
			meter_stats.ms_foreign++;
			continue;
		}
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, b->b_node);
		sqlite3_bind_int64(ins, 2, (int64_t)s->seq);
		sqlite3_bind_int64(ins, 3, s->ts_ms);
		sqlite3_bind_text(ins, 4, s->kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 5, p.mp_name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 6, s->state);
		sqlite3_bind_text(ins, 7, s->boot, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 8, s->boot_started_ms);
		sqlite3_bind_int64(ins, 9, s->vcpus);
		sqlite3_bind_int64(ins, 10, (int64_t)s->memory_mib);
		sqlite3_bind_int64(ins, 11, (int64_t)(s->disk_bytes /
		    METER_MIB));
		sqlite3_bind_int64(ins, 12, (int64_t)(s->disk_used_bytes /
		    METER_MIB));
		if (s->has_cpu)
			sqlite3_bind_int64(ins, 13, (int64_t)s->cpu_ns);
		else
			sqlite3_bind_null(ins, 13);
		if (s->has_net) {
			sqlite3_bind_int64(ins, 14, (int64_t)s->net_rx_bytes);
			sqlite3_bind_int64(ins, 15, (int64_t)s->net_tx_bytes);
		} else {
			sqlite3_bind_null(ins, 14);
			sqlite3_bind_null(ins, 15);
		}
		if (strcmp(s->kind, "vm") != 0)
			sqlite3_bind_int64(ins, 16, (int64_t)s->used_bytes);
		else
			sqlite3_bind_null(ins, 16);
		sqlite3_bind_int64(ins, 17, s->interval_ms);
		sqlite3_bind_int64(ins, 18, now_ms / 1000);
		if (store_step(ins) != SQLITE_DONE)
			return (-1);
		if (sqlite3_changes(mc->db) == 0) {
			meter_stats.ms_duplicates++;
			continue;
		}
		(*fresh)++;
		if (ingest_used_bytes(q, s, &p, now_ms) == -1)
			return (-1);
		h = ingest_hash(s->kind, p.mp_name);
		if (ingest_known_has(h))
			continue;
		sqlite3_reset(res);
		sqlite3_bind_text(res, 1, s->kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(res, 2, p.mp_name, -1, SQLITE_STATIC);
		if (p.mp_tenant > 0)
			sqlite3_bind_int64(res, 3, p.mp_tenant);
		else
			sqlite3_bind_null(res, 3);
		sqlite3_bind_int64(res, 4, now_ms / 1000);
		sqlite3_bind_int64(res, 5, b->b_node);
		sqlite3_bind_text(res, 6, s->resource, -1, SQLITE_STATIC);
		if (store_step(res) != SQLITE_DONE)
			return (-1);
		ingest_known_add(h);
	}
	return (0);
}

static void
ingest_stmts_open(struct meter_stmts *q)
{
	size_t	 i;

	memset(q, 0, sizeof(*q));
	q->q_ins = store_stmt(mc->db, "INSERT OR IGNORE INTO samples "
	    "(node_id, seq, ts_ms, kind, resource, state, boot, "
	    "boot_started_ms, vcpus, memory_mib, disk_mib, disk_used_mib, "
	    "cpu_ns, net_rx, net_tx, used_bytes, interval_ms, received_at) "
	    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	q->q_res = store_stmt(mc->db, "INSERT OR IGNORE INTO "
	    "meter_resources (kind, resource, tenant_id, first_seen, node_id, "
	    "ref) VALUES (?, ?, ?, ?, ?, ?)");
	q->q_gone = store_stmt(mc->db, "SELECT resource, node_id, "
	    "tenant_id FROM meter_resources WHERE kind = ?1 AND ref = ?2 AND "
	    "node_id = ?3");
	for (i = 0; i < nitems(meter_kinds); i++) {
		q->q_place[i] = store_stmt(mc->db, meter_kinds[i].mk_place);
		if (meter_kinds[i].mk_used != NULL)
			q->q_used[i] = store_stmt(mc->db,
			    meter_kinds[i].mk_used);
	}
	q->q_node = -1;
}

static void
ingest_stmts_close(struct meter_stmts *q)
{
	size_t	 i;

	store_done(q->q_ins);
	store_done(q->q_res);
	store_done(q->q_gone);
	for (i = 0; i < nitems(meter_kinds); i++) {
		store_done(q->q_place[i]);
		store_done(q->q_used[i]);
	}
	memset(q, 0, sizeof(*q));
}

static void
ingest_batch_free(struct meter_batch *b)
{
	if (b == NULL)
		return;
	opsn__samples__free_unpacked(b->b_msg, NULL);
	free(b);
}

/* Acknowledge a committed batch: the highest contiguous seq we have. */
static void
ingest_ack(struct meter_batch *b, uint64_t fresh)
{
	Opsn__SamplesAck	 ack = OPSN__SAMPLES_ACK__INIT;
	struct meter_node	*n = ingest_node(b->b_node);
	const Opsn__Samples	*m = b->b_msg;
	uint64_t		 base, first, last;

	first = m->samples[0]->seq;
	last = m->samples[m->n_samples - 1]->seq;
	/* Below spool_low_seq the agent holds nothing: already acknowledged. */
	base = n->mn_acked;
	if (m->spool_low_seq > 0 && m->spool_low_seq - 1 > base)
		base = m->spool_low_seq - 1;
	if (first <= base + 1) {
		if (last > base)
			base = last;
	} else
		log_warnx("metering: %s: batch %llu-%llu leaves a gap after "
		    "%llu: not acknowledged", nodes_name(b->b_node),
		    (unsigned long long)first, (unsigned long long)last,
		    (unsigned long long)base);
	n->mn_acked = base;
	/* What the spool still holds once this ack lands (it is gapless). */
	n->mn_spool_samples = m->spool_samples;
	if (m->spool_low_seq > 0 && base >= m->spool_low_seq)
		n->mn_spool_samples -= base - m->spool_low_seq + 1 <
		    m->spool_samples ? base - m->spool_low_seq + 1 :
		    m->spool_samples;
	n->mn_spool_bytes = m->spool_bytes;
	n->mn_spool_oldest_ms = m->spool_oldest_ms;
	n->mn_spool_dropped = m->spool_dropped;
	n->mn_spool_max_samples = m->spool_max_samples;
	n->mn_spool_max_bytes = m->spool_max_bytes;
	n->mn_ingested += fresh;
	ack.seq = base;
	if (nodes_send(b->b_node, MSG_SAMPLES_ACK, &ack.base) == -1)
		log_debug("metering: %s is gone: its ack waits for a resend",
		    nodes_name(b->b_node));
}

/*
 * Commit pending batches in one transaction, then acknowledge them: as
 * many as METER_FLUSH_MS allows (one at least). A failed commit
 * acknowledges nothing: the agents resend.
 */
static void
ingest_flush(void)
{
	struct meter_batches	 todo = TAILQ_HEAD_INITIALIZER(todo);
	struct meter_batch	*b;
	struct meter_stmts	 q;
	uint64_t		*fresh = NULL, total = 0;
	size_t			 nb = 0, npend = 0, i;
	int64_t			 now_ms = (int64_t)util_now() * 1000;
	uint64_t		 t0 = util_mono_ms();
	char			*why;

	if (TAILQ_EMPTY(&meter_pending))
		return;
	TAILQ_FOREACH(b, &meter_pending, b_entry)
		npend++;
	fresh = xcalloc(npend, sizeof(*fresh));
	/* A full disk: nothing is committed, so nothing is acknowledged. */
	if (store_space_ok(&why) == -1) {
		TAILQ_CONCAT(&todo, &meter_pending, b_entry);
		if (util_mono_ms() - meter_full_warned >= METER_FULL_WARN_MS ||
		    meter_full_warned == 0) {
			log_warnx("metering: %zu batches not acknowledged (agents "
			    "keep them): %s", npend, why);
			meter_full_warned = util_mono_ms();
		}
		free(why);
		meter_stats.ms_commit_failures++;
		goto out;
	}
	if (store_begin(mc->db) == -1) {
		log_warnx("metering: cannot begin: %s", sqlite3_errmsg(mc->db));
		meter_stats.ms_commit_failures++;
		TAILQ_CONCAT(&todo, &meter_pending, b_entry);
		goto out;
	}
	ingest_stmts_open(&q);
	i = 0;
	while ((b = TAILQ_FIRST(&meter_pending)) != NULL &&
	    (nb == 0 || util_mono_ms() - t0 < METER_FLUSH_MS)) {
		TAILQ_REMOVE(&meter_pending, b, b_entry);
		TAILQ_INSERT_TAIL(&todo, b, b_entry);
		nb++;
		if (ingest_insert(&q, b, now_ms, &fresh[i++]) == -1) {
			log_warnx("metering: inserting samples of %s: %s",
			    nodes_name(b->b_node), sqlite3_errmsg(mc->db));
			ingest_stmts_close(&q);
			store_rollback(mc->db);
			/* The known-resource cache may name rolled-back rows. */
			free(meter_known);
			meter_known = NULL;
			meter_known_cap = meter_known_n = 0;
			meter_stats.ms_commit_failures++;
			goto out;
		}
	}
	ingest_stmts_close(&q);
	if (store_commit(mc->db) == -1) {
		free(meter_known);
		meter_known = NULL;
		meter_known_cap = meter_known_n = 0;
		meter_stats.ms_commit_failures++;
		goto out;
	}
	meter_stats.ms_commits++;
	i = 0;
	TAILQ_FOREACH(b, &todo, b_entry) {
		meter_stats.ms_batches++;
		meter_stats.ms_ingested += fresh[i];
		total += fresh[i];
		ingest_ack(b, fresh[i++]);
	}
	log_debug("metering: committed %zu batches, %llu new samples in %llu "
	    "ms", nb, (unsigned long long)total,
	    (unsigned long long)(util_mono_ms() - t0));
out:
	while ((b = TAILQ_FIRST(&todo)) != NULL) {
		TAILQ_REMOVE(&todo, b, b_entry);
		ingest_batch_free(b);
	}
	free(fresh);
}

/* A group that failed took new meter_resources rows with it. */
static void
ingest_group_cb(int ok, void *arg)
{
	if (ok)
		return;
	free(meter_known);
	meter_known = NULL;
	meter_known_cap = meter_known_n = 0;
}

static void
ingest_idle_cb(uv_idle_t *h)
{
}

/*
 * After the loop has read every socket that was ready: commit. Batches
 * left over are committed at the next iteration, which does not wait.
 */
static void
ingest_check_cb(uv_check_t *h)
{
	ingest_flush();
	if (!TAILQ_EMPTY(&meter_pending)) {
		uv_idle_start(&meter_idle, ingest_idle_cb);
		return;
	}
	uv_check_stop(h);
	uv_idle_stop(&meter_idle);
}

static void
ingest_samples(int64_t node, const uint8_t *p, size_t len)
{
	struct meter_batch	*b;
	Opsn__Samples		*m;
	char			*cause = NULL;

	if ((m = opsn__samples__unpack(NULL, len, p)) == NULL) {
		log_warnx("metering: %s: SAMPLES does not decode",
		    nodes_name(node));
		meter_stats.ms_bad_batches++;
		return;
	}
	if (ingest_batch_check(m, &cause) == -1) {
		log_warnx("metering: %s: batch refused: %s", nodes_name(node),
		    cause);
		free(cause);
		meter_stats.ms_bad_batches++;
		opsn__samples__free_unpacked(m, NULL);
		return;
	}
	b = xcalloc(1, sizeof(*b));
	b->b_node = node;
	b->b_msg = m;
	TAILQ_INSERT_TAIL(&meter_pending, b, b_entry);
	if (!uv_is_active((uv_handle_t *)&meter_check))
		uv_check_start(&meter_check, ingest_check_cb);
}

/* A frame of the metering range from a node (after HELLO). */
void
metering_agent_msg(int64_t node, uint16_t type, const uint8_t *p, size_t len)
{
	switch (type) {
	case MSG_SAMPLES:
		ingest_samples(node, p, len);
		break;
	default:
		log_debug("metering: %s: ignoring message type %u",
		    nodes_name(node), type);
		break;
	}
}

/* A node (re)connected: its acknowledgements start from its spool. */
void
metering_agent_hello(int64_t node, const char *roles)
{
	struct meter_node	*n = ingest_node(node);

	n->mn_acked = 0;
	n->mn_connected = 1;
}

void
metering_agent_gone(int64_t node)
{
	ingest_node(node)->mn_connected = 0;
}

/* ---- rollup rounds and retention ----------------------------------- */

struct meter_work {
	uv_work_t		 w_req;
	struct meter_round	*w_round;
	char			*w_cause;
	uint64_t		 w_ms;
	int64_t			 w_max;		/* samples it may read */
};

static void	ingest_round_start(void);
static void	ingest_round_size(int64_t, uint64_t);
static void	ingest_timer_cb(uv_timer_t *);

static void
ingest_round_work_cb(uv_work_t *req)
{
	struct meter_work	*w = req->data;
	sqlite3			*db = NULL;
	uint64_t		 t0 = util_mono_ms();

	if (store_reader(meter_dbpath, &db, &w->w_cause) == -1)
		return;
	w->w_round = metering_round_compute(db, w->w_max, &w->w_cause);
	store_reader_done(db);
	w->w_ms = util_mono_ms() - t0;
}

/*
 * One step of hourly retention: a day of usage_hourly rows older than
 * hourly_retention. Their monthly totals stay (the triggers stand aside
 * while meter_state.quiet is set), and those hours, like the ones raw
 * retention froze, are never recomputed.
 */
static void
ingest_retain_hours(void)
{
	sqlite3_stmt	*st;
	int64_t		 oldest = -1, cutoff, end;
	int		 deleted;

	if (meter_hourly_ms <= 0)
		return;
	cutoff = ((int64_t)util_now() * 1000 - meter_hourly_ms) / 1000;
	st = store_stmt(mc->db, "SELECT min(hour) FROM usage_hourly");
	if (store_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		oldest = sqlite3_column_int64(st, 0);
	store_done(st);
	if (oldest < 0 || oldest >= cutoff || store_begin(mc->db) == -1)
		return;
	end = oldest + 86400 < cutoff ? oldest + 86400 : cutoff;
	st = store_stmt(mc->db, "UPDATE meter_state SET quiet = ?1, "
	    "frozen_ms = max(frozen_ms, ?2)");
	sqlite3_bind_int(st, 1, 1);
	sqlite3_bind_int64(st, 2, end * 1000);
	store_step(st);
	store_done(st);
	st = store_stmt(mc->db, "DELETE FROM usage_hourly WHERE hour >= ? AND "
	    "hour < ?");
	sqlite3_bind_int64(st, 1, oldest);
	sqlite3_bind_int64(st, 2, end);
	store_step(st);
	store_done(st);
	deleted = sqlite3_changes(mc->db);
	st = store_stmt(mc->db, "UPDATE meter_state SET quiet = 0");
	store_step(st);
	store_done(st);
	if (store_commit(mc->db) == 0)
		log_info("metering: deleted %d hourly rows older than %lld "
		    "days (their monthly totals stay)", deleted,
		    (long long)(meter_hourly_ms / 86400000));
}

/*
 * The operator's calendar, as usage_calendar lists it for the triggers,
 * must be the one the controller runs with: after [operator] tz changed,
 * the days are listed again, each daily row moves to the month of its
 * day (daily rows keep the days they were counted in), and the monthly
 * totals are summed again.
 */
static int
ingest_calendar_sync(char **cause)
{
	sqlite3_stmt	*st;
	char		 tz[80] = "";
	int64_t		 day, first, last;

	st = store_stmt(mc->db, "SELECT calendar_tz FROM meter_state");
	if (store_step(st) == SQLITE_ROW)
		strlcpy(tz, (const char *)sqlite3_column_text(st, 0),
		    sizeof(tz));
	store_done(st);
	if (strcmp(tz, calendar_tz()) == 0)
		return (0);
	log_notice("metering: the calendar was %s, it is now %s: listing its "
	    "days and summing the monthly totals again", tz, calendar_tz());
	if (store_begin(mc->db) == -1 || store_exec(mc->db, "DELETE FROM "
	    "usage_calendar", cause) == -1)
		goto fail;
	st = store_stmt(mc->db, "INSERT INTO usage_calendar (day, month) "
	    "VALUES (?, ?)");
	first = calendar_midnight(2000, 1, 1);
	last = calendar_midnight(2200, 1, 1);
	for (day = first; day < last; day = calendar_day(day + 129600)) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, day);
		sqlite3_bind_int64(st, 2, calendar_month(day));
		if (store_step(st) != SQLITE_DONE) {
			xasprintf(cause, "usage_calendar: %s",
			    sqlite3_errmsg(mc->db));
			store_done(st);
			goto fail;
		}
	}
	store_done(st);
	if (store_exec(mc->db, "UPDATE usage_daily SET month = "
	    "opsn_month(day) WHERE month != opsn_month(day);"
	    "DELETE FROM usage_monthly;"
	    "INSERT INTO usage_monthly (month, tenant_id, kind, metric, "
	    "quantity, changed) SELECT month, tenant, kind, metric, sum(q), "
	    "(SELECT change_seq FROM meter_state) FROM (SELECT "
	    "opsn_month(hour) AS month, coalesce(tenant_id, 0) AS tenant, "
	    "kind, metric, quantity AS q FROM usage_hourly UNION ALL SELECT "
	    "month, coalesce(tenant_id, 0), kind, metric, quantity FROM "
	    "usage_daily) GROUP BY month, tenant, kind, metric;"
	    "UPDATE meter_state SET calendar_tz = opsn_tz()", cause) == -1)
		goto fail;
	if (store_commit(mc->db) == -1) {
		xasprintf(cause, "committing the calendar: %s",
		    sqlite3_errmsg(mc->db));
		return (-1);
	}
	return (0);
fail:
	store_rollback(mc->db);
	return (-1);
}

/* One retention step: raw samples older than the retention, rolled up. */
static void
ingest_retain(void)
{
	sqlite3_stmt	*st;
	int64_t		 rolled, retained, frozen, hi, left = -1;
	int64_t		 cutoff = (int64_t)util_now() * 1000 -
			    meter_retention_ms;
	int		 deleted;

	st = store_prepare(mc->db, "SELECT rolled_id, retained_id, frozen_ms "
	    "FROM meter_state");
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return;
	}
	rolled = sqlite3_column_int64(st, 0);
	retained = sqlite3_column_int64(st, 1);
	frozen = sqlite3_column_int64(st, 2);
	sqlite3_finalize(st);
	hi = retained + METER_RETAIN_STEP < rolled ? retained +
	    METER_RETAIN_STEP : rolled;
	if (hi <= retained || store_begin(mc->db) == -1)
		return;
	st = store_prepare(mc->db, "DELETE FROM samples WHERE id > ? AND "
	    "id <= ? AND ts_ms < ?");
	sqlite3_bind_int64(st, 1, retained);
	sqlite3_bind_int64(st, 2, hi);
	sqlite3_bind_int64(st, 3, cutoff);
	store_step(st);
	sqlite3_finalize(st);
	deleted = sqlite3_changes(mc->db);
	/* The cursor stops at the first sample still too young to go. */
	st = store_prepare(mc->db, "SELECT min(id) FROM samples WHERE id > ? "
	    "AND id <= ?");
	sqlite3_bind_int64(st, 1, retained);
	sqlite3_bind_int64(st, 2, hi);
	if (store_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		left = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = store_prepare(mc->db, "UPDATE meter_state SET retained_id = ?, "
	    "frozen_ms = ?");
	sqlite3_bind_int64(st, 1, left > 0 ? left - 1 : hi);
	sqlite3_bind_int64(st, 2, deleted > 0 && cutoff > frozen ? cutoff :
	    frozen);
	store_step(st);
	sqlite3_finalize(st);
	if (store_commit(mc->db) == 0 && deleted > 0) {
		meter_stats.ms_retained += (uint64_t)deleted;
		log_info("metering: deleted %d raw samples older than %lld "
		    "days", deleted, (long long)(meter_retention_ms /
		    86400000));
	}
	ingest_retain_hours();
}

static void
ingest_round_after_cb(uv_work_t *req, int status)
{
	struct meter_work	*w = req->data;
	char			*cause = NULL;
	int			 again = 0;
	uint64_t		 t0 = util_mono_ms();

	meter_round_busy = 0;
	if (w->w_round == NULL) {
		log_warnx("metering: rollup: %s", w->w_cause ? w->w_cause :
		    "cancelled");
		goto out;
	}
	if (metering_round_write(mc->db, w->w_round, &cause) == -1) {
		log_warnx("metering: rollup: %s", cause);
		free(cause);
		goto out;
	}
	if (metering_round_samples(w->w_round) > 0) {
		meter_stats.ms_rolled += (uint64_t)metering_round_samples(
		    w->w_round);
		meter_stats.ms_rounds++;
		log_debug("metering: rolled up %lld samples of %lld resources "
		    "(read %llu ms, write %llu ms)",
		    (long long)metering_round_samples(w->w_round),
		    (long long)metering_round_resources(w->w_round),
		    (unsigned long long)w->w_ms,
		    (unsigned long long)(util_mono_ms() - t0));
	}
	meter_stats.ms_last_round = util_now();
	again = metering_round_samples(w->w_round) >= w->w_max;
	ingest_round_size(metering_round_samples(w->w_round),
	    util_mono_ms() - t0);
	ingest_retain();
out:
	metering_round_free(w->w_round);
	free(w->w_cause);
	free(w);
	/*
	 * More to roll up: the next round reads a snapshot, which must hold
	 * this round's mark, committed above in the round's own transaction;
	 * a zero timer runs in the next iteration.
	 */
	if (again)
		uv_timer_start(&meter_timer, ingest_timer_cb, 0,
		    (uint64_t)meter_rollup_ms);
}

/*
 * The size of the next round, from the time n samples took to write: the
 * recent worst cost of a sample (rounds of VMs' hourly rows cost several
 * times those of mailboxes' daily ones), forgotten an eighth a round.
 */
static void
ingest_round_size(int64_t n, uint64_t ms)
{
	uint64_t	 us;
	int64_t		 fit;

	if (n <= 0)
		return;
	us = ms * 1000 / (uint64_t)n;
	meter_round_us = us >= meter_round_us ? us :
	    meter_round_us - (meter_round_us - us) / 8;
	fit = meter_round_us > 0 ? (int64_t)(METER_ROUND_WRITE_MS * 1000 /
	    meter_round_us) : METER_ROUND_MAX;
	meter_round_max = fit < METER_ROUND_MIN ? METER_ROUND_MIN :
	    fit > METER_ROUND_MAX ? METER_ROUND_MAX : fit;
}

static void
ingest_round_start(void)
{
	struct meter_work	*w;

	if (meter_round_busy)
		return;
	w = xcalloc(1, sizeof(*w));
	w->w_req.data = w;
	w->w_max = meter_round_max;
	if (uv_queue_work(mc->loop, &w->w_req, ingest_round_work_cb,
	    ingest_round_after_cb) != 0) {
		free(w);
		return;
	}
	meter_round_busy = 1;
}

static void
ingest_timer_cb(uv_timer_t *t)
{
	ingest_round_start();
}

#ifdef OPSN_TEST_BUILD
/* A test-only setting (test builds only: a release never reads them). */
static int64_t
ingest_env_ms(const char *name, int64_t def)
{
	const char	*s = getenv(name);
	char		*end;
	long long	 v;

	if (s == NULL || *s == '\0')
		return (def);
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v <= 0) {
		log_warnx("metering: ignoring %s=%s", name, s);
		return (def);
	}
	log_notice("metering: %s=%lld (test setting)", name, v);
	return (v);
}
#endif

/* Start metering: the group-commit hook and the rollup timer. */
int
metering_init(struct ctl *c, char **cause)
{
	mc = c;
	xasprintf(&meter_dbpath, "%s/opsn.db", c->conf.data_dir);
	/* 0: not configured (a test's zeroed config): keep the defaults. */
	if (c->conf.meter_rollup_ms > 0)
		meter_rollup_ms = c->conf.meter_rollup_ms;
	if (c->conf.meter_raw_retention_ms > 0)
		meter_retention_ms = c->conf.meter_raw_retention_ms;
#ifdef OPSN_TEST_BUILD
	meter_rollup_ms = ingest_env_ms("OPSN_TEST_METER_ROLLUP_MS",
	    meter_rollup_ms);
	meter_retention_ms = ingest_env_ms("OPSN_TEST_METER_RETENTION_MS",
	    meter_retention_ms);
#endif
	meter_hourly_ms = c->conf.meter_hourly_retention_ms;
	/* Hours are recomputed from raw samples: keep them longer. */
	if (meter_hourly_ms > 0 && meter_hourly_ms < meter_retention_ms +
	    METER_FROZEN_MARGIN_MS) {
		log_warnx("metering: hourly_retention is shorter than "
		    "raw_retention and a day: hourly rows kept %lld days",
		    (long long)((meter_retention_ms + METER_FROZEN_MARGIN_MS) /
		    86400000));
		meter_hourly_ms = meter_retention_ms + METER_FROZEN_MARGIN_MS;
	}
	if (ingest_calendar_sync(cause) == -1)
		return (-1);
	store_group_watch(ingest_group_cb, NULL);
	uv_check_init(c->loop, &meter_check);
	uv_idle_init(c->loop, &meter_idle);
	uv_timer_init(c->loop, &meter_timer);
	uv_timer_start(&meter_timer, ingest_timer_cb, (uint64_t)meter_rollup_ms,
	    (uint64_t)meter_rollup_ms);
	/* Neither handle keeps the loop alive at shutdown. */
	uv_unref((uv_handle_t *)&meter_check);
	uv_unref((uv_handle_t *)&meter_idle);
	uv_unref((uv_handle_t *)&meter_timer);
	log_info("metering: rollups every %lld ms, raw samples kept %lld days, "
	    "hourly rows %s%lld%s", (long long)meter_rollup_ms,
	    (long long)(meter_retention_ms / 86400000), meter_hourly_ms ? "" :
	    "for ever", (long long)(meter_hourly_ms / 86400000),
	    meter_hourly_ms ? " days" : "");
	return (0);
}
