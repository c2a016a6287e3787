/*
 * Bodies sent in parts (see http.h): each part is one request to the
 * route itself, no larger than the server's limit on one request, written
 * on the thread pool at its offset in a file named after the caller, the
 * call and the body's declared size and SHA-256. The last part is checked
 * against that SHA-256 on the pool; then the call runs with the whole
 * body, read back into memory, or for an API_BODY_FILE route handed over
 * as the file itself.
 *
 * The stored length is the file's length, so an interrupted upload
 * resumes where it ends, even across a restart. A part may start anywhere
 * up to that length (never past it: no holes); sending a part again is
 * harmless, the final checksum decides.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "internal.h"

#define PARTS_PER_CALLER	4		/* bodies being sent at once */
#define PARTS_EXPIRE_S		(24 * 3600)	/* untouched stored parts */
#define PARTS_READ_BUF		(1024 * 1024)
#define PARTS_OWNER_HEX		16		/* file name prefix */
#define PARTS_NAME_MAX		(PARTS_OWNER_HEX + 1 + 64 + 1)

struct parts_job {
	uv_work_t		 j_work;
	struct api_req		*j_ar;		/* NULL once h2o disposed of it */
	struct api_link		*j_link;
	struct parts_job	*j_next;	/* in parts.busy */
	char			 j_name[PARTS_NAME_MAX];
	char			*j_path;
	uint64_t		 j_start, j_total;
	char			*j_data;	/* the part (a copy) */
	size_t			 j_len;
	char			 j_want[65];	/* Upload-Sha256 */
	int			 j_final;
	int			 j_load;	/* read the whole body back */
	/* Results, from the pool. */
	char			*j_cause;	/* I/O error */
	int			 j_mismatch;
	char			 j_got[65];
	char			*j_body;	/* j_load: the whole body */
};

static struct {
	uv_loop_t		*loop;
	char			*dir;		/* NULL: no parts */
	struct parts_job	*busy;		/* parts on the pool */
} parts;

/* Set the folder for bodies sent in parts (NULL: refuse them). */
void
parts_init(uv_loop_t *loop, const char *dir)
{
	parts.loop = loop;
	free(parts.dir);
	parts.dir = dir != NULL ? xstrdup(dir) : NULL;
}

/* Parse an unsigned decimal of at most 19 digits; -1 if it is not one. */
static int
parts_number(const char **sp, uint64_t *out)
{
	const char	*s = *sp;
	uint64_t	 n = 0;
	size_t		 i;

	for (i = 0; isdigit((unsigned char)s[i]); i++) {
		if (i == 19)
			return (-1);
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return (-1);
	*sp = s + i;
	*out = n;
	return (0);
}

/*
 * "bytes START-END/TOTAL" or "bytes * /TOTAL" (without the space): *probe
 * is set for the second. -1 if malformed or inconsistent.
 */
static int
parts_range(const char *s, uint64_t *start, uint64_t *end, uint64_t *total,
    int *probe)
{
	if (strncmp(s, "bytes ", 6) != 0)
		return (-1);
	s += 6;
	*probe = 0;
	if (*s == '*') {
		*probe = 1;
		s++;
	} else if (parts_number(&s, start) == -1 || *s++ != '-' ||
	    parts_number(&s, end) == -1)
		return (-1);
	if (*s++ != '/' || parts_number(&s, total) == -1 || *s != '\0')
		return (-1);
	if (*total == 0)
		return (-1);
	if (!*probe && (*start > *end || *end >= *total))
		return (-1);
	return (0);
}

/* 64 hexadecimal digits, lower-cased into out; -1 if not. */
static int
parts_sha(const char *s, char out[65])
{
	size_t	 i;

	if (s == NULL || strlen(s) != 64)
		return (-1);
	for (i = 0; i < 64; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return (-1);
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[64] = '\0';
	return (0);
}

static void
parts_sha256(const void *p, size_t len, unsigned char md[32])
{
	unsigned int	 mdlen = 32;

	if (EVP_Digest(p, len, md, &mdlen, util_sha256(), NULL) != 1)
		fatalx("parts: SHA-256");
}

/*
 * The file holding a body: the caller's prefix (to count what a caller
 * stores) and a digest of who sends what to which call.
 */
static void
parts_name(struct api_req *ar, uint64_t total, const char *sha,
    char name[PARTS_NAME_MAX])
{
	const struct api_principal	*p = api_principal(ar);
	h2o_req_t			*req = ar->r_req;
	unsigned char			 md[32];
	char				 hex[65], *key;
	int				 len;

	parts_sha256(p->ap_name, strlen(p->ap_name), md);
	util_hex(md, sizeof(md), hex);
	memcpy(name, hex, PARTS_OWNER_HEX);
	name[PARTS_OWNER_HEX] = '-';
	len = xasprintf(&key, "%s%c%.*s%c%.*s%c%" PRIu64 "%c%s", p->ap_name,
	    '\0', (int)req->method.len, req->method.base, '\0',
	    (int)req->path.len, req->path.base, '\0', total, '\0', sha);
	parts_sha256(key, (size_t)len, md);
	free(key);
	util_hex(md, sizeof(md), name + PARTS_OWNER_HEX + 1);
}

static struct parts_job *
parts_busy(const char *name)
{
	struct parts_job	*j;

	for (j = parts.busy; j != NULL; j = j->j_next)
		if (strcmp(j->j_name, name) == 0)
			return (j);
	return (NULL);
}

/*
 * How many bodies does the caller with this prefix store? Bodies left
 * untouched for a day are removed on the way.
 */
static size_t
parts_count(const char *prefix)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	time_t		 old = (time_t)(util_now() - PARTS_EXPIRE_S);
	size_t		 n = 0;

	if ((d = opendir(parts.dir)) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != PARTS_NAME_MAX - 1 ||
		    fstatat(dirfd(d), de->d_name, &st, 0) == -1)
			continue;
		if (st.st_mtime < old && parts_busy(de->d_name) == NULL) {
			log_info("parts: removing %s, untouched for a day",
			    de->d_name);
			(void)unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		if (strncmp(de->d_name, prefix, PARTS_OWNER_HEX) == 0)
			n++;
	}
	closedir(d);
	return (n);
}

static void
parts_reply_offset(struct api_req *ar, int status, uint64_t received,
    uint64_t total)
{
	char	 s[24];

	snprintf(s, sizeof(s), "%" PRIu64, received);
	api_set_header(ar, "Upload-Offset", s);
	api_reply_json(ar, status, json_pack("{s:I,s:I,s:I}", "received",
	    (json_int_t)received, "size", (json_int_t)total, "part_max",
	    (json_int_t)api_max_body()));
}

/* Write all of buf at off. */
static int
parts_pwrite(int fd, const char *buf, size_t len, uint64_t off)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = pwrite(fd, buf, len, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return (0);
}

/*
 * Hash the whole file (and with j_load keep it in memory): the last part
 * is written, every byte is on disk.
 */
static int
parts_finish(struct parts_job *j, int fd)
{
	EVP_MD_CTX	*md;
	unsigned char	 sum[32];
	unsigned int	 sumlen = sizeof(sum);
	char		*buf;
	uint64_t	 off = 0;
	size_t		 want;
	ssize_t		 n;
	int		 rv = -1;

	if (j->j_load)
		buf = j->j_body = xmalloc(j->j_total + 1);
	else
		buf = xmalloc(PARTS_READ_BUF);
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, util_sha256(), NULL) != 1)
		fatalx("parts: SHA-256");
	while (off < j->j_total) {
		want = j->j_total - off < PARTS_READ_BUF ?
		    (size_t)(j->j_total - off) : PARTS_READ_BUF;
		if ((n = pread(fd, j->j_load ? buf + off : buf, want,
		    (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(&j->j_cause, "read %s: %s", j->j_path,
			    strerror(errno));
			goto out;
		}
		if (n == 0) {
			xasprintf(&j->j_cause, "%s: shorter than %" PRIu64
			    " bytes", j->j_path, j->j_total);
			goto out;
		}
		if (EVP_DigestUpdate(md, j->j_load ? buf + off : buf,
		    (size_t)n) != 1)
			fatalx("parts: SHA-256");
		off += (uint64_t)n;
	}
	if (EVP_DigestFinal_ex(md, sum, &sumlen) != 1)
		fatalx("parts: SHA-256");
	util_hex(sum, sizeof(sum), j->j_got);
	j->j_mismatch = strcmp(j->j_got, j->j_want) != 0;
	if (j->j_load)
		buf[j->j_total] = '\0';
	rv = 0;
out:
	EVP_MD_CTX_free(md);
	if (!j->j_load)
		free(buf);
	return (rv);
}

/* On the pool: write the part; after the last one, check the whole body. */
static void
parts_work_cb(uv_work_t *w)
{
	struct parts_job	*j = w->data;
	int			 fd;

	if ((fd = open(j->j_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) == -1) {
		xasprintf(&j->j_cause, "open %s: %s", j->j_path,
		    strerror(errno));
		return;
	}
	if (parts_pwrite(fd, j->j_data, j->j_len, j->j_start) == -1) {
		xasprintf(&j->j_cause, "write %s: %s", j->j_path,
		    strerror(errno));
		goto out;
	}
	if (!j->j_final)
		goto out;
	if (fsync(fd) == -1) {
		xasprintf(&j->j_cause, "fsync %s: %s", j->j_path,
		    strerror(errno));
		goto out;
	}
	if (parts_finish(j, fd) == -1)
		goto out;
	/* A bad body is not kept; a loaded one is in memory now. */
	if (j->j_mismatch || j->j_load)
		(void)unlink(j->j_path);
out:
	close(fd);
}

static void
parts_gone_cb(void *arg)
{
	struct parts_job	*j = arg;

	j->j_ar = NULL;
	j->j_link = NULL;
}

static void
parts_job_free(struct parts_job *j)
{
	free(j->j_path);
	free(j->j_data);
	free(j->j_cause);
	free(j->j_body);
	free(j);
}

/* Back on the loop: answer the part, or run the call with its body. */
static void
parts_after_cb(uv_work_t *w, int status)
{
	struct parts_job	*j = w->data, **jp;
	struct api_req		*ar = j->j_ar;

	for (jp = &parts.busy; *jp != NULL; jp = &(*jp)->j_next) {
		if (*jp == j) {
			*jp = j->j_next;
			break;
		}
	}
	if (j->j_cause != NULL)
		log_warnx("parts: %s", j->j_cause);
	if (ar == NULL) {
		log_debug("parts: %s: the client left", j->j_name);
		parts_job_free(j);
		return;
	}
	j->j_link->l_arg = NULL;
	ar->r_pending = 0;
	if (status != 0 || j->j_cause != NULL) {
		api_reply_error(ar, 500, "internal", "storing the part failed "
		    "(request %s)", api_request_id(ar));
	} else if (j->j_mismatch) {
		api_reply_error(ar, 400, "checksum_mismatch", "the body's "
		    "SHA-256 is %s, Upload-Sha256 said %s; send it again",
		    j->j_got, j->j_want);
	} else if (!j->j_final) {
		parts_reply_offset(ar, 202, j->j_start + j->j_len, j->j_total);
	} else {
		log_debug("parts: %s: %" PRIu64 " bytes whole", j->j_name,
		    j->j_total);
		if (j->j_load) {
			api_set_entity_owned(ar, j->j_body, j->j_total);
			j->j_body = NULL;
		} else {
			ar->r_file = j->j_path;
			ar->r_file_size = j->j_total;
			memcpy(ar->r_file_sha, j->j_got, sizeof(ar->r_file_sha));
			j->j_path = NULL;
		}
		api_run(ar);
	}
	api_check_replied(ar);
	parts_job_free(j);
}

/* A request with a Content-Range header (see internal.h). */
void
parts_handle(struct api_req *ar, const char *range)
{
	const struct api_route	*r = ar->r_route;
	struct parts_job	*j;
	struct stat		 st;
	uint64_t		 start = 0, end = 0, total, received = 0;
	const void		*body;
	size_t			 len;
	char			 want[65], name[PARTS_NAME_MAX], *path, *cause;
	int			 probe, rv, exists = 0;

	if (parts.dir == NULL) {
		api_reply_error(ar, 400, "bad_request", "this server takes no "
		    "bodies in parts");
		return;
	}
	if (parts_range(range, &start, &end, &total, &probe) == -1) {
		api_reply_error(ar, 400, "bad_range", "Content-Range must be "
		    "\"bytes START-END/TOTAL\" (END < TOTAL) or "
		    "\"bytes */TOTAL\"");
		return;
	}
	if (parts_sha(api_header(ar, "upload-sha256"), want) == -1) {
		api_reply_error(ar, 400, "bad_request", "a body in parts needs "
		    "Upload-Sha256: the SHA-256 of the whole body in hex");
		return;
	}
	if (total > api_route_max(r)) {
		api_reply_error(ar, 413, "too_large", "the body is over %zu "
		    "bytes", api_route_max(r));
		return;
	}
	if (api_permits(ar) == -1)
		return;
	body = api_body(ar, &len);
	if (probe ? len != 0 : len != end - start + 1) {
		api_reply_error(ar, 400, "bad_range", "the request holds %zu "
		    "bytes, Content-Range says %" PRIu64, len,
		    probe ? 0 : end - start + 1);
		return;
	}

	parts_name(ar, total, want, name);
	xasprintf(&path, "%s/%s", parts.dir, name);
	if (stat(path, &st) == 0) {
		exists = 1;
		received = (uint64_t)st.st_size;
	}
	if (received > total) {
		(void)unlink(path);
		exists = 0;
		received = 0;
	}
	if (probe) {
		parts_reply_offset(ar, 200, received, total);
		goto out;
	}
	if (parts_busy(name) != NULL) {
		api_reply_error(ar, 409, "busy", "a part of this body is being "
		    "stored; send the next one after its answer");
		goto out;
	}
	if (start > received) {
		char	 s[24];

		snprintf(s, sizeof(s), "%" PRIu64, received);
		api_set_header(ar, "Upload-Offset", s);
		api_reply_error(ar, 409, "offset_mismatch", "%" PRIu64 " bytes "
		    "of this body are stored; send the part from there",
		    received);
		goto out;
	}
	if (!exists) {
		cause = NULL;
		if (util_mkdirs(parts.dir, 0750, &cause) == -1) {
			log_warnx("parts: %s", cause);
			free(cause);
			api_reply_error(ar, 500, "internal", "storing the part "
			    "failed (request %s)", api_request_id(ar));
			goto out;
		}
		if (parts_count(name) >= PARTS_PER_CALLER) {
			api_reply_error(ar, 409, "too_many_uploads", "this "
			    "token is already sending %d bodies in parts; "
			    "finish one, or wait a day for them to expire",
			    PARTS_PER_CALLER);
			goto out;
		}
	}

	j = xcalloc(1, sizeof(*j));
	j->j_work.data = j;
	memcpy(j->j_name, name, sizeof(j->j_name));
	j->j_path = path;
	path = NULL;
	j->j_start = start;
	j->j_total = total;
	j->j_len = len;
	j->j_data = xmalloc(len);
	memcpy(j->j_data, body, len);
	memcpy(j->j_want, want, sizeof(j->j_want));
	j->j_final = end + 1 == total;
	j->j_load = j->j_final && (r->ar_flags & API_BODY_FILE) == 0;
	if ((rv = uv_queue_work(parts.loop, &j->j_work, parts_work_cb,
	    parts_after_cb)) != 0) {
		log_warnx("parts: uv_queue_work: %s", uv_strerror(rv));
		parts_job_free(j);
		api_reply_error(ar, 503, "busy", "the server is busy");
		goto out;
	}
	j->j_ar = ar;
	j->j_link = api_link_new(ar, parts_gone_cb, j);
	j->j_next = parts.busy;
	parts.busy = j;
	ar->r_pending = 1;
out:
	free(path);
}
