/*
 * national: the usage of a national-scale OPSN, written into a
 * controller's database as its rollups keep it, for tests/bench/
 * national.sh. October and November 2026 (Paris) for the members the
 * database already holds (every commune of France): VMs' hours
 * (usage_hourly), mailboxes' and sites' days (usage_daily), monthly
 * totals (usage_monthly, summed from those rows as the rollup keeps
 * them), and the owner of each resource (meter_resources).
 *
 *   national usage -v VMS -m MAILBOXES -s SITES DB
 *	Write the usage (once: the script caches the database).
 *   national late -n MEMBERS DB
 *	A rollup brings October usage that arrived after October was
 *	closed: a day of one mailbox each for MEMBERS members, stamped with
 *	a new change sequence as the rollup stamps what it changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"

static int64_t	*tenants;
static size_t	 ntenants;

static void
load_tenants(sqlite3 *db)
{
	sqlite3_stmt	*st = store_prepare(db, "SELECT id FROM tenants "
			    "ORDER BY id");

	while (sqlite3_step(st) == SQLITE_ROW) {
		tenants = xrealloc(tenants, (ntenants + 1) * sizeof(*tenants));
		tenants[ntenants++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (ntenants == 0)
		fatalx("no member in the database: import the communes first");
}

/* The owner of resource i of a kind: spread over the members. */
static int64_t
owner(long i, long prime)
{
	return (tenants[(size_t)((i * prime) % (long)ntenants)]);
}

static void
exec(sqlite3 *db, const char *sql)
{
	char	*cause = NULL;

	if (store_exec(db, sql, &cause) == -1)
		fatalx("%s: %s", sql, cause);
}

static void
vm_name(char *buf, size_t len, long i)
{
	snprintf(buf, len, "5e1f%04lx-0b1e-4c0a-9d2e-%012lx", i & 0xffff, i);
}

static void
mailbox_name(char *buf, size_t len, long i)
{
	snprintf(buf, len, "agent%ld@mairie-%ld.fr", i, i / 3);
}

static int
bench_usage(long vms, long mailboxes, long sites, const char *path)
{
	static const struct {
		const char	*metric;
		int64_t		 per_hour;
	} vmm[] = {
		{ "vcpu_seconds", 2 * 3600 },
		{ "memory_mib_seconds", 4096LL * 3600 },
		{ "disk_mib_seconds", 20480LL * 3600 },
		{ "disk_used_mib_seconds", 3072LL * 3600 },
		{ "cpu_ns", 900000000000LL },
		{ "net_rx_bytes", 50LL << 20 },
		{ "net_tx_bytes", 20LL << 20 },
	};
	sqlite3		*db;
	sqlite3_stmt	*st;
	char		*cause = NULL, res[96];
	int64_t		 first, end, h, day, next, len;
	long		 i, rows = 0;
	size_t		 m;
	double		 t0 = (double)util_mono_ms();

	if (store_open(path, &db, &cause) == -1)
		fatalx("%s", cause);
	load_tenants(db);
	exec(db, "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; "
	    "BEGIN; UPDATE meter_state SET quiet = 1, change_seq = 1");
	/*
	 * The communes were imported today: they joined before the months
	 * billed here, or no statement would be made for them.
	 */
	exec(db, "UPDATE tenants SET joined_on = '2026-01-01'");
	st = store_prepare(db, "INSERT INTO meter_resources (kind, resource, "
	    "tenant_id, first_seen) VALUES (?, ?, ?, 0)");
	for (i = 0; i < vms + mailboxes + sites; i++) {
		sqlite3_reset(st);
		if (i < vms) {
			vm_name(res, sizeof(res), i);
			sqlite3_bind_text(st, 1, "vm", -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, owner(i, 7919));
		} else if (i < vms + mailboxes) {
			mailbox_name(res, sizeof(res), i - vms);
			sqlite3_bind_text(st, 1, "mailbox", -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, owner(i - vms, 104729));
		} else {
			snprintf(res, sizeof(res), "www.site%ld.fr", i);
			sqlite3_bind_text(st, 1, "site", -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, owner(i, 15485863));
		}
		sqlite3_bind_text(st, 2, res, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			fatalx("meter_resources: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);

	first = calendar_midnight(2026, 10, 1);
	end = calendar_midnight(2026, 12, 1);
	/* VMs: every hour of the two months, seven metrics. */
	st = store_prepare(db, "INSERT INTO usage_hourly (tenant_id, hour, "
	    "kind, resource, metric, quantity) VALUES (?, ?, 'vm', ?, ?, ?)");
	for (h = first; h < end; h += 3600)
		for (i = 0; i < vms; i++) {
			vm_name(res, sizeof(res), i);
			for (m = 0; m < nitems(vmm); m++) {
				sqlite3_reset(st);
				sqlite3_bind_int64(st, 1, owner(i, 7919));
				sqlite3_bind_int64(st, 2, h);
				sqlite3_bind_text(st, 3, res, -1,
				    SQLITE_TRANSIENT);
				sqlite3_bind_text(st, 4, vmm[m].metric, -1,
				    SQLITE_STATIC);
				sqlite3_bind_int64(st, 5, vmm[m].per_hour);
				if (sqlite3_step(st) != SQLITE_DONE)
					fatalx("usage_hourly: %s",
					    sqlite3_errmsg(db));
				rows++;
			}
		}
	sqlite3_finalize(st);
	/* Mailboxes and sites: every local day (23 to 25 hours). */
	st = store_prepare(db, "INSERT INTO usage_daily (day, kind, resource, "
	    "metric, tenant_id, month, quantity) VALUES (?, ?, ?, ?, ?, ?, ?)");
	for (day = first; day < end; day = next) {
		next = calendar_day(day + 129600);
		len = next - day;
		for (i = 0; i < mailboxes + sites; i++) {
			int mbx = i < mailboxes;
			int64_t	mib = 200 + (i * 37) % 1800;

			if (mbx)
				mailbox_name(res, sizeof(res), i);
			else
				snprintf(res, sizeof(res), "www.site%ld.fr",
				    vms + i);
			for (m = 0; m < 2; m++) {
				sqlite3_reset(st);
				sqlite3_bind_int64(st, 1, day);
				sqlite3_bind_text(st, 2, mbx ? "mailbox" :
				    "site", -1, SQLITE_STATIC);
				sqlite3_bind_text(st, 3, res, -1,
				    SQLITE_TRANSIENT);
				sqlite3_bind_text(st, 4, mbx ? (m ?
				    "mailbox_mib_seconds" : "mailbox_seconds") :
				    (m ? "site_mib_seconds" : "site_seconds"),
				    -1, SQLITE_STATIC);
				sqlite3_bind_int64(st, 5, mbx ? owner(i,
				    104729) : owner(vms + i, 15485863));
				sqlite3_bind_int64(st, 6, calendar_month(day));
				sqlite3_bind_int64(st, 7, m ? mib * len : len);
				if (sqlite3_step(st) != SQLITE_DONE)
					fatalx("usage_daily: %s",
					    sqlite3_errmsg(db));
				rows++;
			}
		}
	}
	sqlite3_finalize(st);
	/* The totals the rollup would have kept. */
	exec(db, "INSERT INTO usage_monthly (month, tenant_id, kind, metric, "
	    "quantity, changed) SELECT month, tenant, kind, metric, sum(q), 1 "
	    "FROM (SELECT (SELECT month FROM usage_calendar WHERE day <= hour "
	    "ORDER BY day DESC LIMIT 1) AS month, coalesce(tenant_id, 0) AS "
	    "tenant, kind, metric, quantity AS q FROM usage_hourly UNION ALL "
	    "SELECT month, coalesce(tenant_id, 0), kind, metric, quantity FROM "
	    "usage_daily) GROUP BY month, tenant, kind, metric");
	exec(db, "UPDATE meter_state SET quiet = 0, change_seq = 2; COMMIT");
	printf("national: %ld usage rows (%ld VMs hourly, %ld mailboxes and %ld "
	    "sites daily, October and November 2026) for %zu members in "
	    "%.0f s\n", rows, vms, mailboxes, sites, ntenants,
	    ((double)util_mono_ms() - t0) / 1000);
	store_close(db);
	return (0);
}

static int
bench_late(long members, const char *path)
{
	sqlite3		*db;
	sqlite3_stmt	*st;
	char		*cause = NULL, res[96];
	int64_t		 day = calendar_midnight(2026, 10, 15);
	long		 i;

	if (store_open(path, &db, &cause) == -1)
		fatalx("%s", cause);
	load_tenants(db);
	exec(db, "BEGIN; UPDATE meter_state SET change_seq = change_seq + 1");
	st = store_prepare(db, "UPDATE usage_daily SET quantity = quantity + "
	    "3600 WHERE day = ? AND kind = 'mailbox' AND resource = ? AND "
	    "metric = 'mailbox_seconds'");
	for (i = 0; i < members; i++) {
		mailbox_name(res, sizeof(res), i * 97);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, day);
		sqlite3_bind_text(st, 2, res, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			fatalx("late usage: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	exec(db, "COMMIT");
	printf("national: late October usage for %ld members\n", members);
	store_close(db);
	return (0);
}

int
main(int argc, char **argv)
{
	long	 vms = 2000, mailboxes = 100000, sites = 1000, late = 100;
	char	*cause = NULL, *mode;
	int	 ch;

	if (argc < 2)
		goto usage;
	mode = argv[1];
	argc--;
	argv++;
	log_init("national", LOG_LEVEL_WARN, NULL);
	if (calendar_init("Europe/Paris", &cause) == -1)
		fatalx("%s", cause);
	while ((ch = getopt(argc, argv, "v:m:s:n:")) != -1) {
		switch (ch) {
		case 'v': vms = atol(optarg); break;
		case 'm': mailboxes = atol(optarg); break;
		case 's': sites = atol(optarg); break;
		case 'n': late = atol(optarg); break;
		default: goto usage;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1)
		goto usage;
	if (strcmp(mode, "usage") == 0)
		return (bench_usage(vms, mailboxes, sites, argv[0]));
	if (strcmp(mode, "late") == 0)
		return (bench_late(late, argv[0]));
usage:
	fprintf(stderr, "usage: national usage [-v VMS] [-m MAILBOXES] "
	    "[-s SITES] DB\n       national late [-n MEMBERS] DB\n");
	return (2);
}
