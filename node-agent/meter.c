/*
 * The metering sampler and sender, for every role.
 *
 * Every interval the sources (libvirt on a hypervisor, the mail or web
 * role's storage figures, the test source) take their samples; the spool
 * numbers them and commits them before anything is sent. The sender then
 * sends the spool in sequence order, a few batches ahead, whenever the
 * link is up, and forgets what the controller acknowledges (the ack comes
 * after the controller's commit). After a reconnect, or when acks stop
 * coming, it starts over from the lowest unacknowledged sample: the
 * controller ignores what it already has.
 *
 * Threads: the spool and libvirt calls run on the uv thread pool, one
 * work item at a time (meter_busy); everything else is loop-thread only.
 *
 * The test source (OPSN_TEST_METER_SYNTHETIC=N) adds N made-up VMs per
 * interval, so the durability tests can push a stream of samples without
 * booting guests. Everything after the source -- spool, sequence numbers,
 * sending, acks, the controller's dedup and commit -- is the real path.
 * OPSN_TEST_METER_LEDGER=FILE makes it append "seq ts_ms resource" for
 * each of its samples once they are committed to the spool.
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "meter.h"
#include "svc.h"

#define METER_INTERVAL_MS	60000
#define METER_SPOOL_MAX		1000000			/* samples */
#define METER_SPOOL_MAX_BYTES	(512LL * 1024 * 1024)
#define METER_RESEND_MIN_MS	10000
#define METER_RESEND_MAX_MS	120000

static struct agent		*ma;
static struct meter_spool	 meter_spool;
static uv_timer_t		 meter_timer;
static int			 meter_inited, meter_stopping;
static int			 meter_busy;		/* a work item runs */
static int			 meter_spool_ok;
static int64_t			 meter_interval_ms = METER_INTERVAL_MS;
static int64_t			 meter_synthetic;
static char			*meter_ledger;
static int64_t			 meter_start_ms;
static int			 meter_hv_on;

/* What the next work item should do (loop thread). */
static int			 meter_tick_due;
static uint64_t			 meter_ack_seq;		/* to apply */
static uint64_t			 meter_ack_done;	/* applied */
static int			 meter_send_due;

/* The sender (loop thread). */
static uint64_t			 meter_send_next;	/* 0: the lowest */
static uint64_t			 meter_inflight[METER_WINDOW];
static size_t			 meter_ninflight;
static uint64_t			 meter_progress_ms;	/* last ack */
static uint64_t			 meter_hv_warned_ms;
static uint64_t			 meter_depth;		/* spool, last seen */

struct meter_work {
	uv_work_t		 w_req;
	int			 w_tick, w_send;
	uint64_t		 w_ack;
	uint64_t		 w_from;
	struct meter_list	 w_new;		/* taken this tick */
	struct meter_list	 w_batch;	/* read for sending */
	uint64_t		 w_low;
	int64_t			 w_oldest_ms;
	uint64_t		 w_count, w_bytes, w_dropped;
	char			*w_hv_cause;
	char			*w_cause;
};

static void	meter_kick(void);

/* Samples are stamped on opsn's clock: a clock step changes no stamp. */
static int64_t
meter_now_ms(void)
{
	return (util_now_ms());
}

/* ---- sources ---------------------------------------------------------- */

/* The test source: N made-up running VMs of 1 vCPU and 128 MiB. */
static void
meter_synthetic_collect(struct meter_list *l, int64_t now_ms)
{
	Opsn__Sample	*s;
	char		 res[128];
	int64_t		 i, up = now_ms - meter_start_ms;

	for (i = 0; i < meter_synthetic; i++) {
		snprintf(res, sizeof(res), "synthetic-%s-%lld", ma->conf.name,
		    (long long)i);
		s = meter_list_add(l, "vm", res, now_ms);
		s->state = 1;
		s->vcpus = 1;
		s->memory_mib = 128;
		s->disk_bytes = 1ULL << 30;
		s->disk_used_bytes = 1ULL << 28;
		s->has_cpu = 1;
		s->cpu_ns = (uint64_t)(up > 0 ? up : 0) * 500000; /* half a CPU */
		s->has_net = 1;
		s->net_rx_bytes = (uint64_t)(up > 0 ? up : 0) * 10;
		s->net_tx_bytes = (uint64_t)(up > 0 ? up : 0) * 5;
		s->interval_ms = (uint32_t)meter_interval_ms;
		s->boot_started_ms = meter_start_ms;
		free(s->boot);
		xasprintf(&s->boot, "synthetic:%lld", (long long)meter_start_ms);
	}
}

/*
 * The mail or web role walks its storage on the pool and reports each
 * object on the loop thread, then once with kind NULL: the samples wait
 * in meter_svc_ready for the next work item.
 */
static struct meter_list	 meter_svc_walk, meter_svc_ready;
static int			 meter_svc_walking;
static int64_t			 meter_svc_ts;

static void
meter_svc_emit(void *arg, const char *kind, const char *id,
    const char *tenant, int64_t bytes)
{
	Opsn__Sample	*s;
	size_t		 i;

	(void)s;
	if (kind == NULL) {
		meter_svc_walking = 0;
		if (meter_stopping) {
			meter_list_clear(&meter_svc_walk);
			return;
		}
		/* Move the samples over (a walk not yet spooled is added). */
		for (i = 0; i < meter_svc_walk.ml_n; i++) {
			struct meter_list *r = &meter_svc_ready;

			if (r->ml_n == r->ml_cap) {
				r->ml_cap = r->ml_cap ? 2 * r->ml_cap : 64;
				r->ml_v = xrealloc(r->ml_v, r->ml_cap *
				    sizeof(*r->ml_v));
			}
			r->ml_v[r->ml_n++] = meter_svc_walk.ml_v[i];
		}
		free(meter_svc_walk.ml_v);
		memset(&meter_svc_walk, 0, sizeof(meter_svc_walk));
		meter_kick();
		return;
	}
	if (id == NULL || *id == '\0')
		return;
	/* The id as the controller gave it; it stores the address or name. */
	s = meter_list_add(&meter_svc_walk, kind, id, meter_svc_ts);
	free(s->tenant);
	s->tenant = xstrdup(tenant != NULL ? tenant : "");
	s->state = 1;
	s->used_bytes = bytes > 0 ? (uint64_t)bytes : 0;
	s->interval_ms = (uint32_t)meter_interval_ms;
}

static void
meter_svc_start(void)
{
	if (meter_svc_walking)
		return;		/* the last walk is not over: skip a beat */
	if (strcmp(ma->conf.role, "mail") == 0)
		meter_svc_walking = 1;
	else if (strcmp(ma->conf.role, "web") == 0)
		meter_svc_walking = 2;
	else
		return;
	meter_svc_ts = meter_now_ms();
	if (meter_svc_walking == 1)
		mail_usage(meter_svc_emit, NULL);
	else
		web_usage(meter_svc_emit, NULL);
}

/* Append "seq ts_ms resource" for the test source's committed samples. */
static void
meter_ledger_write(const struct meter_list *l)
{
	char	*buf = NULL, *line;
	size_t	 i, len = 0;
	int	 fd;

	for (i = 0; i < l->ml_n; i++) {
		const Opsn__Sample *s = l->ml_v[i];

		if (s->seq == 0 || strncmp(s->resource, "synthetic-", 10) != 0)
			continue;
		xasprintf(&line, "%llu %lld %s\n", (unsigned long long)s->seq,
		    (long long)s->ts_ms, s->resource);
		buf = xrealloc(buf, len + strlen(line) + 1);
		memcpy(buf + len, line, strlen(line) + 1);
		len += strlen(line);
		free(line);
	}
	if (len == 0)
		return;
	if ((fd = open(meter_ledger, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) != -1) {
		if (write(fd, buf, len) != (ssize_t)len)
			log_warnx("metering: ledger %s: short write",
			    meter_ledger);
		close(fd);
	}
	free(buf);
}

/* ---- work on the thread pool ----------------------------------------- */

static void
meter_work_cb(uv_work_t *req)
{
	struct meter_work	*w = req->data;
	int64_t			 now_ms = meter_now_ms();

	if (w->w_tick) {
		/* A libvirt failure is logged on the loop; others count. */
		if (meter_hv_on)
			(void)meter_hv_collect(ma->conf.libvirt_uri,
			    ma->conf.name, now_ms, (uint32_t)meter_interval_ms,
			    &w->w_new, &w->w_hv_cause);
		if (meter_synthetic > 0)
			meter_synthetic_collect(&w->w_new, now_ms);
	}
	if (w->w_new.ml_n > 0) {
		if (meter_spool_append(&meter_spool, &w->w_new,
		    &w->w_cause) == -1)
			return;
		if (meter_ledger != NULL)
			meter_ledger_write(&w->w_new);
	}
	if (w->w_ack > 0 && meter_spool_ack(&meter_spool, w->w_ack,
	    &w->w_cause) == -1)
		return;
	if (w->w_send && meter_spool_read(&meter_spool, w->w_from,
	    METER_BATCH_SAMPLES, &w->w_batch, &w->w_low, &w->w_oldest_ms,
	    &w->w_cause) == -1)
		return;
	w->w_count = meter_spool.sp_count;
	w->w_bytes = meter_spool.sp_bytes;
	w->w_dropped = meter_spool.sp_dropped;
}

/* Send a batch read from the spool; 0 sent, -1 not (link down, full). */
static int
meter_send_batch(struct meter_work *w)
{
	Opsn__Samples	 m = OPSN__SAMPLES__INIT;
	struct meter_list *b = &w->w_batch;
	uint64_t	 last;
	size_t		 i;

	/* Only what follows on from what is in flight: never a gap. */
	for (i = 1; i < b->ml_n; i++)
		if (b->ml_v[i]->seq != b->ml_v[i - 1]->seq + 1)
			break;
	m.samples = b->ml_v;
	m.n_samples = i;
	m.spool_low_seq = w->w_low;
	m.spool_samples = w->w_count;
	m.spool_bytes = w->w_bytes;
	m.spool_oldest_ms = w->w_oldest_ms;
	m.spool_dropped = w->w_dropped;
	m.spool_max_samples = meter_spool.sp_max_count;
	m.spool_max_bytes = meter_spool.sp_max_bytes;
	if (link_send(MSG_SAMPLES, &m.base) == -1)
		return (-1);
	last = b->ml_v[i - 1]->seq;
	if (meter_ninflight == 0)
		meter_progress_ms = util_mono_ms();
	meter_inflight[meter_ninflight++] = last;
	meter_send_next = last + 1;
	return (0);
}

static void
meter_after_cb(uv_work_t *req, int status)
{
	struct meter_work	*w = req->data;
	uint64_t		 now = util_mono_ms();

	meter_busy = 0;
	if (w->w_hv_cause != NULL) {
		if (now - meter_hv_warned_ms > 60000 || meter_hv_warned_ms == 0) {
			log_warnx("metering: %s", w->w_hv_cause);
			meter_hv_warned_ms = now;
		}
	}
	if (w->w_cause == NULL)
		meter_depth = w->w_count;
	if (w->w_cause != NULL)
		log_warnx("metering: %s", w->w_cause);
	else if (w->w_ack > meter_ack_done)
		meter_ack_done = w->w_ack;
	if (meter_stopping) {
		meter_list_clear(&w->w_new);
		meter_list_clear(&w->w_batch);
		free(w->w_hv_cause);
		free(w->w_cause);
		free(w);
		meter_spool_close(&meter_spool);
		meter_hv_close();
		return;
	}
	/* A batch read for a sender that has since started over is dropped. */
	if (w->w_send && w->w_cause == NULL && w->w_batch.ml_n > 0 &&
	    w->w_from == meter_send_next && link_is_up()) {
		if (meter_send_batch(w) == 0 && w->w_batch.ml_n ==
		    METER_BATCH_SAMPLES)
			meter_send_due = 1;
	}
	/* New samples, and room in the window: send them. */
	if (w->w_new.ml_n > 0)
		meter_send_due = 1;
	meter_list_clear(&w->w_new);
	meter_list_clear(&w->w_batch);
	free(w->w_hv_cause);
	free(w->w_cause);
	free(w);
	meter_kick();
}

/* Start the next work item if one is due and none runs. */
static void
meter_kick(void)
{
	struct meter_work	*w;
	int			 send;

	if (meter_busy || meter_stopping || !meter_spool_ok)
		return;
	send = meter_send_due && link_is_up() &&
	    meter_ninflight < METER_WINDOW;
	if (!meter_tick_due && meter_ack_seq <= meter_ack_done && !send &&
	    meter_svc_ready.ml_n == 0)
		return;
	w = xcalloc(1, sizeof(*w));
	w->w_req.data = w;
	w->w_tick = meter_tick_due;
	if (meter_ack_seq > meter_ack_done)
		w->w_ack = meter_ack_seq;
	w->w_send = send;
	w->w_from = meter_send_next;
	if (meter_svc_ready.ml_n > 0) {
		w->w_new = meter_svc_ready;
		memset(&meter_svc_ready, 0, sizeof(meter_svc_ready));
	}
	meter_tick_due = 0;
	if (send)
		meter_send_due = 0;
	if (uv_queue_work(ma->loop, &w->w_req, meter_work_cb,
	    meter_after_cb) != 0)
		fatalx("metering: uv_queue_work failed");
	meter_busy = 1;
}

/* Start over from the lowest unacknowledged sample. */
static void
meter_rewind(const char *why)
{
	if (meter_ninflight > 0 || meter_send_next != 0)
		log_debug("metering: resending from the lowest sample: %s",
		    why);
	meter_send_next = 0;
	meter_ninflight = 0;
	meter_send_due = 1;
}

static int64_t
meter_resend_ms(void)
{
	int64_t	 ms = 10 * meter_interval_ms;

	if (ms < METER_RESEND_MIN_MS)
		ms = METER_RESEND_MIN_MS;
	if (ms > METER_RESEND_MAX_MS)
		ms = METER_RESEND_MAX_MS;
	return (ms);
}

static void
meter_timer_cb(uv_timer_t *t)
{
	meter_svc_start();
	meter_tick_due = 1;
	/* Anything waiting (a full send queue, a lost batch) goes again. */
	if (meter_depth > 0)
		meter_send_due = 1;
	if (meter_ninflight > 0 && util_mono_ms() - meter_progress_ms >
	    (uint64_t)meter_resend_ms())
		meter_rewind("no acknowledgement");
	meter_kick();
}

#ifdef OPSN_TEST_BUILD
/* A test-only setting (test builds only: a release never reads them). */
static int64_t
meter_env(const char *name, int64_t def)
{
	const char	*s = getenv(name);
	char		*end;
	long long	 v;

	if (s == NULL || *s == '\0')
		return (def);
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v < 0) {
		log_warnx("metering: ignoring %s=%s", name, s);
		return (def);
	}
	log_notice("metering: %s=%lld (test setting)", name, v);
	return (v);
}
#endif

static int
meter_init(struct agent *a, char **cause)
{
	char		*path;
	uint64_t	 max_count = METER_SPOOL_MAX;
	uint64_t	 max_bytes = METER_SPOOL_MAX_BYTES;
	int		 rc;

	ma = a;
	meter_stopping = 0;
	meter_start_ms = meter_now_ms();
#ifdef AGENT_CONF_METERING
	meter_interval_ms = a->conf.sample_interval_ms;
	max_count = (uint64_t)a->conf.spool_max_samples;
	max_bytes = (uint64_t)a->conf.spool_max_mib << 20;
#endif
#ifdef OPSN_TEST_BUILD
	meter_interval_ms = meter_env("OPSN_TEST_METER_INTERVAL_MS",
	    meter_interval_ms);
	max_count = (uint64_t)meter_env("OPSN_TEST_METER_SPOOL_MAX",
	    (int64_t)max_count);
	meter_synthetic = meter_env("OPSN_TEST_METER_SYNTHETIC", 0);
	if (getenv("OPSN_TEST_METER_LEDGER") != NULL)
		meter_ledger = xstrdup(getenv("OPSN_TEST_METER_LEDGER"));
#endif
	if (meter_interval_ms < 100)
		meter_interval_ms = 100;
	meter_hv_on = strcmp(a->conf.role, "hypervisor") == 0;

	path = enrol_path(a, "spool.db");
	rc = meter_spool_open(&meter_spool, path, max_count, max_bytes, cause);
	free(path);
	if (rc == -1)
		return (-1);
	meter_spool_ok = 1;
	uv_timer_init(a->loop, &meter_timer);
	uv_timer_start(&meter_timer, meter_timer_cb, (uint64_t)meter_interval_ms,
	    (uint64_t)meter_interval_ms);
	meter_inited = 1;
	log_info("metering: a sample every %lld ms; %llu samples waiting in "
	    "the spool%s", (long long)meter_interval_ms,
	    (unsigned long long)meter_spool.sp_count, meter_synthetic > 0 ?
	    " (test source on)" : "");
	/* Take the first samples now rather than an interval from now. */
	meter_tick_due = 1;
	meter_kick();
	return (0);
}

static void
meter_on_connected(void)
{
	if (!meter_inited)
		return;
	meter_rewind("connected");
	meter_kick();
}

static void
meter_on_frame(uint16_t type, const uint8_t *p, size_t len)
{
	Opsn__SamplesAck	*ack;
	size_t			 i, j;

	if (type != MSG_SAMPLES_ACK || !meter_inited) {
		log_debug("metering: ignoring message type %u", type);
		return;
	}
	if ((ack = opsn__samples_ack__unpack(NULL, len, p)) == NULL) {
		log_warnx("metering: SAMPLES_ACK does not decode");
		return;
	}
	if (ack->seq > meter_ack_seq)
		meter_ack_seq = ack->seq;
	/* Batches wholly acknowledged leave the window. */
	for (i = j = 0; i < meter_ninflight; i++)
		if (meter_inflight[i] > ack->seq)
			meter_inflight[j++] = meter_inflight[i];
	if (j < meter_ninflight) {
		meter_progress_ms = util_mono_ms();
		meter_send_due = 1;
	}
	meter_ninflight = j;
	opsn__samples_ack__free_unpacked(ack, NULL);
	meter_kick();
}

static void
meter_stop(void)
{
	if (!meter_inited || meter_stopping)
		return;
	meter_stopping = 1;
	uv_timer_stop(&meter_timer);
	uv_close((uv_handle_t *)&meter_timer, NULL);
	free(meter_ledger);
	meter_ledger = NULL;
	meter_list_clear(&meter_svc_ready);
	meter_inited = 0;
	if (!meter_busy) {
		meter_spool_close(&meter_spool);
		meter_hv_close();
	}
}

const struct role_ops meter_ops = {
	"metering", meter_init, meter_on_connected, meter_on_frame, meter_stop
};
