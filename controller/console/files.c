/*
 * The web console's files, served under / on the API's port: a page's
 * address (/members/31001) answers index.html, whose scripts draw the
 * page from the /v1 API. Only plain names inside the console's folder
 * are served, with a Content-Security-Policy that lets the pages load
 * nothing but their own files and talk to nothing but this server.
 */
#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "session.h"

#ifndef OPSN_PREFIX
#define OPSN_PREFIX	"/usr/local"
#endif

static char	*files_dir;	/* NULL: not installed */

/* The console's pages: their addresses all answer index.html. */
static const char *const files_pages[] = {
	"login", "setup", "account", "dashboard", "members", "mail", "sites",
	"vms", "nodes", "finance", "users", NULL
};

static const struct {
	const char	*ext;
	const char	*type;
} files_types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".json", "application/json" },
	{ ".txt", "text/plain; charset=utf-8" },
};

static int
files_is_dir_with_index(const char *dir)
{
	char		*p;
	struct stat	 sb;
	int		 ok;

	xasprintf(&p, "%s/index.html", dir);
	ok = stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
	free(p);
	return (ok);
}

/*
 * Where the files are: [console] dir, else the console folder of the
 * source tree the program was built in (bin/../console, or from
 * build/test/bin), else the installed one.
 */
int
files_init(struct ctl *c, char **cause)
{
	char	 exe[PATH_MAX], *slash, *cand;
	ssize_t	 n;
	int	 up;

	free(files_dir);
	files_dir = NULL;
	if (c->conf.console_dir[0] != '\0') {
		if (!files_is_dir_with_index(c->conf.console_dir)) {
			xasprintf(cause, "[console] dir %s has no index.html",
			    c->conf.console_dir);
			return (-1);
		}
		files_dir = xstrdup(c->conf.console_dir);
	} else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		/* bin/, build/test/bin/, build/san/bin/ of a source tree. */
		exe[n] = '\0';
		for (up = 0; up < 4 && files_dir == NULL &&
		    (slash = strrchr(exe, '/')) != NULL; up++) {
			*slash = '\0';
			xasprintf(&cand, "%s/console", exe);
			if (files_is_dir_with_index(cand))
				files_dir = cand;
			else
				free(cand);
		}
	}
	if (files_dir == NULL && files_is_dir_with_index(OPSN_PREFIX
	    "/share/opsn/console"))
		files_dir = xstrdup(OPSN_PREFIX "/share/opsn/console");
	if (files_dir != NULL)
		log_info("console: serving the web console from %s", files_dir);
	else
		log_warnx("console: the web console's files are not installed "
		    "(set [console] dir)");
	return (0);
}

/* A plain file name: letters, digits, '.', '-', '_', not a dot first. */
static int
files_name_ok(const char *s)
{
	const char	*p;

	if (s == NULL || *s == '\0' || *s == '.' || strlen(s) > 64)
		return (0);
	for (p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
		    *p == '_'))
			return (0);
	return (1);
}

static const char *
files_type(const char *path)
{
	const char	*dot = strrchr(path, '.');
	size_t		 i;

	for (i = 0; dot != NULL && i < nitems(files_types); i++)
		if (strcmp(dot, files_types[i].ext) == 0)
			return (files_types[i].type);
	return (NULL);
}

static int
files_is_page(const char *first)
{
	const char *const *p;

	for (p = files_pages; *p != NULL; p++)
		if (strcmp(*p, first) == 0)
			return (1);
	return (0);
}

/* GET /, /{file}, /{dir}/{file}, /{dir}/{sub}/{file}: the console. */
void
files_serve(struct api_req *r)
{
	const char	*seg[3], *type;
	char		*path = NULL, *tmp;
	struct stat	 sb;
	size_t		 n = 0, i;

	if ((seg[n] = api_param(r, "dir")) != NULL)
		n++;
	if ((seg[n] = api_param(r, "sub")) != NULL)
		n++;
	if ((seg[n] = api_param(r, "file")) != NULL)
		n++;
	/* Paths under /v1 are the API's: an unknown one is the API's 404. */
	if (n > 0 && strcmp(seg[0], "v1") == 0) {
		api_reply_error(r, 404, "not_found", "no such path");
		return;
	}
	if (files_dir == NULL) {
		api_reply_error(r, 404, "not_found", "the web console is not "
		    "installed on this controller");
		return;
	}
	for (i = 0; i < n && files_name_ok(seg[i]); i++)
		continue;
	if (n > 0 && i == n) {
		path = xstrdup(files_dir);
		for (i = 0; i < n; i++) {
			xasprintf(&tmp, "%s/%s", path, seg[i]);
			free(path);
			path = tmp;
		}
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) ||
		    files_type(path) == NULL) {
			free(path);
			path = NULL;
		}
	}
	if (path == NULL) {
		if (n > 0 && !files_is_page(seg[0])) {
			api_reply_error(r, 404, "not_found", "no such page");
			return;
		}
		xasprintf(&path, "%s/index.html", files_dir);
	}
	type = files_type(path);
	api_set_header(r, "Content-Security-Policy", "default-src 'self'; "
	    "script-src 'self'; style-src 'self'; img-src 'self' data:; "
	    "connect-src 'self'; object-src 'none'; base-uri 'none'; "
	    "form-action 'self'; frame-ancestors 'none'");
	api_set_header(r, "X-Content-Type-Options", "nosniff");
	api_set_header(r, "X-Frame-Options", "DENY");
	api_set_header(r, "Referrer-Policy", "no-referrer");
	api_set_header(r, "Strict-Transport-Security", "max-age=31536000");
	/* Kept by the browser, asked again each time (304 when unchanged). */
	api_set_header(r, "Cache-Control", "no-cache");
	if (api_reply_file(r, path, type) == -1)
		api_reply_error(r, 404, "not_found", "no such file");
	free(path);
}
