/*
 * Metering in the controller: samples in (deduplicated, committed, then
 * acknowledged), hourly rollups out (usage_hourly), the usage API and the
 * Prometheus metrics. The pure parts (rollup arithmetic, units, CSV cells,
 * the operator's calendar) are here for the unit tests.
 */
#ifndef OPSN_METERING_H
#define OPSN_METERING_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "http/http.h"

#define METER_HOUR		3600
#define METER_HOUR_MS		(3600 * 1000LL)
#define METER_INTERVAL_DEFAULT_MS 60000
#define METER_MIB		(1024 * 1024LL)
#define METER_BOOT_MAX		64
#define METER_RESOURCE_MAX	255
/*
 * Hours within a day after the frozen mark (meter_state.frozen_ms: raw
 * samples before it may be gone) are not recomputed either: a sample
 * retention dropped could still have counted in them.
 */
#define METER_FROZEN_MARGIN_MS	(86400 * 1000LL)

/* libvirt's VIR_DOMAIN_RUNNING: vCPU and memory are billed in it only. */
#define METER_STATE_RUNNING	1

/* One sample as the rollup reads it back. */
struct meter_sample {
	int64_t	 ms_id;			/* samples.id (0 in tests) */
	int64_t	 ms_ts;			/* unix ms */
	int64_t	 ms_node;
	int	 ms_state;
	char	 ms_boot[METER_BOOT_MAX + 1];
	int64_t	 ms_boot_started;	/* unix ms, 0 unknown */
	int64_t	 ms_vcpus;
	int64_t	 ms_memory_mib;
	int64_t	 ms_disk_mib;
	int64_t	 ms_disk_used_mib;
	int	 ms_has_cpu, ms_has_net, ms_has_used;
	int64_t	 ms_cpu_ns, ms_net_rx, ms_net_tx, ms_used_bytes;
	int64_t	 ms_interval;		/* ms; 0 = the default */
};

/* One computed rollup row. */
struct meter_row {
	int64_t		 mr_hour;	/* unix seconds of the hour's start */
	const char	*mr_metric;	/* static string */
	int64_t		 mr_quantity;
};

/*
 * Compute the usage of one resource of kind for the hours h0..h1 (hour
 * starts, unix seconds, inclusive) from its samples sorted by time. The
 * array must hold every sample in [h0, h1 + 1h), the last sample before
 * h0 and the first one from h1 + 1h on (when they exist), and for each
 * (node, boot) seen in the range its last sample before h0. Rows with a
 * zero quantity are left out. *rows is the caller's (free()).
 */
int	 metering_rollup_compute(const char *kind,
	    const struct meter_sample *, size_t n, int64_t h0, int64_t h1,
	    struct meter_row **rows, size_t *nrows);

/* The metrics of a kind, NULL-terminated; NULL for an unknown kind. */
const char *const *metering_metrics(const char *kind);

/* Display unit of a metric: its name and the divisor from base units. */
struct meter_unit {
	const char	*mu_metric;
	const char	*mu_base;	/* base unit, e.g. "vCPU-second" */
	const char	*mu_display;	/* e.g. "vCPU-hour" */
	int64_t		 mu_divisor;
	int		 mu_decimals;
};
const struct meter_unit *metering_unit(const char *metric);
/*
 * quantity / divisor with `decimals` digits, rounded half up, with the
 * decimal mark given; integer arithmetic only. Into buf.
 */
void	 metering_decimal(int64_t quantity, int64_t divisor, int decimals,
	    char mark, char *buf, size_t len);

/* Append one CSV cell (quoted when needed, formulas defused) to *buf. */
void	 metering_csv_cell(char **buf, size_t *len, size_t *cap,
	    const char *cell, char sep, int text);

/* metering.c: counters since start, for /metrics. */
struct meter_stats {
	uint64_t	ms_ingested;	/* new samples committed */
	uint64_t	ms_duplicates;	/* resent samples ignored */
	uint64_t	ms_rejected;	/* impossible times and counters */
	uint64_t	ms_foreign;	/* not placed on the reporting node */
	uint64_t	ms_batches, ms_bad_batches, ms_commits;
	uint64_t	ms_rolled, ms_rounds, ms_retained;
	uint64_t	ms_commit_failures;	/* nothing acknowledged */
	int64_t		ms_last_round;		/* unix s of the last rollup */
};
extern struct meter_stats	meter_stats;
struct prom;
/* Each node's spool figures (ingest.c), for metering_prom(). */
void	 metering_node_metrics(struct prom *);

/* metering_rollup.c: one round over the samples not rolled up yet. */
struct meter_round;
/* Read and compute on conn (a read connection); at most max_samples new. */
struct meter_round *metering_round_compute(sqlite3 *, int64_t max_samples,
	    char **cause);
/* Write a computed round in one transaction on the write connection. */
int	 metering_round_write(sqlite3 *, struct meter_round *, char **cause);
int64_t	 metering_round_samples(const struct meter_round *);
int64_t	 metering_round_resources(const struct meter_round *);
void	 metering_round_free(struct meter_round *);

/*
 * metering/usage.c: the usage rows of [from, to) as the text of a SELECT
 * (caller frees) giving (tid, period, kind, res, metric, q): tid 0 for the
 * platform; period 0, a local day or month start by what by asks; res ''
 * unless per resource. Bind ?1 from, ?2 to, ?3 tenant (>0: that member,
 * -1: the platform, 0: all), ?4 *m1 and ?5 *m2 (the whole months it
 * reads from the monthly totals: [m1, m2), empty when m1 == m2). Billing
 * sums a statement's usage with it.
 */
enum meter_by { METER_BY_TOTAL, METER_BY_MONTH, METER_BY_DAY,
	METER_BY_RESOURCE };
char	*metering_usage_sql(enum meter_by, int64_t tenant, int64_t from,
	    int64_t to, int64_t *m1, int64_t *m2);

/* The module (metering.c) and what its files give it. */
struct ctl;
extern const struct ctl_module metering_module;
#define METERING_NROUTES	1
extern const struct api_route metering_routes[METERING_NROUTES];
int	metering_init(struct ctl *, char **cause);
void	metering_agent_msg(int64_t node_id, uint16_t type, const uint8_t *,
	    size_t);
void	metering_agent_hello(int64_t node_id, const char *roles);
void	metering_agent_gone(int64_t node_id);
void	metering_prom(struct prom *);

#endif
