/*
 * opsnctl image: add (checksum, then stream each file to the controller),
 * list and show images.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "opsn/util.h"

#include "cli.h"

#define IMAGE_BUF	(64 * 1024)	/* bytes read at a time */
#define IMAGE_SHA_LEN	32
#define IMAGE_MAGIC_LEN	4

/* The first bytes of a qcow2 file. */
static const unsigned char image_qcow2_magic[IMAGE_MAGIC_LEN] = {
	'Q', 'F', 'I', 0xfb
};

static const char *const image_formats[] = { "qcow2", "raw" };

/* One file of an image, in the order they are uploaded. */
struct image_part {
	const char	*ip_part;	/* API name: "disk" */
	const char	*ip_opt;	/* option giving the file: "file" */
	const char	*ip_file;	/* NULL: not given */
	int		 ip_fd;
	uint64_t	 ip_size;
	char		 ip_sha256[IMAGE_SHA_LEN * 2 + 1];
	int		 ip_qcow2;	/* starts with the qcow2 magic */
};

#define IMAGE_NPARTS	3

static const struct {
	const char	*part;
	const char	*opt;
} image_part_names[IMAGE_NPARTS] = {
	{ "disk",	"file" },
	{ "kernel",	"kernel" },
	{ "initrd",	"initrd" },
};

static char	*image_fmt_part_size(json_t *);
static char	*image_fmt_part(json_t *);

static const struct format_col image_list_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "STATE",	"state",	NULL },
	{ "FORMAT",	"format",	NULL },
	{ "DISK",	"disk",		image_fmt_part_size },
	{ "KERNEL",	"kernel",	image_fmt_part_size },
	{ "INITRD",	"initrd",	image_fmt_part_size },
	{ "CREATED",	"created_at",	format_age },
};

static const struct format_col image_fields[] = {
	{ "name",	"name",		NULL },
	{ "state",	"state",	NULL },
	{ "format",	"format",	NULL },
	{ "disk",	"disk",		image_fmt_part },
	{ "kernel",	"kernel",	image_fmt_part },
	{ "initrd",	"initrd",	image_fmt_part },
	{ "cmdline",	"cmdline",	NULL },
	{ "created-at",	"created_at",	format_time },
};

static char	*image_path(const char *, const char *);
static int	 image_hash(struct image_part *, char **);
static json_t	*image_part_json(const struct image_part *);
static const char *image_str(json_t *);
static int	 image_resumable(json_t *, json_t *);

/* A part's size in a table cell; "-" when the image has none. */
static char *
image_fmt_part_size(json_t *v)
{
	if (!json_is_object(v))
		return (format_value(v));
	return (format_size(json_object_get(v, "size")));
}

/* "50M (52428800 bytes), sha256 HEX" and whether it is still missing. */
static char *
image_fmt_part(json_t *v)
{
	char	*size, *sha, *s;

	if (!json_is_object(v))
		return (format_value(v));
	size = format_size_exact(json_object_get(v, "size"));
	sha = format_value(json_object_get(v, "sha256"));
	xasprintf(&s, "%s, sha256 %s%s", size, sha,
	    json_is_true(json_object_get(v, "uploaded")) ? "" :
	    ", not uploaded");
	free(size);
	free(sha);
	return (s);
}

/* "/v1/images/NAME" plus "/PART" if part is not NULL; caller frees. */
static char *
image_path(const char *name, const char *part)
{
	char	*e, *path;

	e = cli_escape(name);
	xasprintf(&path, "/v1/images/%s%s%s", e, part != NULL ? "/" : "",
	    part != NULL ? part : "");
	free(e);
	return (path);
}

/*
 * Open the part's file and stream it through SHA-256, keeping it open so
 * that the bytes uploaded come from the same file that was hashed.
 */
static int
image_hash(struct image_part *p, char **cause)
{
	EVP_MD_CTX	*md = NULL;
	unsigned char	*buf = NULL, sum[EVP_MAX_MD_SIZE];
	unsigned int	 sumlen = 0;
	struct stat	 st;
	uint64_t	 done = 0, shown = 0;
	ssize_t		 n;
	int		 ret = -1;

	*cause = NULL;
	if ((p->ip_fd = open(p->ip_file, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", p->ip_file, strerror(errno));
		goto out;
	}
	if (fstat(p->ip_fd, &st) == -1) {
		xasprintf(cause, "%s: %s", p->ip_file, strerror(errno));
		goto out;
	}
	/* The size goes in the metadata before the bytes follow. */
	if (!S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s: not a regular file", p->ip_file);
		goto out;
	}
	p->ip_size = (uint64_t)st.st_size;
	buf = xmalloc(IMAGE_BUF);
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, util_sha256(), NULL) != 1) {
		xasprintf(cause, "cannot start SHA-256");
		goto out;
	}
	for (;;) {
		if ((n = read(p->ip_fd, buf, IMAGE_BUF)) == -1) {
			if (errno == EINTR)
				continue;
			xasprintf(cause, "%s: %s", p->ip_file,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (done == 0 && n >= IMAGE_MAGIC_LEN)
			p->ip_qcow2 = memcmp(buf, image_qcow2_magic,
			    IMAGE_MAGIC_LEN) == 0;
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
			xasprintf(cause, "SHA-256 failed");
			goto out;
		}
		done += (uint64_t)n;
		if (util_mono_ms() - shown >= 100) {
			shown = util_mono_ms();
			cli_status("%s: checksum %d%%", p->ip_file,
			    p->ip_size > 0 && done <= p->ip_size ?
			    (int)(done * 100 / p->ip_size) : 100);
		}
	}
	if (done != p->ip_size) {
		xasprintf(cause, "%s: changed size while it was read",
		    p->ip_file);
		goto out;
	}
	if (EVP_DigestFinal_ex(md, sum, &sumlen) != 1 ||
	    sumlen != IMAGE_SHA_LEN) {
		xasprintf(cause, "SHA-256 failed");
		goto out;
	}
	util_hex(sum, sumlen, p->ip_sha256);
	ret = 0;
out:
	cli_status_end(0);
	EVP_MD_CTX_free(md);
	free(buf);
	return (ret);
}

/* {"sha256":HEX,"size":N} of a hashed part. */
static json_t *
image_part_json(const struct image_part *p)
{
	return (json_pack("{s:s,s:I}", "sha256", p->ip_sha256, "size",
	    (json_int_t)p->ip_size));
}

/* A string member's value; "" when it is missing, null or not a string. */
static const char *
image_str(json_t *v)
{
	return (json_is_string(v) ? json_string_value(v) : "");
}

/*
 * Does the server hold an unfinished upload of exactly this image (same
 * format, command line and files)? Then the upload resumes rather than
 * failing on the name that an interrupted "image add" left behind.
 */
static int
image_resumable(json_t *have, json_t *want)
{
	const char	*part;
	json_t		*h, *w;
	size_t		 i;

	if (strcmp(image_str(json_object_get(have, "state")),
	    "uploading") != 0 ||
	    strcmp(image_str(json_object_get(have, "format")),
	    image_str(json_object_get(want, "format"))) != 0 ||
	    strcmp(image_str(json_object_get(have, "cmdline")),
	    image_str(json_object_get(want, "cmdline"))) != 0)
		return (0);
	for (i = 0; i < IMAGE_NPARTS; i++) {
		part = image_part_names[i].part;
		h = json_object_get(have, part);
		w = json_object_get(want, part);
		if (w == NULL) {
			if (h != NULL && !json_is_null(h))
				return (0);
			continue;
		}
		if (!json_is_object(h) ||
		    !json_equal(json_object_get(h, "sha256"),
		    json_object_get(w, "sha256")) ||
		    !json_equal(json_object_get(h, "size"),
		    json_object_get(w, "size")))
			return (0);
	}
	return (1);
}

int
image_add(struct cli_call *call)
{
	struct image_part	 parts[IMAGE_NPARTS];
	const char		*name = call->ca_argv[0], *format, *cmdline;
	json_t			*body = NULL, *image = NULL, *have, *reply;
	char			*path, *cause, *cname;
	size_t			 i;
	int			 rc = CLI_EXIT_ERROR, found;

	memset(parts, 0, sizeof(parts));
	for (i = 0; i < IMAGE_NPARTS; i++) {
		parts[i].ip_part = image_part_names[i].part;
		parts[i].ip_opt = image_part_names[i].opt;
		parts[i].ip_file = cli_opt(call, parts[i].ip_opt);
		parts[i].ip_fd = -1;
	}
	format = cli_opt(call, "format");
	cmdline = cli_opt(call, "cmdline");
	if (parts[0].ip_file == NULL) {
		fprintf(stderr, "opsnctl: image add: --file is required\n");
		rc = cli_usage(call);
		goto out;
	}
	/* An initrd or a command line only mean something to a kernel. */
	if ((parts[2].ip_file != NULL || cmdline != NULL) &&
	    parts[1].ip_file == NULL) {
		fprintf(stderr, "opsnctl: image add: --initrd and --cmdline "
		    "need --kernel\n");
		rc = cli_usage(call);
		goto out;
	}
	if (format != NULL) {
		for (i = 0; i < nitems(image_formats); i++) {
			if (strcmp(format, image_formats[i]) == 0)
				break;
		}
		if (i == nitems(image_formats)) {
			fprintf(stderr, "opsnctl: --format: '%s' is not "
			    "qcow2 or raw\n", format);
			rc = cli_usage(call);
			goto out;
		}
	}

	for (i = 0; i < IMAGE_NPARTS; i++) {
		if (parts[i].ip_file == NULL)
			continue;
		if (image_hash(&parts[i], &cause) == -1) {
			cname = format_clean(cause);
			fprintf(stderr, "opsnctl: %s\n", cname);
			free(cname);
			free(cause);
			goto out;
		}
	}
	if (format == NULL)
		format = parts[0].ip_qcow2 ? "qcow2" : "raw";
	body = json_pack("{s:s,s:s,s:o}", "name", name, "format", format,
	    "disk", image_part_json(&parts[0]));
	for (i = 1; i < IMAGE_NPARTS; i++) {
		if (parts[i].ip_file != NULL)
			json_object_set_new(body, parts[i].ip_part,
			    image_part_json(&parts[i]));
	}
	if (cmdline != NULL)
		json_object_set_new(body, "cmdline", json_string(cmdline));

	path = image_path(name, NULL);
	found = cli_lookup(path, &have);
	free(path);
	if (found == -1)
		goto out;
	if (found == 0 && image_resumable(have, body)) {
		image = have;
		if (!cli_conf.cc_quiet) {
			cname = format_clean(name);
			fprintf(stderr, "opsnctl: image %s: resuming an "
			    "unfinished upload\n", cname);
			free(cname);
		}
	} else {
		json_decref(have);
		/* A name taken by another image: the server says so. */
		if (cli_request("POST", "/v1/images", json_incref(body),
		    &image) == -1)
			goto out;
	}

	for (i = 0; i < IMAGE_NPARTS; i++) {
		if (parts[i].ip_file == NULL || json_is_true(json_object_get(
		    json_object_get(image, parts[i].ip_part), "uploaded")))
			continue;
		path = image_path(name, parts[i].ip_part);
		found = cli_upload(path, parts[i].ip_fd, parts[i].ip_size,
		    parts[i].ip_sha256, parts[i].ip_file, &reply);
		free(path);
		if (found == -1)
			goto out;
		if (reply != NULL) {
			json_decref(image);
			image = reply;
		}
	}
	rc = cli_show_object(image, image_fields, nitems(image_fields));
	image = NULL;
out:
	for (i = 0; i < IMAGE_NPARTS; i++) {
		if (parts[i].ip_fd != -1)
			close(parts[i].ip_fd);
	}
	json_decref(image);
	json_decref(body);
	return (rc);
}

int
image_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/images", image_list_cols,
	    nitems(image_list_cols)));
}

int
image_show(struct cli_call *call)
{
	json_t	*reply;
	char	*path;
	int	 rc;

	path = image_path(call->ca_argv[0], NULL);
	rc = cli_request("GET", path, NULL, &reply);
	free(path);
	if (rc == -1)
		return (CLI_EXIT_ERROR);
	return (cli_show_object(reply, image_fields, nitems(image_fields)));
}
