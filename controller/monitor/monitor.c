/*
 * The monitor module: GET /metrics for Prometheus. It writes what belongs
 * to no subsystem (the process, the data folder's disk, the controller's
 * own certificates, the API's counters and latencies), then asks every
 * module listed in main.c for its families (m_metrics).
 *
 * Everything here is read on the loop thread from memory, /proc and a
 * statvfs: a scrape costs well under a millisecond plus the modules'
 * counting queries, which use indexes.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "opsn/log.h"
#include "opsn/pki.h"
#include "opsn/util.h"
#include "core/core.h"
#include "monitor.h"

static void	monitor_metrics_get(struct api_req *);

static const struct api_route monitor_routes[] = {
	{ "GET", "/metrics", "metrics.read",
	  API_PLATFORM, NULL, monitor_metrics_get,
	  "Prometheus metrics: process, disk, certificates, API, nodes, VMs, "
	  "metering, provisioning" },
};

/* /proc/self/stat after the command name: the fields we use. */
struct monitor_proc {
	double		 mp_cpu;	/* user + system seconds */
	double		 mp_start;	/* unix seconds */
	double		 mp_vsize;	/* bytes */
	double		 mp_rss;	/* bytes */
};

static int
monitor_proc_stat(struct monitor_proc *mp)
{
	FILE		*f;
	char		 buf[1024], *p, line[256];
	unsigned long	 utime, stime, vsize;
	unsigned long long starttime;
	long		 rss, tick = sysconf(_SC_CLK_TCK);
	long		 page = sysconf(_SC_PAGESIZE);
	double		 btime = 0;
	size_t		 n;

	if ((f = fopen("/proc/self/stat", "r")) == NULL)
		return (-1);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last. */
	if ((p = strrchr(buf, ')')) == NULL)
		return (-1);
	/* Fields 3.. : state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime cutime cstime priority nice
	 * threads itrealvalue starttime vsize rss */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
	    "%*d %*d %*d %*d %*d %*d %llu %lu %ld", &utime, &stime, &starttime,
	    &vsize, &rss) != 5)
		return (-1);
	if ((f = fopen("/proc/stat", "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "btime %lf", &btime) == 1)
				break;
		fclose(f);
	}
	mp->mp_cpu = (double)(utime + stime) / (double)tick;
	mp->mp_start = btime + (double)starttime / (double)tick;
	mp->mp_vsize = (double)vsize;
	mp->mp_rss = (double)rss * (double)page;
	return (0);
}

static int
monitor_open_fds(void)
{
	DIR		*d;
	struct dirent	*e;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (-1);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return (n - 1);		/* the one opendir() holds */
}

/* The standard process families of Prometheus' client libraries. */
static void
monitor_process(struct prom *pr)
{
	struct monitor_proc	 mp;
	struct rlimit		 rl;
	int			 fds;

	if (monitor_proc_stat(&mp) == 0) {
		prom_single(pr, "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds.",
		    mp.mp_cpu);
		prom_single(pr, "process_resident_memory_bytes", "gauge",
		    "Resident memory size in bytes.", mp.mp_rss);
		prom_single(pr, "process_virtual_memory_bytes", "gauge",
		    "Virtual memory size in bytes.", mp.mp_vsize);
		prom_single(pr, "process_start_time_seconds", "gauge",
		    "Start time of the process since unix epoch in seconds.",
		    mp.mp_start);
	}
	if ((fds = monitor_open_fds()) >= 0)
		prom_single(pr, "process_open_fds", "gauge",
		    "Number of open file descriptors.", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		prom_single(pr, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.",
		    rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

/* The data folder's file system and the database's files. */
static void
monitor_disk(struct prom *pr, const char *dir)
{
	struct statvfs	 vf;
	struct stat	 sb;
	const char	*suffix[] = { "", "-wal" };
	char		*path;
	double		 db = 0;
	size_t		 i;

	if (statvfs(dir, &vf) == 0) {
		prom_single(pr, "opsn_data_dir_size_bytes", "gauge",
		    "Size of the file system holding the controller's data "
		    "folder.", (double)vf.f_blocks * (double)vf.f_frsize);
		prom_single(pr, "opsn_data_dir_avail_bytes", "gauge",
		    "Space the controller may still use in its data folder's "
		    "file system.", (double)vf.f_bavail * (double)vf.f_frsize);
	}
	for (i = 0; i < nitems(suffix); i++) {
		xasprintf(&path, "%s/opsn.db%s", dir, suffix[i]);
		if (stat(path, &sb) == 0)
			db += (double)sb.st_size;
		free(path);
	}
	prom_single(pr, "opsn_db_size_bytes", "gauge",
	    "Size of the controller's database with its write-ahead log.", db);
}

static void
monitor_certs(struct prom *pr, struct ctl *c)
{
	double	 t;

	prom_family(pr, "opsn_certificate_expiry_timestamp_seconds", "gauge",
	    "When the controller's own certificates expire (unix seconds): "
	    "its CA and the server certificate of the API and agent "
	    "listener.");
	if ((t = pki_not_after(c->ca)) >= 0)
		prom_sample(pr, "opsn_certificate_expiry_timestamp_seconds",
		    "certificate", "ca", t);
	if (c->api_ctx != NULL && (t = pki_not_after(
	    SSL_CTX_get0_certificate(c->api_ctx))) >= 0)
		prom_sample(pr, "opsn_certificate_expiry_timestamp_seconds",
		    "certificate", "server", t);
}

/* The store's group transactions (core/store.c). */
static void
monitor_store(struct prom *pr)
{
	struct store_stats	 ss;

	store_group_stats(&ss);
	prom_single(pr, "opsn_store_commits_total", "counter",
	    "Group transactions committed (one fsync each).",
	    (double)ss.ss_commits);
	prom_single(pr, "opsn_store_writes_total", "counter",
	    "Writes (API calls, sample batches...) those transactions held.",
	    (double)ss.ss_joined);
	prom_single(pr, "opsn_store_failed_total", "counter",
	    "Group transactions that did not commit (their writes answered "
	    "an error).", (double)ss.ss_failed);
}

/*
 * The loop's turns: how long each ran, outside its wait for events
 * (libuv's idle time). A long turn holds every API call and agent
 * message behind it, whatever their own cost: one over a second is
 * logged, and the histogram shows how often shorter ones happen.
 */
#define MONITOR_TURN_WARN_NS	1000000000ULL
static const double	 monitor_turn_bounds[] = { 0.001, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1, 5 };
static struct {
	uv_prepare_t	 t_prepare;
	uint64_t	 t_at;		/* the last turn's start (ns) */
	uint64_t	 t_idle;	/* the loop's idle time then */
	uint64_t	 t_count[nitems(monitor_turn_bounds) + 1];
	double		 t_sum;
} monitor_turn;

/* Before the loop waits for events: the turn before ends here. */
static void
monitor_turn_cb(uv_prepare_t *h)
{
	uint64_t	 now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
	uint64_t	 busy;
	size_t		 b;

	if (monitor_turn.t_at != 0) {
		busy = now - monitor_turn.t_at;
		if (idle - monitor_turn.t_idle < busy)
			busy -= idle - monitor_turn.t_idle;
		else
			busy = 0;
		for (b = 0; b < nitems(monitor_turn_bounds); b++)
			if ((double)busy <= monitor_turn_bounds[b] * 1e9)
				break;
		monitor_turn.t_count[b]++;
		monitor_turn.t_sum += (double)busy / 1e9;
		if (busy >= MONITOR_TURN_WARN_NS)
			log_warnx("monitor: one turn of the loop ran %.1f s: "
			    "API calls and agents waited that long",
			    (double)busy / 1e9);
	}
	monitor_turn.t_at = now;
	monitor_turn.t_idle = idle;
}

static int
monitor_init(struct ctl *c, char **cause)
{
	int	 rc;

	if ((rc = uv_loop_configure(c->loop, UV_METRICS_IDLE_TIME)) != 0) {
		xasprintf(cause, "measuring the loop's idle time: %s",
		    uv_strerror(rc));
		return (-1);
	}
	uv_prepare_init(c->loop, &monitor_turn.t_prepare);
	uv_prepare_start(&monitor_turn.t_prepare, monitor_turn_cb);
	uv_unref((uv_handle_t *)&monitor_turn.t_prepare);
	return (0);
}

static void
monitor_stop(void)
{
	uv_close((uv_handle_t *)&monitor_turn.t_prepare, NULL);
}

/* The whole exposition (caller frees pr_b). */
void
monitor_write(struct ctl *c, struct prom *pr)
{
	const struct ctl_module *const *mp;

	prom_family(pr, "opsn_info", "gauge", "The controller's version.");
	prom_add(pr, "opsn_info{version=\"%s\"} 1\n", OPSN_VERSION);
	monitor_process(pr);
	prom_single(pr, "opsn_clock_offset_seconds", "gauge",
	    "The wall clock minus the time the controller goes by: not 0 "
	    "after the clock was stepped while it ran (it keeps its own "
	    "time until restarted).", (double)util_clock_offset_ms() / 1000);
	monitor_disk(pr, c->conf.data_dir);
	monitor_certs(pr, c);
	monitor_store(pr);
	prom_histogram(pr, "opsn_loop_busy_seconds", "Each turn of the "
	    "controller's loop, outside its wait for events: API calls and "
	    "agent messages wait behind a long one.", monitor_turn_bounds,
	    monitor_turn.t_count, nitems(monitor_turn_bounds),
	    monitor_turn.t_sum);
	api_metrics(pr);
	for (mp = c->modules; mp != NULL && *mp != NULL; mp++)
		if ((*mp)->m_metrics != NULL)
			(*mp)->m_metrics(pr);
}

static void
monitor_metrics_get(struct api_req *r)
{
	struct prom	 pr;

	prom_open(&pr);
	monitor_write(ctl, &pr);
	prom_close(&pr);
	api_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8",
	    pr.pr_b, pr.pr_len);
	free(pr.pr_b);
}

const struct ctl_module monitor_module = {
	.m_name = "monitor",
	.m_init = monitor_init,
	.m_stop = monitor_stop,
	.m_routes = monitor_routes,
	.m_nroutes = nitems(monitor_routes),
};
