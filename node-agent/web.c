/*
 * The web role: one nginx server block per site of the desired state, in
 * NGINX_CONFD/SITE_ID.conf, serving WEB_ROOT/HOSTNAME/htdocs (created
 * with a placeholder page); a suspended site answers every request with
 * 503 and the "suspended" page.
 *
 * Last good configuration. Changed blocks are written under temporary
 * names, the live ones kept as hard-linked backups, then renamed into
 * place and the whole configuration is checked with `nginx -t` before
 * `nginx -s reload`. nginx reads its files only when it starts or
 * reloads, so the running configuration never sees a block that failed.
 * When the check fails, every file is restored and each change is tried
 * on its own: the ones nginx takes go live, the others are reported with
 * nginx's message and their previous block (if any) stays.
 *
 * Blocks carry a first line "# opsn site id=ID tenant=T host=HOST": files in
 * the folder without it are never touched. A site that leaves the desired
 * state loses its block; its files stay in WEB_ROOT (the schema has no
 * retention for sites yet).
 *
 * Everything that blocks runs on the uv thread pool, one generation at a
 * time (svc.c).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <search.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "acme.h"
#include "agent.h"
#include "svc.h"

#define WEB_HEADER		"# opsn site "
#define WEB_PAGES_DIR		".opsn"
#define WEB_CMD_TIMEOUT_MS	30000
#define WEB_PAGE_MAX		(256 * 1024)
#define WEB_CONF_MAX		(64 * 1024)
#define WEB_ALIASES_MAX		100
#define WEB_MANUAL_KEEP_S	600	/* a member's certificate, unlisted */

static const char web_builtin_placeholder[] =
	"<!DOCTYPE html>\n<html lang=\"fr\">\n<head><meta charset=\"utf-8\">"
	"<title>@HOSTNAME@</title></head>\n<body>\n<h1>@HOSTNAME@</h1>\n"
	"<p>Ce site n'a pas encore de contenu.</p>\n</body>\n</html>\n";
static const char web_builtin_suspended[] =
	"<!DOCTYPE html>\n<html lang=\"fr\">\n<head><meta charset=\"utf-8\">"
	"<title>Site suspendu</title></head>\n<body>\n<h1>Site suspendu</h1>"
	"\n<p>Ce site est temporairement suspendu.</p>\n</body>\n</html>\n";

enum web_change_state {
	WEB_PENDING,
	WEB_KEPT,
	WEB_REJECTED,
};

/* One block to add, replace or remove. */
struct web_change {
	char			*c_live;	/* CONFD/ID.conf */
	char			*c_tmp;		/* CONFD/.ID.conf.new */
	char			*c_backup;	/* CONFD/.ID.conf.old */
	const char		*c_text;	/* NULL: remove */
	int			 c_had_live;
	int			 c_staged;
	ssize_t			 c_site;	/* index in the plan, or -1 */
	enum web_change_state	 c_state;
	char			*c_error;
};

struct web_site {
	const Opsn__Site	*s_site;
	char			*s_file;	/* ID.conf */
	char			*s_text;
	int			 s_failed;	/* reported already */
	const char		**s_names;	/* host name, then aliases */
	struct acme_want	 s_want;	/* its certificate */
	char			*s_live;	/* TLS_DIR/live/site-ID */
	int			 s_tls;		/* a certificate to serve */
};

static struct agent	*wa;
static struct svc	 web_svc;
static char		*web_root;
static char		*web_listen;
static char		*web_pages;
static char		*web_nginx_bin;
static char		*web_nginx_prefix;
static char		*web_nginx_conf;
static char		*web_confd;
static char		*web_listen_tls;
static char		*web_https_port;	/* ":8443", or "" for 443 */
static char		*web_acme_root;
static char		*web_live;		/* TLS_DIR/live */
/* Only the pool thread of the running apply touches this. */
static int		 web_loaded;	/* the files on disk are live */
/*
 * The sites of the last apply that may have a certificate (indexes in
 * its desired state): written by the apply, read on the loop thread once
 * it is over (web_applied_cb).
 */
static size_t		*web_cert_sites;
static size_t		 web_ncert_sites;

/* ---- nginx ----------------------------------------------------------------- */

static int
web_nginx(const char *sig, char **msg)
{
	char	*argv[10], *out = NULL;
	int	 n = 0, st;

	argv[n++] = web_nginx_bin;
	if (*web_nginx_prefix != '\0') {
		argv[n++] = "-p";
		argv[n++] = web_nginx_prefix;
	}
	argv[n++] = "-c";
	argv[n++] = web_nginx_conf;
	if (sig == NULL)
		argv[n++] = "-t";
	else {
		argv[n++] = "-s";
		argv[n++] = (char *)sig;
	}
	argv[n++] = "-q";
	argv[n] = NULL;
	st = svc_run(argv, WEB_CMD_TIMEOUT_MS, &out);
	if (st != 0) {
		*msg = svc_run_message(sig == NULL ? "nginx -t" :
		    "nginx -s reload", st, out);
		free(out);
		return (-1);
	}
	free(out);
	return (0);
}

/*
 * `nginx -s reload` only signals the master. It reads the files, starts
 * new workers and only then tells the old ones to stop accepting; for
 * some tens of milliseconds a new connection may still reach a worker
 * serving the configuration before. An apply waits until none of the
 * workers that ran before the reload still accepts, so that "applied"
 * means served. The master is the one the configuration's pid file
 * names; when it cannot be found the apply does not wait.
 */
#define WEB_RELOAD_WAIT_MS	10000
#define WEB_WORKER_TITLE	"nginx: worker process"
#define WEB_PID_DEFAULT		"/run/nginx.pid"	/* Debian's build */
#define WEB_PREFIX_DEFAULT	"/usr/share/nginx"

/* The pid file the configuration names at its top level, or the default. */
static char *
web_nginx_pidfile(void)
{
	char	*text = NULL, *cause = NULL, *p, *q, *path = NULL;
	size_t	 len;
	int	 depth = 0, bol = 1;

	if (util_read_file(web_nginx_conf, WEB_CONF_MAX * 16, &text, &len,
	    &cause) == -1) {
		free(cause);
		return (xstrdup(WEB_PID_DEFAULT));
	}
	for (p = text; *p != '\0' && path == NULL; p++) {
		if (*p == '#') {
			while (p[1] != '\0' && p[1] != '\n')
				p++;
		} else if (*p == '{')
			depth++;
		else if (*p == '}')
			depth--;
		else if (depth == 0 && bol && strncmp(p, "pid", 3) == 0 &&
		    (p[3] == ' ' || p[3] == '\t')) {
			p += 3 + strspn(p + 3, " \t");
			q = p + strcspn(p, "; \t\n");
			if (*q == ';' || *q == ' ' || *q == '\t')
				path = xstrndup(p, q - p);
		}
		if (*p == '\n' || *p == ';' || *p == '{' || *p == '}')
			bol = 1;
		else if (*p != ' ' && *p != '\t')
			bol = 0;
	}
	free(text);
	if (path == NULL)
		return (xstrdup(WEB_PID_DEFAULT));
	if (*path != '/') {
		p = path;
		xasprintf(&path, "%s/%s", *web_nginx_prefix != '\0' ?
		    web_nginx_prefix : WEB_PREFIX_DEFAULT, p);
		free(p);
	}
	return (path);
}

/* The running master's pid, or 0. */
static pid_t
web_nginx_master(void)
{
	char	*path, *text = NULL, *cause = NULL, *end;
	size_t	 len;
	long	 pid = 0;

	path = web_nginx_pidfile();
	if (util_read_file(path, 64, &text, &len, &cause) == 0) {
		pid = strtol(text, &end, 10);
		if (end == text || pid <= 1 || kill((pid_t)pid, 0) == -1)
			pid = 0;
	} else
		free(cause);
	free(text);
	free(path);
	return ((pid_t)pid);
}

/* A small file of /proc, NUL-terminated; its length or -1. */
static ssize_t
web_proc_read(const char *pid, const char *what, char *buf, size_t size)
{
	char	 path[64];
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof(path), "/proc/%s/%s", pid, what);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return (-1);
	buf[n] = '\0';
	return (n);
}

/* The master's children that still accept connections. */
static size_t
web_nginx_workers(pid_t master, pid_t **out)
{
	DIR		*d;
	struct dirent	*de;
	char		 buf[512], *p;
	pid_t		*v = NULL;
	size_t		 n = 0;
	long		 ppid;

	if ((d = opendir("/proc")) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		/* stat: pid (comm) state ppid ...; comm may hold ')'. */
		if (web_proc_read(de->d_name, "stat", buf, sizeof(buf)) <= 0 ||
		    (p = strrchr(buf, ')')) == NULL ||
		    sscanf(p + 1, " %*c %ld", &ppid) != 1 || ppid != master)
			continue;
		/* nginx writes its title over argv, padded with NULs. */
		if (web_proc_read(de->d_name, "cmdline", buf, sizeof(buf)) <= 0 ||
		    strcmp(buf, WEB_WORKER_TITLE) != 0)
			continue;
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = (pid_t)strtol(de->d_name, NULL, 10);
	}
	closedir(d);
	*out = v;
	return (n);
}

/* Whether one of old (the workers before a reload) still accepts. */
static int
web_nginx_old_accepts(pid_t master, const pid_t *old, size_t nold)
{
	pid_t	*now;
	size_t	 n, i, k;
	int	 found = 0;

	n = web_nginx_workers(master, &now);
	for (i = 0; i < n && !found; i++)
		for (k = 0; k < nold && !found; k++)
			found = now[i] == old[k];
	free(now);
	return (found);
}

/* Reload, and wait until what runs is what was written. */
static int
web_nginx_reload(char **msg)
{
	pid_t		 master, *old = NULL;
	size_t		 nold = 0;
	uint64_t	 deadline;
	int		 rv = 0;

	if ((master = web_nginx_master()) != 0)
		nold = web_nginx_workers(master, &old);
	if (web_nginx("reload", msg) == -1) {
		nold = 0;
		rv = -1;
	}
	deadline = util_mono_ms() + WEB_RELOAD_WAIT_MS;
	while (nold > 0 && web_nginx_old_accepts(master, old, nold)) {
		if (kill(master, 0) == -1) {
			xasprintf(msg, "nginx (pid %ld) exited during its "
			    "reload", (long)master);
			rv = -1;
			break;
		}
		if (util_mono_ms() > deadline) {
			xasprintf(msg, "nginx reloaded but its workers still "
			    "serve the configuration before after %d s (its "
			    "error log says why)", WEB_RELOAD_WAIT_MS / 1000);
			rv = -1;
			break;
		}
		usleep(5000);
	}
	free(old);
	return (rv);
}

/* ---- files ----------------------------------------------------------------- */

static int
web_write(const char *path, const char *text, size_t len, mode_t mode,
    char **cause)
{
	return (util_write_file(path, text, len, mode, cause));
}

/* A page from web_pages, or the built-in one; @HOSTNAME@ replaced. */
static char *
web_page(const char *name, const char *builtin, const char *host)
{
	char	*path, *page, *out, *at;
	size_t	 hl = host != NULL ? strlen(host) : 0, n = 0;
	const char *p;

	xasprintf(&path, "%s/%s", web_pages, name);
	page = svc_read(path, WEB_PAGE_MAX);
	free(path);
	if (page == NULL)
		page = xstrdup(builtin);
	if (host == NULL)
		return (page);
	for (p = page; (at = strstr(p, "@HOSTNAME@")) != NULL; p = at + 10)
		n++;
	out = xmalloc(strlen(page) + n * hl + 1);
	out[0] = '\0';
	n = 0;
	/* Host names are checked LDH labels: nothing to escape in HTML. */
	for (p = page; (at = strstr(p, "@HOSTNAME@")) != NULL; p = at + 10) {
		memcpy(out + n, p, (size_t)(at - p));
		n += (size_t)(at - p);
		memcpy(out + n, host, hl);
		n += hl;
	}
	strcpy(out + n, p);
	free(page);
	return (out);
}

/* The site's document root, with a placeholder page while it is empty. */
static int
web_docroot(const char *host, char **cause)
{
	char		*dir, *index, *page;
	DIR		*dp;
	struct dirent	*de;
	int		 empty = 1, rc = 0;

	xasprintf(&dir, "%s/%s/htdocs", web_root, host);
	if (svc_mkdirs(dir, 0755, (uid_t)-1, (gid_t)-1, cause) == -1) {
		free(dir);
		return (-1);
	}
	if ((dp = opendir(dir)) != NULL) {
		while ((de = readdir(dp)) != NULL)
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0) {
				empty = 0;
				break;
			}
		closedir(dp);
	}
	if (empty) {
		xasprintf(&index, "%s/index.html", dir);
		page = web_page("placeholder.html", web_builtin_placeholder,
		    host);
		rc = web_write(index, page, strlen(page), 0644, cause);
		free(page);
		free(index);
	}
	free(dir);
	return (rc);
}

/* WEB_ROOT/.opsn/suspended.html, rewritten when it differs. */
static int
web_pages_install(char **cause)
{
	char	*dir, *path, *page, *cur;
	int	 rc = 0;

	xasprintf(&dir, "%s/%s", web_root, WEB_PAGES_DIR);
	if (svc_mkdirs(dir, 0755, (uid_t)-1, (gid_t)-1, cause) == -1) {
		free(dir);
		return (-1);
	}
	xasprintf(&path, "%s/suspended.html", dir);
	page = web_page("suspended.html", web_builtin_suspended, NULL);
	cur = svc_read(path, WEB_PAGE_MAX);
	if (cur == NULL || strcmp(cur, page) != 0)
		rc = web_write(path, page, strlen(page), 0644, cause);
	free(cur);
	free(page);
	free(path);
	free(dir);
	return (rc);
}

/* ---- server blocks ----------------------------------------------------------- */

/* Ids and tenants go into a comment line: keep them to a safe set. */
static int
web_valid_token(const char *s)
{
	if (strlen(s) > 128)
		return (0);
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-_.:", *s) != NULL))
			return (0);
	return (1);
}

static void
web_append(char **buf, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
web_append(char **buf, size_t *len, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 n;

	va_start(ap, fmt);
	n = xvasprintf(&s, fmt, ap);
	va_end(ap);
	*buf = xrealloc(*buf, *len + (size_t)n + 1);
	memcpy(*buf + *len, s, (size_t)n + 1);
	*len += (size_t)n;
	free(s);
}

static void
web_listens(char **buf, size_t *len, const char *list, const char *suffix)
{
	char	*copy, *tok, *save = NULL;

	copy = xstrdup(list);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL;
	    tok = strtok_r(NULL, ", ", &save))
		web_append(buf, len, "\tlisten %s%s;\n", tok, suffix);
	free(copy);
}

static void
web_server_name(char **buf, size_t *len, const Opsn__Site *s)
{
	size_t	 i;

	web_append(buf, len, "\tserver_name %s", s->hostname);
	for (i = 0; i < s->n_aliases; i++)
		web_append(buf, len, " %s", s->aliases[i]);
	web_append(buf, len, ";\n");
}

/* What a site serves: its files, or the "suspended" page with a 503. */
static void
web_content(char **buf, size_t *len, const Opsn__Site *s)
{
	if (s->suspended) {
		web_append(buf, len,
		    "\troot %s/%s;\n"
		    "\tadd_header Retry-After 3600 always;\n"
		    "\terror_page 503 /suspended.html;\n"
		    "\tlocation = /suspended.html {\n"
		    "\t\tinternal;\n"
		    "\t}\n"
		    "\tlocation / {\n"
		    "\t\treturn 503;\n"
		    "\t}\n", web_root, WEB_PAGES_DIR);
	} else {
		web_append(buf, len,
		    "\troot %s/%s/htdocs;\n"
		    "\tindex index.html index.htm;\n"
		    "\tlocation / {\n"
		    "\t\ttry_files $uri $uri/ =404;\n"
		    "\t}\n", web_root, s->hostname);
	}
}

/*
 * A site's server blocks. Port 80 always answers ACME's HTTP-01
 * challenges; once the site has a certificate it sends everything else
 * to HTTPS, where the site is served with the ANSSI's TLS settings (TLS
 * 1.2 with ECDHE and AEAD suites only, and TLS 1.3).
 */
static char *
web_block(const struct web_site *ws)
{
	const Opsn__Site	*s = ws->s_site;
	char			*buf = NULL;
	size_t			 len = 0;

	web_append(&buf, &len, WEB_HEADER "id=%s tenant=%s host=%s\n"
	    "# Written by opsn-agent from the controller's state: changes "
	    "here are lost.\nserver {\n", s->id, *s->tenant ? s->tenant : "-",
	    s->hostname);
	web_listens(&buf, &len, web_listen, "");
	web_server_name(&buf, &len, s);
	web_append(&buf, &len,
	    "\tlocation ^~ /.well-known/acme-challenge/ {\n"
	    "\t\troot %s;\n"
	    "\t\tdefault_type text/plain;\n"
	    "\t}\n", web_acme_root);
	if (!ws->s_tls) {
		web_content(&buf, &len, s);
		web_append(&buf, &len, "}\n");
		return (buf);
	}
	web_append(&buf, &len,
	    "\tlocation / {\n"
	    "\t\treturn 301 https://$host%s$request_uri;\n"
	    "\t}\n"
	    "}\n"
	    "server {\n", web_https_port);
	web_listens(&buf, &len, web_listen_tls, " ssl http2");
	web_server_name(&buf, &len, s);
	web_append(&buf, &len,
	    "\tssl_certificate %s/cert.pem;\n"
	    "\tssl_certificate_key %s/key.pem;\n"
	    "\tssl_protocols TLSv1.2 TLSv1.3;\n"
	    "\tssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;\n"
	    "\tssl_prefer_server_ciphers on;\n"
	    "\tssl_session_tickets off;\n", ws->s_live, ws->s_live);
	web_content(&buf, &len, s);
	web_append(&buf, &len, "}\n");
	return (buf);
}

static int
web_site_cmp(const void *a, const void *b)
{
	const struct web_site	*x = a, *y = b;

	return (strcmp(x->s_site->hostname, y->s_site->hostname));
}

static int
web_str_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

static void
web_site_error(struct svc_result *r, const Opsn__Site *s, char *cause)
{
	log_warnx("web: site %s (%s): %s", s->hostname, s->id, cause);
	svc_result_add(r, "site", s->id, "error", cause);
	free(cause);
}

/* How a site gets its certificate (Site.tls). */
static int
web_tls_mode(const Opsn__Site *s, enum acme_mode *mode, char **cause)
{
	size_t	 i;

	if (*s->tls == '\0' || strcmp(s->tls, "acme") == 0)
		*mode = ACME_MODE_ACME;
	else if (strcmp(s->tls, "off") == 0)
		*mode = ACME_MODE_OFF;
	else if (strcmp(s->tls, "manual") == 0) {
		*mode = ACME_MODE_MANUAL;
		for (i = 0; s->cert_sha256[i] != '\0'; i++)
			if (!((s->cert_sha256[i] >= '0' &&
			    s->cert_sha256[i] <= '9') ||
			    (s->cert_sha256[i] >= 'a' &&
			    s->cert_sha256[i] <= 'f')))
				break;
		if (i != 64 || s->cert_sha256[i] != '\0') {
			xasprintf(cause, "certificate fingerprint is not 64 "
			    "hexadecimal digits");
			return (-1);
		}
	} else {
		xasprintf(cause, "unknown tls mode '%.16s'", s->tls);
		return (-1);
	}
	return (0);
}

/* A site's id, names and TLS mode, each alone. */
static int
web_site_check(const Opsn__Site *s, enum acme_mode *mode, char **cause)
{
	size_t	 k;

	/* The id names the block's file: no leading dot. */
	if (*s->id == '\0' || *s->id == '.' || !web_valid_token(s->id) ||
	    !web_valid_token(s->tenant)) {
		xasprintf(cause, "site id or tenant has characters outside "
		    "[A-Za-z0-9._:-]");
		return (-1);
	}
	if (svc_valid_hostname(s->hostname, cause) == -1)
		return (-1);
	if (s->n_aliases > WEB_ALIASES_MAX) {
		xasprintf(cause, "more than %d aliases", WEB_ALIASES_MAX);
		return (-1);
	}
	for (k = 0; k < s->n_aliases; k++)
		if (svc_valid_hostname(s->aliases[k], cause) == -1)
			return (-1);
	return (web_tls_mode(s, mode, cause));
}

static void
web_site_init(struct web_site *ws, const Opsn__Site *s, enum acme_mode mode)
{
	size_t	 k;

	ws->s_site = s;
	/* A host name may be 253 bytes: too long with a suffix. */
	xasprintf(&ws->s_file, "%s.conf", s->id);
	ws->s_names = xcalloc(s->n_aliases + 2, sizeof(*ws->s_names));
	ws->s_names[0] = s->hostname;
	for (k = 0; k < s->n_aliases; k++)
		ws->s_names[k + 1] = s->aliases[k];
	ws->s_want.w_kind = "site";
	ws->s_want.w_id = s->id;
	ws->s_want.w_names = ws->s_names;
	ws->s_want.w_nnames = s->n_aliases + 1;
	ws->s_want.w_mode = mode;
	ws->s_want.w_sha256 = s->cert_sha256;
	xasprintf(&ws->s_live, "%s/site-%s", web_live, s->id);
}

/*
 * The sites that can be written: valid names, each name on one site only
 * (the first one keeps it).
 */
static struct web_site *
web_plan(const Opsn__ServicesDesired *d, size_t *np, struct svc_result *r)
{
	struct web_site	*v;
	enum acme_mode	 mode;
	char		**names = NULL, **ids, *cause = NULL;
	const char	*nm;
	size_t		 i, k, n = 0, nn = 0, cap = 0;

	v = xcalloc(d->n_sites + 1, sizeof(*v));
	ids = xcalloc(d->n_sites + 1, sizeof(*ids));
	for (i = 0; i < d->n_sites; i++) {
		const Opsn__Site *s = d->sites[i];

		if (web_site_check(s, &mode, &cause) == -1) {
			web_site_error(r, s, cause);
			continue;
		}
		if (n > 0 && lfind(&s->id, ids, &n, sizeof(*ids),
		    web_str_cmp) != NULL) {
			xasprintf(&cause, "site id listed twice");
			web_site_error(r, s, cause);
			continue;
		}
		/* Names taken by a site before this one. */
		for (k = 0, nm = NULL; k <= s->n_aliases; k++) {
			nm = k == 0 ? s->hostname : s->aliases[k - 1];
			if (nn > 0 && bsearch(&nm, names, nn, sizeof(*names),
			    web_str_cmp) != NULL)
				break;
		}
		if (k <= s->n_aliases) {
			xasprintf(&cause, "host name %s is already another "
			    "site's", nm);
			web_site_error(r, s, cause);
			continue;
		}
		for (k = 0; k <= s->n_aliases; k++) {
			if (nn == cap) {
				cap = cap ? 2 * cap : 64;
				names = xrealloc(names, cap * sizeof(*names));
			}
			names[nn++] = k == 0 ? s->hostname : s->aliases[k - 1];
			qsort(names, nn, sizeof(*names), web_str_cmp);
		}
		ids[n] = s->id;
		web_site_init(&v[n++], s, mode);
	}
	free(names);
	free(ids);
	qsort(v, n, sizeof(*v), web_site_cmp);
	*np = n;
	return (v);
}

/*
 * Is file the block of a site listed but refused by web_plan (bad names)?
 * Its last good block stays.
 */
static int
web_refused(const Opsn__ServicesDesired *d, const char *file)
{
	size_t	 i, l;

	for (i = 0; i < d->n_sites; i++) {
		l = strlen(d->sites[i]->id);
		if (l > 0 && strncmp(file, d->sites[i]->id, l) == 0 &&
		    strcmp(file + l, ".conf") == 0)
			return (1);
	}
	return (0);
}

/* Our block files in the folder (names, sorted). */
static char **
web_ours(size_t *np)
{
	DIR		*dp;
	struct dirent	*de;
	char		**v = NULL, *path, *text;
	size_t		 n = 0, l;

	*np = 0;
	if ((dp = opendir(web_confd)) == NULL)
		return (NULL);
	while ((de = readdir(dp)) != NULL) {
		l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l < 6 ||
		    strcmp(de->d_name + l - 5, ".conf") != 0)
			continue;
		xasprintf(&path, "%s/%s", web_confd, de->d_name);
		text = svc_read(path, WEB_CONF_MAX);
		free(path);
		if (text != NULL && strncmp(text, WEB_HEADER,
		    strlen(WEB_HEADER)) == 0) {
			v = xrealloc(v, (n + 1) * sizeof(*v));
			v[n++] = xstrdup(de->d_name);
		}
		free(text);
	}
	closedir(dp);
	if (n > 0)
		qsort(v, n, sizeof(*v), web_str_cmp);
	*np = n;
	return (v);
}

/* ---- staging ----------------------------------------------------------------- */

static void
web_change_init(struct web_change *c, const char *file, const char *text,
    ssize_t site)
{
	struct stat	 st;

	memset(c, 0, sizeof(*c));
	xasprintf(&c->c_live, "%s/%s", web_confd, file);
	xasprintf(&c->c_tmp, "%s/.%s.new", web_confd, file);
	xasprintf(&c->c_backup, "%s/.%s.old", web_confd, file);
	c->c_text = text;
	c->c_site = site;
	c->c_had_live = lstat(c->c_live, &st) == 0;
}

static void
web_change_free(struct web_change *c)
{
	free(c->c_live);
	free(c->c_tmp);
	free(c->c_backup);
	free(c->c_error);
}

/* Put a change in place, keeping the live file as a backup. */
static int
web_stage(struct web_change *c, char **cause)
{
	if (c->c_text != NULL && util_write_file(c->c_tmp, c->c_text,
	    strlen(c->c_text), 0644, cause) == -1)
		return (-1);
	if (c->c_had_live) {
		unlink(c->c_backup);
		if (link(c->c_live, c->c_backup) == -1) {
			xasprintf(cause, "backup of %s: %s", c->c_live,
			    strerror(errno));
			unlink(c->c_tmp);
			return (-1);
		}
	}
	if (c->c_text != NULL ? rename(c->c_tmp, c->c_live) == -1 :
	    unlink(c->c_live) == -1) {
		xasprintf(cause, "%s: %s", c->c_live, strerror(errno));
		unlink(c->c_tmp);
		unlink(c->c_backup);
		return (-1);
	}
	c->c_staged = 1;
	return (0);
}

/* Back to the file that was live before web_stage. */
static void
web_unstage(struct web_change *c)
{
	if (!c->c_staged)
		return;
	if (c->c_had_live) {
		if (rename(c->c_backup, c->c_live) == -1)
			log_warnx("web: restoring %s: %s", c->c_live,
			    strerror(errno));
	} else
		unlink(c->c_live);
	c->c_staged = 0;
}

static void
web_commit(struct web_change *c)
{
	if (c->c_staged && c->c_had_live)
		unlink(c->c_backup);
	c->c_staged = 0;
}

/* ---- one generation -------------------------------------------------------- */

/* What the steps of one apply share. */
struct web_gen {
	const Opsn__ServicesDesired	*g_desired;
	struct svc_result		*g_res;
	struct web_site			*g_sites;
	size_t				 g_nsites;
	char				**g_ours;	/* our block files */
	size_t				 g_nours;
	struct web_change		*g_ch;
	size_t				 g_nch;
	int				 g_reload;	/* a new certificate */
};

/* The certificate a site serves, installed where its block names it. */
static void
web_site_tls(struct web_gen *g, struct web_site *ws)
{
	char	*warn = NULL;
	int	 changed = 0;

	ws->s_tls = acme_live(&ws->s_want, ws->s_live, &changed, &warn) == 1;
	if (warn != NULL) {
		log_warnx("web: site %s: certificate not installed: %s",
		    ws->s_site->hostname, warn);
		free(warn);
	}
	if (changed) {
		log_info("web: site %s: new certificate installed",
		    ws->s_site->hostname);
		g->g_reload = 1;
	}
}

/*
 * The blocks to write (a site whose document root cannot be made keeps
 * the block it has) and to remove (sites no longer wanted; a site in
 * error keeps its own).
 */
static void
web_gen_changes(struct web_gen *g)
{
	struct web_site	*ws;
	char		*path, *cur, *cause = NULL;
	size_t		 i, k;

	g->g_ch = xcalloc(g->g_nsites + g->g_nours + 1, sizeof(*g->g_ch));
	for (i = 0; i < g->g_nsites; i++) {
		ws = &g->g_sites[i];
		if (web_docroot(ws->s_site->hostname, &cause) == -1) {
			web_site_error(g->g_res, ws->s_site, cause);
			cause = NULL;
			ws->s_failed = 1;
			continue;
		}
		web_site_tls(g, ws);
		ws->s_text = web_block(ws);
		xasprintf(&path, "%s/%s", web_confd, ws->s_file);
		cur = svc_read(path, WEB_CONF_MAX);
		free(path);
		if (cur == NULL || strcmp(cur, ws->s_text) != 0)
			web_change_init(&g->g_ch[g->g_nch++], ws->s_file,
			    ws->s_text, (ssize_t)i);
		free(cur);
	}
	for (i = 0; i < g->g_nours; i++) {
		for (k = 0; k < g->g_nsites; k++)
			if (strcmp(g->g_sites[k].s_file, g->g_ours[i]) == 0)
				break;
		if (k == g->g_nsites && !web_refused(g->g_desired,
		    g->g_ours[i]))
			web_change_init(&g->g_ch[g->g_nch++], g->g_ours[i],
			    NULL, -1);
	}
}

/* Stage a change; a change that cannot be staged is rejected. */
static int
web_try_stage(struct web_change *c)
{
	char	*cause = NULL;

	if (web_stage(c, &cause) == 0)
		return (0);
	c->c_state = WEB_REJECTED;
	c->c_error = cause;
	return (-1);
}

/*
 * nginx refused the changes together: from the last good set, keep each
 * change that passes `nginx -t` on its own, reject the others with
 * nginx's message. -1 (the generation failed, nothing staged) when even
 * the last good set or the kept changes together are refused.
 */
static int
web_check_each(struct web_gen *g)
{
	struct web_change	*c;
	char			*msg = NULL;
	size_t			 i;

	for (i = 0; i < g->g_nch; i++)
		web_unstage(&g->g_ch[i]);
	if (web_nginx(NULL, &msg) == -1) {
		svc_result_fail(g->g_res, "nginx refuses its configuration "
		    "even without our changes: %s", msg);
		free(msg);
		return (-1);
	}
	for (i = 0; i < g->g_nch; i++) {
		c = &g->g_ch[i];
		if (c->c_state != WEB_PENDING || web_try_stage(c) == -1)
			continue;
		if (web_nginx(NULL, &msg) == 0) {
			c->c_state = WEB_KEPT;
			continue;
		}
		web_unstage(c);
		c->c_state = WEB_REJECTED;
		c->c_error = msg;
		msg = NULL;
	}
	/* Changes that pass alone might not pass together. */
	if (web_nginx(NULL, &msg) == -1) {
		for (i = 0; i < g->g_nch; i++)
			web_unstage(&g->g_ch[i]);
		svc_result_fail(g->g_res, "changes refused together: %s", msg);
		free(msg);
		return (-1);
	}
	return (0);
}

/*
 * Put the changes in place and have `nginx -t` check them: all at once
 * (the usual case), else one at a time. 0 when what is in place is a
 * configuration nginx takes.
 */
static int
web_check(struct web_gen *g)
{
	char	*msg = NULL;
	size_t	 i;

	for (i = 0; i < g->g_nch; i++)
		(void)web_try_stage(&g->g_ch[i]);
	if (web_nginx(NULL, &msg) == 0) {
		for (i = 0; i < g->g_nch; i++)
			if (g->g_ch[i].c_state == WEB_PENDING)
				g->g_ch[i].c_state = WEB_KEPT;
		return (0);
	}
	log_warnx("web: generation %llu refused: %s; trying each change "
	    "alone", (unsigned long long)g->g_desired->generation, msg);
	free(msg);
	return (web_check_each(g));
}

/* Reload nginx with the checked files and drop the backups. */
static int
web_load(struct web_gen *g)
{
	struct web_change	*c;
	char			*msg = NULL, *cause = NULL;
	size_t			 i, kept = 0;

	for (i = 0; i < g->g_nch; i++)
		if (g->g_ch[i].c_state == WEB_KEPT)
			kept++;
	/* Every change refused: what runs is what was there. */
	if (kept == 0 && web_loaded && !g->g_reload)
		return (0);
	web_loaded = 0;
	if (web_nginx_reload(&msg) == -1) {
		/* The files are good; the next try only has to reload. */
		for (i = 0; i < g->g_nch; i++)
			if (g->g_ch[i].c_state == WEB_KEPT)
				web_commit(&g->g_ch[i]);
		svc_result_fail(g->g_res, "configuration checked but not "
		    "loaded: %s", msg);
		free(msg);
		return (-1);
	}
	web_loaded = 1;
	for (i = 0; i < g->g_nch; i++) {
		c = &g->g_ch[i];
		if (c->c_state == WEB_KEPT)
			web_commit(c);
		else if (c->c_site == -1)
			log_warnx("web: removing %s: %s", c->c_live,
			    c->c_error);
	}
	if (svc_fsync_dir(web_confd, &cause) == -1) {
		log_warnx("web: %s", cause);
		free(cause);
	}
	return (0);
}

/* A status per site written: applied, or why its change was refused. */
static void
web_report(struct web_gen *g)
{
	const struct web_site	*ws;
	const char		*err;
	size_t			 i, k;

	for (i = 0; i < g->g_nsites; i++) {
		ws = &g->g_sites[i];
		if (ws->s_failed)
			continue;
		err = NULL;
		for (k = 0; k < g->g_nch; k++)
			if (g->g_ch[k].c_site == (ssize_t)i &&
			    g->g_ch[k].c_state == WEB_REJECTED)
				err = g->g_ch[k].c_error;
		if (err != NULL)
			log_warnx("web: site %s refused: %s",
			    ws->s_site->hostname, err);
		svc_result_add(g->g_res, "site", ws->s_site->id,
		    err != NULL ? "error" : "applied", err);
	}
}

static void
web_gen_free(struct web_gen *g)
{
	size_t	 i;

	for (i = 0; i < g->g_nsites; i++) {
		free(g->g_sites[i].s_file);
		free(g->g_sites[i].s_text);
		free(g->g_sites[i].s_names);
		free(g->g_sites[i].s_live);
	}
	free(g->g_sites);
	for (i = 0; i < g->g_nours; i++)
		free(g->g_ours[i]);
	free(g->g_ours);
	for (i = 0; i < g->g_nch; i++)
		web_change_free(&g->g_ch[i]);
	free(g->g_ch);
}

/* Hand the sites that may have a certificate to web_applied_cb. */
static void
web_cert_sites_keep(struct web_gen *g)
{
	size_t	 i, k;

	free(web_cert_sites);
	web_cert_sites = xcalloc(g->g_nsites + 1, sizeof(*web_cert_sites));
	web_ncert_sites = 0;
	for (i = 0; i < g->g_nsites; i++)
		for (k = 0; k < g->g_desired->n_sites; k++)
			if (g->g_desired->sites[k] == g->g_sites[i].s_site) {
				web_cert_sites[web_ncert_sites++] = k;
				break;
			}
}

/*
 * Certificates of sites that left the desired state: the installed pairs
 * go at once, members' own after a while (one may have been stored for
 * a site that this generation does not list yet).
 */
static void
web_tls_tidy(struct web_gen *g)
{
	const char	*sub[2] = { "live", "manual" };
	char		*dir, *path, *cause = NULL, *id;
	DIR		*dp;
	struct dirent	*de;
	struct stat	 st;
	size_t		 i, k;

	for (i = 0; i < 2; i++) {
		dir = acme_tls_path(sub[i]);
		if ((dp = opendir(dir)) == NULL) {
			free(dir);
			continue;
		}
		while ((de = readdir(dp)) != NULL) {
			id = de->d_name;
			if (i == 0 && strncmp(id, "site-", 5) != 0)
				continue;
			if (i == 0)
				id += 5;
			if (*id == '\0' || *id == '.')
				continue;
			for (k = 0; k < g->g_desired->n_sites; k++)
				if (strcmp(g->g_desired->sites[k]->id, id) == 0)
					break;
			if (k < g->g_desired->n_sites)
				continue;
			xasprintf(&path, "%s/%s", dir, de->d_name);
			if (i == 0 || (lstat(path, &st) == 0 &&
			    st.st_mtime + WEB_MANUAL_KEEP_S < util_now())) {
				if (svc_rmtree(path, &cause) == -1) {
					log_warnx("web: %s", cause);
					free(cause);
					cause = NULL;
				}
			}
			free(path);
		}
		closedir(dp);
		free(dir);
	}
}

static void
web_apply(struct svc_job *j)
{
	struct web_gen	 g;
	char		*cause = NULL;
	size_t		 i;

	memset(&g, 0, sizeof(g));
	g.g_desired = j->j_desired;
	g.g_res = &j->j_res;
	g.g_sites = web_plan(g.g_desired, &g.g_nsites, g.g_res);
	g.g_ours = web_ours(&g.g_nours);
	if (web_pages_install(&cause) == -1) {
		svc_result_fail(g.g_res, "%s", cause);
		free(cause);
	} else {
		web_gen_changes(&g);
		/* Nothing changed and nginx has it, or nothing to serve. */
		if ((g.g_nch == 0 && !g.g_reload && (web_loaded ||
		    (g.g_nsites == 0 && g.g_nours == 0))) ||
		    (web_check(&g) == 0 && web_load(&g) == 0))
			web_report(&g);
	}
	web_cert_sites_keep(&g);
	web_tls_tidy(&g);
	/* After a failure every staged file was restored; nothing is live. */
	if (g.g_res->r_failed)
		for (i = 0; i < g.g_nsites; i++)
			if (!g.g_sites[i].s_failed)
				svc_result_add(g.g_res, "site",
				    g.g_sites[i].s_site->id, "error",
				    g.g_res->r_error);
	web_gen_free(&g);
}

/* ---- teardown --------------------------------------------------------------- */

/* The queue has stopped and nothing on the pool reads the role's state. */
static void
web_done(void)
{
	free(web_root);
	free(web_listen);
	free(web_pages);
	free(web_nginx_bin);
	free(web_nginx_prefix);
	free(web_nginx_conf);
	free(web_confd);
	free(web_listen_tls);
	free(web_https_port);
	free(web_acme_root);
	free(web_live);
	free(web_cert_sites);
	web_root = web_listen = web_pages = web_nginx_bin = NULL;
	web_nginx_prefix = web_nginx_conf = web_confd = NULL;
	web_listen_tls = web_https_port = web_acme_root = web_live = NULL;
	web_cert_sites = NULL;
	web_ncert_sites = 0;
	acme_stop();
}

/* ---- certificates ------------------------------------------------------------ */

/* A new certificate to serve: write the blocks again and reload. */
static void
web_certs_changed(void)
{
	svc_reapply(&web_svc);
}

/* After an apply: the certificates its sites want. */
static void
web_applied_cb(struct svc *s)
{
	const Opsn__ServicesDesired	*d = s->s_current;
	struct acme_want		*w;
	const char			***names;
	enum acme_mode			 mode;
	char				*cause = NULL;
	size_t				 i, k, n = 0;

	if (d == NULL)
		return;
	w = xcalloc(web_ncert_sites + 1, sizeof(*w));
	names = xcalloc(web_ncert_sites + 1, sizeof(*names));
	for (i = 0; i < web_ncert_sites && web_cert_sites[i] < d->n_sites;
	    i++) {
		const Opsn__Site *st = d->sites[web_cert_sites[i]];

		if (web_tls_mode(st, &mode, &cause) == -1) {
			free(cause);
			cause = NULL;
			continue;
		}
		names[n] = xcalloc(st->n_aliases + 2, sizeof(**names));
		names[n][0] = st->hostname;
		for (k = 0; k < st->n_aliases; k++)
			names[n][k + 1] = st->aliases[k];
		w[n].w_kind = "site";
		w[n].w_id = st->id;
		w[n].w_names = names[n];
		w[n].w_nnames = st->n_aliases + 1;
		w[n].w_mode = mode;
		w[n].w_sha256 = st->cert_sha256;
		n++;
	}
	acme_set(w, n);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(w);
}

/* A member's certificate on its way to the backend's disk. */
struct web_cert_job {
	uv_work_t		 cj_req;
	Opsn__SiteCert		*cj_msg;
	char			 cj_sha[65];
	char			*cj_error;
};

static void
web_cert_work_cb(uv_work_t *req)
{
	struct web_cert_job	*cj = req->data;
	Opsn__SiteCert		*m = cj->cj_msg;
	size_t			 i;

	if (*m->site_id == '\0' || *m->site_id == '.' ||
	    !web_valid_token(m->site_id) || m->n_names == 0 ||
	    m->n_names > WEB_ALIASES_MAX + 1) {
		xasprintf(&cj->cj_error, "bad site id or host names");
		return;
	}
	for (i = 0; i < m->n_names; i++)
		if (svc_valid_hostname(m->names[i], &cj->cj_error) == -1)
			return;
	(void)acme_manual_store(m->site_id, (const char *const *)m->names,
	    m->n_names, m->cert_pem, m->key_pem, cj->cj_sha, &cj->cj_error);
}

static void
web_cert_after_cb(uv_work_t *req, int status)
{
	struct web_cert_job	*cj = req->data;
	Opsn__SiteCertResult	 res = OPSN__SITE_CERT_RESULT__INIT;

	res.request = cj->cj_msg->request;
	res.ok = cj->cj_error == NULL;
	res.error = cj->cj_error != NULL ? cj->cj_error : "";
	res.cert_sha256 = cj->cj_error == NULL ? cj->cj_sha : "";
	if (cj->cj_error != NULL)
		log_warnx("web: certificate for site %s refused: %s",
		    cj->cj_msg->site_id, cj->cj_error);
	else
		log_info("web: certificate %.16s... stored for site %s",
		    cj->cj_sha, cj->cj_msg->site_id);
	if (svc_send(MSG_SITE_CERT_RESULT, &res.base) == -1)
		log_warnx("web: the answer about site %s's certificate was not "
		    "sent (link down)", cj->cj_msg->site_id);
	/* The key is wiped before its memory goes back. */
	if (cj->cj_msg->key_pem != NULL)
		OPENSSL_cleanse(cj->cj_msg->key_pem,
		    strlen(cj->cj_msg->key_pem));
	opsn__site_cert__free_unpacked(cj->cj_msg, NULL);
	free(cj->cj_error);
	free(cj);
	svc_release(&web_svc);
}

/* MSG_SITE_CERT: check and keep a member's certificate (never logged). */
static void
web_site_cert(const uint8_t *p, size_t len)
{
	struct web_cert_job	*cj;
	Opsn__SiteCert		*m;

	if ((m = opsn__site_cert__unpack(NULL, len, p)) == NULL) {
		log_warnx("web: a site certificate that does not decode");
		return;
	}
	if (svc_hold(&web_svc) == -1) {
		OPENSSL_cleanse(m->key_pem, strlen(m->key_pem));
		opsn__site_cert__free_unpacked(m, NULL);
		return;
	}
	cj = xcalloc(1, sizeof(*cj));
	cj->cj_req.data = cj;
	cj->cj_msg = m;
	if (uv_queue_work(wa->loop, &cj->cj_req, web_cert_work_cb,
	    web_cert_after_cb) != 0)
		fatalx("web: uv_queue_work failed");
}

/* ---- usage, for metering --------------------------------------------------- */

/* Every site of our blocks and its folder (pool thread). */
static void
web_usage_list(struct svc_uses *w)
{
	char	**ours, *path, *text, *cause = NULL;
	char	 id[160], tenant[160], host[260];
	size_t	 n, i;

	ours = web_ours(&n);
	for (i = 0; i < n; i++) {
		xasprintf(&path, "%s/%s", web_confd, ours[i]);
		text = svc_read(path, WEB_CONF_MAX);
		free(path);
		if (text != NULL && sscanf(text, WEB_HEADER "id=%159s "
		    "tenant=%159s host=%259s", id, tenant, host) == 3 &&
		    svc_valid_hostname(host, &cause) == 0) {
			xasprintf(&path, "%s/%s", web_root, host);
			svc_uses_add(w, id, strcmp(tenant, "-") ? tenant : "",
			    path);
			free(path);
		}
		free(cause);
		cause = NULL;
		free(text);
		free(ours[i]);
	}
	free(ours);
}

/* Storage used by each site's folder, for metering (see svc.h). */
void
web_usage(svc_usage_cb emit, void *arg)
{
	svc_usage(&web_svc, "site", web_usage_list, emit, arg);
}

/* ---- role hooks -------------------------------------------------------------- */

/* ":PORT" of the first HTTPS address for redirects; "" when it is 443. */
static char *
web_port_suffix(const char *list)
{
	char		*copy, *tok, *save = NULL, *port, *out;
	const char	*p;

	copy = xstrdup(list);
	tok = strtok_r(copy, ", ", &save);
	if (tok == NULL || (p = strrchr(tok, ']')) == NULL)
		p = tok;
	port = p != NULL && strrchr(p, ':') != NULL ? strrchr(p, ':') + 1 :
	    (p != NULL ? (char *)p : "443");
	if (strcmp(port, "443") == 0 || strspn(port, "0123456789") !=
	    strlen(port))
		out = xstrdup("");
	else
		xasprintf(&out, ":%s", port);
	free(copy);
	return (out);
}

static int
web_init(struct agent *a, char **cause)
{
	wa = a;
	web_root = svc_path_option(a, a->conf.web_root, "web");
	web_confd = svc_path_option(a, a->conf.nginx_confd, "nginx.d");
	web_listen = xstrdup(svc_opt(a->conf.web_listen, "80"));
	web_pages = xstrdup(svc_opt(a->conf.web_pages, "/etc/opsn/web"));
	web_nginx_bin = xstrdup(svc_opt(a->conf.nginx_bin, "/usr/sbin/nginx"));
	web_nginx_prefix = xstrdup(svc_opt(a->conf.nginx_prefix, ""));
	web_nginx_conf = xstrdup(svc_opt(a->conf.nginx_conf,
	    "/etc/nginx/nginx.conf"));
	if (web_root[0] != '/' || web_confd[0] != '/') {
		xasprintf(cause, "web_root and nginx_confd must be absolute "
		    "paths");
		return (-1);
	}
	web_listen_tls = xstrdup(svc_opt(a->conf.web_listen_tls, "443"));
	web_https_port = web_port_suffix(web_listen_tls);
	if (a->conf.acme_webroot != NULL && *a->conf.acme_webroot != '\0')
		web_acme_root = xstrdup(a->conf.acme_webroot);
	else
		xasprintf(&web_acme_root, "%s/%s/acme", web_root,
		    WEB_PAGES_DIR);
	if (strpbrk(web_root, " \t\n;{}\"'$\\") != NULL ||
	    strpbrk(web_acme_root, " \t\n;{}\"'$\\") != NULL ||
	    strpbrk(web_listen, "\t\n;{}\"'$\\") != NULL ||
	    strpbrk(web_listen_tls, "\t\n;{}\"'$\\") != NULL) {
		xasprintf(cause, "web_root, listen, listen_tls or the ACME "
		    "webroot has a character nginx would misread");
		return (-1);
	}
	if (svc_mkdirs(web_root, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(web_confd, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_traversable(a, web_root, cause) == -1 ||
	    acme_init(a, web_acme_root, web_certs_changed, cause) == -1)
		return (-1);
	web_live = acme_tls_path("live");
	if (strpbrk(web_live, " \t\n;{}\"'$\\") != NULL) {
		xasprintf(cause, "the TLS folder %s has a character nginx "
		    "would misread", web_live);
		return (-1);
	}
	web_loaded = 0;
	svc_init(&web_svc, a->loop, "web", web_apply, web_done);
	web_svc.s_applied = web_applied_cb;
	log_info("web: sites in %s, server blocks in %s, nginx %s", web_root,
	    web_confd, web_nginx_conf);
	return (0);
}

static void
web_on_connected(void)
{
	svc_connected(&web_svc);
	acme_connected();
}

static void
web_on_frame(uint16_t type, const uint8_t *p, size_t len)
{
	if (type == MSG_SITE_CERT)
		web_site_cert(p, len);
	else
		svc_frame(&web_svc, type, p, len);
}

static void
web_stop(void)
{
	svc_stop(&web_svc);
}

/* Nothing applying or waiting (unit tests). */
int
web_idle(void)
{
	return (svc_idle(&web_svc));
}

const struct role_ops web_role = {
	"web", web_init, web_on_connected, web_on_frame, web_stop
};
