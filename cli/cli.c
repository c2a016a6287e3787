/*
 * Calls to the controller's REST API with libcurl, and the output helpers
 * every command shares: errors, pagination, tables or JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

#define CLI_TIMEOUT	30L			/* seconds, whole request */
#define CLI_REPLY_MAX	(64 * 1024 * 1024)	/* bytes */
#define CLI_PAGE_LIMIT	100

struct cli_buf {
	char	*b_data;
	size_t	 b_len;
	int	 b_toobig;
};

static CURL	*cli_curl;

static size_t	 cli_write_cb(char *, size_t, size_t, void *);
static CURL	*cli_handle(void);
static struct curl_slist *cli_header(struct curl_slist *, const char *);
static void	 cli_error(const char *, const char *, long, struct cli_buf *);

static CURL *
cli_handle(void)
{
	if (cli_curl == NULL && (cli_curl = curl_easy_init()) == NULL) {
		fprintf(stderr, "opsnctl: cannot start libcurl\n");
		exit(CLI_EXIT_ERROR);
	}
	return (cli_curl);
}

/* Allocation failure is fatal here as everywhere else. */
static struct curl_slist *
cli_header(struct curl_slist *list, const char *h)
{
	struct curl_slist	*l;

	if ((l = curl_slist_append(list, h)) == NULL) {
		fprintf(stderr, "opsnctl: out of memory\n");
		exit(CLI_EXIT_ERROR);
	}
	return (l);
}

void
cli_close(void)
{
	if (cli_curl != NULL)
		curl_easy_cleanup(cli_curl);
	cli_curl = NULL;
}

static size_t
cli_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct cli_buf	*b = arg;

	n *= size;
	if (n > CLI_REPLY_MAX - b->b_len) {
		b->b_toobig = 1;
		return (0);
	}
	b->b_data = xrealloc(b->b_data, b->b_len + n + 1);
	memcpy(b->b_data + b->b_len, data, n);
	b->b_len += n;
	b->b_data[b->b_len] = '\0';
	return (n);
}

/* Print the server's {"error":{"code","message"}} for an HTTP failure. */
static void
cli_error(const char *method, const char *url, long status,
    struct cli_buf *b)
{
	json_t		*j = NULL, *e;
	const char	*code = NULL, *msg = NULL;
	char		*cmsg, *ccode;

	if (b->b_len > 0)
		j = json_loadb(b->b_data, b->b_len, 0, NULL);
	e = json_object_get(j, "error");
	code = json_string_value(json_object_get(e, "code"));
	msg = json_string_value(json_object_get(e, "message"));
	if (msg != NULL) {
		cmsg = format_clean(msg);
		ccode = format_clean(code != NULL ? code : "no code");
		fprintf(stderr, "opsnctl: %s (%s, HTTP %ld)\n", cmsg, ccode,
		    status);
		free(cmsg);
		free(ccode);
	} else
		fprintf(stderr, "opsnctl: %s %s: HTTP %ld without an error "
		    "message\n", method, url, status);
	if (status == 401 && cli_conf.cc_token == NULL)
		fprintf(stderr, "opsnctl: no token: use --token-file, "
		    "OPSN_TOKEN_FILE, OPSN_TOKEN or token in %s\n",
		    cli_conf.cc_file != NULL ? cli_conf.cc_file :
		    "~/.config/opsn/opsnctl.conf");
	json_decref(j);
}

int
cli_request(const char *method, const char *path, json_t *body, json_t **out)
{
	CURL			*c = cli_handle();
	struct curl_slist	*hdrs = NULL;
	struct cli_buf		 b;
	char			 errbuf[CURL_ERROR_SIZE];
	char			*url = NULL, *auth = NULL, *payload = NULL;
	json_t			*j;
	json_error_t		 jerr;
	CURLcode		 rc;
	long			 status = 0;
	int			 ret = -1;

	memset(&b, 0, sizeof(b));
	errbuf[0] = '\0';
	if (out != NULL)
		*out = NULL;
	xasprintf(&url, "%s%s", cli_conf.cc_url, path);

	/* Reset per request; the connection itself stays open for the next. */
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, CLI_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "opsnctl/" OPSN_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (cli_conf.cc_ca != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cli_conf.cc_ca);

	hdrs = cli_header(hdrs, "Accept: application/json");
	hdrs = cli_header(hdrs, "Expect:");
	if (cli_conf.cc_token != NULL) {
		xasprintf(&auth, "Authorization: Bearer %s", cli_conf.cc_token);
		hdrs = cli_header(hdrs, auth);
	}
	if (body != NULL) {
		if ((payload = json_dumps(body, JSON_COMPACT)) == NULL) {
			fprintf(stderr, "opsnctl: cannot encode the request\n");
			goto out;
		}
		hdrs = cli_header(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
		    (long)strlen(payload));
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

	rc = curl_easy_perform(c);
	if (b.b_toobig) {
		fprintf(stderr, "opsnctl: %s %s: reply larger than %d bytes\n",
		    method, url, CLI_REPLY_MAX);
		goto out;
	}
	if (rc != CURLE_OK) {
		fprintf(stderr, "opsnctl: %s: %s\n", url,
		    errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		if (rc == CURLE_PEER_FAILED_VERIFICATION &&
		    cli_conf.cc_ca == NULL)
			fprintf(stderr, "opsnctl: give the controller's CA "
			    "with --ca, OPSN_CA or ca in the config file\n");
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		cli_error(method, url, status, &b);
		goto out;
	}
	if (b.b_len > 0) {
		j = json_loadb(b.b_data, b.b_len, 0, &jerr);
		if (j == NULL) {
			fprintf(stderr, "opsnctl: %s %s: bad JSON in the reply "
			    "(line %d: %s)\n", method, url, jerr.line,
			    jerr.text);
			goto out;
		}
		if (out != NULL)
			*out = j;
		else
			json_decref(j);
	}
	ret = 0;
out:
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(payload);
	free(b.b_data);
	free(url);
	json_decref(body);
	return (ret);
}

char *
cli_escape(const char *s)
{
	char	*e, *out;

	/* "." and ".." would name another path, even when escaped as is. */
	if (strcmp(s, ".") == 0)
		return (xstrdup("%2E"));
	if (strcmp(s, "..") == 0)
		return (xstrdup("%2E%2E"));
	if ((e = curl_easy_escape(cli_handle(), s, 0)) == NULL) {
		fprintf(stderr, "opsnctl: out of memory\n");
		exit(CLI_EXIT_ERROR);
	}
	out = xstrdup(e);
	curl_free(e);
	return (out);
}

int
cli_list(const char *path, json_t **out)
{
	json_t		*all, *page, *items;
	const char	*next;
	char		*cursor = NULL, *ecur, *url;
	int		 ret = -1;

	*out = NULL;
	all = json_array();
	for (;;) {
		if (cursor == NULL)
			xasprintf(&url, "%s%climit=%d", path,
			    strchr(path, '?') != NULL ? '&' : '?',
			    CLI_PAGE_LIMIT);
		else {
			ecur = cli_escape(cursor);
			xasprintf(&url, "%s%climit=%d&cursor=%s", path,
			    strchr(path, '?') != NULL ? '&' : '?',
			    CLI_PAGE_LIMIT, ecur);
			free(ecur);
		}
		if (cli_request("GET", url, NULL, &page) == -1) {
			free(url);
			goto out;
		}
		items = json_object_get(page, "items");
		if (!json_is_array(items)) {
			fprintf(stderr, "opsnctl: GET %s: the reply has no "
			    "items list\n", url);
			free(url);
			json_decref(page);
			goto out;
		}
		free(url);
		json_array_extend(all, items);
		next = json_string_value(json_object_get(page, "next_cursor"));
		/* A server that hands back the same cursor would loop. */
		if (next != NULL && cursor != NULL &&
		    strcmp(next, cursor) == 0) {
			fprintf(stderr, "opsnctl: GET %s: the server returned "
			    "the same cursor twice\n", path);
			json_decref(page);
			goto out;
		}
		free(cursor);
		cursor = next != NULL ? xstrdup(next) : NULL;
		json_decref(page);
		if (cursor == NULL)
			break;
	}
	*out = json_pack("{s:O,s:n}", "items", all, "next_cursor");
	ret = 0;
out:
	free(cursor);
	json_decref(all);
	return (ret);
}

int
cli_show_list(const char *path, const struct format_col *cols, size_t ncols)
{
	json_t	*list;

	if (cli_list(path, &list) == -1)
		return (CLI_EXIT_ERROR);
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, list);
	else
		format_table(stdout, cols, ncols,
		    json_object_get(list, "items"));
	json_decref(list);
	return (CLI_EXIT_OK);
}

int
cli_show_object(json_t *obj, const struct format_col *cols, size_t ncols)
{
	if (!json_is_object(obj)) {
		fprintf(stderr, "opsnctl: the reply is not an object\n");
		json_decref(obj);
		return (CLI_EXIT_ERROR);
	}
	if (cli_conf.cc_output == CLI_OUTPUT_JSON)
		format_json(stdout, obj);
	else
		format_fields(stdout, cols, ncols, obj);
	json_decref(obj);
	return (CLI_EXIT_OK);
}

const char *
cli_opt(const struct cli_call *call, const char *name)
{
	const char	*o;
	size_t		 i, len = strlen(name);

	for (i = 0; i < CLI_MAXOPTS; i++) {
		if ((o = call->ca_cmd->c_opts[i]) == NULL)
			break;
		if (strncmp(o, name, len) == 0 &&
		    (o[len] == '\0' || o[len] == '='))
			return (call->ca_optv[i]);
	}
	return (NULL);
}

void
cli_print_usage(FILE *f, const struct cli_cmd *cmd)
{
	size_t	 i;

	fprintf(f, "usage: opsnctl");
	for (i = 0; cmd->c_path[i] != NULL; i++)
		fprintf(f, " %s", cmd->c_path[i]);
	if (cmd->c_args[0] != '\0')
		fprintf(f, " %s", cmd->c_args);
	fputc('\n', f);
}

int
cli_usage(const struct cli_call *call)
{
	cli_print_usage(stderr, call->ca_cmd);
	return (CLI_EXIT_USAGE);
}
