/*
 * The image cache: each part of an image (disk, kernel, initrd) is stored
 * by content as DIR/<sha256>, fetched from the controller over HTTPS with
 * the node's certificate into DIR/<sha256>.part, resumed with a Range
 * request after an interruption, and renamed into place only once its
 * size and SHA-256 match what the controller promised.
 *
 * One download per sha256, however many VMs wait for it. Downloads block
 * in libcurl on the uv thread pool; progress reaches the loop thread
 * through a mutex and a uv_async, and is forwarded to the controller.
 */
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "imgcache.h"

#define IC_PARTS	3
/* Downloads at once: each holds a uv pool thread for its whole length. */
#define IC_RUNNING_MAX	2
/* Attempts of one download, as long as each attempt gets new bytes. */
#define IC_TRIES	20
#define IC_PROGRESS_MS	250
#define IC_BODY_MAX	4096	/* error body kept from the server */
#define IC_MSG_MAX	200	/* server message copied into an error */
#define IC_NAME_MAX	128
#define IC_CHUNK	(1024 * 1024)
#define IC_STOPPING	"the image cache is stopping"

static const char *const ic_part_names[IC_PARTS] = {
	"disk", "kernel", "initrd"
};

struct ic_req;

struct ic_waiter {
	TAILQ_ENTRY(ic_waiter)	 w_entry;
	struct ic_req		*w_req;
	int			 w_part;
};
TAILQ_HEAD(ic_waiters, ic_waiter);

enum ic_job_state {
	IC_QUEUED,		/* waiting for a download slot */
	IC_RUNNING,		/* on the thread pool */
};

/* One part being checked or fetched, shared by every request for it. */
struct ic_job {
	TAILQ_ENTRY(ic_job)	 j_entry;
	uv_work_t		 j_work;
	enum ic_job_state	 j_state;
	struct ic_waiters	 j_waiters;
	char			 j_sha[65];
	uint64_t		 j_size;
	char			*j_base;	/* image URL, no trailing '/' */
	char			*j_image;	/* image name in the URL */
	const char		*j_part;
	int			 j_verified;	/* hashed already in this run */
	/* Written by the worker, read in the after callback. */
	int			 j_ok;
	int			 j_fetched;	/* an HTTP request was made */
	char			*j_error;
	char			*j_note;	/* worth a log line */
	/* Shared with the loop thread under ic.mtx. */
	uint64_t		 j_have;
	int			 j_dirty;
};
TAILQ_HEAD(ic_jobs, ic_job);

/* One imgcache_ensure call. */
struct ic_req {
	uv_work_t	 r_work;	/* only to report an early failure */
	char		*r_name;
	char		 r_sha[IC_PARTS][65];	/* "" for a part not wanted */
	int		 r_pending;
	char		*r_error;
	void		(*r_done)(void *, const struct imgcache_result *);
	void		*r_arg;
};

/* One HTTP request of a download, on a pool thread. */
struct ic_xfer {
	struct ic_job	*x_job;
	CURL		*x_curl;
	int		 x_fd;
	EVP_MD_CTX	*x_md;
	uint64_t	*x_have;
	uint64_t	 x_from;	/* Range start asked for */
	long		 x_status;	/* 0 until the body starts */
	int64_t		 x_crstart;	/* Content-Range start, -1 if none */
	char		*x_error;	/* why we aborted the transfer */
	char		 x_body[IC_BODY_MAX];
	size_t		 x_blen;
	uint64_t	 x_last_ms;
};

static struct {
	struct agent	*a;
	char		*dir;
	char		*cert, *key, *ca;
	uv_async_t	 async;
	uv_mutex_t	 mtx;
	int		 mtx_ready;
	int		 async_open;	/* until its close callback */
	int		 started;	/* between init and stop */
	int		 stopping;	/* under mtx: workers read it */
	int		 running;
	struct ic_jobs	 jobs;
	char		(*verified)[65];
	size_t		 nverified;
} ic;

static int
ic_is_stopping(void)
{
	int	 rv;

	uv_mutex_lock(&ic.mtx);
	rv = ic.stopping;
	uv_mutex_unlock(&ic.mtx);
	return (rv);
}

/* Only a checked sum ever becomes a file name. */
static int
ic_valid_sha(const char *s)
{
	size_t	 i;

	for (i = 0; i < 64; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return (0);
	}
	return (s[64] == '\0');
}

static int
ic_valid_name(const char *s)
{
	size_t	 len = strlen(s), i;

	if (len == 0 || len > IC_NAME_MAX)
		return (0);
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return (0);
	}
	return (1);
}

static int
ic_is_verified(const char *sha)
{
	size_t	 i;

	for (i = 0; i < ic.nverified; i++) {
		if (strcmp(ic.verified[i], sha) == 0)
			return (1);
	}
	return (0);
}

static void
ic_add_verified(const char *sha)
{
	if (ic_is_verified(sha))
		return;
	ic.verified = xrealloc(ic.verified,
	    (ic.nverified + 1) * sizeof(*ic.verified));
	strlcpy(ic.verified[ic.nverified++], sha, sizeof(*ic.verified));
}

static void
ic_send_progress(struct ic_job *j, uint64_t have, int done, const char *error)
{
	Opsn__ImageProgress	 p = OPSN__IMAGE_PROGRESS__INIT;

	p.image = j->j_image;
	p.part = (char *)j->j_part;
	p.have = have;
	p.total = j->j_size;
	p.done = done;
	if (error != NULL)
		p.error = (char *)error;
	/* -1: not connected; the controller learns the outcome anyway. */
	(void)link_send(MSG_IMAGE_PROGRESS, &p.base);
}

static void
ic_async_cb(uv_async_t *h)
{
	struct ic_job	*j;
	uint64_t	 have;
	int		 dirty;

	TAILQ_FOREACH(j, &ic.jobs, j_entry) {
		if (j->j_state != IC_RUNNING)
			continue;
		uv_mutex_lock(&ic.mtx);
		dirty = j->j_dirty;
		have = j->j_have;
		j->j_dirty = 0;
		uv_mutex_unlock(&ic.mtx);
		if (dirty)
			ic_send_progress(j, have, 0, NULL);
	}
}

static void
ic_async_close_cb(uv_handle_t *h)
{
	ic.async_open = 0;
}

/* Called on a pool thread: hand the byte count to the loop thread. */
static void
ic_progress(struct ic_xfer *x, int force)
{
	uint64_t	 now = util_mono_ms();

	if (!force && now - x->x_last_ms < IC_PROGRESS_MS)
		return;
	x->x_last_ms = now;
	uv_mutex_lock(&ic.mtx);
	x->x_job->j_have = *x->x_have;
	x->x_job->j_dirty = 1;
	/* The handle is closed once stopping is set: never send after. */
	if (!ic.stopping)
		uv_async_send(&ic.async);
	uv_mutex_unlock(&ic.mtx);
}

static void
ic_req_error(struct ic_req *r, int part, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keep the first reason a request failed. */
static void
ic_req_error(struct ic_req *r, int part, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	if (r->r_error != NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (part >= 0)
		xasprintf(&r->r_error, "image %s: %s: %s", r->r_name,
		    ic_part_names[part], msg);
	else
		xasprintf(&r->r_error, "image %s: %s", r->r_name, msg);
	free(msg);
}

static void
ic_req_finish(struct ic_req *r)
{
	struct imgcache_result	 res;
	char			*path[IC_PARTS] = { NULL, NULL, NULL };
	int			 i;

	memset(&res, 0, sizeof(res));
	if (r->r_error != NULL)
		res.ir_error = r->r_error;
	else {
		res.ir_ok = 1;
		for (i = 0; i < IC_PARTS; i++) {
			if (r->r_sha[i][0] != '\0')
				xasprintf(&path[i], "%s/%s", ic.dir,
				    r->r_sha[i]);
		}
		res.ir_disk = path[0];
		res.ir_kernel = path[1];
		res.ir_initrd = path[2];
	}
	r->r_done(r->r_arg, &res);
	for (i = 0; i < IC_PARTS; i++)
		free(path[i]);
	free(r->r_name);
	free(r->r_error);
	free(r);
}

static void
ic_noop_cb(uv_work_t *w)
{
}

static void
ic_req_late_cb(uv_work_t *w, int status)
{
	ic_req_finish(w->data);
}

/* The done callback never runs before imgcache_ensure returns. */
static void
ic_req_fail_later(struct ic_req *r)
{
	r->r_work.data = r;
	if (uv_queue_work(ic.a->loop, &r->r_work, ic_noop_cb,
	    ic_req_late_cb) != 0)
		fatalx("imgcache: cannot queue work");
}

static void
ic_hex_digest(EVP_MD_CTX *md, char out[65])
{
	unsigned char	 d[EVP_MAX_MD_SIZE];
	unsigned int	 dlen = 0;

	EVP_DigestFinal_ex(md, d, &dlen);
	util_hex(d, 32, out);
}

/* Feed the first len bytes of fd to md; stops early when stopping. */
static int
ic_hash_fd(int fd, const char *path, uint64_t len, EVP_MD_CTX *md,
    char **cause)
{
	unsigned char	*buf = xmalloc(IC_CHUNK);
	uint64_t	 off = 0;
	ssize_t		 n;
	int		 rv = -1;

	while (off < len) {
		if (ic_is_stopping()) {
			*cause = xstrdup(IC_STOPPING);
			goto out;
		}
		n = pread(fd, buf, len - off < IC_CHUNK ? len - off : IC_CHUNK,
		    off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			xasprintf(cause, "read %s: %s", path, n == 0 ?
			    "file shrank" : strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(md, buf, n);
		off += n;
	}
	rv = 0;
out:
	free(buf);
	return (rv);
}

static EVP_MD_CTX *
ic_md_new(void)
{
	EVP_MD_CTX	*md;

	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		fatalx("imgcache: cannot start SHA-256");
	return (md);
}

/* SHA-256 of a whole file of the expected size into out. */
static int
ic_hash_file(const char *path, uint64_t size, char out[65], char **cause)
{
	EVP_MD_CTX	*md = ic_md_new();
	int		 fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "open %s: %s", path, strerror(errno));
		goto out;
	}
	if (ic_hash_fd(fd, path, size, md, cause) == -1)
		goto out;
	ic_hex_digest(md, out);
	rv = 0;
out:
	if (fd != -1)
		close(fd);
	EVP_MD_CTX_free(md);
	return (rv);
}

/* SHA-256 of a whole file of the expected size (blocking: thread pool). */
int
imgcache_sha256_file(const char *path, uint64_t size, char out[65],
    char **cause)
{
	return (ic_hash_file(path, size, out, cause));
}

static int
ic_pwrite_all(int fd, const char *buf, size_t len, uint64_t off)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = pwrite(fd, buf, len, off)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= n;
		off += n;
	}
	return (0);
}

/* Copy a message from the server, bounded and without control bytes. */
static char *
ic_clean_msg(const char *s)
{
	char	*out = xstrndup(s, IC_MSG_MAX), *p;

	for (p = out; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return (out);
}

/* "HTTP 404: no image named 'tiny'" from {"error":{"message":...}}. */
static char *
ic_http_error(long status, const char *body, size_t len)
{
	json_t		*j, *e, *m;
	char		*msg = NULL, *out;

	if ((j = json_loadb(body, len, 0, NULL)) != NULL) {
		e = json_object_get(j, "error");
		m = json_object_get(e, "message");
		if (json_is_string(m))
			msg = ic_clean_msg(json_string_value(m));
		json_decref(j);
	}
	if (msg != NULL)
		xasprintf(&out, "HTTP %ld: %s", status, msg);
	else
		xasprintf(&out, "HTTP %ld without an error message", status);
	free(msg);
	return (out);
}

/* The response's status is known: decide what its body is. */
static int
ic_body_begin(struct ic_xfer *x)
{
	curl_easy_getinfo(x->x_curl, CURLINFO_RESPONSE_CODE, &x->x_status);
	if (x->x_status == 206) {
		if (x->x_crstart != (int64_t)x->x_from) {
			xasprintf(&x->x_error, "asked for bytes from %" PRIu64
			    ", the server sent a range from %" PRId64,
			    x->x_from, x->x_crstart);
			return (-1);
		}
	} else if (x->x_status == 200 && *x->x_have > 0) {
		/* The server ignored the range: start again from 0. */
		if (ftruncate(x->x_fd, 0) == -1) {
			xasprintf(&x->x_error, "truncate: %s", strerror(errno));
			return (-1);
		}
		*x->x_have = 0;
		EVP_DigestInit_ex(x->x_md, EVP_sha256(), NULL);
	}
	return (0);
}

static size_t
ic_header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct ic_xfer		*x = arg;
	size_t			 len = size * n;
	char			 line[128];
	unsigned long long	 start;

	if (len >= sizeof(line))
		return (len);
	memcpy(line, buf, len);
	line[len] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0)
		x->x_crstart = -1;
	else if (strncasecmp(line, "content-range:", 14) == 0 &&
	    sscanf(line + 14, " bytes %llu-", &start) == 1 &&
	    start <= INT64_MAX)
		x->x_crstart = start;
	return (len);
}

static size_t
ic_write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct ic_xfer	*x = arg;
	struct ic_job	*j = x->x_job;
	size_t		 len = size * n, keep;

	if (x->x_status == 0 && ic_body_begin(x) == -1)
		return (0);
	if (x->x_status != 200 && x->x_status != 206) {
		keep = sizeof(x->x_body) - x->x_blen;
		if (keep > len)
			keep = len;
		memcpy(x->x_body + x->x_blen, buf, keep);
		x->x_blen += keep;
		return (len);
	}
	if (len > j->j_size - *x->x_have) {
		xasprintf(&x->x_error, "the server sent more than the %"
		    PRIu64 " bytes expected", j->j_size);
		return (0);
	}
	if (ic_pwrite_all(x->x_fd, buf, len, *x->x_have) == -1) {
		xasprintf(&x->x_error, "write %s/%s.part: %s", ic.dir,
		    j->j_sha, strerror(errno));
		return (0);
	}
	EVP_DigestUpdate(x->x_md, buf, len);
	*x->x_have += len;
	ic_progress(x, 0);
	return (len);
}

static int
ic_xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
	return (ic_is_stopping());
}

/*
 * One GET from *have onwards, appending to fd and md. 0 when a whole
 * response arrived, 1 when the transfer broke (worth another try if it
 * brought bytes), -1 when trying again will not help; j_error says why.
 */
static int
ic_get(struct ic_job *j, int fd, EVP_MD_CTX *md, uint64_t *have)
{
	struct ic_xfer	*x = xcalloc(1, sizeof(*x));
	CURL		*c;
	CURLcode	 rc;
	char		 errbuf[CURL_ERROR_SIZE], range[32], *esc, *url = NULL;
	long		 status = 0;
	int		 rv = -1;

	if ((c = curl_easy_init()) == NULL)
		fatalx("imgcache: cannot start libcurl");
	if ((esc = curl_easy_escape(c, j->j_image, 0)) == NULL)
		fatalx("imgcache: out of memory");
	xasprintf(&url, "%s/%s/%s", j->j_base, esc, j->j_part);
	curl_free(esc);

	x->x_job = j;
	x->x_curl = c;
	x->x_fd = fd;
	x->x_md = md;
	x->x_have = have;
	x->x_from = *have;
	x->x_crstart = -1;
	errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "opsn-agent/" OPSN_VERSION);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_SSLCERT, ic.cert);
	curl_easy_setopt(c, CURLOPT_SSLKEY, ic.key);
	/* Trust the controller's CA only, not the system's. */
	curl_easy_setopt(c, CURLOPT_CAINFO, ic.ca);
	curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, ic_xferinfo_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ic_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ic_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	/*
	 * CURLOPT_RANGE rather than RESUME_FROM: with the latter libcurl
	 * fails a 200 answer, where we want to start again from 0.
	 */
	if (*have > 0) {
		snprintf(range, sizeof(range), "%" PRIu64 "-", *have);
		curl_easy_setopt(c, CURLOPT_RANGE, range);
	}

	j->j_fetched = 1;
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (x->x_error != NULL) {
		j->j_error = x->x_error;
		x->x_error = NULL;
	} else if (rc == CURLE_ABORTED_BY_CALLBACK)
		j->j_error = xstrdup(IC_STOPPING);
	else if (status != 0 && status != 200 && status != 206)
		j->j_error = ic_http_error(status, x->x_body, x->x_blen);
	else if (rc != CURLE_OK) {
		j->j_error = xstrdup(errbuf[0] != '\0' ? errbuf :
		    curl_easy_strerror(rc));
		rv = 1;
	} else if (x->x_status == 0 && ic_body_begin(x) == -1) {
		/* An empty body: nothing went through the write callback. */
		j->j_error = x->x_error;
		x->x_error = NULL;
	} else
		rv = 0;
	ic_progress(x, 1);
	curl_easy_cleanup(c);
	free(url);
	free(x);
	return (rv);
}

/* Download into path (resuming what it holds) and rename it to final. */
static void
ic_fetch(struct ic_job *j, const char *path, const char *final)
{
	EVP_MD_CTX	*md = ic_md_new();
	struct stat	 st;
	char		 got[65];
	uint64_t	 have, before;
	int		 fd, dfd = -1, tries, rv;

	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) == -1 ||
	    fchmod(fd, 0644) == -1 || fstat(fd, &st) == -1) {
		xasprintf(&j->j_error, "%s: %s", path, strerror(errno));
		goto out;
	}
	have = st.st_size;
	if (have > j->j_size) {
		if (ftruncate(fd, 0) == -1) {
			xasprintf(&j->j_error, "truncate %s: %s", path,
			    strerror(errno));
			goto out;
		}
		have = 0;
	}
	/* Hash what an earlier attempt left so the sum covers it. */
	if (have > 0 && ic_hash_fd(fd, path, have, md, &j->j_error) == -1)
		goto out;
	for (tries = 1; have < j->j_size; tries++) {
		before = have;
		if ((rv = ic_get(j, fd, md, &have)) == 0)
			break;
		if (rv == -1 || have == before || tries == IC_TRIES)
			goto out;
		free(j->j_error);
		j->j_error = NULL;
	}
	if (have != j->j_size) {
		xasprintf(&j->j_error, "the server sent %" PRIu64 " of %" PRIu64
		    " bytes", have, j->j_size);
		goto out;
	}
	ic_hex_digest(md, got);
	if (strcmp(got, j->j_sha) != 0) {
		/* Bad bytes are not worth resuming: start clean next time. */
		unlink(path);
		xasprintf(&j->j_error, "SHA-256 mismatch (expected %s, got %s)",
		    j->j_sha, got);
		goto out;
	}
	if (fsync(fd) == -1 || rename(path, final) == -1) {
		xasprintf(&j->j_error, "%s: %s", final, strerror(errno));
		goto out;
	}
	if ((dfd = open(ic.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
		fsync(dfd);
	j->j_ok = 1;
out:
	if (dfd != -1)
		close(dfd);
	if (fd != -1)
		close(fd);
	EVP_MD_CTX_free(md);
}

/* On a pool thread: trust, check or fetch one part. */
static void
ic_work_cb(uv_work_t *w)
{
	struct ic_job	*j = w->data;
	struct stat	 st;
	char		*final = NULL, *part = NULL, got[65];

	if (ic_is_stopping()) {
		j->j_error = xstrdup(IC_STOPPING);
		return;
	}
	xasprintf(&final, "%s/%s", ic.dir, j->j_sha);
	xasprintf(&part, "%s/%s.part", ic.dir, j->j_sha);
	if (stat(final, &st) == 0) {
		if ((uint64_t)st.st_size != j->j_size)
			xasprintf(&j->j_note, "%s has %lld bytes, not %" PRIu64
			    ": fetching it again", final,
			    (long long)st.st_size, j->j_size);
		else if (j->j_verified) {
			j->j_ok = 1;
			goto out;
		} else {
			if (ic_hash_file(final, j->j_size, got,
			    &j->j_error) == -1)
				goto out;
			if (strcmp(got, j->j_sha) == 0) {
				j->j_ok = 1;
				goto out;
			}
			xasprintf(&j->j_note, "%s has SHA-256 %s: fetching it "
			    "again", final, got);
		}
		if (unlink(final) == -1 && errno != ENOENT) {
			xasprintf(&j->j_error, "unlink %s: %s", final,
			    strerror(errno));
			goto out;
		}
	} else if (errno != ENOENT) {
		xasprintf(&j->j_error, "%s: %s", final, strerror(errno));
		goto out;
	}
	ic_fetch(j, part, final);
out:
	free(final);
	free(part);
}

static void ic_kick(void);

/* On the loop thread: tell every waiter, then start the next download. */
static void
ic_after_cb(uv_work_t *w, int status)
{
	struct ic_job		*j = w->data;
	struct ic_waiter	*wt;
	struct ic_req		*r;

	ic.running--;
	TAILQ_REMOVE(&ic.jobs, j, j_entry);
	if (status != 0 && j->j_error == NULL) {
		j->j_ok = 0;
		j->j_error = xstrdup(uv_strerror(status));
	}
	if (j->j_note != NULL)
		log_warnx("imgcache: %s", j->j_note);
	if (j->j_ok) {
		ic_add_verified(j->j_sha);
		if (j->j_fetched)
			log_info("imgcache: fetched %s %s (%" PRIu64 " bytes) "
			    "as %s", j->j_image, j->j_part, j->j_size,
			    j->j_sha);
	}
	if (j->j_fetched)
		ic_send_progress(j, j->j_ok ? j->j_size : j->j_have, j->j_ok,
		    j->j_error);
	while ((wt = TAILQ_FIRST(&j->j_waiters)) != NULL) {
		TAILQ_REMOVE(&j->j_waiters, wt, w_entry);
		r = wt->w_req;
		if (!j->j_ok)
			ic_req_error(r, wt->w_part, "%s", j->j_error);
		if (--r->r_pending == 0)
			ic_req_finish(r);
		free(wt);
	}
	free(j->j_base);
	free(j->j_image);
	free(j->j_error);
	free(j->j_note);
	free(j);
	ic_kick();
}

/* Start queued jobs while there are free slots (all of them when stopping). */
static void
ic_kick(void)
{
	struct ic_job	*j;

	TAILQ_FOREACH(j, &ic.jobs, j_entry) {
		if (ic.running >= IC_RUNNING_MAX && !ic.stopping)
			break;
		if (j->j_state != IC_QUEUED)
			continue;
		j->j_state = IC_RUNNING;
		j->j_work.data = j;
		ic.running++;
		if (uv_queue_work(ic.a->loop, &j->j_work, ic_work_cb,
		    ic_after_cb) != 0)
			fatalx("imgcache: cannot queue work");
	}
}

static struct ic_job *
ic_job_find(const char *sha)
{
	struct ic_job	*j;

	TAILQ_FOREACH(j, &ic.jobs, j_entry) {
		if (strcmp(j->j_sha, sha) == 0)
			return (j);
	}
	return (NULL);
}

static struct ic_job *
ic_job_new(const char *sha, uint64_t size, const char *url,
    const char *image, int part)
{
	struct ic_job	*j = xcalloc(1, sizeof(*j));
	size_t		 len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		len--;
	j->j_state = IC_QUEUED;
	TAILQ_INIT(&j->j_waiters);
	strlcpy(j->j_sha, sha, sizeof(j->j_sha));
	j->j_size = size;
	j->j_base = xstrndup(url, len);
	j->j_image = xstrdup(image);
	j->j_part = ic_part_names[part];
	j->j_verified = ic_is_verified(sha);
	TAILQ_INSERT_TAIL(&ic.jobs, j, j_entry);
	return (j);
}

/* Set up the cache in dir and the progress channel on the agent's loop. */
int
imgcache_init(struct agent *a, const char *dir, char **cause)
{
	struct stat	 st;
	char		*abs;
	int		 created;

	if (ic.started || ic.async_open || !TAILQ_EMPTY(&ic.jobs)) {
		*cause = xstrdup("image cache: already running");
		return (-1);
	}
	created = stat(dir, &st) == -1;
	if (util_mkdirs(dir, 0755, cause) == -1)
		return (-1);
	/* QEMU reads the files as another user whatever our umask. */
	if (created && chmod(dir, 0755) == -1) {
		xasprintf(cause, "chmod %s: %s", dir, strerror(errno));
		return (-1);
	}
	if ((abs = realpath(dir, NULL)) == NULL) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(abs);
		*cause = xstrdup("image cache: cannot start libcurl");
		return (-1);
	}
	if (!ic.mtx_ready) {
		if (uv_mutex_init(&ic.mtx) != 0)
			fatalx("imgcache: cannot make a mutex");
		ic.mtx_ready = 1;
		TAILQ_INIT(&ic.jobs);
	}
	free(ic.dir);
	free(ic.cert);
	free(ic.key);
	free(ic.ca);
	free(ic.verified);
	ic.verified = NULL;
	ic.nverified = 0;
	ic.a = a;
	ic.dir = abs;
	ic.cert = enrol_path(a, "cert.pem");
	ic.key = enrol_path(a, "key.pem");
	ic.ca = enrol_path(a, "ca.pem");
	if (uv_async_init(a->loop, &ic.async, ic_async_cb) != 0)
		fatalx("imgcache: cannot make an async handle");
	/* Downloads keep the loop alive, not the progress channel. */
	uv_unref((uv_handle_t *)&ic.async);
	ic.async_open = 1;
	uv_mutex_lock(&ic.mtx);
	ic.stopping = 0;
	uv_mutex_unlock(&ic.mtx);
	ic.started = 1;
	return (0);
}

/* Make sure every part of img is cached; done runs later on the loop. */
void
imgcache_ensure(const Opsn__ImageRef *img, const char *image_url,
    void (*done)(void *, const struct imgcache_result *), void *arg)
{
	struct ic_req	*r = xcalloc(1, sizeof(*r));
	struct ic_job	*j;
	struct ic_waiter *wt;
	const char	*sha[IC_PARTS];
	uint64_t	 size[IC_PARTS];
	int		 i;

	if (ic.a == NULL)
		fatalx("imgcache_ensure before imgcache_init");
	sha[0] = img->disk_sha256;
	sha[1] = img->kernel_sha256;
	sha[2] = img->initrd_sha256;
	size[0] = img->disk_size;
	size[1] = img->kernel_size;
	size[2] = img->initrd_size;
	r->r_name = xstrdup(img->name != NULL ? img->name : "");
	r->r_done = done;
	r->r_arg = arg;

	if (!ic.started)
		ic_req_error(r, -1, IC_STOPPING);
	else if (!ic_valid_name(r->r_name))
		ic_req_error(r, -1, "the name must be 1 to %d printable "
		    "characters", IC_NAME_MAX);
	else if (image_url == NULL || strncmp(image_url, "https://", 8) != 0)
		ic_req_error(r, -1, "the image URL is not https://");
	for (i = 0; i < IC_PARTS && r->r_error == NULL; i++) {
		if (sha[i] == NULL || sha[i][0] == '\0') {
			if (i == 0)
				ic_req_error(r, i, "no SHA-256");
		} else if (!ic_valid_sha(sha[i]))
			ic_req_error(r, i, "the SHA-256 is not 64 lowercase "
			    "hex digits");
		else if (size[i] == 0 || size[i] > INT64_MAX)
			ic_req_error(r, i, "bad size %" PRIu64, size[i]);
		else
			strlcpy(r->r_sha[i], sha[i], sizeof(r->r_sha[i]));
	}
	if (r->r_error != NULL) {
		ic_req_fail_later(r);
		return;
	}

	for (i = 0; i < IC_PARTS; i++) {
		if (r->r_sha[i][0] == '\0')
			continue;
		if ((j = ic_job_find(r->r_sha[i])) != NULL &&
		    j->j_size != size[i]) {
			ic_req_error(r, i, "%s is being fetched with size %"
			    PRIu64 ", not %" PRIu64, r->r_sha[i], j->j_size,
			    size[i]);
			continue;
		}
		if (j == NULL)
			j = ic_job_new(r->r_sha[i], size[i], image_url,
			    r->r_name, i);
		wt = xcalloc(1, sizeof(*wt));
		wt->w_req = r;
		wt->w_part = i;
		TAILQ_INSERT_TAIL(&j->j_waiters, wt, w_entry);
		r->r_pending++;
	}
	if (r->r_pending == 0)
		ic_req_fail_later(r);
	else
		ic_kick();
}

/* Abandon downloads (their done callbacks get an error) before exit. */
void
imgcache_stop(void)
{
	if (!ic.started)
		return;
	ic.started = 0;
	uv_mutex_lock(&ic.mtx);
	ic.stopping = 1;
	uv_mutex_unlock(&ic.mtx);
	uv_close((uv_handle_t *)&ic.async, ic_async_close_cb);
	/* Queued jobs start too, and fail at once on the pool. */
	ic_kick();
}
