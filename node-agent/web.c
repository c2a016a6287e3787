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

static void
web_apply(struct svc_job *j)
{
	const Opsn__ServicesDesired	*d = j->j_desired;
	struct svc_result		*r = &j->j_res;
	struct web_site			*sites;
	struct web_change		*ch = NULL;
	char				**ours, *cause = NULL, *msg = NULL;
	char				*path, *cur;
	size_t				 nsites, nours, nch = 0, i, k;

	sites = web_plan(d, &nsites, r);
	ours = web_ours(&nours);
	if (web_pages_install(&cause) == -1) {
		svc_result_fail(r, "%s", cause);
		free(cause);
		goto done;
	}
	ch = xcalloc(nsites + nours + 1, sizeof(*ch));
	for (i = 0; i < nsites; i++) {
		/* Its block, if it has one, stays as it is. */
		if (web_docroot(sites[i].s_site->hostname, &cause) == -1) {
			web_site_error(r, sites[i].s_site, cause);
			cause = NULL;
			sites[i].s_failed = 1;
			continue;
		}
		xasprintf(&path, "%s/%s", web_confd, sites[i].s_file);
		cur = svc_read(path, WEB_CONF_MAX);
		free(path);
		if (cur != NULL && strcmp(cur, sites[i].s_text) == 0) {
			free(cur);
			continue;
		}
		free(cur);
		web_change_init(&ch[nch++], sites[i].s_file, sites[i].s_text,
		    (ssize_t)i);
	}
	/* Blocks of sites no longer wanted; a site in error keeps its own. */
	for (i = 0; i < nours; i++) {
		for (k = 0; k < nsites; k++)
			if (strcmp(sites[k].s_file, ours[i]) == 0)
				break;
		if (k == nsites && !web_refused(d, ours[i]))
			web_change_init(&ch[nch++], ours[i], NULL, -1);
	}
	/* Nothing changed and nginx has it, or nothing ever to serve. */
	if (nch == 0 && (web_loaded || (nsites == 0 && nours == 0)))
		goto report;

	/* Everything at once: the usual case. */
	for (i = 0; i < nch; i++)
		if (web_stage(&ch[i], &cause) == -1) {
			ch[i].c_state = WEB_REJECTED;
			ch[i].c_error = cause;
			cause = NULL;
		}
	if (web_nginx(NULL, &msg) == 0) {
		for (i = 0; i < nch; i++)
			if (ch[i].c_state == WEB_PENDING)
				ch[i].c_state = WEB_KEPT;
	} else {
		log_warnx("web: generation %llu refused: %s; trying each "
		    "change alone", (unsigned long long)d->generation, msg);
		free(msg);
		msg = NULL;
		for (i = 0; i < nch; i++)
			web_unstage(&ch[i]);
		if (web_nginx(NULL, &msg) == -1) {
			svc_result_fail(r, "nginx refuses its configuration "
			    "even without our changes: %s", msg);
			free(msg);
			goto done;
		}
		/* One change at a time over the last good set. */
		for (i = 0; i < nch; i++) {
			if (ch[i].c_state != WEB_PENDING)
				continue;
			if (web_stage(&ch[i], &cause) == -1) {
				ch[i].c_state = WEB_REJECTED;
				ch[i].c_error = cause;
				cause = NULL;
				continue;
			}
			if (web_nginx(NULL, &msg) == 0) {
				ch[i].c_state = WEB_KEPT;
				continue;
			}
			web_unstage(&ch[i]);
			ch[i].c_state = WEB_REJECTED;
			ch[i].c_error = msg;
			msg = NULL;
		}
		/* Changes that pass alone might not pass together. */
		if (web_nginx(NULL, &msg) == -1) {
			for (i = 0; i < nch; i++)
				web_unstage(&ch[i]);
			svc_result_fail(r, "changes refused together: %s",
			    msg);
			free(msg);
			goto done;
		}
	}
	for (i = 0, k = 0; i < nch; i++)
		if (ch[i].c_state == WEB_KEPT)
			k++;
	/* Every change refused: what runs is what was there. */
	if (k == 0 && web_loaded)
		goto report;
	web_loaded = 0;
	if (web_nginx("reload", &msg) == -1) {
		/* The files are good; the next try only has to reload. */
		for (i = 0; i < nch; i++)
			if (ch[i].c_state == WEB_KEPT)
				web_commit(&ch[i]);
		svc_result_fail(r, "configuration checked but not loaded: %s",
		    msg);
		free(msg);
		goto done;
	}
	web_loaded = 1;
	for (i = 0; i < nch; i++) {
		if (ch[i].c_state == WEB_KEPT)
			web_commit(&ch[i]);
		else if (ch[i].c_site == -1)
			log_warnx("web: removing %s: %s", ch[i].c_live,
			    ch[i].c_error);
	}
	if (svc_fsync_dir(web_confd, &cause) == -1) {
		log_warnx("web: %s", cause);
		free(cause);
		cause = NULL;
	}

report:
	for (i = 0; i < nsites; i++) {
		const char *err = NULL;

		if (sites[i].s_failed)
			continue;
		for (k = 0; k < nch; k++)
			if (ch[k].c_site == (ssize_t)i &&
			    ch[k].c_state == WEB_REJECTED)
				err = ch[k].c_error;
		if (err != NULL)
			log_warnx("web: site %s refused: %s",
			    sites[i].s_site->hostname, err);
		svc_result_add(r, "site", sites[i].s_site->id,
		    err != NULL ? "error" : "applied", err);
	}
done:
	/* After a failure every staged file was restored; nothing is live. */
	for (i = 0; i < nsites; i++) {
		if (r->r_failed && !sites[i].s_failed)
			svc_result_add(r, "site", sites[i].s_site->id, "error",
			    r->r_error);
		free(sites[i].s_file);
		free(sites[i].s_text);
	}
	free(sites);
	for (i = 0; i < nours; i++)
		free(ours[i]);
	free(ours);
	for (i = 0; i < nch; i++)
		web_change_free(&ch[i]);
	free(ch);
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
