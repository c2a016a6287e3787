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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "svc.h"

#define WEB_HEADER		"# opsn site "
#define WEB_PAGES_DIR		".opsn"
#define WEB_CMD_TIMEOUT_MS	30000
#define WEB_PAGE_MAX		(256 * 1024)
#define WEB_CONF_MAX		(64 * 1024)
#define WEB_ALIASES_MAX		100

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
/* Only the pool thread of the running apply touches this. */
static int		 web_loaded;	/* the files on disk are live */

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

static char *
web_block(const Opsn__Site *s)
{
	char	*buf = NULL, *copy, *tok, *save = NULL;
	size_t	 len = 0, i;

	web_append(&buf, &len, WEB_HEADER "id=%s tenant=%s host=%s\n"
	    "# Written by opsn-agent from the controller's state: changes "
	    "here are lost.\nserver {\n", s->id, *s->tenant ? s->tenant : "-",
	    s->hostname);
	copy = xstrdup(web_listen);
	for (tok = strtok_r(copy, ", ", &save); tok != NULL;
	    tok = strtok_r(NULL, ", ", &save))
		web_append(&buf, &len, "\tlisten %s;\n", tok);
	free(copy);
	web_append(&buf, &len, "\tserver_name %s", s->hostname);
	for (i = 0; i < s->n_aliases; i++)
		web_append(&buf, &len, " %s", s->aliases[i]);
	web_append(&buf, &len, ";\n");
	if (s->suspended) {
		web_append(&buf, &len,
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
		web_append(&buf, &len,
		    "\troot %s/%s/htdocs;\n"
		    "\tindex index.html index.htm;\n"
		    "\tlocation / {\n"
		    "\t\ttry_files $uri $uri/ =404;\n"
		    "\t}\n", web_root, s->hostname);
	}
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

/*
 * The sites that can be written: valid names, each name on one site only
 * (the first one keeps it).
 */
static struct web_site *
web_plan(const Opsn__ServicesDesired *d, size_t *np, struct svc_result *r)
{
	struct web_site	*v;
	char		**names, **ids, *cause = NULL;
	size_t		 i, k, n = 0, nn = 0, cap = 0;

	v = xcalloc(d->n_sites + 1, sizeof(*v));
	ids = xcalloc(d->n_sites + 1, sizeof(*ids));
	names = NULL;
	for (i = 0; i < d->n_sites; i++) {
		const Opsn__Site *s = d->sites[i];

		/* The id names the block's file: no leading dot. */
		if (*s->id == '\0' || *s->id == '.' ||
		    !web_valid_token(s->id) || !web_valid_token(s->tenant)) {
			xasprintf(&cause, "site id or tenant has characters "
			    "outside [A-Za-z0-9._:-]");
			web_site_error(r, s, cause);
			continue;
		}
		if (n > 0 && lfind(&s->id, ids, &n, sizeof(*ids),
		    web_str_cmp) != NULL) {
			xasprintf(&cause, "site id listed twice");
			web_site_error(r, s, cause);
			continue;
		}
		if (svc_valid_hostname(s->hostname, &cause) == -1) {
			web_site_error(r, s, cause);
			continue;
		}
		if (s->n_aliases > WEB_ALIASES_MAX) {
			xasprintf(&cause, "more than %d aliases",
			    WEB_ALIASES_MAX);
			web_site_error(r, s, cause);
			continue;
		}
		for (k = 0; k < s->n_aliases; k++)
			if (svc_valid_hostname(s->aliases[k], &cause) == -1)
				break;
		if (k < s->n_aliases) {
			web_site_error(r, s, cause);
			continue;
		}
		/* Names taken by a site before this one. */
		for (k = 0; k <= s->n_aliases; k++) {
			const char *nm = k == 0 ? s->hostname :
			    s->aliases[k - 1];

			if (nn > 0 && bsearch(&nm, names, nn, sizeof(*names),
			    web_str_cmp) != NULL)
				break;
		}
		if (k <= s->n_aliases) {
			xasprintf(&cause, "host name %s is already another "
			    "site's", k == 0 ? s->hostname : s->aliases[k - 1]);
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
		v[n].s_site = s;
		ids[n] = s->id;
		/* A host name may be 253 bytes: too long with a suffix. */
		xasprintf(&v[n].s_file, "%s.conf", s->id);
		v[n].s_text = web_block(s);
		n++;
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
};

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
	if (kept == 0 && web_loaded)
		return (0);
	web_loaded = 0;
	if (web_nginx("reload", &msg) == -1) {
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
	}
	free(g->g_sites);
	for (i = 0; i < g->g_nours; i++)
		free(g->g_ours[i]);
	free(g->g_ours);
	for (i = 0; i < g->g_nch; i++)
		web_change_free(&g->g_ch[i]);
	free(g->g_ch);
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
		if ((g.g_nch == 0 && (web_loaded || (g.g_nsites == 0 &&
		    g.g_nours == 0))) ||
		    (web_check(&g) == 0 && web_load(&g) == 0))
			web_report(&g);
	}
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
	web_root = web_listen = web_pages = web_nginx_bin = NULL;
	web_nginx_prefix = web_nginx_conf = web_confd = NULL;
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
	if (strpbrk(web_root, " \t\n;{}\"'$\\") != NULL ||
	    strpbrk(web_listen, "\t\n;{}\"'$\\") != NULL) {
		xasprintf(cause, "web_root or web_listen has a character "
		    "nginx would misread");
		return (-1);
	}
	if (svc_mkdirs(web_root, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_mkdirs(web_confd, 0755, (uid_t)-1, (gid_t)-1, cause) == -1 ||
	    svc_traversable(a, web_root, cause) == -1)
		return (-1);
	web_loaded = 0;
	svc_init(&web_svc, a->loop, "web", web_apply, web_done);
	log_info("web: sites in %s, server blocks in %s, nginx %s", web_root,
	    web_confd, web_nginx_conf);
	return (0);
}

static void
web_on_connected(void)
{
	svc_connected(&web_svc);
}

static void
web_on_frame(uint16_t type, const uint8_t *p, size_t len)
{
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
