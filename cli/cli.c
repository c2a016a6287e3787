/*
 * Calls to the controller's REST API with libcurl, and the output helpers
 * every command shares: errors, pagination, tables or JSON.
 */
#include <sys/ioctl.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "opsn/util.h"

#include "cli.h"

#define CLI_TIMEOUT	30L			/* seconds, whole request */
#define CLI_REPLY_MAX	(64 * 1024 * 1024)	/* bytes */
#define CLI_PAGE_LIMIT	100
#define CLI_UPLOAD_STALL 300L			/* seconds without a byte */
#define CLI_PROGRESS_MS	100			/* between progress updates */
#define CLI_USAGE_COLS	80
/* A larger body goes in parts: the controller's default limit. */
#define CLI_PART_BODY	(1024 * 1024)
#define CLI_PART_MIN	4096
#define CLI_RETRIES	5		/* 429s waited out */
#define CLI_RETRY_MAX	60		/* seconds, the longest wait */

struct cli_buf {
	char	*b_data;
	size_t	 b_len;
	int	 b_toobig;
};

/*
 * One request. r_fd != -1 streams r_size bytes of a file from r_base as
 * the body (PUT); r_raw sends r_rawlen bytes as they are (a part of a
 * body); otherwise r_body, if not NULL, is sent as JSON (the caller keeps
 * it). r_http, if not NULL, adds request headers and collects response
 * headers; r_range and r_sha are a part's headers.
 */
struct cli_req {
	const char	*r_method;
	/* A download: 2xx bytes go to r_out as they come, asked as r_accept. */
	FILE		*r_out;
	const char	*r_accept;
	int		 r_werr;	/* writing r_out failed */
	EVP_MD_CTX	*r_out_md;	/* if not NULL, hashing r_out's bytes */
	uint64_t	 r_out_size;	/* bytes written to r_out */
	const char	*r_path;
	json_t		*r_body;
	struct cli_http	*r_http;
	int		 r_quiet404;	/* 404: return 1, print nothing */
	const char	*r_raw;
	size_t		 r_rawlen;
	const char	*r_ctype;	/* of r_raw */
	const char	*r_range;	/* "Content-Range: ..." */
	const char	*r_sha;		/* "Upload-Sha256: ..." */
	int		 r_fd;
	uint64_t	 r_base;
	uint64_t	 r_size;
	uint64_t	 r_sent;	/* bytes read from r_fd */
	const char	*r_name;	/* labels the progress line, or NULL */
	int		 r_errno;	/* read(2) failed */
	int		 r_short;	/* the file shrank */
	uint64_t	 r_start_ms;
	uint64_t	 r_shown_ms;	/* last progress update */
};

/* A download under way. */
struct cli_dl {
	CURL		*d_c;
	struct cli_req	*d_r;
	struct cli_buf	*d_b;
};

static CURL	*cli_curl;
static int	 cli_status_shown;	/* a status line is on stderr */

static size_t	 cli_write_cb(char *, size_t, size_t, void *);
static CURL	*cli_handle(void);
static struct curl_slist *cli_header(struct curl_slist *, const char *);
static void	 cli_error(const char *, const char *, long, struct cli_buf *);
static size_t	 cli_read_cb(char *, size_t, size_t, void *);
static int	 cli_seek_cb(void *, curl_off_t, int);
static int	 cli_progress_cb(void *, curl_off_t, curl_off_t, curl_off_t,
		    curl_off_t);
static int	 cli_perform(struct cli_req *, json_t **);
static void	 cli_keep_headers(CURL *, struct cli_http *);
static int	 cli_opt_index(const struct cli_call *, const char *);

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

/* A download's bytes: into the file on 2xx, else kept for the error. */
static size_t
cli_download_cb(char *data, size_t size, size_t n, void *arg)
{
	struct cli_dl	*d = arg;
	long		 status = 0;

	curl_easy_getinfo(d->d_c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return (cli_write_cb(data, size, n, d->d_b));
	if (fwrite(data, size, n, d->d_r->r_out) != n) {
		d->d_r->r_werr = errno;
		return (0);
	}
	if (d->d_r->r_out_md != NULL)
		EVP_DigestUpdate(d->d_r->r_out_md, data, n * size);
	d->d_r->r_out_size += n * size;
	return (n * size);
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
	/* What is missing, one per line (an export refused as incomplete). */
	if (json_is_array(json_object_get(e, "missing"))) {
		json_t	*m;
		size_t	 i;

		json_array_foreach(json_object_get(e, "missing"), i, m) {
			cmsg = format_clean(json_string_value(m) ?
			    json_string_value(m) : "?");
			fprintf(stderr, "  - %s\n", cmsg);
			free(cmsg);
		}
	}
	if (status == 401 && cli_conf.cc_token == NULL)
		fprintf(stderr, "opsnctl: no token: use --token-file, "
		    "OPSN_TOKEN_FILE, OPSN_TOKEN or token in %s\n",
		    cli_conf.cc_file != NULL ? cli_conf.cc_file :
		    "~/.config/opsn/opsnctl.conf");
	json_decref(j);
}

static size_t
cli_read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct cli_req	*r = arg;
	size_t		 want = size * n;
	ssize_t		 got;

	if (want > r->r_size - r->r_sent)
		want = r->r_size - r->r_sent;
	if (want == 0)
		return (0);
	do
		got = read(r->r_fd, buf, want);
	while (got == -1 && errno == EINTR);
	if (got == -1) {
		r->r_errno = errno;
		return (CURL_READFUNC_ABORT);
	}
	/* We promised r_size bytes in Content-Length. */
	if (got == 0) {
		r->r_short = 1;
		return (CURL_READFUNC_ABORT);
	}
	r->r_sent += (uint64_t)got;
	return ((size_t)got);
}

/* libcurl rewinds the body when it must send it again. */
static int
cli_seek_cb(void *arg, curl_off_t off, int origin)
{
	struct cli_req	*r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->r_size ||
	    lseek(r->r_fd, (off_t)(r->r_base + (uint64_t)off), SEEK_SET) == -1)
		return (CURL_SEEKFUNC_CANTSEEK);
	r->r_sent = (uint64_t)off;
	return (CURL_SEEKFUNC_OK);
}

/*
 * The upload's progress on a terminal: a file (r_size known) or a JSON
 * body (ultotal); once every byte is sent, how long the server has been
 * working on it.
 */
static int
cli_progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
	struct cli_req	*r = arg;
	char		 done[32], total[32];
	uint64_t	 now = util_mono_ms(), size;

	(void)dltotal;
	(void)dlnow;
	if (now - r->r_shown_ms < CLI_PROGRESS_MS)
		return (0);
	r->r_shown_ms = now;
	size = r->r_fd != -1 ? r->r_size : ultotal > 0 ? (uint64_t)ultotal : 0;
	/* A JSON body's size is known once libcurl starts sending it. */
	if (r->r_fd == -1 && size == 0)
		return (0);
	format_bytes(size, total, sizeof(total));
	if (r->r_fd == -1 && size > 0 && (uint64_t)ulnow >= size) {
		cli_status("%s: %s sent, waiting for the controller (%" PRIu64
		    "s)", r->r_name, total, (now - r->r_start_ms) / 1000);
		return (0);
	}
	format_bytes((uint64_t)ulnow, done, sizeof(done));
	cli_status("%s: %s of %s (%d%%)", r->r_name, done, total,
	    size > 0 ? (int)((uint64_t)ulnow * 100 / size) : 100);
	return (0);
}

/* Copy the response headers that r_http asks for. */
static void
cli_keep_headers(CURL *c, struct cli_http *h)
{
	struct curl_header	*hdr;
	size_t			 i;

	for (i = 0; i < CLI_HTTP_MAXHDRS && h->h_keep[i] != NULL; i++) {
		free(h->h_got[i]);
		h->h_got[i] = NULL;
		/* The last response of the request, not a 100 Continue. */
		if (curl_easy_header(c, h->h_keep[i], 0, CURLH_HEADER, -1,
		    &hdr) == CURLHE_OK)
			h->h_got[i] = xstrdup(hdr->value);
	}
}

/* A file upload: no limit on the whole request, only on a stall. */
static struct curl_slist *
cli_setup_upload(CURL *c, struct cli_req *r, struct curl_slist *hdrs)
{
	/*
	 * A disk image may take minutes: the server may hash and sync the
	 * file after the last byte before it answers.
	 */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CLI_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, CLI_UPLOAD_STALL);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, cli_read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, r);
	curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, cli_seek_cb);
	curl_easy_setopt(c, CURLOPT_SEEKDATA, r);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->r_size);
	/* A part's progress is the whole body's (cli_parts). */
	if (r->r_range == NULL) {
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cli_progress_cb);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
	}
	return (cli_header(hdrs, "Content-Type: application/octet-stream"));
}

/* A part of a body in memory (cli_parts): the last may take a while. */
static struct curl_slist *
cli_setup_part(CURL *c, struct cli_req *r, struct curl_slist *hdrs)
{
	char	*ct;

	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CLI_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, CLI_UPLOAD_STALL);
	if (r->r_ctype != NULL) {
		xasprintf(&ct, "Content-Type: %s", r->r_ctype);
		hdrs = cli_header(hdrs, ct);
		free(ct);
	}
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->r_raw);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)r->r_rawlen);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->r_method);
	return (hdrs);
}

/*
 * A JSON request (or none): timeouts, progress, the body. -1 if the body
 * cannot be encoded (reason printed); *payload is the caller's to free.
 */
static int
cli_setup_json(CURL *c, struct cli_req *r, struct curl_slist **hdrs,
    char **payload)
{
	const char	*method = r->r_method;

	if (r->r_http != NULL && r->r_http->h_long) {
		/* Like an upload: only a stall ends it. */
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CLI_TIMEOUT);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, CLI_UPLOAD_STALL);
	} else
		curl_easy_setopt(c, CURLOPT_TIMEOUT, CLI_TIMEOUT);
	if (r->r_name != NULL) {
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cli_progress_cb);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
	}
	if (r->r_body != NULL) {
		if ((*payload = json_dumps(r->r_body, JSON_COMPACT)) == NULL) {
			fprintf(stderr, "opsnctl: cannot encode the request\n");
			return (-1);
		}
		*hdrs = cli_header(*hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, *payload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)strlen(*payload));
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	return (0);
}

/*
 * What a finished transfer means: 0 on 2xx (the reply parsed into *out),
 * 1 on a 404 that r_quiet404 allows, else -1 with the reason printed.
 */
static int
cli_result(CURL *c, struct cli_req *r, CURLcode rc, struct cli_buf *b,
    const char *url, const char *errbuf, json_t **out)
{
	const char	*method = r->r_method;
	json_error_t	 jerr;
	json_t		*j;
	long		 status = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (r->r_http != NULL) {
		r->r_http->h_status = rc == CURLE_OK ? status : 0;
		if (rc == CURLE_OK)
			cli_keep_headers(c, r->r_http);
	}
	if (r->r_quiet404 && rc == CURLE_OK && status == 404)
		return (1);
	if (rc != CURLE_OK || status < 200 || status > 299)
		cli_status_end(1);
	if (b->b_toobig) {
		fprintf(stderr, "opsnctl: %s %s: reply larger than %d bytes\n",
		    method, url, CLI_REPLY_MAX);
		return (-1);
	}
	if (r->r_werr != 0) {
		fprintf(stderr, "opsnctl: writing the reply: %s\n",
		    strerror(r->r_werr));
		return (-1);
	}
	if (r->r_errno != 0 || r->r_short) {
		fprintf(stderr, "opsnctl: %s: %s\n", r->r_name, r->r_short ?
		    "the file shrank while it was sent" :
		    strerror(r->r_errno));
		return (-1);
	}
	if (rc != CURLE_OK) {
		fprintf(stderr, "opsnctl: %s: %s\n", url,
		    errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
		if (rc == CURLE_PEER_FAILED_VERIFICATION &&
		    cli_conf.cc_ca == NULL)
			fprintf(stderr, "opsnctl: give the controller's CA "
			    "with --ca, OPSN_CA or ca in the config file\n");
		return (-1);
	}
	if (status < 200 || status > 299) {
		cli_error(method, url, status, b);
		return (-1);
	}
	if (b->b_len == 0 || r->r_out != NULL)
		return (0);
	/* A console log may hold NUL bytes; callers use the length. */
	if ((j = json_loadb(b->b_data, b->b_len, JSON_ALLOW_NUL,
	    &jerr)) == NULL) {
		cli_status_end(1);
		fprintf(stderr, "opsnctl: %s %s: bad JSON in the reply (line "
		    "%d: %s)\n", method, url, jerr.line, jerr.text);
		return (-1);
	}
	if (out != NULL)
		*out = j;
	else
		json_decref(j);
	return (0);
}

/*
 * Perform the request; a 429 (too many requests with this token) is
 * waited out as its Retry-After says, a few times, then answered as is.
 */
static CURLcode
cli_send(CURL *c, struct cli_req *r, struct cli_buf *b)
{
	struct curl_header	*h;
	CURLcode		 rc;
	long			 status, wait;
	int			 tries;

	for (tries = 0; ; tries++) {
		rc = curl_easy_perform(c);
		status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (rc != CURLE_OK || status != 429 || tries == CLI_RETRIES ||
		    curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1,
		    &h) != CURLHE_OK)
			return (rc);
		wait = strtol(h->value, NULL, 10);
		if (wait < 1 || wait > CLI_RETRY_MAX)
			return (rc);
		cli_status("too many requests with this token: waiting %ld s",
		    wait);
		sleep((unsigned)wait);
		cli_status_end(0);
		free(b->b_data);
		memset(b, 0, sizeof(*b));
		/* A file body is sent again from its start. */
		if (r->r_fd != -1 && lseek(r->r_fd, (off_t)r->r_base,
		    SEEK_SET) == -1)
			return (rc);
		r->r_sent = 0;
	}
}

/* 0 on 2xx, 1 on a 404 that r_quiet404 allows, else -1 (reason printed). */
static int
cli_perform(struct cli_req *r, json_t **out)
{
	CURL			*c = cli_handle();
	struct curl_slist	*hdrs = NULL;
	struct cli_buf		 b;
	struct cli_dl		 dl;
	char			 errbuf[CURL_ERROR_SIZE];
	char			*url = NULL, *auth = NULL, *payload = NULL;
	char			*accept = NULL;
	size_t			 i;
	int			 ret = -1;

	memset(&b, 0, sizeof(b));
	errbuf[0] = '\0';
	if (out != NULL)
		*out = NULL;
	r->r_start_ms = util_mono_ms();
	xasprintf(&url, "%s%s", cli_conf.cc_url, r->r_path);

	/* Reset per request; the connection itself stays open for the next. */
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "opsnctl/" OPSN_VERSION);
	if (r->r_out != NULL) {
		dl.d_c = c;
		dl.d_r = r;
		dl.d_b = &b;
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_download_cb);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &dl);
	} else {
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_write_cb);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	}
	if (cli_conf.cc_ca != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, cli_conf.cc_ca);

	if (r->r_accept != NULL) {
		xasprintf(&accept, "Accept: %s", r->r_accept);
		hdrs = cli_header(hdrs, accept);
	} else
		hdrs = cli_header(hdrs, "Accept: application/json");
	hdrs = cli_header(hdrs, "Expect:");
	if (cli_conf.cc_token != NULL) {
		xasprintf(&auth, "Authorization: Bearer %s", cli_conf.cc_token);
		hdrs = cli_header(hdrs, auth);
	}
	for (i = 0; r->r_http != NULL && i < CLI_HTTP_MAXHDRS &&
	    r->r_http->h_send[i] != NULL; i++)
		hdrs = cli_header(hdrs, r->r_http->h_send[i]);
	if (r->r_range != NULL) {
		hdrs = cli_header(hdrs, r->r_range);
		hdrs = cli_header(hdrs, r->r_sha);
	}
	if (r->r_raw != NULL)
		hdrs = cli_setup_part(c, r, hdrs);
	else if (r->r_fd != -1)
		hdrs = cli_setup_upload(c, r, hdrs);
	else if (cli_setup_json(c, r, &hdrs, &payload) == -1)
		goto out;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	ret = cli_result(c, r, cli_send(c, r, &b), &b, url, errbuf, out);
out:
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(payload);
	free(accept);
	free(b.b_data);
	free(url);
	return (ret);
}

int
cli_request(const char *method, const char *path, json_t *body, json_t **out)
{
	return (cli_request_http(method, path, body, NULL, out));
}

/* SHA-256 of len bytes as hex. */
static void
cli_sha256(const void *p, size_t len, char hex[65])
{
	unsigned char	 md[32];
	unsigned int	 mdlen = sizeof(md);

	if (EVP_Digest(p, len, md, &mdlen, util_sha256(), NULL) != 1) {
		fprintf(stderr, "opsnctl: SHA-256 failed\n");
		exit(CLI_EXIT_ERROR);
	}
	util_hex(md, sizeof(md), hex);
}

/* A whole number member of a part's answer, or -1. */
static int64_t
cli_part_num(json_t *reply, const char *key)
{
	json_t	*v = json_object_get(reply, key);

	return (json_is_integer(v) && json_integer_value(v) >= 0 ?
	    (int64_t)json_integer_value(v) : -1);
}

/*
 * Send a body in parts (the controller's limit on one request is small;
 * see its http.h): ask how much of this body it already holds, then send
 * the rest one part at a time; the last part's answer is the call's. The
 * body is the len bytes at mem, or else the file open on fd. tmpl gives
 * the method, path, headers and label.
 */
static int
cli_parts(const struct cli_req *tmpl, const char *mem, int fd, uint64_t len,
    const char *sha, json_t **out)
{
	struct cli_req	 r;
	json_t		*reply = NULL;
	char		*range = NULL, *hsha = NULL, done[32], total[32];
	uint64_t	 off, n, part;
	int64_t		 v;
	int		 ret = -1;

	xasprintf(&hsha, "Upload-Sha256: %s", sha);
	xasprintf(&range, "Content-Range: bytes */%" PRIu64, len);
	memset(&r, 0, sizeof(r));
	r.r_method = tmpl->r_method;
	r.r_path = tmpl->r_path;
	r.r_fd = -1;
	r.r_raw = "";
	r.r_range = range;
	r.r_sha = hsha;
	if (cli_perform(&r, &reply) == -1)
		goto out;
	if ((v = cli_part_num(reply, "received")) == -1 ||
	    (uint64_t)v > len || cli_part_num(reply, "part_max") <
	    CLI_PART_MIN) {
		fprintf(stderr, "opsnctl: %s %s: the controller's answer to a "
		    "body in parts is not understood\n", r.r_method, r.r_path);
		goto out;
	}
	off = (uint64_t)v;
	part = (uint64_t)cli_part_num(reply, "part_max");
	/* Whole but not taken (the call failed): send the last part again. */
	if (off == len)
		off = len > part ? len - part : 0;
	if (off > 0 && tmpl->r_name != NULL && !cli_conf.cc_quiet) {
		format_bytes(off, done, sizeof(done));
		cli_status("%s: resuming after %s", tmpl->r_name, done);
		cli_status_end(1);
	}
	format_bytes(len, total, sizeof(total));
	for (;;) {
		n = len - off < part ? len - off : part;
		r = *tmpl;
		free(range);
		xasprintf(&range, "Content-Range: bytes %" PRIu64 "-%" PRIu64
		    "/%" PRIu64, off, off + n - 1, len);
		r.r_range = range;
		r.r_sha = hsha;
		r.r_name = NULL;
		if (mem != NULL) {
			r.r_fd = -1;
			r.r_raw = mem + off;
			r.r_rawlen = (size_t)n;
		} else {
			if (lseek(fd, (off_t)off, SEEK_SET) == -1) {
				fprintf(stderr, "opsnctl: %s: %s\n",
				    tmpl->r_name, strerror(errno));
				goto out;
			}
			r.r_fd = fd;
			r.r_base = off;
			r.r_size = n;
			r.r_name = tmpl->r_name;	/* for read errors */
		}
		if (off + n == len) {
			if (tmpl->r_name != NULL)
				cli_status("%s: %s sent, waiting for the "
				    "controller", tmpl->r_name, total);
			ret = cli_perform(&r, out);
			break;
		}
		json_decref(reply);
		reply = NULL;
		if (cli_perform(&r, &reply) == -1)
			goto out;
		if ((v = cli_part_num(reply, "received")) == -1 ||
		    (uint64_t)v <= off || (uint64_t)v >= len) {
			fprintf(stderr, "opsnctl: %s %s: the controller kept "
			    "no more of the body\n", r.r_method, r.r_path);
			goto out;
		}
		off = (uint64_t)v;
		if (tmpl->r_name != NULL) {
			format_bytes(off, done, sizeof(done));
			cli_status("%s: %s of %s (%d%%)", tmpl->r_name, done,
			    total, (int)(off * 100 / len));
		}
	}
out:
	if (tmpl->r_name != NULL)
		cli_status_end(ret == 0);
	json_decref(reply);
	free(range);
	free(hsha);
	return (ret);
}

int
cli_request_http(const char *method, const char *path, json_t *body,
    struct cli_http *http, json_t **out)
{
	struct cli_req	 r;
	char		*payload = NULL, sha[65];
	size_t		 len;
	int		 ret;

	memset(&r, 0, sizeof(r));
	r.r_method = method;
	r.r_path = path;
	r.r_body = body;
	r.r_http = http;
	r.r_fd = -1;
	if (http != NULL && http->h_label != NULL)
		r.r_name = http->h_label;
	if (body != NULL && (payload = json_dumps(body, JSON_COMPACT)) != NULL &&
	    (len = strlen(payload)) > CLI_PART_BODY) {
		cli_sha256(payload, len, sha);
		r.r_body = NULL;
		r.r_ctype = "application/json";
		ret = cli_parts(&r, payload, -1, len, sha, out);
	} else {
		ret = cli_perform(&r, out);
		if (r.r_name != NULL)
			cli_status_end(0);
	}
	free(payload);
	json_decref(body);
	return (ret);
}

void
cli_http_clear(struct cli_http *h)
{
	size_t	 i;

	if (h == NULL)
		return;
	for (i = 0; i < CLI_HTTP_MAXHDRS; i++) {
		free(h->h_got[i]);
		h->h_got[i] = NULL;
	}
}

int
cli_download(const char *path, const char *accept, struct cli_http *http,
    FILE *f)
{
	struct cli_req	 r;

	memset(&r, 0, sizeof(r));
	r.r_method = "GET";
	r.r_path = path;
	r.r_http = http;
	r.r_fd = -1;
	r.r_out = f;
	r.r_accept = accept;
	return (cli_perform(&r, NULL));
}

/*
 * cli_download with a progress line named name, no time limit but a
 * stall, and the body's size and SHA-256.
 */
int
cli_download_sum(const char *path, FILE *f, const char *name,
    uint64_t *size, char sha[65])
{
	struct cli_http	 http;
	struct cli_req	 r;
	unsigned char	 h[32];
	unsigned int	 len = sizeof(h);
	int		 ret;

	memset(&r, 0, sizeof(r));
	memset(&http, 0, sizeof(http));
	http.h_long = 1;
	r.r_method = "GET";
	r.r_path = path;
	r.r_http = &http;
	r.r_fd = -1;
	r.r_out = f;
	r.r_name = name;
	r.r_out_md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(r.r_out_md, util_sha256(), NULL);
	ret = cli_perform(&r, NULL);
	cli_status_end(0);
	EVP_DigestFinal_ex(r.r_out_md, h, &len);
	EVP_MD_CTX_free(r.r_out_md);
	util_hex(h, sizeof(h), sha);
	*size = r.r_out_size;
	cli_http_clear(&http);
	return (ret);
}

int
cli_save(const char *path, const char *accept, struct cli_http *http,
    const char *file, int binary)
{
	FILE	*f = stdout;
	char	*tmp = NULL, *clean;
	int	 rc;

	if (file == NULL && binary && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "opsnctl: the reply is a file: give --file or "
		    "redirect the output\n");
		return (-1);
	}
	if (file != NULL) {
		/* Written beside, renamed when whole. */
		xasprintf(&tmp, "%s.part", file);
		if ((f = fopen(tmp, "we")) == NULL) {
			clean = format_clean(tmp);
			fprintf(stderr, "opsnctl: %s: %s\n", clean,
			    strerror(errno));
			free(clean);
			free(tmp);
			return (-1);
		}
	}
	rc = cli_download(path, accept, http, f);
	if (fflush(f) == EOF || ferror(f)) {
		if (rc == 0)
			fprintf(stderr, "opsnctl: writing the reply: %s\n",
			    strerror(errno));
		rc = -1;
	}
	if (file != NULL) {
		if (fclose(f) == EOF && rc == 0) {
			fprintf(stderr, "opsnctl: writing the reply: %s\n",
			    strerror(errno));
			rc = -1;
		}
		if (rc == 0 && rename(tmp, file) == -1) {
			clean = format_clean(file);
			fprintf(stderr, "opsnctl: %s: %s\n", clean,
			    strerror(errno));
			free(clean);
			rc = -1;
		}
		if (rc == -1)
			unlink(tmp);
		free(tmp);
	}
	return (rc);
}

int
cli_lookup(const char *path, json_t **out)
{
	struct cli_req	 r;

	memset(&r, 0, sizeof(r));
	r.r_method = "GET";
	r.r_path = path;
	r.r_quiet404 = 1;
	r.r_fd = -1;
	return (cli_perform(&r, out));
}

/* DELETE collection/ID (ID escaped); 0 or -1 (reason printed). */
int
cli_delete(const char *collection, const char *id)
{
	char	*path, *e = cli_escape(id);
	int	 rc;

	xasprintf(&path, "%s/%s", collection, e);
	rc = cli_request("DELETE", path, NULL, NULL);
	free(path);
	free(e);
	return (rc);
}

int
cli_upload(const char *path, int fd, uint64_t size, const char *sha256,
    const char *name, json_t **out)
{
	struct cli_req	 r;
	char		*clean;
	int		 ret;

	clean = format_clean(name);
	memset(&r, 0, sizeof(r));
	r.r_method = "PUT";
	r.r_path = path;
	r.r_fd = fd;
	r.r_name = clean;
	ret = cli_parts(&r, NULL, fd, size, sha256, out);
	free(clean);
	return (ret);
}

size_t
cli_columns(int fd)
{
	struct winsize	 ws;

	if (ioctl(fd, TIOCGWINSZ, &ws) == -1 || ws.ws_col == 0)
		return (isatty(fd) ? 80 : 0);
	return (ws.ws_col);
}

/*
 * The line is cut to the terminal's width: "\r" only goes back to the start
 * of the last row, so a wrapped line would leave its first rows behind.
 */
void
cli_status(const char *fmt, ...)
{
	va_list	 ap;
	char	*line, *clean, *p;
	size_t	 cols, n = 0;

	if (cli_conf.cc_quiet || !isatty(STDERR_FILENO))
		return;
	va_start(ap, fmt);
	xvasprintf(&line, fmt, ap);
	va_end(ap);
	clean = format_clean(line);
	cols = cli_columns(STDERR_FILENO);
	for (p = clean; *p != '\0'; p++) {
		if (((unsigned char)*p & 0xc0) != 0x80 && ++n >= cols) {
			*p = '\0';
			break;
		}
	}
	fprintf(stderr, "\r\033[K%s", clean);
	fflush(stderr);
	cli_status_shown = 1;
	free(clean);
	free(line);
}

void
cli_status_end(int keep)
{
	if (!cli_status_shown)
		return;
	fputs(keep ? "\n" : "\r\033[K", stderr);
	fflush(stderr);
	cli_status_shown = 0;
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

char *
cli_path_query(const char *path, const char *const *kv)
{
	char	*out, *e, *tmp;
	size_t	 i;

	out = xstrdup(path);
	for (i = 0; kv[i] != NULL; i += 2) {
		if (kv[i + 1] == NULL)
			continue;
		e = cli_escape(kv[i + 1]);
		xasprintf(&tmp, "%s%c%s=%s", out, strchr(out, '?') != NULL ?
		    '&' : '?', kv[i], e);
		free(e);
		free(out);
		out = tmp;
	}
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

/* Index of option name in the command's c_opts, or -1. */
static int
cli_opt_index(const struct cli_call *call, const char *name)
{
	const char	*o;
	size_t		 i, len = strlen(name);

	for (i = 0; i < CLI_MAXOPTS; i++) {
		if ((o = call->ca_cmd->c_opts[i]) == NULL)
			break;
		if (strncmp(o, name, len) == 0 &&
		    (o[len] == '\0' || o[len] == '='))
			return ((int)i);
	}
	return (-1);
}

const char *
cli_opt(const struct cli_call *call, const char *name)
{
	int	 i;

	if ((i = cli_opt_index(call, name)) == -1)
		return (NULL);
	return (call->ca_optv[i]);
}

const char **
cli_opt_list(const struct cli_call *call, const char *name, size_t *n)
{
	int	 i;

	*n = 0;
	if ((i = cli_opt_index(call, name)) == -1)
		return (NULL);
	*n = call->ca_optn[i];
	return (call->ca_optl[i]);
}

/*
 * Long usages wrap at 80 columns, between top-level words (never inside
 * "[...]"), indented under the first argument.
 */
void
cli_print_usage(FILE *f, const struct cli_cmd *cmd)
{
	const char	*a, *w;
	size_t		 i, col, indent, len;
	int		 depth;

	col = fprintf(f, "usage: opsnctl");
	for (i = 0; cmd->c_path[i] != NULL; i++)
		col += fprintf(f, " %s", cmd->c_path[i]);
	indent = col + 1;
	for (a = cmd->c_args; *a != '\0'; a = w) {
		while (*a == ' ')
			a++;
		/* One top-level word, brackets and all. */
		for (w = a, depth = 0; *w != '\0' && (*w != ' ' || depth > 0);
		    w++) {
			if (*w == '[')
				depth++;
			else if (*w == ']' && depth > 0)
				depth--;
		}
		len = (size_t)(w - a);
		if (len == 0)
			break;
		if (col + 1 + len > CLI_USAGE_COLS && col > indent) {
			fprintf(f, "\n%*s", (int)indent - 1, "");
			col = indent - 1;
		}
		col += fprintf(f, " %.*s", (int)len, a);
	}
	fputc('\n', f);
}

int
cli_usage(const struct cli_call *call)
{
	cli_print_usage(stderr, call->ca_cmd);
	return (CLI_EXIT_USAGE);
}

/*
 * A password on standard input (--password-stdin): one line, without its
 * line end, at most max bytes, into a buffer the caller wipes and frees;
 * NULL after saying why. On a terminal the typing is not echoed.
 */
char *
cli_read_password(size_t max)
{
	struct termios	 t, quiet;
	char		*buf = xmalloc(max + 2);
	size_t		 len;
	int		 tty = isatty(STDIN_FILENO), echo_off = 0;

	if (tty && tcgetattr(STDIN_FILENO, &t) == 0) {
		quiet = t;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		echo_off = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
		fprintf(stderr, "password: ");
		fflush(stderr);
	}
	if (fgets(buf, max + 2, stdin) == NULL)
		buf[0] = '\0';
	if (echo_off) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
		fputc('\n', stderr);
	}
	len = strlen(buf);
	if (len > max && buf[len - 1] != '\n') {
		explicit_bzero(buf, max + 2);
		free(buf);
		fprintf(stderr, "opsnctl: --password-stdin: the password is "
		    "longer than %zu characters\n", max);
		return (NULL);
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0) {
		free(buf);
		fprintf(stderr, "opsnctl: --password-stdin: no password on "
		    "standard input\n");
		return (NULL);
	}
	return (buf);
}
