/*
 * Images: a disk (qcow2 or raw) and optionally a kernel and an initrd for
 * direct boot. The operator declares an image with the SHA-256 and size of
 * each part, then uploads the parts; each is checked before it is kept in
 * DATA_DIR/images/<sha256>. Agents download them with their node
 * certificate, resuming with Range requests.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "vms.h"

#define IMAGE_NAME_MAX	63

static const char *const image_parts[] = { "disk", "kernel", "initrd" };

static int
images_name_ok(const char *s)
{
	size_t	 i, len = strlen(s);

	if (len == 0 || len > IMAGE_NAME_MAX || !isalnum((unsigned char)s[0]))
		return (0);
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return (0);
	return (1);
}

static int
images_sha_ok(const char *s)
{
	size_t	 i;

	if (strlen(s) != 64)
		return (0);
	for (i = 0; i < 64; i++)
		if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f'))
			return (0);
	return (1);
}

static char *
images_path(const char *sha256)
{
	char	*p;

	xasprintf(&p, "%s/images/%s", ctl->conf.data_dir, sha256);
	return (p);
}

static json_t *
images_row_json(sqlite3_stmt *st)
{
	json_t		*o = json_object(), *part;
	sqlite3_stmt	*ps;
	char		 buf[32];
	size_t		 i;

	json_object_set_new(o, "name",
	    json_string((const char *)sqlite3_column_text(st, 1)));
	json_object_set_new(o, "format",
	    json_string((const char *)sqlite3_column_text(st, 2)));
	json_object_set_new(o, "state",
	    json_string((const char *)sqlite3_column_text(st, 3)));
	json_object_set_new(o, "cmdline",
	    json_string((const char *)sqlite3_column_text(st, 4)));
	util_time_fmt(sqlite3_column_int64(st, 5), buf, sizeof(buf));
	json_object_set_new(o, "created_at", json_string(buf));
	for (i = 0; i < nitems(image_parts); i++)
		json_object_set_new(o, image_parts[i], json_null());
	ps = store_prepare(ctl->db, "SELECT part, sha256, size, uploaded FROM "
	    "image_parts WHERE image_id = ?");
	sqlite3_bind_int64(ps, 1, sqlite3_column_int64(st, 0));
	while (store_step(ps) == SQLITE_ROW) {
		part = json_pack("{s:s,s:I,s:b}", "sha256",
		    (const char *)sqlite3_column_text(ps, 1), "size",
		    (json_int_t)sqlite3_column_int64(ps, 2), "uploaded",
		    sqlite3_column_int(ps, 3));
		json_object_set_new(o, (const char *)sqlite3_column_text(ps, 0),
		    part);
	}
	sqlite3_finalize(ps);
	return (o);
}

#define IMAGES_COLS "id, name, format, state, cmdline, created_at"

static json_t *
images_json(const char *name)
{
	sqlite3_stmt	*st;
	json_t		*o = NULL;

	st = store_prepare(ctl->db, "SELECT " IMAGES_COLS " FROM images WHERE "
	    "name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		o = images_row_json(st);
	sqlite3_finalize(st);
	return (o);
}

/* An image whose every part is uploaded is ready. */
static void
images_mark_ready(int64_t id)
{
	sqlite3_stmt	*st;

	st = store_prepare(ctl->db, "UPDATE images SET state = 'ready' WHERE "
	    "id = ?1 AND NOT EXISTS (SELECT 1 FROM image_parts WHERE "
	    "image_id = ?1 AND uploaded = 0)");
	sqlite3_bind_int64(st, 1, id);
	store_step(st);
	sqlite3_finalize(st);
}

/* {"sha256": "...", "size": N} for one part; -1 after replying 400. */
static int
images_part_spec(struct api_req *r, json_t *body, const char *part,
    const char **sha, int64_t *size)
{
	static const char *const known[] = { "sha256", "size", NULL };
	json_t	*o = json_object_get(body, part), *v;

	*sha = NULL;
	if (o == NULL || json_is_null(o))
		return (0);
	if (!json_is_object(o)) {
		api_reply_error(r, 400, "bad_field", "%s must be an object "
		    "{\"sha256\": ..., \"size\": ...}", part);
		return (-1);
	}
	if (params_known_fields(r, o, known) == -1)
		return (-1);
	v = json_object_get(o, "sha256");
	if (!json_is_string(v) || !images_sha_ok(json_string_value(v))) {
		api_reply_error(r, 400, "bad_field", "%s.sha256 must be 64 "
		    "lower-case hexadecimal digits", part);
		return (-1);
	}
	*sha = json_string_value(v);
	v = json_object_get(o, "size");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > (json_int_t)1 << 42) {
		api_reply_error(r, 400, "bad_field", "%s.size must be a number "
		    "of bytes from 1 to 4 TiB", part);
		return (-1);
	}
	*size = json_integer_value(v);
	return (0);
}

/* POST /v1/images: declare an image and the checksums of its parts. */
void
images_create(struct api_req *r)
{
	static const char *const known[] = { "name", "format", "disk",
	    "kernel", "initrd", "cmdline", NULL };
	json_t		*body, *v;
	const char	*name, *format = "qcow2", *cmdline = "", *sha[3];
	int64_t		 size[3] = { 0, 0, 0 }, id;
	sqlite3_stmt	*st;
	size_t		 i;
	char		 obj[96];

	if ((body = api_body_json(r)) == NULL)
		return;
	if (params_known_fields(r, body, known) == -1)
		goto out;
	v = json_object_get(body, "name");
	if (!json_is_string(v) || !images_name_ok(json_string_value(v))) {
		api_reply_error(r, 400, "bad_field", "name must be 1 to %d "
		    "letters, digits, '-', '_' or '.', starting with a letter "
		    "or digit", IMAGE_NAME_MAX);
		goto out;
	}
	name = json_string_value(v);
	if ((v = json_object_get(body, "format")) != NULL) {
		if (!json_is_string(v) || (strcmp(json_string_value(v),
		    "qcow2") != 0 && strcmp(json_string_value(v), "raw") != 0)) {
			api_reply_error(r, 400, "bad_field", "format must be "
			    "qcow2 or raw");
			goto out;
		}
		format = json_string_value(v);
	}
	if ((v = json_object_get(body, "cmdline")) != NULL) {
		if (!json_is_string(v) || strlen(json_string_value(v)) > 1024 ||
		    strpbrk(json_string_value(v), "\r\n\t'\"<>&") != NULL) {
			api_reply_error(r, 400, "bad_field", "cmdline must be "
			    "text of at most 1024 characters without quotes, "
			    "tabs, new lines or <>&");
			goto out;
		}
		cmdline = json_string_value(v);
	}
	for (i = 0; i < nitems(image_parts); i++)
		if (images_part_spec(r, body, image_parts[i], &sha[i],
		    &size[i]) == -1)
			goto out;
	if (sha[0] == NULL) {
		api_reply_error(r, 400, "missing_field", "disk "
		    "{\"sha256\", \"size\"} is required");
		goto out;
	}
	if ((sha[1] == NULL) != (sha[2] == NULL)) {
		api_reply_error(r, 400, "bad_field", "kernel and initrd go "
		    "together");
		goto out;
	}

	if (store_begin(ctl->db) == -1) {
		api_reply_error(r, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "INSERT INTO images (name, format, cmdline,"
	    " created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING "
	    "RETURNING id");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, cmdline, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, util_now());
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		store_rollback(ctl->db);
		api_reply_error(r, 409, "exists", "an image named '%s' exists",
		    name);
		goto out;
	}
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	for (i = 0; i < nitems(image_parts); i++) {
		char *path;

		if (sha[i] == NULL)
			continue;
		/* A part whose bytes the controller already has is uploaded. */
		path = images_path(sha[i]);
		st = store_prepare(ctl->db, "INSERT INTO image_parts (image_id,"
		    " part, sha256, size, uploaded) VALUES (?, ?, ?, ?, ?)");
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, image_parts[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, sha[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, size[i]);
		sqlite3_bind_int(st, 5, access(path, R_OK) == 0);
		free(path);
		if (store_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			store_rollback(ctl->db);
			api_reply_error(r, 500, "internal", "storing the image "
			    "failed");
			goto out;
		}
		sqlite3_finalize(st);
	}
	images_mark_ready(id);
	snprintf(obj, sizeof(obj), "image/%s", name);
	if (audit_record(r, "image.create", obj, json_deep_copy(body)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_reply_error(r, 500, "internal", "storing the image failed");
		goto out;
	}
	log_info("images: %s declared %s", api_principal(r)->ap_name, name);
	api_reply_json(r, 201, images_json(name));
out:
	json_decref(body);
}

/*
 * One part being put in place: its bytes are checked and moved (or
 * written) into DATA_DIR/images on the thread pool, then the database
 * says so on the loop.
 */
struct images_job {
	uv_work_t		 j_work;
	struct api_defer	*j_defer;
	int64_t			 j_id;
	char			*j_name;
	const char		*j_part;	/* from image_parts[] */
	char			 j_want[65];
	char			*j_file;	/* a body sent in parts, or */
	char			*j_data;	/* the body itself (a copy) */
	size_t			 j_len;
	char			*j_dir, *j_path;
	char			*j_cause;	/* I/O error */
	int			 j_mismatch;
	char			 j_got[65];
};

static void
images_job_free(struct images_job *j)
{
	if (j->j_file != NULL)
		(void)unlink(j->j_file);
	free(j->j_file);
	free(j->j_data);
	free(j->j_name);
	free(j->j_dir);
	free(j->j_path);
	free(j->j_cause);
	free(j);
}

/* Make a rename in dir durable. */
static int
images_sync_dir(const char *dir)
{
	int	 fd, rv;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return (-1);
	rv = fsync(fd);
	close(fd);
	return (rv);
}

/* On the pool: check the bytes and keep them under their SHA-256. */
static void
images_work_cb(uv_work_t *w)
{
	struct images_job	*j = w->data;
	unsigned char		 md[32];
	unsigned int		 mdlen = sizeof(md);

	if (util_mkdirs(j->j_dir, 0750, &j->j_cause) == -1)
		return;
	if (j->j_data != NULL) {
		if (EVP_Digest(j->j_data, j->j_len, md, &mdlen, util_sha256(),
		    NULL) != 1)
			fatalx("images: SHA-256");
		util_hex(md, sizeof(md), j->j_got);
		if ((j->j_mismatch = strcmp(j->j_got, j->j_want) != 0))
			return;
		/* Content-addressed: the same bytes are written once. */
		if (access(j->j_path, R_OK) != 0)
			(void)util_write_file(j->j_path, j->j_data, j->j_len,
			    0640, &j->j_cause);
		return;
	}
	/* A body in parts was checked as it was stored: move it in place. */
	if (access(j->j_path, R_OK) == 0)
		return;		/* the same bytes are there; j_file goes */
	if (rename(j->j_file, j->j_path) == -1) {
		xasprintf(&j->j_cause, "rename %s to %s: %s", j->j_file,
		    j->j_path, strerror(errno));
		return;
	}
	free(j->j_file);
	j->j_file = NULL;
	if (images_sync_dir(j->j_dir) == -1)
		xasprintf(&j->j_cause, "fsync %s: %s", j->j_dir,
		    strerror(errno));
}

/* Back on the loop: record the part as uploaded. */
static void
images_after_cb(uv_work_t *w, int status)
{
	struct images_job	*j = w->data;
	struct api_defer	*d = j->j_defer;
	sqlite3_stmt		*st;
	char			 obj[96];

	if (status != 0 || j->j_cause != NULL) {
		log_warnx("images: %s", j->j_cause != NULL ? j->j_cause :
		    uv_strerror(status));
		api_defer_reply_error(d, 500, "internal", "storing the %s "
		    "failed", j->j_part);
		goto out;
	}
	if (j->j_mismatch) {
		api_defer_reply_error(d, 400, "checksum_mismatch", "%s of image "
		    "'%s': SHA-256 is %s, expected %s", j->j_part, j->j_name,
		    j->j_got, j->j_want);
		goto out;
	}
	if (store_begin(ctl->db) == -1) {
		api_defer_reply_error(d, 503, "busy", "the database is busy");
		goto out;
	}
	st = store_prepare(ctl->db, "UPDATE image_parts SET uploaded = 1 WHERE "
	    "image_id = ? AND part = ?");
	sqlite3_bind_int64(st, 1, j->j_id);
	sqlite3_bind_text(st, 2, j->j_part, -1, SQLITE_STATIC);
	store_step(st);
	sqlite3_finalize(st);
	images_mark_ready(j->j_id);
	snprintf(obj, sizeof(obj), "image/%s", j->j_name);
	if (audit_record(api_defer_req(d), "image.upload", obj,
	    json_pack("{s:s,s:s,s:I}", "part", j->j_part, "sha256", j->j_want,
	    "size", (json_int_t)j->j_len)) == -1 ||
	    store_commit(ctl->db) == -1) {
		store_rollback(ctl->db);
		api_defer_reply_error(d, 500, "internal", "storing the upload "
		    "failed");
		goto out;
	}
	log_info("images: %s uploaded %s of %s (%zu bytes)",
	    api_principal(api_defer_req(d))->ap_name, j->j_part, j->j_name,
	    j->j_len);
	api_defer_reply_json(d, 200, images_json(j->j_name));
out:
	images_job_free(j);
}

/*
 * PUT /v1/images/{name}/{part}: the bytes of one part, checked against
 * its declared size and SHA-256. A part over one request's limit comes
 * in parts (Content-Range, see http.h), each written to disk on the pool.
 */
void
images_upload(struct api_req *r)
{
	const char		*name = api_param(r, "name");
	const char		*part = api_param(r, "part");
	struct images_job	*j;
	sqlite3_stmt		*st;
	const void		*data;
	uint64_t		 fsize = 0;
	int64_t			 size;
	size_t			 i;
	char			 fsha[65];
	int			 rv;

	j = xcalloc(1, sizeof(*j));
	j->j_work.data = j;
	j->j_file = api_body_file(r, &fsize, fsha);
	for (i = 0; i < nitems(image_parts); i++)
		if (strcmp(part, image_parts[i]) == 0)
			j->j_part = image_parts[i];
	if (j->j_part == NULL) {
		api_reply_error(r, 404, "not_found", "parts are disk, kernel "
		    "and initrd");
		goto fail;
	}
	st = store_prepare(ctl->db, "SELECT i.id, p.sha256, p.size FROM images "
	    "i JOIN image_parts p ON p.image_id = i.id WHERE i.name = ? AND "
	    "p.part = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, part, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		api_reply_error(r, 404, "not_found", "image '%s' has no %s "
		    "declared", name, part);
		goto fail;
	}
	j->j_id = sqlite3_column_int64(st, 0);
	strlcpy(j->j_want, (const char *)sqlite3_column_text(st, 1),
	    sizeof(j->j_want));
	size = sqlite3_column_int64(st, 2);
	sqlite3_finalize(st);

	if (j->j_file != NULL)
		j->j_len = (size_t)fsize;
	else
		data = api_body(r, &j->j_len);
	if ((int64_t)j->j_len != size) {
		api_reply_error(r, 400, "size_mismatch", "%s of image '%s' is "
		    "declared as %lld bytes, %zu were sent", part, name,
		    (long long)size, j->j_len);
		goto fail;
	}
	if (j->j_file != NULL && strcmp(fsha, j->j_want) != 0) {
		api_reply_error(r, 400, "checksum_mismatch", "%s of image "
		    "'%s': SHA-256 is %s, expected %s", part, name, fsha,
		    j->j_want);
		goto fail;
	}
	if (j->j_file == NULL) {
		j->j_data = xmalloc(j->j_len + 1);
		memcpy(j->j_data, data, j->j_len);
	}
	j->j_name = xstrdup(name);
	xasprintf(&j->j_dir, "%s/images", ctl->conf.data_dir);
	j->j_path = images_path(j->j_want);
	if ((rv = uv_queue_work(ctl->loop, &j->j_work, images_work_cb,
	    images_after_cb)) != 0) {
		log_warnx("images: uv_queue_work: %s", uv_strerror(rv));
		api_reply_error(r, 503, "busy", "the server is busy");
		goto fail;
	}
	j->j_defer = api_defer(r);
	return;
fail:
	images_job_free(j);
}

/* GET /v1/images */
void
images_list(struct api_req *r)
{
	compute_page_by_name(r, "SELECT " IMAGES_COLS " FROM images WHERE "
	    "name > ? ORDER BY name LIMIT ?", images_row_json);
}

/* GET /v1/images/{name} */
void
images_get(struct api_req *r)
{
	json_t	*o;

	if ((o = images_json(api_param(r, "name"))) == NULL) {
		api_reply_error(r, 404, "not_found", "no image named '%s'",
		    api_param(r, "name"));
		return;
	}
	api_reply_json(r, 200, o);
}

/* GET /v1/images/{name}/{part}: the bytes, for agents (Range works). */
void
images_download(struct api_req *r)
{
	const char	*name = api_param(r, "name"), *part = api_param(r, "part");
	sqlite3_stmt	*st;
	char		*path = NULL;

	st = store_prepare(ctl->db, "SELECT p.sha256 FROM images i JOIN "
	    "image_parts p ON p.image_id = i.id WHERE i.name = ? AND p.part = ? "
	    "AND p.uploaded = 1");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, part, -1, SQLITE_STATIC);
	if (store_step(st) == SQLITE_ROW)
		path = images_path((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (path == NULL) {
		api_reply_error(r, 404, "not_found", "no image named '%s' with "
		    "an uploaded %s", name, part);
		return;
	}
	if (api_reply_file(r, path, "application/octet-stream") == -1) {
		log_warnx("images: %s: %s", path, strerror(errno));
		api_reply_error(r, 500, "internal", "the %s of image '%s' cannot "
		    "be read", part, name);
	}
	free(path);
}

/* Image id by name if all its parts are uploaded. */
int64_t
images_ready_id(const char *name, char **cause)
{
	sqlite3_stmt	*st;
	int64_t		 id = -1;

	st = store_prepare(ctl->db, "SELECT id, state FROM images WHERE "
	    "name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_ROW)
		xasprintf(cause, "no image named '%s'", name);
	else if (strcmp((const char *)sqlite3_column_text(st, 1), "ready") != 0)
		xasprintf(cause, "image '%s' is still being uploaded", name);
	else
		id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (id);
}

/* Describe image id for an agent's desired state. */
int
images_ref(int64_t id, Opsn__ImageRef *ref)
{
	sqlite3_stmt	*st;
	const char	*part;

	opsn__image_ref__init(ref);
	st = store_prepare(ctl->db, "SELECT name, format, cmdline FROM images "
	    "WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (store_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return (-1);
	}
	ref->name = xstrdup((const char *)sqlite3_column_text(st, 0));
	ref->format = xstrdup((const char *)sqlite3_column_text(st, 1));
	ref->cmdline = xstrdup((const char *)sqlite3_column_text(st, 2));
	sqlite3_finalize(st);
	st = store_prepare(ctl->db, "SELECT part, sha256, size FROM image_parts "
	    "WHERE image_id = ?");
	sqlite3_bind_int64(st, 1, id);
	while (store_step(st) == SQLITE_ROW) {
		char *sha = xstrdup((const char *)sqlite3_column_text(st, 1));
		uint64_t size = (uint64_t)sqlite3_column_int64(st, 2);

		part = (const char *)sqlite3_column_text(st, 0);
		if (strcmp(part, "disk") == 0) {
			ref->disk_sha256 = sha;
			ref->disk_size = size;
		} else if (strcmp(part, "kernel") == 0) {
			ref->kernel_sha256 = sha;
			ref->kernel_size = size;
		} else {
			ref->initrd_sha256 = sha;
			ref->initrd_size = size;
		}
	}
	sqlite3_finalize(st);
	return (0);
}

/* Free what images_ref allocated. */
void
images_ref_free(Opsn__ImageRef *ref)
{
	char	**strs[] = { &ref->name, &ref->format, &ref->cmdline,
	    &ref->disk_sha256, &ref->kernel_sha256, &ref->initrd_sha256 };
	size_t	 i;

	for (i = 0; i < nitems(strs); i++) {
		/* protobuf-c's empty default is a static string. */
		if (*strs[i] != NULL && *strs[i] !=
		    (char *)protobuf_c_empty_string)
			free(*strs[i]);
		*strs[i] = NULL;
	}
}
