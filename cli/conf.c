/*
 * Connection settings, in increasing priority: the config file
 * (~/.config/opsn/opsnctl.conf), the environment (OPSN_*), then flags.
 */
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>
#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define CONF_TOKEN_MAX	(64 * 1024)

/* Keys of the config file, in section [opsnctl] or at the top. */
static const struct conf_key {
	const char	*ck_name;
	size_t		 ck_off;
} conf_keys[] = {
	{ "url",	offsetof(struct conf_src, cs_url) },
	{ "token",	offsetof(struct conf_src, cs_token) },
	{ "ca",		offsetof(struct conf_src, cs_ca) },
};

static const struct conf_key conf_env[] = {
	{ "OPSN_URL",		offsetof(struct conf_src, cs_url) },
	{ "OPSN_TOKEN",		offsetof(struct conf_src, cs_token) },
	{ "OPSN_TOKEN_FILE",	offsetof(struct conf_src, cs_token_file) },
	{ "OPSN_CA",		offsetof(struct conf_src, cs_ca) },
};

struct conf_parse {
	struct conf_src	 cp_src;
	FILE		*cp_f;
	int		 cp_line;	/* lines read so far */
	int		 cp_badline;
	char		*cp_badkey;
};

static char	*conf_path(void);
static char	**conf_field(struct conf_src *, const struct conf_key *);
static char	*conf_reader_cb(char *, int, void *);
static int	 conf_ini_cb(void *, const char *, const char *, const char *);
static int	 conf_read_file(const char *, struct conf_src *, char **);
static int	 conf_read_token(const char *, char **, char **);
static int	 conf_check_token(const char *, const char *, char **);

struct cli_conf cli_conf;

static char **
conf_field(struct conf_src *src, const struct conf_key *k)
{
	return ((char **)((char *)src + k->ck_off));
}

/* $XDG_CONFIG_HOME/opsn/opsnctl.conf, else ~/.config/...; NULL if no home. */
static char *
conf_path(void)
{
	const char	*dir, *home;
	struct passwd	*pw;
	char		*path;

	if ((dir = getenv("XDG_CONFIG_HOME")) != NULL && dir[0] == '/') {
		xasprintf(&path, "%s/opsn/opsnctl.conf", dir);
		return (path);
	}
	if ((home = getenv("HOME")) == NULL || home[0] == '\0') {
		if ((pw = getpwuid(getuid())) == NULL)
			return (NULL);
		home = pw->pw_dir;
	}
	xasprintf(&path, "%s/.config/opsn/opsnctl.conf", home);
	return (path);
}

/* fgets that counts lines, so that errors can name the line of a key. */
static char *
conf_reader_cb(char *buf, int len, void *arg)
{
	struct conf_parse	*cp = arg;
	char			*s;

	if ((s = fgets(buf, len, cp->cp_f)) != NULL)
		cp->cp_line++;
	return (s);
}

static int
conf_ini_cb(void *arg, const char *section, const char *name,
    const char *value)
{
	struct conf_parse	*cp = arg;
	char			**field;
	size_t			 i;

	if (section[0] != '\0' && strcmp(section, "opsnctl") != 0)
		return (1);
	for (i = 0; i < nitems(conf_keys); i++) {
		if (strcmp(name, conf_keys[i].ck_name) != 0)
			continue;
		field = conf_field(&cp->cp_src, &conf_keys[i]);
		free(*field);
		*field = xstrdup(value);
		return (1);
	}
	if (cp->cp_badkey == NULL) {
		cp->cp_badkey = xstrdup(name);
		cp->cp_badline = cp->cp_line;
	}
	return (0);
}

static int
conf_read_file(const char *path, struct conf_src *src, char **cause)
{
	struct conf_parse	 cp;
	int			 rc;

	memset(&cp, 0, sizeof(cp));
	if ((cp.cp_f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return (0);
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	rc = ini_parse_stream(conf_reader_cb, &cp, conf_ini_cb, &cp);
	fclose(cp.cp_f);
	if (rc != 0) {
		if (cp.cp_badkey != NULL && cp.cp_badline == rc)
			xasprintf(cause, "%s:%d: unknown key '%s' (keys are "
			    "url, token and ca)", path, rc, cp.cp_badkey);
		else if (rc > 0)
			xasprintf(cause, "%s:%d: syntax error", path, rc);
		else
			xasprintf(cause, "%s: cannot parse", path);
		free(cp.cp_badkey);
		conf_src_clear(&cp.cp_src);
		return (-1);
	}
	*src = cp.cp_src;
	return (0);
}

/* A token goes into an HTTP header: refuse anything that could break it. */
static int
conf_check_token(const char *token, const char *from, char **cause)
{
	const unsigned char	*p;

	if (*token == '\0') {
		xasprintf(cause, "%s: the token is empty", from);
		return (-1);
	}
	for (p = (const unsigned char *)token; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f) {
			xasprintf(cause, "%s: the token holds a space or a "
			    "control character", from);
			return (-1);
		}
	}
	return (0);
}

static int
conf_read_token(const char *path, char **out, char **cause)
{
	char	*buf, *start, *end;

	if (util_read_file(path, CONF_TOKEN_MAX, &buf, NULL, cause) == -1)
		return (-1);
	for (start = buf; isspace((unsigned char)*start); start++)
		;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	*out = xstrndup(start, end - start);
	explicit_bzero(buf, strlen(buf));
	free(buf);
	return (0);
}

void
conf_src_clear(struct conf_src *src)
{
	if (src->cs_token != NULL)
		explicit_bzero(src->cs_token, strlen(src->cs_token));
	free(src->cs_url);
	free(src->cs_token);
	free(src->cs_token_file);
	free(src->cs_ca);
	memset(src, 0, sizeof(*src));
}

void
conf_clear(void)
{
	if (cli_conf.cc_token != NULL)
		explicit_bzero(cli_conf.cc_token, strlen(cli_conf.cc_token));
	free(cli_conf.cc_url);
	free(cli_conf.cc_token);
	free(cli_conf.cc_ca);
	free(cli_conf.cc_file);
	cli_conf.cc_url = cli_conf.cc_token = NULL;
	cli_conf.cc_ca = cli_conf.cc_file = NULL;
}

int
conf_load(const struct conf_src *flags, char **cause)
{
	struct conf_src		 file, env;
	const struct conf_src	*layer[3] = { flags, &env, &file };
	const char		*v, *from = NULL;
	char			*dir, *slash;
	size_t			 i, len;
	int			 rc = -1;

	memset(&file, 0, sizeof(file));
	memset(&env, 0, sizeof(env));
	cli_conf.cc_file = conf_path();
	if (cli_conf.cc_file != NULL &&
	    conf_read_file(cli_conf.cc_file, &file, cause) == -1)
		goto out;
	for (i = 0; i < nitems(conf_env); i++) {
		if ((v = getenv(conf_env[i].ck_name)) != NULL && *v != '\0')
			*conf_field(&env, &conf_env[i]) = xstrdup(v);
	}
	if (env.cs_token != NULL && env.cs_token_file != NULL) {
		xasprintf(cause, "set only one of OPSN_TOKEN and "
		    "OPSN_TOKEN_FILE");
		goto out;
	}

	for (i = 0; i < nitems(layer); i++) {
		if (cli_conf.cc_url == NULL && layer[i]->cs_url != NULL)
			cli_conf.cc_url = xstrdup(layer[i]->cs_url);
		if (cli_conf.cc_ca == NULL && layer[i]->cs_ca != NULL) {
			v = layer[i]->cs_ca;
			/* A relative path in the file is next to the file. */
			if (layer[i] == &file && v[0] != '/') {
				dir = xstrdup(cli_conf.cc_file);
				if ((slash = strrchr(dir, '/')) != NULL)
					*slash = '\0';
				xasprintf(&cli_conf.cc_ca, "%s/%s", dir, v);
				free(dir);
			} else
				cli_conf.cc_ca = xstrdup(v);
		}
		if (from != NULL)
			continue;
		if (layer[i]->cs_token_file != NULL) {
			from = layer[i]->cs_token_file;
			if (conf_read_token(from, &cli_conf.cc_token,
			    cause) == -1)
				goto out;
		} else if (layer[i]->cs_token != NULL) {
			from = layer[i] == flags ? "--token" :
			    layer[i] == &env ? "OPSN_TOKEN" : cli_conf.cc_file;
			cli_conf.cc_token = xstrdup(layer[i]->cs_token);
		}
	}

	if (cli_conf.cc_url == NULL) {
		xasprintf(cause, "no controller URL: use --url, OPSN_URL or "
		    "url in %s", cli_conf.cc_file != NULL ? cli_conf.cc_file :
		    "~/.config/opsn/opsnctl.conf");
		goto out;
	}
	/* The token travels in every request: never over plain HTTP. */
	if (strncasecmp(cli_conf.cc_url, "https://", 8) != 0) {
		xasprintf(cause, "%s: the URL must start with https://",
		    cli_conf.cc_url);
		goto out;
	}
	len = strlen(cli_conf.cc_url);
	while (len > 8 && cli_conf.cc_url[len - 1] == '/')
		cli_conf.cc_url[--len] = '\0';
	if (cli_conf.cc_token != NULL &&
	    conf_check_token(cli_conf.cc_token, from, cause) == -1)
		goto out;
	rc = 0;
out:
	conf_src_clear(&file);
	conf_src_clear(&env);
	return (rc);
}
