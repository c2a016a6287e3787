/*
 * Metering in the controller: the rollup arithmetic as a table of cases
 * (allocated time, gaps, hour splits, counter resets, moves), ingestion
 * with dedup, late samples giving the same hours as on-time ones, and the
 * display helpers (decimals, CSV cells, the Paris calendar).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "agents/agents.h"
#include "metering/metering.h"
#include "metering.pb-c.h"

#define H	1795978800LL		/* an hour start, unix seconds */
#define MS(s)	((int64_t)(s) * 1000)

/* A running VM sample (1 vCPU, 1024 MiB, 10 GiB) on node 1, boot "b1". */
static struct meter_sample
vm(int64_t ts_ms, int state, const char *boot, int64_t cpu_ns)
{
	struct meter_sample	 s;

	memset(&s, 0, sizeof(s));
	s.ms_ts = ts_ms;
	s.ms_node = 1;
	s.ms_state = state;
	strlcpy(s.ms_boot, boot, sizeof(s.ms_boot));
	s.ms_vcpus = 2;
	s.ms_memory_mib = 1024;
	s.ms_disk_mib = 10240;
	s.ms_disk_used_mib = 100;
	s.ms_interval = 60000;
	if (state == 1) {
		s.ms_has_cpu = 1;
		s.ms_cpu_ns = cpu_ns;
	}
	return (s);
}

static int64_t
find(const struct meter_row *rows, size_t n, int64_t hour, const char *m)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (rows[i].mr_hour == hour && strcmp(rows[i].mr_metric, m) == 0)
			return (rows[i].mr_quantity);
	return (0);
}

struct rcase {
	const char	*name;
	struct meter_sample s[8];
	size_t		 n;
	int64_t		 h0, h1;
	/* expected per hour offset 0 and 1 */
	int64_t		 vcpu[2], mem[2], disk[2], cpu[2];
	int64_t		 iv;	/* sampling interval, ms (0: 60 s) */
};

static void
rollup_table_of_cases(void **state)
{
	struct rcase cases[] = {
	{ "running a whole hour: 2 vCPU x 3600 s", {
	    vm(MS(H), 1, "b1", 0), vm(MS(H + 1800), 1, "b1", 0),
	    vm(MS(H + 3600), 1, "b1", 0) }, 3, H, H,
	  { 7200, 0 }, { 1024 * 3600, 0 }, { 10240LL * 3600, 0 }, { 0, 0 },
	  1800 * 1000 },
	/* left-point rule: the state a sample shows holds until the next */
	{ "stopped: disk accrues, vCPU and memory do not", {
	    vm(MS(H), 5, "", 0), vm(MS(H + 60), 5, "", 0),
	    vm(MS(H + 120), 5, "", 0) }, 3, H, H,
	  { 0, 0 }, { 0, 0 }, { 10240LL * 120, 0 }, { 0, 0 } },
	{ "a gap is capped at twice the interval", {
	    vm(MS(H), 1, "b1", 0), vm(MS(H + 1000), 1, "b1", 0) }, 2, H, H,
	  { 2 * 120, 0 }, { 1024 * 120, 0 }, { 10240LL * 120, 0 }, { 0, 0 } },
	{ "split at the hour boundary", {
	    vm(MS(H + 3570), 1, "b1", 0), vm(MS(H + 3630), 1, "b1", 0) }, 2,
	  H, H + 3600,
	  { 2 * 30, 2 * 30 }, { 1024 * 30, 1024 * 30 }, { 10240LL * 30,
	    10240LL * 30 }, { 0, 0 } },
	{ "CPU is the counter's growth, in the later sample's hour", {
	    vm(MS(H + 3540), 1, "b1", 5000), vm(MS(H + 3600), 1, "b1", 9000),
	    vm(MS(H + 3660), 1, "b1", 9500) }, 3, H, H + 3600,
	  { 120, 120 }, { 1024 * 60, 1024 * 60 }, { 10240LL * 60,
	    10240LL * 60 }, { 0, 4500 } },
	{ "a restart (new boot) counts from zero, never negative", {
	    vm(MS(H), 1, "b1", 1000000), vm(MS(H + 60), 1, "b1", 3000000),
	    vm(MS(H + 120), 5, "", 0), vm(MS(H + 180), 1, "b2", 400),
	    vm(MS(H + 240), 1, "b2", 900) }, 5, H, H,
	  { 2 * 180, 0 }, { 1024 * 180, 0 }, { 10240LL * 240, 0 },
	  { 2000000 + 400 + 500, 0 } },
	{ "a counter that went down in the same boot restarted", {
	    vm(MS(H), 1, "b1", 1000), vm(MS(H + 60), 1, "b1", 300) }, 2, H, H,
	  { 120, 0 }, { 1024 * 60, 0 }, { 10240LL * 60, 0 }, { 300, 0 } },
	{ "running before metering began: the first value is a baseline", {
	    vm(MS(H), 1, "b1", 999999999), vm(MS(H + 60), 1, "b1",
	    1000000999) }, 2, H, H,
	  { 120, 0 }, { 1024 * 60, 0 }, { 10240LL * 60, 0 }, { 1000, 0 } },
	};
	struct meter_row	*rows;
	size_t			 i, n, k;

	for (i = 0; i < nitems(cases); i++) {
		struct rcase *c = &cases[i];

		for (k = 0; c->iv > 0 && k < c->n; k++)
			c->s[k].ms_interval = c->iv;
		assert_int_equal(metering_rollup_compute("vm", c->s, c->n,
		    c->h0, c->h1, &rows, &n), 0);
		for (k = 0; k < 2; k++) {
			int64_t h = c->h0 + (int64_t)k * 3600;

			if (h > c->h1)
				break;
			if (find(rows, n, h, "vcpu_seconds") != c->vcpu[k] ||
			    find(rows, n, h, "memory_mib_seconds") !=
			    c->mem[k] || find(rows, n, h, "disk_mib_seconds") !=
			    c->disk[k] || find(rows, n, h, "cpu_ns") !=
			    c->cpu[k])
				fail_msg("case '%s', hour %zu: vcpu %lld mem %lld "
				    "disk %lld cpu %lld", c->name, k,
				    (long long)find(rows, n, h, "vcpu_seconds"),
				    (long long)find(rows, n, h,
				    "memory_mib_seconds"),
				    (long long)find(rows, n, h,
				    "disk_mib_seconds"),
				    (long long)find(rows, n, h, "cpu_ns"));
		}
		free(rows);
	}
}

/* A VM moving: both nodes report it for a while; CPU is never doubled. */
static void
rollup_move_between_nodes_never_doubles_cpu(void **state)
{
	struct meter_sample	 s[6];
	struct meter_row	*rows;
	size_t			 n;

	s[0] = vm(MS(H), 1, "a", 1000);
	s[1] = vm(MS(H + 60), 1, "a", 2000);
	s[2] = vm(MS(H + 90), 1, "x", 50);		/* the new node */
	s[2].ms_node = 2;
	s[3] = vm(MS(H + 120), 1, "a", 2500);
	s[4] = vm(MS(H + 150), 1, "x", 150);
	s[4].ms_node = 2;
	s[5] = vm(MS(H + 210), 1, "x", 200);
	s[5].ms_node = 2;
	assert_int_equal(metering_rollup_compute("vm", s, 6, H, H, &rows, &n),
	    0);
	/* a: 1000 + 500 (first is a baseline? no: boot started unknown,
	 * first sample ever: baseline 0); x: new boot after earlier
	 * samples, counts 50, then +100, +50. */
	assert_int_equal(find(rows, n, H, "cpu_ns"), 1000 + 500 + 50 + 100 +
	    50);
	free(rows);
}

/* An hour of counter growth past 2^63 is dropped, never wrapped. */
static void
rollup_counter_growth_never_wraps(void **state)
{
	struct meter_sample	 s[4];
	struct meter_row	*rows;
	size_t			 n;

	s[0] = vm(MS(H), 1, "b1", 0);
	s[1] = vm(MS(H + 60), 1, "b1", INT64_MAX);
	s[2] = vm(MS(H + 120), 1, "b2", 5);		/* a restart */
	s[3] = vm(MS(H + 180), 1, "b2", INT64_MAX);
	assert_int_equal(metering_rollup_compute("vm", s, 4, H, H, &rows, &n),
	    0);
	assert_int_equal(find(rows, n, H, "cpu_ns"), INT64_MAX);
	free(rows);
}

static void
rollup_mailbox_storage_in_mib_seconds(void **state)
{
	struct meter_sample	 s[3];
	struct meter_row	*rows;
	size_t			 n, i;

	memset(s, 0, sizeof(s));
	for (i = 0; i < 3; i++) {
		s[i].ms_ts = MS(H + 1800 * (int64_t)i);
		s[i].ms_node = 7;
		s[i].ms_state = 1;
		s[i].ms_has_used = 1;
		s[i].ms_used_bytes = 512 * METER_MIB;
		s[i].ms_interval = 3600 * 1000;
	}
	assert_int_equal(metering_rollup_compute("mailbox", s, 3, H, H, &rows,
	    &n), 0);
	assert_int_equal(find(rows, n, H, "mailbox_seconds"), 3600);
	assert_int_equal(find(rows, n, H, "mailbox_mib_seconds"), 512 * 3600);
	free(rows);
}

/* ---- ingestion and rounds against a real database ------------------ */

static struct ctl	 tc;
static char		 tdir[] = "/tmp/opsn-test-meter.XXXXXX";

static int
setup_db(void **state)
{
	char	*path, *cause = NULL;

	memset(&tc, 0, sizeof(tc));
	ctl = &tc;
	if (mkdtemp(tdir) == NULL)
		return (-1);
	tc.conf.data_dir = tdir;
	/* Rounds only when the test asks; raw samples kept. */
	tc.conf.meter_rollup_ms = 3600 * 1000;
	tc.conf.meter_raw_retention_ms = (int64_t)35 * 86400 * 1000;
	xasprintf(&path, "%s/opsn.db", tdir);
	if (store_open(path, &tc.db, &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	free(path);
	tc.loop = uv_default_loop();
	if (metering_init(&tc, &cause) == -1)
		return (-1);
	/*
	 * Two hypervisors and a mail backend; the VMs the tests sample are
	 * placed on them (samples are taken only for what is).
	 */
	if (store_exec(tc.db, "INSERT INTO tenants (id, kind, name, insee, "
	    "created_at, updated_at) VALUES (1, 'commune', 'Agassac', "
	    "'31001', 0, 0), (2, 'commune', 'Ambax', '31002', 0, 0);"
	    "INSERT INTO nodes (id, name, roles, cert_serial, cert_fpr, "
	    "enrolled_at, state_since) VALUES (42, 'hv1', 'hypervisor', '', "
	    "'', 0, 0), (43, 'hv2', 'hypervisor', '', '', 0, 0), (44, 'mx1', "
	    "'mail', '', '', 0, 0);"
	    "INSERT INTO images (id, name, format, created_at) VALUES "
	    "(1, 'tiny', 'raw', 0);"
	    "INSERT INTO vms (uuid, name, node_id, tenant_id, vcpus, "
	    "memory_mib, disk_bytes, image_id, created_at) VALUES "
	    "('vm-a', 'a', 42, 1, 1, 512, 1073741824, 1, 0), "
	    "('vm-b', 'b', 42, 1, 1, 512, 1073741824, 1, 0), "
	    "('vm-c', 'c', 43, 1, 1, 512, 1073741824, 1, 0), "
	    "('vm-x', 'x', 43, 2, 1, 512, 1073741824, 1, 0);"
	    "INSERT INTO mail_domains (id, name, tenant_id, node_id, "
	    "dkim_selector, dkim_private_pem, dkim_public_b64, created_at) "
	    "VALUES (1, 'b.fr', 2, 44, 's', 'k', 'p', 0);"
	    "INSERT INTO mailboxes (id, address, domain_id, password_hash, "
	    "quota_bytes, created_at, updated_at) VALUES ('box-1', 'x@b.fr', "
	    "1, 'h', 10, 0, 0);", &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	return (0);
}

static int
teardown_db(void **state)
{
	char	*cmd;

	store_close(tc.db);
	xasprintf(&cmd, "rm -rf %s", tdir);
	if (system(cmd) != 0)
		return (-1);
	free(cmd);
	return (0);
}

/* Pack a batch of n synthetic VM samples from seq, one every 60 s. */
static uint8_t *
batch(uint64_t seq, size_t n, int64_t t0_ms, const char *res, size_t *len)
{
	Opsn__Samples	 m = OPSN__SAMPLES__INIT;
	Opsn__Sample	*v = xcalloc(n, sizeof(*v)), **pv = xcalloc(n,
			    sizeof(*pv));
	uint8_t		*out;
	size_t		 i;

	for (i = 0; i < n; i++) {
		opsn__sample__init(&v[i]);
		v[i].seq = seq + i;
		v[i].ts_ms = t0_ms + (int64_t)(seq + i) * 60000;
		v[i].kind = "vm";
		v[i].resource = (char *)res;
		v[i].state = 1;
		v[i].boot = "b";
		v[i].vcpus = 1;
		v[i].memory_mib = 512;
		v[i].disk_bytes = 1ULL << 30;
		v[i].has_cpu = 1;
		v[i].cpu_ns = (seq + i) * 1000;
		v[i].interval_ms = 60000;
		pv[i] = &v[i];
	}
	m.samples = pv;
	m.n_samples = n;
	m.spool_low_seq = seq;
	*len = opsn__samples__get_packed_size(&m);
	out = xmalloc(*len);
	opsn__samples__pack(&m, out);
	free(v);
	free(pv);
	return (out);
}

static int64_t
count(const char *sql)
{
	sqlite3_stmt	*st = store_prepare(tc.db, sql);
	int64_t		 v = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (v);
}

/* One loop iteration: the group commit runs in its check phase. */
static void
spin_cb(uv_timer_t *t)
{
}

static void
spin(void)
{
	uv_timer_t	 t;
	int		 i;

	/*
	 * Batches are committed from a check handle, which runs after each
	 * poll; metering's own handles do not keep the loop alive, so a
	 * running timer does while a few turns let every batch commit.
	 */
	uv_timer_init(tc.loop, &t);
	uv_timer_start(&t, spin_cb, 0, 1);
	for (i = 0; i < 4; i++)
		uv_run(tc.loop, UV_RUN_NOWAIT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(tc.loop, UV_RUN_NOWAIT);
}

static void
roll_all(void)
{
	struct meter_round	*r;
	char			*cause = NULL;

	do {
		r = metering_round_compute(tc.db, 7, &cause);
		assert_non_null(r);
		assert_int_equal(metering_round_write(tc.db, r, &cause), 0);
		if (metering_round_samples(r) == 0) {
			metering_round_free(r);
			break;
		}
		metering_round_free(r);
	} while (1);
}

static void
ingest(uint64_t seq, size_t n, const char *res)
{
	size_t	 len;
	uint8_t	*p = batch(seq, n, MS(H), res, &len);

	/* One node per resource, as each agent has its own sequence. */
	metering_agent_msg(strcmp(res, "vm-c") == 0 ? 43 : 42, MSG_SAMPLES, p,
	    len);
	free(p);
}

static void
ingest_ignores_a_resent_batch(void **state)
{
	ingest(1, 10, "vm-a");
	ingest(1, 10, "vm-a");		/* the same, resent */
	ingest(5, 10, "vm-a");		/* overlapping */
	spin();
	assert_int_equal(count("SELECT count(*) FROM samples WHERE "
	    "resource = 'vm-a'"), 14);
	assert_int_equal(count("SELECT count(DISTINCT seq) FROM samples WHERE "
	    "resource = 'vm-a'"), 14);
	assert_int_equal(meter_stats.ms_duplicates, 16);
}

/*
 * The same samples delivered in order or scattered over several rounds
 * (late ones filling holes) give the same hours.
 */
static void
late_samples_give_the_same_hours(void **state)
{
	int64_t	 a, b;
	int	 i;

	/* vm-b: all at once. */
	ingest(100, 150, "vm-b");
	spin();
	roll_all();
	/* vm-c: the same times, every other one first, then the rest. */
	for (i = 0; i < 150; i += 2)
		ingest(100 + (uint64_t)i, 1, "vm-c");
	spin();
	roll_all();
	for (i = 1; i < 150; i += 2) {
		ingest(100 + (uint64_t)i, 1, "vm-c");
		if (i % 20 == 1) {
			spin();
			roll_all();
		}
	}
	spin();
	roll_all();
	a = count("SELECT group_concat(hour || metric || quantity) FROM (SELECT "
	    "* FROM usage_hourly WHERE resource = 'vm-b' ORDER BY hour, metric)");
	b = count("SELECT count(*) FROM usage_hourly u JOIN usage_hourly v ON "
	    "u.hour = v.hour AND u.metric = v.metric AND u.quantity = "
	    "v.quantity WHERE u.resource = 'vm-b' AND v.resource = 'vm-c'");
	assert_true(a != -1);
	assert_int_equal(b, count("SELECT count(*) FROM usage_hourly WHERE "
	    "resource = 'vm-b'"));
	assert_int_equal(count("SELECT count(*) FROM usage_hourly WHERE "
	    "resource = 'vm-c'"), b);
	/* 150 samples a minute apart: 149 minutes of 1 vCPU. */
	assert_int_equal(count("SELECT sum(quantity) FROM usage_hourly WHERE "
	    "resource = 'vm-c' AND metric = 'vcpu_seconds'"), 149 * 60);
}

/* ---- agents held to their node ------------------------------------- */

/* One sample taken now, of kind and resource, sent by node as seq. */
static void
report(int64_t node, uint64_t seq, const char *kind, const char *res,
    const char *tenant, uint64_t used, uint64_t cpu_ns)
{
	Opsn__Samples	 m = OPSN__SAMPLES__INIT;
	Opsn__Sample	 v = OPSN__SAMPLE__INIT, *pv = &v;
	uint8_t		*out;
	size_t		 len;

	v.seq = seq;
	/* A minute apart by seq: storage accrues between two samples. */
	v.ts_ms = (int64_t)util_now() * 1000 - 60000 * (int64_t)(seq % 2);
	v.kind = (char *)kind;
	v.resource = (char *)res;
	v.tenant = (char *)tenant;
	v.state = 1;
	v.boot = "b";
	v.vcpus = 1;
	v.memory_mib = 512;
	v.disk_bytes = 1ULL << 30;
	v.has_cpu = strcmp(kind, "vm") == 0;
	v.cpu_ns = cpu_ns;
	v.used_bytes = used;
	v.interval_ms = 60000;
	m.samples = &pv;
	m.n_samples = 1;
	m.spool_low_seq = seq;
	len = opsn__samples__get_packed_size(&m);
	out = xmalloc(len);
	opsn__samples__pack(&m, out);
	metering_agent_msg(node, MSG_SAMPLES, out, len);
	free(out);
	spin();
}

static void
samples_about_another_nodes_resources_are_refused(void **state)
{
	/* hv1 (42) samples hv2's VM of member 2: refused, counted. */
	report(42, 10000, "vm", "vm-x", "1", 0, 1000);
	report(42, 10001, "vm", "vm-x", "1", 0, 2000);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE resource = "
	    "'vm-x'"), 0);
	assert_int_equal(reports_rejected(42, "sample_vm"), 2);
	/* A VM placed nowhere is no one's either. */
	report(42, 10002, "vm", "vm-nowhere", "", 0, 1);
	assert_int_equal(reports_rejected(42, "sample_vm"), 3);
	assert_int_equal(count("SELECT count(*) FROM meter_resources WHERE "
	    "resource = 'vm-nowhere'"), 0);
	/* A hypervisor has no say on a mailbox, even one that exists. */
	report(42, 10003, "mailbox", "box-1", "2", 999, 0);
	assert_int_equal(reports_rejected(42, "sample_mailbox"), 1);
	report(43, 10004, "mailbox", "box-1", "2", 999, 0);
	assert_int_equal(count("SELECT used_bytes FROM mailboxes"), 0);

	/* Its own backend: stored by address, the domain's member's. */
	report(44, 1, "mailbox", "box-1", "1", 5000, 0);
	report(44, 2, "mailbox", "box-1", "1", 5000, 0);
	assert_int_equal(count("SELECT used_bytes FROM mailboxes"), 5000);
	assert_int_equal(count("SELECT tenant_id FROM meter_resources WHERE "
	    "resource = 'x@b.fr'"), 2);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE node_id = "
	    "44 AND resource = 'x@b.fr'"), 2);
	/* A site on a mail backend is not of its role. */
	report(44, 3, "site", "site-1", "", 1, 0);
	assert_int_equal(reports_rejected(44, "sample_site"), 1);

	/* Billing sees nothing of what was refused. */
	roll_all();
	assert_int_equal(count("SELECT count(*) FROM usage_hourly WHERE "
	    "resource IN ('vm-x', 'vm-nowhere', 'box-1', 'site-1')"), 0);
	assert_int_equal(count("SELECT count(*) FROM usage_hourly WHERE "
	    "tenant_id = 2 AND kind = 'vm'"), 0);
	assert_true(count("SELECT count(*) FROM usage_hourly WHERE "
	    "tenant_id = 2 AND resource = 'x@b.fr'") > 0);
}

static void
late_samples_of_a_deleted_vm_come_from_its_node_only(void **state)
{
	int64_t	 before;

	/* vm-b's first samples came from hv1 (42); then it is deleted. */
	assert_int_equal(store_exec(tc.db, "DELETE FROM vms WHERE uuid = "
	    "'vm-b'", NULL), 0);
	before = count("SELECT count(*) FROM samples WHERE resource = 'vm-b'");
	report(42, 10010, "vm", "vm-b", "", 0, 5);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE resource = "
	    "'vm-b'"), before + 1);
	report(43, 10011, "vm", "vm-b", "", 0, 5);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE resource = "
	    "'vm-b'"), before + 1);
	assert_int_equal(reports_rejected(43, "sample_vm"), 1);
}

/*
 * A VM migrated from hv1 to hv2: hv1's spool may still send samples of
 * the time the VM ran there, taken until the migration finished; a
 * sample timed after that is about another node's VM.
 */
static void
samples_of_a_migrated_vm_come_from_its_source_until_it_left(void **state)
{
	uint64_t	 refused = reports_rejected(42, "sample_vm");
	char		*sql;

	assert_int_equal(store_exec(tc.db, "INSERT INTO migrations (id, "
	    "vm_id, reason, src_node, dst_node, state, token, created_at, "
	    "updated_at) SELECT 7, id, 'drain', 42, 43, 'starting', 't', 0, 0 "
	    "FROM vms WHERE uuid = 'vm-a'; UPDATE vms SET node_id = 43 WHERE "
	    "uuid = 'vm-a'", NULL), 0);
	/* While it moves, from both nodes. */
	report(42, 10031, "vm", "vm-a", "", 0, 7);
	report(43, 10032, "vm", "vm-a", "", 0, 8);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE seq IN "
	    "(10031, 10032) AND resource = 'vm-a'"), 2);
	/* Done half a minute ago: hv1's sample of a minute ago is its own. */
	xasprintf(&sql, "UPDATE migrations SET state = 'done', finished_at = "
	    "%lld WHERE id = 7", (long long)util_now() - 30);
	assert_int_equal(store_exec(tc.db, sql, NULL), 0);
	free(sql);
	report(42, 10033, "vm", "vm-a", "", 0, 9);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE seq = "
	    "10033 AND node_id = 42"), 1);
	assert_int_equal(reports_rejected(42, "sample_vm"), refused);
	/* One taken now, after it left, is refused and counted. */
	report(42, 10034, "vm", "vm-a", "", 0, 10);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE seq = "
	    "10034"), 0);
	assert_int_equal(reports_rejected(42, "sample_vm"), refused + 1);
	assert_int_equal(store_exec(tc.db, "UPDATE vms SET node_id = 42 WHERE "
	    "uuid = 'vm-a'; DELETE FROM migrations WHERE id = 7", NULL), 0);
}

static void
impossible_counters_are_skipped_not_clamped(void **state)
{
	uint64_t	 before = meter_stats.ms_rejected;

	report(42, 10020, "vm", "vm-a", "", 0, UINT64_MAX);
	assert_int_equal(meter_stats.ms_rejected, before + 1);
	assert_int_equal(count("SELECT count(*) FROM samples WHERE seq = "
	    "10020"), 0);
}

/* ---- display helpers ---------------------------------------------------- */

static void
decimals_round_half_up_with_the_mark_asked(void **state)
{
	char	 buf[64];

	metering_decimal(5400, 3600, 4, ',', buf, sizeof(buf));
	assert_string_equal(buf, "1,5000");
	metering_decimal(1, 3600 * 1024, 4, '.', buf, sizeof(buf));
	assert_string_equal(buf, "0.0000");
	metering_decimal(2500500000LL, 1000000000, 3, ',', buf, sizeof(buf));
	assert_string_equal(buf, "2,501");
	metering_decimal(123, 1, 0, ',', buf, sizeof(buf));
	assert_string_equal(buf, "123");
}

static void
csv_cells_are_quoted_and_formulas_defused(void **state)
{
	char	*b = NULL;
	size_t	 len = 0, cap = 0;

	metering_csv_cell(&b, &len, &cap, "Saint-Étienne; nord", ';', 1);
	metering_csv_cell(&b, &len, &cap, "=HYPERLINK(\"x\")", ';', 1);
	metering_csv_cell(&b, &len, &cap, "01004", ';', 1);
	assert_string_equal(b, "\"Saint-Étienne; nord\"\"'=HYPERLINK(\"\"x"
	    "\"\")\"01004");
	free(b);
}

static void
paris_calendar_follows_summer_time(void **state)
{
	/* 2026-10-31T23:30Z is 1 November 00:30 in Paris (CET). */
	assert_int_equal(calendar_month(1793489400LL),
	    1793487600LL);			/* 2026-10-31T23:00Z */
	/* Summer: 2026-07-01 local midnight is 2026-06-30T22:00Z. */
	assert_int_equal(calendar_midnight(2026, 7, 1),
	    1782856800LL);
	assert_int_equal(calendar_offset(1782856800LL), 7200);
}

int
main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(rollup_table_of_cases),
		cmocka_unit_test(rollup_move_between_nodes_never_doubles_cpu),
		cmocka_unit_test(rollup_mailbox_storage_in_mib_seconds),
		cmocka_unit_test(rollup_counter_growth_never_wraps),
		cmocka_unit_test(decimals_round_half_up_with_the_mark_asked),
		cmocka_unit_test(csv_cells_are_quoted_and_formulas_defused),
		cmocka_unit_test(paris_calendar_follows_summer_time),
	};
	const struct CMUnitTest db[] = {
		cmocka_unit_test(ingest_ignores_a_resent_batch),
		cmocka_unit_test(late_samples_give_the_same_hours),
		cmocka_unit_test(
		    samples_about_another_nodes_resources_are_refused),
		cmocka_unit_test(
		    late_samples_of_a_deleted_vm_come_from_its_node_only),
		cmocka_unit_test(impossible_counters_are_skipped_not_clamped),
		cmocka_unit_test(
		    samples_of_a_migrated_vm_come_from_its_source_until_it_left),
	};
	char	*cause = NULL;
	int	 rc;

	log_init("test", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1)
		fail_msg("%s", cause);
	rc = cmocka_run_group_tests_name("metering", pure, NULL, NULL);
	rc += cmocka_run_group_tests_name("metering_db", db, setup_db,
	    teardown_db);
	return (rc);
}
