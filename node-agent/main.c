/* opsn-agent: runs on hypervisors and mail/web backends for the controller. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "opsn/config.h"
#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"

struct agent	*agent;

#define A(field) offsetof(struct agent_conf, field)
static const struct cfg_option agent_opts[] = {
	{ "agent", "data_dir", CFG_STRING, A(data_dir), "/var/lib/opsn/agent",
	  0, 0, NULL, 0, "data-dir", "folder for the key, certificates and "
	  "spool" },
	{ "agent", "name", CFG_STRING, A(name), NULL, 0, 0, NULL, 0, "name",
	  "node name (default: the host name)" },
	{ "agent", "controller", CFG_STRING, A(controllers), NULL, 0, 0, NULL,
	  0, "controller", "controller ADDR:PORT[,ADDR:PORT...]" },
	{ "agent", "join_token", CFG_STRING, A(join_token), NULL, 0, 0, NULL,
	  1, "join-token", "one-time token from 'opsnctl node token'" },
	{ "agent", "ca", CFG_STRING, A(ca_file), NULL, 0, 0, NULL, 0, "ca",
	  "the controller's CA certificate (else pinned by the token)" },
	{ "agent", "role", CFG_ENUM, A(role), "hypervisor", 0, 0,
	  "hypervisor|mail|web", 0, "role", "hypervisor, mail or web" },
	{ "agent", "reconnect_min", CFG_DURATION, A(reconnect_min_ms), "500ms",
	  10, 60000, NULL, 0, NULL, "first reconnect delay" },
	{ "agent", "reconnect_max", CFG_DURATION, A(reconnect_max_ms), "30s",
	  100, 3600000, NULL, 0, "reconnect-max", "longest reconnect delay" },
	{ "hypervisor", "libvirt_uri", CFG_STRING, A(libvirt_uri),
	  "qemu:///system", 0, 0, NULL, 0, "libvirt-uri", "libvirt URI" },
	{ "hypervisor", "virt_type", CFG_ENUM, A(virt_type), "auto", 0, 0,
	  "kvm|qemu|auto", 0, "virt-type", "domain type: kvm, qemu or auto" },
	{ "hypervisor", "pool_dir", CFG_STRING, A(pool_dir), "", 0, 0, NULL, 0,
	  "pool-dir", "libvirt storage pool folder (default "
	  "/var/lib/libvirt/images/opsn-NAME)" },
	{ "hypervisor", "resync_interval", CFG_DURATION, A(resync_ms), "60s",
	  1000, 86400000, NULL, 0, "resync-interval",
	  "how often the agent compares libvirt with the desired state" },
	{ "hypervisor", "disk_listen", CFG_STRING, A(disk_listen),
	  "0.0.0.0:0", 0, 0, NULL, 0, "disk-listen",
	  "where other hypervisors fetch disks during migrations (port 0: "
	  "any free port, announced to the controller; set one when a "
	  "firewall sits between hypervisors)" },
	{ "metering", "sample_interval", CFG_DURATION, A(sample_interval_ms),
	  "60s", 100, 3600000, NULL, 0, "sample-interval",
	  "how often usage is sampled" },
	{ "metering", "spool_max_samples", CFG_INT, A(spool_max_samples),
	  "1000000", 100, 1000000000, NULL, 0, NULL,
	  "most unacknowledged samples the spool keeps" },
	{ "metering", "spool_max_mib", CFG_INT, A(spool_max_mib), "512", 1,
	  1048576, NULL, 0, NULL, "largest spool, in MiB" },
	{ "mail", "mail_dir", CFG_STRING, A(mail_dir), "", 0, 0, NULL, 0,
	  "mail-dir", "maildirs and lookup tables (default DATA_DIR/mail)" },
	{ "mail", "mail_owner", CFG_STRING, A(mail_owner), "vmail", 0, 0, NULL,
	  0, "mail-owner", "user owning the maildirs (Dovecot's mail_uid)" },
	{ "mail", "postfix_dir", CFG_STRING, A(postfix_dir), "/etc/postfix", 0,
	  0, NULL, 0, "postfix-dir", "Postfix configuration folder" },
	{ "mail", "dovecot_conf", CFG_STRING, A(dovecot_conf),
	  "/etc/dovecot/dovecot.conf", 0, 0, NULL, 0, "dovecot-conf",
	  "Dovecot configuration file" },
	{ "mail", "postfix_bin", CFG_STRING, A(postfix_bin),
	  "/usr/sbin/postfix", 0, 0, NULL, 0, "postfix-bin", "the postfix command" },
	{ "mail", "doveadm_bin", CFG_STRING, A(doveadm_bin),
	  "/usr/bin/doveadm", 0, 0, NULL, 0, "doveadm-bin", "the doveadm command" },
	{ "web", "web_root", CFG_STRING, A(web_root), "", 0, 0, NULL, 0,
	  "web-root", "sites' files, HOST/htdocs (default DATA_DIR/web)" },
	{ "web", "listen", CFG_STRING, A(web_listen), "80", 0, 0, NULL, 0,
	  "web-listen", "nginx listen addresses for the sites, comma separated" },
	{ "web", "pages", CFG_STRING, A(web_pages), "/etc/opsn/web", 0, 0,
	  NULL, 0, "web-pages", "folder with placeholder.html and "
	  "suspended.html (built-in pages when absent)" },
	{ "web", "nginx_bin", CFG_STRING, A(nginx_bin), "/usr/sbin/nginx", 0,
	  0, NULL, 0, "nginx-bin", "the nginx command" },
	{ "web", "nginx_prefix", CFG_STRING, A(nginx_prefix), "", 0, 0, NULL,
	  0, "nginx-prefix", "nginx -p PREFIX (default: nginx's own)" },
	{ "web", "nginx_conf", CFG_STRING, A(nginx_conf),
	  "/etc/nginx/nginx.conf", 0, 0, NULL, 0, "nginx-conf",
	  "nginx configuration file" },
	{ "web", "nginx_confd", CFG_STRING, A(nginx_confd), "", 0, 0, NULL, 0,
	  "nginx-confd", "folder of the sites' server blocks, included by "
	  "nginx.conf (default DATA_DIR/nginx.d)" },
	{ "web", "listen_tls", CFG_STRING, A(web_listen_tls), "443", 0, 0,
	  NULL, 0, "web-listen-tls", "nginx listen addresses for HTTPS, "
	  "comma separated" },
	{ "mail", "tls_cert", CFG_STRING, A(mail_tls_cert), "", 0, 0, NULL, 0,
	  "mail-tls-cert", "certificate chain for the mail host name (default: "
	  "by ACME)" },
	{ "mail", "tls_key", CFG_STRING, A(mail_tls_key), "", 0, 0, NULL, 0,
	  "mail-tls-key", "its private key" },
	{ "mail", "dkim_dir", CFG_STRING, A(dkim_dir), "", 0, 0, NULL, 0,
	  "dkim-dir", "OpenDKIM's KeyTable, SigningTable and keys (default "
	  "DATA_DIR/dkim)" },
	{ "mail", "dkim_user", CFG_STRING, A(dkim_user), "opendkim", 0, 0, NULL,
	  0, "dkim-user", "user OpenDKIM runs as (owns the keys; root if it "
	  "does not exist)" },
	{ "mail", "opendkim_pid", CFG_STRING, A(opendkim_pid),
	  "/run/opendkim/opendkim.pid", 0, 0, NULL, 0, "opendkim-pid",
	  "OpenDKIM's pid file (SIGUSR1 reloads its tables)" },
	{ "tls", "dir", CFG_STRING, A(tls_dir), "", 0, 0, NULL, 0, "tls-dir",
	  "certificates, keys and the ACME account (default DATA_DIR/tls)" },
	{ "acme", "directory", CFG_STRING, A(acme_directory),
	  "https://acme-v02.api.letsencrypt.org/directory", 0, 0, NULL, 0,
	  "acme-directory", "ACME directory URL, or off" },
	{ "acme", "email", CFG_STRING, A(acme_email), "", 0, 0, NULL, 0,
	  "acme-email", "ACME account contact e-mail" },
	{ "acme", "client", CFG_STRING, A(acme_client), "/usr/bin/uacme", 0, 0,
	  NULL, 0, "acme-client", "the uacme command" },
	{ "acme", "webroot", CFG_STRING, A(acme_webroot), "", 0, 0, NULL, 0,
	  "acme-webroot", "folder served at /.well-known/acme-challenge/ on "
	  "port 80 (web: WEB_ROOT/.opsn/acme; mail: MAIL_DIR/.acme)" },
	{ "acme", "retry_min", CFG_DURATION, A(acme_retry_min_ms), "5m", 100,
	  86400000, NULL, 0, "acme-retry-min", "wait after a first failure; "
	  "doubled at each one" },
	{ "acme", "retry_max", CFG_DURATION, A(acme_retry_max_ms), "1d", 100,
	  604800000, NULL, 0, "acme-retry-max", "longest wait between tries" },
	{ "log", "level", CFG_ENUM, A(log_level), "info", 0, 0,
	  "error|warning|notice|info|debug", 0, "log-level", "log level" },
	{ "log", "file", CFG_STRING, A(log_file), "", 0, 0, NULL, 0,
	  "log-file", "log to this file instead of stderr" },
};
#undef A
static const struct cfg_table agent_table = { agent_opts, nitems(agent_opts) };

struct agent_flags {
	const char	*conffile;
	int		 debug, check;
};

static uv_signal_t	sig_int, sig_term, sig_hup;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: opsn-agent [-dnhV] [-c FILE] [--OPTION VALUE "
	    "...]\n  -c FILE  configuration file\n  -d       foreground, debug "
	    "logging\n  -n       check the configuration and exit\n");
	cfg_usage(&agent_table, stderr);
	exit(2);
}

static void
agent_shortopt(int ch, const char *arg, void *data)
{
	struct agent_flags	*f = data;

	switch (ch) {
	case 'c':
		f->conffile = arg;
		break;
	case 'd':
		f->debug = 1;
		break;
	case 'n':
		f->check = 1;
		break;
	case 'V':
		printf("opsn-agent %s\n", OPSN_VERSION);
		exit(0);
	default:
		usage();
	}
}

static void
agent_signal_cb(uv_signal_t *h, int signum)
{
	if (signum == SIGHUP) {
		log_reopen();
		return;
	}
	log_notice("agent: stopping on signal %d", signum);
	link_stop();
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_hup, NULL);
}

static int
agent_parse_addrs(struct agent *a, char **cause)
{
	char	*copy, *tok, *save = NULL;

	if (a->conf.controllers == NULL || *a->conf.controllers == '\0') {
		xasprintf(cause, "no controller address (--controller "
		    "ADDR:PORT)");
		return (-1);
	}
	copy = xstrdup(a->conf.controllers);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL;
	    tok = strtok_r(NULL, ", ", &save)) {
		a->addrs = xrealloc(a->addrs, (a->naddrs + 1) *
		    sizeof(*a->addrs));
		if (util_parse_hostport(tok, &a->addrs[a->naddrs].host,
		    &a->addrs[a->naddrs].port, cause) == -1) {
			free(copy);
			return (-1);
		}
		a->naddrs++;
	}
	free(copy);
	return (0);
}

/* Hide the join token from ps(1): it is a secret until it is used. */
static void
agent_scrub_argv(int argc, char **argv)
{
	int	 i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--join-token") == 0 && i + 1 < argc)
			memset(argv[i + 1], 'x', strlen(argv[i + 1]));
		else if (strncmp(argv[i], "--join-token=", 13) == 0)
			memset(argv[i] + 13, 'x', strlen(argv[i] + 13));
	}
}

static void
agent_free_addrs(struct agent *a)
{
	size_t	 i;

	for (i = 0; i < a->naddrs; i++)
		free(a->addrs[i].host);
	free(a->addrs);
	a->addrs = NULL;
	a->naddrs = 0;
}

/* The test suite narrows or widens the range (test builds only). */
static void
agent_proto_range(struct agent *a)
{
#ifdef OPSN_TEST_BUILD
	const char	*s = getenv("OPSN_TEST_PROTO_RANGE");
#else
	const char	*s = NULL;
#endif
	unsigned	 lo, hi;

	a->proto_min = OPSN_PROTO_MIN;
	a->proto_max = OPSN_PROTO_MAX;
	if (s != NULL && sscanf(s, "%u-%u", &lo, &hi) == 2 && lo <= hi) {
		a->proto_min = lo;
		a->proto_max = hi;
		log_notice("agent: protocol range %u-%u (test)", lo, hi);
	}
}

static void
agent_inventory_done(struct agent *a)
{
	char	*cause = NULL;

	const struct role_ops *role = NULL;

	if (strcmp(a->conf.role, "hypervisor") == 0)
		role = &hv_role;
	else if (strcmp(a->conf.role, "mail") == 0 && &mail_role != NULL)
		role = &mail_role;
	else if (strcmp(a->conf.role, "web") == 0 && &web_role != NULL)
		role = &web_role;
	if (role != NULL && role->init != NULL && role->init(a, &cause) == -1)
		fatalx("agent: %s: %s", role->name, cause);
	if (&meter_ops != NULL && meter_ops.init != NULL &&
	    meter_ops.init(a, &cause) == -1)
		fatalx("agent: metering: %s", cause);
	link_start(a);
}

int
main(int argc, char **argv)
{
	struct agent_flags	 f = { NULL, 0, 0 };
	struct cfg_args		 args;
	struct agent		 a;
	char			*cause = NULL, host[256];
	enum log_level		 lvl = LOG_LEVEL_INFO;

	memset(&a, 0, sizeof(a));
	agent = &a;
	if (cfg_getopt(&agent_table, argc, argv, "c:dnhV", agent_shortopt, &f,
	    &args) != argc)
		usage();
	log_init("opsn-agent", f.debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
	    NULL);
	cfg_defaults(&agent_table, &a.conf);
	if (f.conffile != NULL && cfg_load(&agent_table, &a.conf, f.conffile,
	    &cause) == -1)
		fatalx("%s", cause);
	if (cfg_apply_args(&agent_table, &a.conf, &args, &cause) == -1)
		fatalx("%s", cause);
	agent_scrub_argv(argc, argv);
	if (a.conf.name == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			fatal("gethostname");
		a.conf.name = xstrdup(host);
	}
	if (agent_parse_addrs(&a, &cause) == -1)
		fatalx("%s", cause);
	if (f.check) {
		printf("configuration OK%s%s\n", f.conffile ? ": " : "",
		    f.conffile ? f.conffile : "");
		agent_free_addrs(&a);
		cfg_free(&agent_table, &a.conf);
		return (0);
	}
	if (!f.debug && log_level_parse(a.conf.log_level, &lvl) == 0)
		log_set_level(lvl);
	if (*a.conf.log_file != '\0' && log_init("opsn-agent", f.debug ?
	    LOG_LEVEL_DEBUG : lvl, a.conf.log_file) == -1)
		fatal("log file %s", a.conf.log_file);

	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (util_mkdirs(a.conf.data_dir, 0700, &cause) == -1)
		fatalx("data folder: %s", cause);
	agent_proto_range(&a);
	/*
	 * Image downloads hold pool threads for long; libvirt calls must
	 * still find some. Set before the pool starts (first uv_queue_work).
	 */
	setenv("UV_THREADPOOL_SIZE", "8", 0);
	a.loop = uv_default_loop();

	if (!enrol_have_cert(&a)) {
		if (a.conf.join_token == NULL)
			fatalx("agent: not enrolled: start once with "
			    "--join-token TOKEN (from 'opsnctl node token')");
		if (enrol_run(&a, &cause) == -1)
			fatalx("agent: %s", cause);
	} else if (a.conf.join_token != NULL)
		log_info("agent: already enrolled as %s; the join token is "
		    "not needed", a.conf.name);
	if (a.conf.join_token != NULL)
		OPENSSL_cleanse(a.conf.join_token, strlen(a.conf.join_token));

	uv_signal_init(a.loop, &sig_int);
	uv_signal_init(a.loop, &sig_term);
	uv_signal_init(a.loop, &sig_hup);
	uv_signal_start(&sig_int, agent_signal_cb, SIGINT);
	uv_signal_start(&sig_term, agent_signal_cb, SIGTERM);
	uv_signal_start(&sig_hup, agent_signal_cb, SIGHUP);
	log_notice("agent: %s started (role %s, version %s)", a.conf.name,
	    a.conf.role, OPSN_VERSION);
	inventory_collect(&a, agent_inventory_done);
	uv_run(a.loop, UV_RUN_DEFAULT);
	agent_free_addrs(&a);
	cfg_free(&agent_table, &a.conf);
	log_notice("agent: stopped");
	return (0);
}
