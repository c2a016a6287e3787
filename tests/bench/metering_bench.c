/*
 * metering_bench: figures for metering, each next to its reference.
 *
 *   metering_bench ingest -d SECONDS -b BATCH -w WINDOW HOST:PORT DIR...
 *	Simulated agents (one per enrolled agent data folder DIR: its
 *	key.pem, cert.pem and ca.pem) connect with mutual TLS, say HELLO
 *	and send MSG_SAMPLES batches, WINDOW batches ahead of the acks, for
 *	SECONDS. Prints samples acknowledged per second: TLS, decode, dedup,
 *	FULL commit and ack, end to end.
 *   metering_bench raw -n ROWS SCHEMA.sql DB
 *	The reference: ROWS rows inserted into the same samples table in one
 *	transaction (WAL, synchronous=FULL). Prints rows per second.
 *   metering_bench rollup -v VMS -m MAILBOXES -t TENANTS -s MINUTES DB
 *	MINUTES of raw samples (every resource once a minute) rolled up by
 *	the controller's own code (rounds of 20,000 samples) into a database
 *	its migrations made. Prints samples rolled up per second next to the
 *	rate at which they arrive.
 */
#include <sys/time.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "opsn/conn.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "opsn.pb-c.h"
#include "simlink.h"
#include "metering.pb-c.h"
#include "core/core.h"
#include "core/core.h"
#include "metering/metering.h"

static double
now_s(void)
{
	struct timeval	 tv;

	gettimeofday(&tv, NULL);
	return ((double)tv.tv_sec + tv.tv_usec / 1e6);
}

static int64_t
now_ms(void)
{
	return ((int64_t)(now_s() * 1000));
}

/* ---- ingest ------------------------------------------------------------ */

struct sim {
	char		*name;
	char		**sites;	/* DIR/sites: the ids placed on it */
	size_t		 nsites;
	SSL_CTX		*ctx;
	struct conn	*conn;
	uint32_t	 version;
	uint64_t	 next_seq, acked;
	int		 ready, inflight;
};

static uv_loop_t	*loop;
static struct sim	*sims;
static size_t		 nsims;
static int		 batch = 500, window = 4;
static uint64_t		 total_acked;
static int		 stopping;
static char		*host;
static int		 port;

static void
sim_send(struct sim *s)
{
	Opsn__Samples	 m = OPSN__SAMPLES__INIT;
	Opsn__Sample	*v, **pv;
	int		 i;
	int64_t		 t = now_ms();

	while (!stopping && s->inflight < window) {
		v = xcalloc((size_t)batch, sizeof(*v));
		pv = xcalloc((size_t)batch, sizeof(*pv));
		for (i = 0; i < batch; i++) {
			opsn__sample__init(&v[i]);
			v[i].seq = s->next_seq + (uint64_t)i;
			v[i].ts_ms = t;
			/* The controller takes samples only of what it
			 * placed on the node: sites made by api.py. */
			v[i].kind = "site";
			v[i].resource = s->sites[(size_t)i % s->nsites];
			v[i].tenant = "";
			v[i].boot = "";
			v[i].state = 1;
			v[i].used_bytes = v[i].seq * 1000;
			v[i].interval_ms = 60000;
			pv[i] = &v[i];
		}
		m.samples = pv;
		m.n_samples = (size_t)batch;
		m.spool_low_seq = s->acked + 1;
		m.spool_samples = s->next_seq + (uint64_t)batch - s->acked - 1;
		if (conn_send_msg(s->conn, s->version, MSG_SAMPLES, 0, ST_OK,
		    &m.base) == 0) {
			s->next_seq += (uint64_t)batch;
			s->inflight++;
		}
		free(v);
		free(pv);
		if (s->inflight == 0)
			break;
	}
}

/* The site ids api.py placed on this backend, one a line. */
static void
sim_sites(struct sim *s, const char *path)
{
	FILE	*f;
	char	 line[128];

	if ((f = fopen(path, "r")) == NULL)
		fatalx("%s: no site list (api.py sites)", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (*line == '\0')
			continue;
		s->sites = xrealloc(s->sites, (s->nsites + 1) *
		    sizeof(*s->sites));
		s->sites[s->nsites++] = xstrdup(line);
	}
	fclose(f);
	if (s->nsites == 0)
		fatalx("%s: no site", path);
}

static void
sim_ready_cb(struct conn *c, void *arg)
{
	struct sim	*s = arg;

	simlink_hello(c, s->name, "web", 1);
}

static void
sim_frame_cb(struct conn *c, const struct frame_hdr *h, const uint8_t *p,
    void *arg)
{
	struct sim		*s = arg;
	Opsn__HelloOk		*ok;
	Opsn__SamplesAck	*ack;

	switch (h->fh_type) {
	case MSG_HELLO_OK:
		if ((ok = opsn__hello_ok__unpack(NULL, h->fh_len, p)) == NULL)
			break;
		s->version = ok->proto_version;
		opsn__hello_ok__free_unpacked(ok, NULL);
		s->ready = 1;
		sim_send(s);
		break;
	case MSG_SAMPLES_ACK:
		if ((ack = opsn__samples_ack__unpack(NULL, h->fh_len, p)) ==
		    NULL)
			break;
		if (ack->seq > s->acked) {
			total_acked += ack->seq - s->acked;
			s->acked = ack->seq;
			s->inflight = (int)((s->next_seq - 1 - s->acked +
			    (uint64_t)batch - 1) / (uint64_t)batch);
		}
		opsn__samples_ack__free_unpacked(ack, NULL);
		sim_send(s);
		break;
	default:
		break;
	}
}

static void
sim_close_cb(struct conn *c, const char *reason, void *arg)
{
	struct sim	*s = arg;

	s->conn = NULL;
	if (!stopping)
		fprintf(stderr, "metering_bench: %s: %s\n", s->name, reason);
}

static const struct conn_cbs sim_cbs = {
	sim_ready_cb, sim_frame_cb, NULL, sim_close_cb
};

static uv_timer_t	 stop_timer, beat_timer;
static uint64_t		 acked_at_start;
static double		 t_start;

static void
beat_cb(uv_timer_t *t)
{
	Opsn__Heartbeat	 hb = OPSN__HEARTBEAT__INIT;
	size_t		 i;

	for (i = 0; i < nsims; i++)
		if (sims[i].conn != NULL && sims[i].ready)
			conn_send_msg(sims[i].conn, sims[i].version,
			    MSG_HEARTBEAT, 0, ST_OK, &hb.base);
}

static void
stop_cb(uv_timer_t *t)
{
	size_t	 i;
	double	 dt = now_s() - t_start;

	stopping = 1;
	printf("ingest agents=%zu batch=%d window=%d seconds=%.1f "
	    "samples=%llu samples_per_s=%.0f\n", nsims, batch, window, dt,
	    (unsigned long long)(total_acked - acked_at_start),
	    (double)(total_acked - acked_at_start) / dt);
	fflush(stdout);
	for (i = 0; i < nsims; i++)
		if (sims[i].conn != NULL)
			conn_close(sims[i].conn, "done");
	uv_close((uv_handle_t *)&beat_timer, NULL);
	uv_close((uv_handle_t *)t, NULL);
}

static void
warm_cb(uv_timer_t *t)
{
	acked_at_start = total_acked;
	t_start = now_s();
}

static int
bench_ingest(int seconds, const char *hp, char **dirs, int n)
{
	char		*cause = NULL, path[4096];
	struct conn_opts o = { 0 };
	uv_timer_t	 warm;
	int		 i;

	if (util_parse_hostport(hp, &host, &port, &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (1);
	}
	loop = uv_default_loop();
	nsims = (size_t)n;
	sims = xcalloc(nsims, sizeof(*sims));
	o.co_max_frame = FRAME_MAX;
	o.co_idle_timeout_ms = 60000;
	for (i = 0; i < n; i++) {
		struct sim *s = &sims[i];
		const char *base = strrchr(dirs[i], '/');

		/* The folder is .../agent-NAME/data. */
		snprintf(path, sizeof(path), "%s", dirs[i]);
		*strrchr(path, '/') = '\0';
		base = strrchr(path, '/');
		s->name = xstrdup(base ? base + 1 + 6 : path + 6);
		s->next_seq = 1;
		snprintf(path, sizeof(path), "%s/sites", dirs[i]);
		sim_sites(s, path);
		s->ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION);
		snprintf(path, sizeof(path), "%s/ca.pem", dirs[i]);
		SSL_CTX_load_verify_locations(s->ctx, path, NULL);
		SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
		snprintf(path, sizeof(path), "%s/cert.pem", dirs[i]);
		if (SSL_CTX_use_certificate_file(s->ctx, path,
		    SSL_FILETYPE_PEM) != 1)
			fatalx("%s: no certificate", path);
		snprintf(path, sizeof(path), "%s/key.pem", dirs[i]);
		if (SSL_CTX_use_PrivateKey_file(s->ctx, path,
		    SSL_FILETYPE_PEM) != 1)
			fatalx("%s: no key", path);
		s->conn = conn_connect(loop, host, port, s->ctx, NULL, &o,
		    &sim_cbs, s, &cause);
		if (s->conn == NULL)
			fatalx("%s", cause);
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn_ssl(s->conn)),
		    host);
	}
	uv_timer_init(loop, &warm);
	uv_timer_start(&warm, warm_cb, 2000, 0);
	uv_timer_init(loop, &beat_timer);
	uv_timer_start(&beat_timer, beat_cb, 500, 500);
	uv_timer_init(loop, &stop_timer);
	uv_timer_start(&stop_timer, stop_cb, 2000 + (uint64_t)seconds * 1000,
	    0);
	uv_run(loop, UV_RUN_DEFAULT);
	return (0);
}

/* ---- raw reference -------------------------------------------------- */

static sqlite3 *
open_db(const char *schema, const char *path)
{
	sqlite3		*db;
	char		*sql = NULL, *cause = NULL;
	size_t		 len;

	unlink(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		fatalx("%s: %s", path, sqlite3_errmsg(db));
	if (util_read_file(schema, 1 << 20, &sql, &len, &cause) == -1)
		fatalx("%s", cause);
	if (sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = "
	    "FULL; CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT, "
	    "insee TEXT, siren TEXT)", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fatalx("schema: %s", sqlite3_errmsg(db));
	free(sql);
	return (db);
}

static int
bench_raw(long rows, const char *schema, const char *path)
{
	sqlite3		*db = open_db(schema, path);
	sqlite3_stmt	*st;
	double		 t0;
	long		 i;
	char		 res[64];

	sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO samples (node_id, seq, "
	    "ts_ms, kind, resource, state, boot, boot_started_ms, vcpus, "
	    "memory_mib, disk_mib, disk_used_mib, cpu_ns, net_rx, net_tx, "
	    "used_bytes, interval_ms, received_at) VALUES (?, ?, ?, 'vm', ?, 1, "
	    "'pid:1:1', 0, 2, 2048, 20480, 3072, ?, ?, ?, NULL, 60000, ?)", -1,
	    &st, NULL);
	t0 = now_s();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (i = 0; i < rows; i++) {
		snprintf(res, sizeof(res), "bench-m%ld-%ld", i % 3, i % 100);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, i % 3 + 1);
		sqlite3_bind_int64(st, 2, i + 1);
		sqlite3_bind_int64(st, 3, now_ms());
		sqlite3_bind_text(st, 4, res, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 5, i * 1000000);
		sqlite3_bind_int64(st, 6, i * 1000);
		sqlite3_bind_int64(st, 7, i * 500);
		sqlite3_bind_int64(st, 8, now_ms() / 1000);
		sqlite3_step(st);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	printf("raw rows=%ld seconds=%.2f rows_per_s=%.0f\n", rows,
	    now_s() - t0, rows / (now_s() - t0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return (0);
}

/* ---- the rollup ------------------------------------------------------ */

/*
 * MINUTES of raw samples for VMS VMs and MAILBOXES mailboxes (one a
 * minute each, as the agents send them), rolled up by the controller's
 * own code into a database made by its migrations (store_open): hours for
 * the VMs, days for the mailboxes, monthly totals through the triggers.
 */
static int
bench_rollup(long vms, long mailboxes, long tenants, long minutes,
    const char *path)
{
	sqlite3			*db;
	sqlite3_stmt		*st;
	struct meter_round	*r;
	char			*cause = NULL, res[64];
	double			 t0, t_gen, t_read = 0, t_write = 0;
	int64_t			 t0_s = 1793574000LL;	/* 2026-11-01T23:00Z */
	long			 i, k, n = 0, rounds = 0;

	unlink(path);
	if (store_open(path, &db, &cause) == -1)
		fatalx("%s", cause);
	t0 = now_s();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT INTO meter_resources VALUES (?, ?, ?, "
	    "0)", -1, &st, NULL);
	for (i = 0; i < vms + mailboxes; i++) {
		snprintf(res, sizeof(res), i < vms ? "vm-%ld" : "mb-%ld@x.fr",
		    i);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, i < vms ? "vm" : "mailbox", -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(st, 2, res, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, i % tenants + 1);
		sqlite3_step(st);
	}
	sqlite3_finalize(st);
	sqlite3_prepare_v2(db, "INSERT INTO samples (node_id, seq, ts_ms, kind, "
	    "resource, state, boot, vcpus, memory_mib, disk_mib, disk_used_mib, "
	    "cpu_ns, net_rx, net_tx, used_bytes, interval_ms, received_at) "
	    "VALUES (?, ?, ?, ?, ?, 1, 'b', 2, 2048, 20480, 3072, ?, ?, ?, ?, "
	    "60000, 0)", -1, &st, NULL);
	for (k = 0; k < minutes; k++) {
		for (i = 0; i < vms + mailboxes; i++) {
			int vm = i < vms;

			snprintf(res, sizeof(res), vm ? "vm-%ld" :
			    "mb-%ld@x.fr", i);
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 1, vm ? 1 + i % 2500 : 3000 +
			    i % 4);
			sqlite3_bind_int64(st, 2, ++n);
			sqlite3_bind_int64(st, 3, (t0_s + k * 60) * 1000 +
			    i % 60000);
			sqlite3_bind_text(st, 4, vm ? "vm" : "mailbox", -1,
			    SQLITE_STATIC);
			sqlite3_bind_text(st, 5, res, -1, SQLITE_TRANSIENT);
			if (vm) {
				sqlite3_bind_int64(st, 6, k * 30000000000LL);
				sqlite3_bind_int64(st, 7, k * 100000);
				sqlite3_bind_int64(st, 8, k * 50000);
				sqlite3_bind_null(st, 9);
			} else {
				sqlite3_bind_null(st, 6);
				sqlite3_bind_null(st, 7);
				sqlite3_bind_null(st, 8);
				sqlite3_bind_int64(st, 9, 100000000 + i);
			}
			sqlite3_step(st);
		}
	}
	sqlite3_finalize(st);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	t_gen = now_s() - t0;
	printf("rollup: generated %ld raw samples (%ld minutes of %ld VMs and "
	    "%ld mailboxes) in %.1f s\n", n, minutes, vms, mailboxes, t_gen);

	/* Rounds of 20,000 samples, as the controller runs them. */
	for (;;) {
		t0 = now_s();
		if ((r = metering_round_compute(db, 20000, &cause)) == NULL)
			fatalx("%s", cause);
		t_read += now_s() - t0;
		t0 = now_s();
		if (metering_round_write(db, r, &cause) == -1)
			fatalx("%s", cause);
		t_write += now_s() - t0;
		k = metering_round_samples(r);
		metering_round_free(r);
		if (k == 0)
			break;
		rounds++;
	}
	printf("rollup: %ld samples in %ld rounds: read+compute %.1f s (pool), "
	    "write %.1f s (loop), %.0f samples/s; they arrive at %.0f/s\n",
	    n, rounds, t_read, t_write, n / (t_read + t_write),
	    (double)(vms + mailboxes) / 60);
	store_close(db);
	return (0);
}

int
main(int argc, char **argv)
{
	int	 ch, seconds = 20;
	long	 rows = 200000, vms = 2000, mbx = 100000, tenants = 35000,
		 scale = 10;	/* rollup: minutes of samples */
	const char *mode;
	char	*cause = NULL;

	if (argc < 2) {
		fprintf(stderr, "usage: metering_bench ingest|raw|rollup ...\n");
		return (2);
	}
	mode = argv[1];
	argc--;
	argv++;
	log_init("metering_bench", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1)
		fatalx("%s", cause);
	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "d:b:w:n:v:m:t:s:")) != -1) {
		switch (ch) {
		case 'd': seconds = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'w': window = atoi(optarg); break;
		case 'n': rows = atol(optarg); break;
		case 'v': vms = atol(optarg); break;
		case 'm': mbx = atol(optarg); break;
		case 't': tenants = atol(optarg); break;
		case 's': scale = atol(optarg); break;
		default: return (2);
		}
	}
	argc -= optind;
	argv += optind;
	if (strcmp(mode, "ingest") == 0 && argc >= 2)
		return (bench_ingest(seconds, argv[0], argv + 1, argc - 1));
	if (strcmp(mode, "raw") == 0 && argc == 2)
		return (bench_raw(rows, argv[0], argv[1]));
	if (strcmp(mode, "rollup") == 0 && argc == 1)
		return (bench_rollup(vms, mbx, tenants, scale, argv[0]));
	fprintf(stderr, "metering_bench: bad arguments\n");
	return (2);
}
