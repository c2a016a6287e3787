/*
 * Backups while the controller runs (docs/operations.md). POST /v1/backups
 * copies the database with SQLite's online backup API from a read
 * connection of its own on the thread pool (WAL: the loop keeps writing,
 * the copy is one consistent snapshot), then packs it with what a restore
 * needs -- the CA and its key, the server certificate and key, the admin
 * token file, the configuration file -- and a manifest of their SHA-256
 * into DATA_DIR/backups/NAME.tar. The archive's own SHA-256 is in the
 * reply, in NAME.tar.sha256 beside it, and checked by opsnctl after its
 * download.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"
#include "backup.h"
#include "tar.h"

#define BACKUP_DIR		"backups"
#define BACKUP_NAME_MAX		64

static void	backup_create(struct api_req *);
static void	backup_list(struct api_req *);
static void	backup_download(struct api_req *);
static void	backup_delete(struct api_req *);

static const struct api_route backup_routes[] = {
	{ "POST", "/v1/backups", "backups.write",
	  API_PLATFORM, NULL, backup_create,
	  "Take a backup now: the database (a consistent copy), the CA, the "
	  "server key and the configuration, with their SHA-256" },
	{ "GET", "/v1/backups", "backups.read",
	  API_PLATFORM, NULL, backup_list,
	  "List the backups kept by the controller" },
	{ "GET", "/v1/backups/{name}", "backups.download",
	  API_PLATFORM, NULL, backup_download,
	  "Download a backup (a tar file holding the CA's key)" },
	{ "DELETE", "/v1/backups/{name}", "backups.write",
	  API_PLATFORM, NULL, backup_delete,
	  "Delete a backup kept by the controller" },
};

/* What a backup holds beside the database, from the data folder. */
const struct backup_file backup_files[] = {
	{ "ca.pem",		0644, 1 },
	{ "ca-key.pem",		0600, 1 },
	{ "server.pem",		0644, 0 },
	{ "server-key.pem",	0600, 0 },
	{ "admin.token",	0600, 0 },
	{ NULL, 0, 0 },
};

struct backup_job {
	uv_work_t		 j_work;
	struct api_defer	*j_defer;
	char			*j_dir;		/* the data folder */
	char			*j_conffile;	/* or NULL */
	char			*j_name;
	/* Results. */
	int			 j_status;	/* HTTP, 201 on success */
	char			*j_cause;
	json_t			*j_manifest;
	char			 j_sha[65];
	uint64_t		 j_size;
	uint64_t		 j_ms;
};

static int	 backup_busy;

/* DATA_DIR/backups/NAME.SUFFIX (caller frees). */
static char *
backup_path(const char *dir, const char *name, const char *suffix)
{
	char	*p;

	xasprintf(&p, "%s/" BACKUP_DIR "/%s%s", dir, name, suffix);
	return (p);
}

/* A backup's name as opsn makes them: letters, digits, '-', '.'. */
static int
backup_name_ok(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n == 0 || n > BACKUP_NAME_MAX || s[0] == '.')
		return (0);
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '-' || s[i] == '.'))
			return (0);
	return (1);
}

/* The status a failed write deserves: 507 when the disk is full. */
static int
backup_status(int err, int sqlite_rc)
{
	if (err == ENOSPC || err == EDQUOT || sqlite_rc == SQLITE_FULL)
		return (507);
	return (500);
}

/* Copy the live database into path with the online backup API. */
static int
backup_copy_db(const char *src_path, const char *path, json_t *manifest,
    int *status, char **cause)
{
	sqlite3		*src = NULL, *dst = NULL;
	sqlite3_backup	*b;
	sqlite3_stmt	*st;
	int		 rc = SQLITE_OK, rv = -1;

	*status = 500;
	if (store_open_reader(src_path, &src, cause) == -1)
		return (-1);
	if ((rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL)) != SQLITE_OK) {
		xasprintf(cause, "%s: %s", path, sqlite3_errstr(rc));
		goto out;
	}
	/*
	 * One step for the whole file: the source's read transaction lasts
	 * the whole copy, so it is one snapshot; the loop's writes go on
	 * into the WAL meanwhile.
	 */
	if ((b = sqlite3_backup_init(dst, "main", src, "main")) == NULL) {
		rc = sqlite3_errcode(dst);
		xasprintf(cause, "starting the copy: %s", sqlite3_errmsg(dst));
		goto out;
	}
	while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY ||
	    rc == SQLITE_LOCKED)
		sqlite3_sleep(20);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		xasprintf(cause, "copying the database: %s", sqlite3_errstr(rc));
		goto out;
	}
	if (sqlite3_prepare_v2(dst, "SELECT (SELECT user_version FROM "
	    "pragma_user_version), (SELECT epoch FROM controller_epoch), "
	    "(SELECT count(*) FROM tenants), (SELECT count(*) FROM samples)",
	    -1, &st, NULL) == SQLITE_OK && store_step(st) == SQLITE_ROW) {
		json_object_set_new(manifest, "schema_version",
		    json_integer(sqlite3_column_int64(st, 0)));
		json_object_set_new(manifest, "epoch",
		    json_integer(sqlite3_column_int64(st, 1)));
		json_object_set_new(manifest, "tenants",
		    json_integer(sqlite3_column_int64(st, 2)));
		json_object_set_new(manifest, "samples",
		    json_integer(sqlite3_column_int64(st, 3)));
	}
	sqlite3_finalize(st);
	rv = 0;
out:
	if (rv == -1)
		*status = backup_status(0, rc);
	sqlite3_close(dst);
	sqlite3_close(src);
	return (rv);
}

/* Add one file to the archive and to the manifest. */
static int
backup_add(struct tar *t, json_t *files, const char *member,
    const char *path, int mode, char **cause)
{
	char		 sha[65], *name;
	uint64_t	 size;
	int		 rv;

	xasprintf(&name, BACKUP_MEMBER_DIR "/%s", member);
	rv = tar_put_file(t, name, mode, path, &size, sha, cause);
	free(name);
	if (rv == 0)
		json_array_append_new(files, json_pack("{s:s,s:I,s:s,s:i}",
		    "name", member, "size", (json_int_t)size, "sha256", sha,
		    "mode", mode));
	return (rv);
}

/* The pool: copy, pack, sync, rename into place. */
static void
backup_work_cb(uv_work_t *req)
{
	struct backup_job	*j = req->data;
	const struct backup_file *f;
	struct tar		 t = { .t_fd = -1 };
	json_t			*files = json_array();
	char			*dir, *dbcopy, *tmp, *final, *sum, *path;
	char			*text = NULL, sha[65];
	uint64_t		 t0 = util_mono_ms();
	int			 fd;

	j->j_status = 500;
	xasprintf(&dir, "%s/" BACKUP_DIR, j->j_dir);
	dbcopy = backup_path(j->j_dir, j->j_name, ".db.part");
	tmp = backup_path(j->j_dir, j->j_name, ".tar.part");
	final = backup_path(j->j_dir, j->j_name, ".tar");
	sum = backup_path(j->j_dir, j->j_name, ".tar.sha256");
	if (util_mkdirs(dir, 0700, &j->j_cause) == -1)
		goto out;
	xasprintf(&path, "%s/opsn.db", j->j_dir);
	fd = backup_copy_db(path, dbcopy, j->j_manifest, &j->j_status,
	    &j->j_cause);
	free(path);
	if (fd == -1)
		goto out;
	if (tar_create(&t, tmp, &j->j_cause) == -1 ||
	    backup_add(&t, files, "opsn.db", dbcopy, 0640, &j->j_cause) == -1)
		goto fail;
	unlink(dbcopy);
	for (f = backup_files; f->bf_name != NULL; f++) {
		xasprintf(&path, "%s/%s", j->j_dir, f->bf_name);
		if (access(path, F_OK) == -1 && !f->bf_required) {
			free(path);
			continue;
		}
		fd = backup_add(&t, files, f->bf_name, path, f->bf_mode,
		    &j->j_cause);
		free(path);
		if (fd == -1)
			goto fail;
	}
	if (j->j_conffile != NULL && backup_add(&t, files, BACKUP_CONF_MEMBER,
	    j->j_conffile, 0640, &j->j_cause) == -1)
		goto fail;
	json_object_set_new(j->j_manifest, "files", files);
	files = NULL;
	text = json_dumps(j->j_manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (tar_put_mem(&t, BACKUP_MEMBER_DIR "/" BACKUP_MANIFEST, 0644, text,
	    strlen(text), sha, &j->j_cause) == -1 ||
	    tar_finish(&t, j->j_sha, &j->j_size, &j->j_cause) == -1)
		goto fail;
	tar_close(&t);
	free(text);
	xasprintf(&text, "%s  %s.tar\n", j->j_sha, j->j_name);
	if (util_write_file(sum, text, strlen(text), 0600, &j->j_cause) ==
	    -1 || rename(tmp, final) == -1) {
		if (j->j_cause == NULL)
			xasprintf(&j->j_cause, "%s: %s", final, strerror(errno));
		j->j_status = backup_status(errno, 0);
		unlink(sum);
		goto out;
	}
	/* The rename is durable once the folder is. */
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		fsync(fd);
		close(fd);
	}
	j->j_status = 201;
	j->j_ms = util_mono_ms() - t0;
	goto out;
fail:
	if (t.t_errno != 0)
		j->j_status = backup_status(t.t_errno, 0);
	tar_close(&t);
out:
	json_decref(files);
	free(text);
	unlink(dbcopy);
	unlink(tmp);
	free(dir);
	free(dbcopy);
	free(tmp);
	free(final);
	free(sum);
}

/* Back on the loop: audit and answer. */
static void
backup_after_cb(uv_work_t *req, int status)
{
	struct backup_job	*j = req->data;
	json_t			*o;
	char			 obj[96];

	backup_busy = 0;
	if (j->j_status != 201) {
		log_warnx("backup: %s: %s", j->j_name, j->j_cause ? j->j_cause :
		    "cancelled");
		api_defer_reply_error(j->j_defer, j->j_status, j->j_status ==
		    507 ? "insufficient_storage" : "backup_failed",
		    "the backup failed: %s", j->j_cause ? j->j_cause :
		    "cancelled");
		goto out;
	}
	snprintf(obj, sizeof(obj), "backup/%s", j->j_name);
	if (store_begin(ctl->db) == 0 && (audit_record(api_defer_req(
	    j->j_defer), "backup.create", obj, json_pack("{s:s,s:I}",
	    "sha256", j->j_sha, "size", (json_int_t)j->j_size)) == -1 ||
	    store_commit(ctl->db) == -1))
		store_rollback(ctl->db);
	log_notice("backup: %s: %llu bytes in %llu ms (sha256 %s)", j->j_name,
	    (unsigned long long)j->j_size, (unsigned long long)j->j_ms,
	    j->j_sha);
	o = json_deep_copy(j->j_manifest);
	json_object_set_new(o, "size", json_integer((json_int_t)j->j_size));
	json_object_set_new(o, "sha256", json_string(j->j_sha));
	json_object_set_new(o, "duration_ms",
	    json_integer((json_int_t)j->j_ms));
	api_defer_reply_json(j->j_defer, 201, o);
out:
	json_decref(j->j_manifest);
	free(j->j_cause);
	free(j->j_dir);
	free(j->j_conffile);
	free(j->j_name);
	free(j);
}

/* POST /v1/backups */
static void
backup_create(struct api_req *r)
{
	struct backup_job	*j;
	char			 when[32], rnd[3], hex[7], *p;
	int			 rv;

	if (backup_busy) {
		api_set_header(r, "Retry-After", "10");
		api_reply_error(r, 409, "busy", "a backup is being taken; try "
		    "again when it is done");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	util_time_fmt(util_now(), when, sizeof(when));
	util_random(rnd, sizeof(rnd));
	util_hex((unsigned char *)rnd, sizeof(rnd), hex);
	/* The time in the name, with '-' for ':' (a file name). */
	xasprintf(&j->j_name, "opsn-%s-%s", when, hex);
	for (p = j->j_name; *p != '\0'; p++)
		if (*p == ':')
			*p = '-';
	j->j_dir = xstrdup(ctl->conf.data_dir);
	j->j_conffile = ctl->conffile ? xstrdup(ctl->conffile) : NULL;
	j->j_manifest = json_pack("{s:i,s:s,s:s,s:s}", "format", BACKUP_FORMAT,
	    "name", j->j_name, "created_at", when, "controller_version",
	    OPSN_VERSION);
	j->j_work.data = j;
	j->j_defer = api_defer(r);
	if ((rv = uv_queue_work(ctl->loop, &j->j_work, backup_work_cb,
	    backup_after_cb)) != 0) {
		api_defer_reply_error(j->j_defer, 503, "busy", "the backup "
		    "could not start: %s", uv_strerror(rv));
		json_decref(j->j_manifest);
		free(j->j_dir);
		free(j->j_conffile);
		free(j->j_name);
		free(j);
		return;
	}
	backup_busy = 1;
}

/* GET /v1/backups */
static void
backup_list(struct api_req *r)
{
	json_t		*items = json_array();
	struct dirent	*e;
	struct stat	 sb;
	DIR		*d;
	char		*dir, *path, *text, name[BACKUP_NAME_MAX + 8], when[32];
	size_t		 len, n;

	xasprintf(&dir, "%s/" BACKUP_DIR, ctl->conf.data_dir);
	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			n = strlen(e->d_name);
			if (n < 5 || n - 4 > BACKUP_NAME_MAX ||
			    strcmp(e->d_name + n - 4, ".tar") != 0)
				continue;
			memcpy(name, e->d_name, n - 4);
			name[n - 4] = '\0';
			xasprintf(&path, "%s/%s", dir, e->d_name);
			if (stat(path, &sb) == -1) {
				free(path);
				continue;
			}
			free(path);
			path = backup_path(ctl->conf.data_dir, name,
			    ".tar.sha256");
			text = NULL;
			if (util_read_file(path, 256, &text, &len, NULL) == -1)
				text = NULL;
			free(path);
			if (text != NULL && len >= 64)
				text[64] = '\0';
			util_time_fmt(sb.st_mtime, when, sizeof(when));
			json_array_append_new(items, json_pack("{s:s,s:I,s:s,"
			    "s:s?}", "name", name, "size", (json_int_t)
			    sb.st_size, "created_at", when, "sha256", text));
			free(text);
		}
		closedir(d);
	}
	free(dir);
	params_reply_page(r, items, NULL);
}

static char *
backup_param_path(struct api_req *r)
{
	const char	*name = api_param(r, "name");

	if (!backup_name_ok(name)) {
		api_reply_error(r, 404, "not_found", "no backup named '%.64s'",
		    name);
		return (NULL);
	}
	return (backup_path(ctl->conf.data_dir, name, ".tar"));
}

/* GET /v1/backups/{name}: streamed by h2o, Range requests honoured. */
static void
backup_download(struct api_req *r)
{
	char	*path;

	if ((path = backup_param_path(r)) == NULL)
		return;
	if (api_reply_file(r, path, "application/x-tar") == -1)
		api_reply_error(r, 404, "not_found", "no backup named '%.64s'",
		    api_param(r, "name"));
	free(path);
}

/* A backup being deleted: unlinking gigabytes takes the loop seconds. */
struct backup_rm {
	uv_fs_t			 rm_req;
	struct api_defer	*rm_defer;
	char			*rm_name;
};

static void
backup_rm_cb(uv_fs_t *req)
{
	struct backup_rm	*rm = req->data;
	char			*sum, obj[96];
	ssize_t			 rc = req->result;

	uv_fs_req_cleanup(req);
	if (rc < 0) {
		api_defer_reply_error(rm->rm_defer, 404, "not_found", "no "
		    "backup named '%.64s'", rm->rm_name);
		goto out;
	}
	sum = backup_path(ctl->conf.data_dir, rm->rm_name, ".tar.sha256");
	unlink(sum);
	free(sum);
	snprintf(obj, sizeof(obj), "backup/%s", rm->rm_name);
	if (store_begin(ctl->db) == 0 && (audit_record(api_defer_req(
	    rm->rm_defer), "backup.delete", obj, NULL) == -1 ||
	    store_commit(ctl->db) == -1))
		store_rollback(ctl->db);
	api_defer_reply_json(rm->rm_defer, 200, json_pack("{s:s,s:b}", "name",
	    rm->rm_name, "deleted", 1));
out:
	free(rm->rm_name);
	free(rm);
}

/* DELETE /v1/backups/{name}: the file goes on the thread pool. */
static void
backup_delete(struct api_req *r)
{
	struct backup_rm	*rm;
	char			*path;
	int			 rv;

	if ((path = backup_param_path(r)) == NULL)
		return;
	rm = xcalloc(1, sizeof(*rm));
	rm->rm_name = xstrdup(api_param(r, "name"));
	rm->rm_req.data = rm;
	rm->rm_defer = api_defer(r);
	if ((rv = uv_fs_unlink(ctl->loop, &rm->rm_req, path,
	    backup_rm_cb)) != 0) {
		api_defer_reply_error(rm->rm_defer, 500, "internal", "deleting "
		    "the backup: %s", uv_strerror(rv));
		free(rm->rm_name);
		free(rm);
	}
	free(path);
}

const struct ctl_module backup_module = {
	.m_name = "backup",
	.m_routes = backup_routes,
	.m_nroutes = nitems(backup_routes),
};
