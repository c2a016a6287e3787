/* opsn-controller: tracks nodes, tenants and services; serves the API. */
#include <sys/stat.h>

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/config.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "access/access.h"
#include "backup/backup.h"
#include "agents/agents.h"
#include "billing/billing.h"
#include "compute/compute.h"
#include "members/members.h"
#include "metering/metering.h"
#include "monitor/monitor.h"
#include "services/services.h"
#include "console/console.h"

/*
 * The controller's modules, in start order: each one's init runs before
 * the API and the agent listener open, and its stop in reverse order.
 */
static const struct ctl_module *const ctl_modules[] = {
	&audit_module,
	&members_module,
	&access_module,
	&agents_module,
	&compute_module,
	&services_module,
	&metering_module,
	&billing_module,
	&monitor_module,
	&backup_module,
	/* Last: its pages' addresses match only what no other route does. */
	&console_module,
	NULL
};



#define C(field) offsetof(struct ctl_conf, field)
static const struct cfg_option ctl_opts[] = {
	{ "controller", "data_dir", CFG_STRING, C(data_dir),
	  "/var/lib/opsn/controller", 0, 0, NULL, 0, "data-dir",
	  "folder for the database, CA and tokens" },
	{ "controller", "api_listen", CFG_STRING, C(api_listen),
	  "127.0.0.1:8443", 0, 0, NULL, 0, "api-listen",
	  "HTTPS API address:port" },
	{ "controller", "agent_listen", CFG_STRING, C(agent_listen),
	  "0.0.0.0:8444", 0, 0, NULL, 0, "agent-listen",
	  "agent protocol address:port" },
	{ "controller", "server_names", CFG_STRING, C(server_names),
	  "", 0, 0, NULL, 0, "server-names",
	  "names in the server certificate (default: host name, localhost, "
	  "127.0.0.1, ::1)" },
	{ "controller", "api_url", CFG_STRING, C(api_url), "", 0, 0, NULL, 0,
	  "api-url", "the API's URL as agents reach it (default: "
	  "https://api_listen, with the host name for 0.0.0.0)" },
	{ "controller", "unreachable_timeout", CFG_DURATION, C(unreachable_ms),
	  "30s", 500, 3600000, NULL, 0, "unreachable-timeout",
	  "silence after which a node is unreachable" },
	{ "controller", "heartbeat_interval", CFG_DURATION, C(heartbeat_ms),
	  "10s", 100, 600000, NULL, 0, "heartbeat-interval",
	  "how often agents send heartbeats" },
	{ "controller", "node_token_ttl", CFG_DURATION, C(node_token_ttl_ms),
	  "1h", 60000, 2592000000LL, NULL, 0, NULL,
	  "default lifetime of a join token" },
	{ "controller", "min_free_mib", CFG_INT, C(min_free_mib),
	  "64", 0, 1048576, NULL, 0, NULL,
	  "MiB kept free in the data folder: below it, writes are refused "
	  "(HTTP 507) and samples are not acknowledged" },
	{ "controller", "max_agents", CFG_INT, C(max_agents),
	  "10000", 1, 1000000, NULL, 0, NULL,
	  "most agent connections at once" },
	{ "operator", "tz", CFG_STRING, C(tz), "Europe/Paris", 0, 0, NULL, 0,
	  "tz", "the operator's time zone: usage days and billing periods "
	  "start at its local midnight (Europe/Paris, Indian/Reunion, "
	  "America/Cayenne...)" },
	/* The name of the first release, still read. */
	{ "billing", "tz", CFG_STRING, C(tz), NULL, 0, 0, NULL, 0, NULL,
	  "former name of [operator] tz" },
	{ "metering", "raw_retention", CFG_DURATION, C(meter_raw_retention_ms),
	  "35d", 3600000, 3650LL * 86400000, NULL, 0, NULL,
	  "how long raw samples are kept once rolled up" },
	{ "metering", "hourly_retention", CFG_DURATION,
	  C(meter_hourly_retention_ms), "0", 0, 36500LL * 86400000, NULL, 0,
	  NULL, "how long VMs' hourly usage is kept (0: for ever); monthly "
	  "totals and mailboxes' and sites' days are always kept" },
	{ "metering", "rollup_interval", CFG_DURATION, C(meter_rollup_ms),
	  "60s", 100, 3600000, NULL, 0, NULL,
	  "how often hourly usage is brought up to date" },
	{ "services", "mail_retention", CFG_DURATION, C(mail_retention_ms),
	  "30d", 0, 3650LL * 86400000, NULL, 0, NULL,
	  "how long a deleted mailbox (and its mail) can be restored" },
	{ "console", "dir", CFG_STRING, C(console_dir), "", 0, 0, NULL, 0,
	  "console-dir", "the web console's files (default: the console "
	  "folder beside the program's, or the installed one)" },
	{ "console", "idle_timeout", CFG_DURATION, C(console_idle_ms), "30m",
	  60000, 86400000, NULL, 0, NULL,
	  "a console session ends after this long without a request" },
	{ "console", "session_lifetime", CFG_DURATION, C(console_lifetime_ms),
	  "12h", 300000, 7LL * 86400000, NULL, 0, NULL,
	  "a console session ends this long after its login in any case" },
	{ "console", "require_totp", CFG_BOOL, C(console_require_totp), "no",
	  0, 0, NULL, 0, NULL,
	  "admin accounts must log in with a one-time code (TOTP)" },
	{ "accounting", "siret", CFG_STRING, C(acc_siret), "", 0, 0, NULL, 0,
	  NULL, "the OPSN's SIRET: IdColl of its titres de recettes" },
	{ "accounting", "poste", CFG_STRING, C(acc_poste), "", 0, 0, NULL, 0,
	  NULL, "codique of the public accountant's poste (IdPost)" },
	{ "accounting", "poste_label", CFG_STRING, C(acc_poste_label), "", 0,
	  0, NULL, 0, NULL, "the poste's short label (LibellePoste)" },
	{ "accounting", "collectivity", CFG_STRING, C(acc_collectivity), "", 0,
	  0, NULL, 0, NULL, "collectivity code in Hélios (CodCol, 3 digits)" },
	{ "accounting", "budget", CFG_STRING, C(acc_budget), "", 0, 0, NULL,
	  0, NULL, "budget code in Hélios (CodBud, 2 characters)" },
	{ "accounting", "budget_label", CFG_STRING, C(acc_budget_label), "",
	  0, 0, NULL, 0, NULL, "the budget's label (LibelleColBud)" },
	{ "accounting", "products", CFG_STRING, C(acc_products), "", 0, 0,
	  NULL, 0, NULL, "product code and revenue account of statement "
	  "lines: KEY=PRODUCT:NATURE ..., KEY a metric, service, line type "
	  "or *" },
	{ "accounting", "lines", CFG_ENUM, C(acc_lines), "service", 0, 0,
	  "service|statement", 0, NULL, "one titre line per service, or per "
	  "statement line" },
	{ "accounting", "fonction", CFG_STRING, C(acc_fonction), "", 0, 0,
	  NULL, 0, NULL, "functional account of titre lines (Fonction, M57), "
	  "if any" },
	{ "accounting", "object", CFG_STRING, C(acc_object),
	  "Services num\xc3\xa9riques", 0, 0, NULL, 0, NULL,
	  "what a titre is for, before the period (ObjPce)" },
	{ "accounting", "signed", CFG_BOOL, C(acc_signed), "yes", 0, 0, NULL,
	  0, NULL, "bordereaux are signed in a parapheur before they are "
	  "sent (InfoDematerialisee)" },
	{ "accounting", "first_bordereau", CFG_INT, C(acc_first_bordereau),
	  "1", 1, 9999999, NULL, 0, NULL, "number of a fiscal year's first "
	  "bordereau of each type" },
	{ "accounting", "first_titre", CFG_INT, C(acc_first_titre), "1", 1,
	  99999999, NULL, 0, NULL, "number of a fiscal year's first titre" },
	{ "audit", "checkpoint_interval", CFG_DURATION,
	  C(audit_checkpoint_ms), "15m", 1000, 7LL * 86400000, NULL, 0, NULL,
	  "how often the audit trail's head is signed (when it moved)" },
	{ "api", "max_body", CFG_INT, C(api_max_body), "1048576", 4096,
	  64 << 20, NULL, 0, NULL,
	  "bytes in one request's body; larger ones come in parts" },
	{ "api", "max_connections", CFG_INT, C(api_max_conns), "1024", 1,
	  1000000, NULL, 0, NULL,
	  "API connections at once; more are closed on arrival" },
	{ "api", "max_buffered", CFG_INT, C(api_max_buffered), "16777216",
	  1 << 20, (int64_t)1 << 40, NULL, 0, NULL,
	  "bytes of request bodies being read, all connections together; "
	  "past it the connections holding the most are cut" },
	{ "api", "handshake_timeout", CFG_DURATION, C(api_handshake_ms),
	  "10s", 100, 300000, NULL, 0, NULL,
	  "time for a client to finish its TLS handshake" },
	{ "api", "request_timeout", CFG_DURATION, C(api_request_ms),
	  "30s", 100, 3600000, NULL, 0, NULL,
	  "time for a request's head and body to arrive, and for a kept-alive "
	  "connection to send its next request" },
	{ "api", "rate", CFG_INT, C(api_rate), "20", 0, 1000000, NULL, 0,
	  NULL, "requests a second per token (0: no limit)" },
	{ "api", "burst", CFG_INT, C(api_burst), "200", 1, 1000000, NULL, 0,
	  NULL, "requests a token may make at once before its rate applies" },
	{ "scheduler", "policy", CFG_ENUM, C(sched_policy), "spread", 0, 0,
	  "spread|pack", 0, NULL, "where new VMs go: spread (balance free "
	  "memory and vCPUs) or pack (the fullest node that fits)" },
	{ "log", "level", CFG_ENUM, C(log_level), "info", 0, 0,
	  "error|warning|notice|info|debug", 0, "log-level", "log level" },
	{ "log", "file", CFG_STRING, C(log_file), "", 0, 0, NULL, 0,
	  "log-file", "log to this file instead of stderr" },
};
#undef C
static const struct cfg_table ctl_table = { ctl_opts, nitems(ctl_opts) };

static uv_signal_t	sig_int, sig_term, sig_hup;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: opsn-controller [-dnhV] [-c FILE] [--OPTION "
	    "VALUE ...]\n       opsn-controller --restore BACKUP [-c FILE] "
	    "--data-dir DIR\n  -c FILE  configuration file\n  -d       "
	    "foreground, debug logging\n  -n       check the configuration "
	    "and exit\n  --restore BACKUP  restore a backup into an empty "
	    "data folder, then exit\n");
	cfg_usage(&ctl_table, stderr);
	exit(2);
}

static void
ctl_modules_stop(void)
{
	size_t	 i;

	for (i = nitems(ctl_modules) - 1; i-- > 0; )
		if (ctl_modules[i]->m_stop != NULL)
			ctl_modules[i]->m_stop();
}

/*
 * Give the heap's free pages back to the system. glibc returns only the
 * top of an arena by itself; the pages of freed blocks between blocks
 * still in use (agent sessions come and go, replies are built and
 * freed) stay resident, and RSS creeps up while the memory in use is
 * flat (the soak measured 16.7 MB in use at minutes 2 and 6, RSS 3 MB
 * higher). malloc_trim(0) also releases those (madvise), in well under
 * a millisecond for the controller's heap.
 */
#define CTL_TRIM_MS	60000
/*
 * Pages in a cache's block, at most. Every cache takes one, also the
 * one of each temporary b-tree a statement opens (a DELETE with triggers,
 * RETURNING, some sorts): under the mmap threshold (256 KiB, below), the
 * block comes from the heap and is reused; past it (128 pages), each such
 * statement mapped, faulted in and unmapped half a MiB, and a month of
 * statements took 83 s instead of 4.
 */
#define CTL_PCACHE_PAGES	32
#define CTL_MMAP_THRESHOLD	(256 * 1024)
/* A 4 KiB page and its header (SQLITE_CONFIG_PCACHE_HDRSZ: 264 B). */
_Static_assert(CTL_PCACHE_PAGES * 5120 < CTL_MMAP_THRESHOLD,
    "a page cache's block must come from the heap, not a mapping");
static uv_timer_t	 trim_timer;

static void
ctl_trim_cb(uv_timer_t *t)
{
	malloc_trim(0);
}

static void
ctl_signal_cb(uv_signal_t *h, int signum)
{
	if (signum == SIGHUP) {
		log_reopen();
		return;
	}
	log_notice("controller: stopping on signal %d", signum);
	ctl_modules_stop();
	api_stop();
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&trim_timer, NULL);
	uv_stop(h->loop);
}

/* The test suite narrows or widens the range (test builds only). */
static void
ctl_proto_range(struct ctl *c)
{
#ifdef OPSN_TEST_BUILD
	const char	*s = getenv("OPSN_TEST_PROTO_RANGE");
#else
	const char	*s = NULL;
#endif
	unsigned	 lo, hi;

	c->proto_min = OPSN_PROTO_MIN;
	c->proto_max = OPSN_PROTO_MAX;
	if (s != NULL && sscanf(s, "%u-%u", &lo, &hi) == 2 && lo <= hi) {
		c->proto_min = lo;
		c->proto_max = hi;
		log_notice("controller: protocol range %u-%u (test)", lo, hi);
	}
}

/*
 * --restore FILE is an action, not a setting: taken out of argv before
 * the table's options are parsed (the configuration file cannot hold it).
 */
static const char *
ctl_take_restore(int *argc, char **argv)
{
	const char	*file = NULL;
	int		 i, j;

	for (i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--restore") == 0 && i + 1 < *argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--restore=", 10) == 0)
			file = argv[i] + 10;
		else
			continue;
		j = strcmp(argv[i], "--restore") == 0 ? 2 : 1;
		memmove(&argv[i], &argv[i + j], (size_t)(*argc - i - j + 1) *
		    sizeof(*argv));
		*argc -= j;
		i--;
	}
	return (file);
}

static void
ctl_shortopt(int ch, const char *arg, void *data)
{
	struct { const char *conffile; int debug, check; } *o = data;

	switch (ch) {
	case 'c':
		o->conffile = arg;
		break;
	case 'd':
		o->debug = 1;
		break;
	case 'n':
		o->check = 1;
		break;
	case 'V':
		printf("opsn-controller %s\n", OPSN_VERSION);
		exit(0);
	default:
		usage();
	}
}

int
main(int argc, char **argv)
{
	struct { const char *conffile; int debug, check; } o = { NULL, 0, 0 };
	struct cfg_args	 args;
	const char	*restore;
	struct ctl	 c;
	const struct ctl_module *const *mp;
	char		*cause = NULL, *dbpath, *host;
	int		 port;
	enum log_level	 lvl = LOG_LEVEL_INFO;

	/*
	 * A long-running program with a thread pool: glibc would give every
	 * pool thread an arena of its own, each keeping the memory it freed.
	 * Two arenas, and the free pages given back every minute
	 * (ctl_trim_cb), keep RSS near what is in use.
	 */
	mallopt(M_ARENA_MAX, 2);
	/*
	 * SQLite's allocation statistics take a global mutex at every
	 * malloc and free: the pool's readers queued on it (a fifth of a
	 * usage query's time under load). Nothing reads them.
	 */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/*
	 * A connection's page cache in one block of its own, taken at its
	 * first page and kept: a kept reader's whole cache
	 * (STORE_READER_CACHE_KIB), the first CTL_PCACHE_PAGES of the
	 * writer's, rather than a malloc and a free of 4 KiB per page. A
	 * reader drops its pages at nearly every job; from the heap, that
	 * churn interleaved pages with replies and sessions, and the heap
	 * crept up a few hundred KiB a minute in the soak while the memory
	 * in use stayed flat. The blocks stay under the mmap threshold
	 * (CTL_PCACHE_PAGES): taken from the heap once, and reused.
	 */
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, CTL_PCACHE_PAGES);
	memset(&c, 0, sizeof(c));
	ctl = &c;
	restore = ctl_take_restore(&argc, argv);
	if (cfg_getopt(&ctl_table, argc, argv, "c:dnhV", ctl_shortopt, &o,
	    &args) != argc)
		usage();
	log_init("opsn-controller", o.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
	    NULL);

	cfg_defaults(&ctl_table, &c.conf);
	if (o.conffile != NULL && cfg_load(&ctl_table, &c.conf, o.conffile,
	    &cause) == -1)
		fatalx("%s", cause);
	if (cfg_apply_args(&ctl_table, &c.conf, &args, &cause) == -1)
		fatalx("%s", cause);
	if (util_parse_hostport(c.conf.api_listen, &host, &port, &cause) == -1)
		fatalx("api_listen: %s", cause);
	free(host);
	if (util_parse_hostport(c.conf.agent_listen, &host, &port,
	    &cause) == -1)
		fatalx("agent_listen: %s", cause);
	free(host);
	if (o.check) {
		printf("configuration OK%s%s\n", o.conffile ? ": " : "",
		    o.conffile ? o.conffile : "");
		cfg_free(&ctl_table, &c.conf);
		return (0);
	}
	if (!o.debug && log_level_parse(c.conf.log_level, &lvl) == 0)
		log_set_level(lvl);
	if (*c.conf.log_file != '\0' && log_init("opsn-controller", o.debug ?
	    LOG_LEVEL_DEBUG : lvl, c.conf.log_file) == -1)
		fatal("log file %s", c.conf.log_file);

	signal(SIGPIPE, SIG_IGN);
	/*
	 * h2o's input buffers past 256 KiB (request bodies) get their own
	 * mappings, given back whole when a connection closes, rather than
	 * heap memory the next flood of bodies fragments (glibc raises its
	 * threshold after each such free otherwise).
	 */
	mallopt(M_MMAP_THRESHOLD, CTL_MMAP_THRESHOLD);
	/*
	 * Nor is the top of the heap given back at every free past 128 KiB:
	 * SQLite's statement journals (64 KiB chunks, one or two a write)
	 * made a statement generation spend a fifth of its time in brk().
	 * Not 8 MiB either: what a burst freed there stays resident till
	 * the next trim (ctl_trim_cb), and the soak saw that top reach
	 * 1.7 MiB between trims, as much as its whole 5 % of RSS.
	 */
	mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
	umask(027);
	c.conffile = o.conffile;
	c.modules = ctl_modules;
	if (restore != NULL) {
		if (backup_restore(&c, restore, &cause) == -1)
			fatalx("restore: %s", cause);
		cfg_free(&ctl_table, &c.conf);
		return (0);
	}
	if (util_mkdirs(c.conf.data_dir, 0750, &cause) == -1)
		fatalx("data folder: %s", cause);
	/*
	 * Before any thread: the calendar reads the zone with TZ set. Before
	 * the store too: migrations and the usage rollups use its days.
	 */
	if (calendar_init(c.conf.tz, &cause) == -1)
		fatalx("[operator] tz: %s", cause);
	xasprintf(&dbpath, "%s/opsn.db", c.conf.data_dir);
	if (store_open(dbpath, &c.db, &cause) == -1)
		fatalx("store: %s", cause);
	free(dbpath);
	if (store_epoch(c.db, &c.epoch) == -1)
		fatalx("store: reading the epoch: %s", sqlite3_errmsg(c.db));
	if (ca_init(&c, &cause) == -1)
		fatalx("ca: %s", cause);
	ctl_proto_range(&c);

	c.loop = uv_default_loop();
	for (mp = ctl_modules; *mp != NULL; mp++)
		if ((*mp)->m_init != NULL && (*mp)->m_init(&c, &cause) == -1)
			fatalx("%s: %s", (*mp)->m_name, cause);
	/* From here on, writes on the loop share commits (store_begin). */
	store_group_start(c.db, c.loop);
	/* A group waits for more writes where API clients wait for it. */
	store_group_wait(STORE_GROUP_TURNS, STORE_GROUP_YOUNG_NS,
	    api_held_writes);
	if (router_start(&c, &cause) == -1)
		fatalx("api: %s", cause);

	uv_signal_init(c.loop, &sig_int);
	uv_signal_init(c.loop, &sig_term);
	uv_signal_init(c.loop, &sig_hup);
	uv_signal_start(&sig_int, ctl_signal_cb, SIGINT);
	uv_signal_start(&sig_term, ctl_signal_cb, SIGTERM);
	uv_signal_start(&sig_hup, ctl_signal_cb, SIGHUP);
	uv_timer_init(c.loop, &trim_timer);
	uv_timer_start(&trim_timer, ctl_trim_cb, CTL_TRIM_MS, CTL_TRIM_MS);
	log_notice("controller: started (version %s, data in %s)",
	    OPSN_VERSION, c.conf.data_dir);

	uv_run(c.loop, UV_RUN_DEFAULT);
	/* Let connections finish their close callbacks. */
	uv_run(c.loop, UV_RUN_NOWAIT);
	store_close(c.db);
	ca_free(&c);
	cfg_free(&ctl_table, &c.conf);
	log_notice("controller: stopped");
	return (0);
}
