/*
 * opsn-controller --restore FILE --data-dir DIR: a backup into an empty
 * data folder, checked member by member against its manifest, then
 * migrated to this binary's schema, checked (PRAGMA integrity_check) and
 * given a new epoch, so that agents which have seen newer states than the
 * backup accept the restored controller's and hold what it does not know
 * instead of deleting it (docs/operations.md).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#define RESTORE_TMP		".restore"
#define RESTORE_MANIFEST_MAX	(1 << 20)

/* An absent or empty folder (lost+found allowed: a mount point). */
static int
restore_dir_empty(const char *dir, char **cause)
{
	DIR		*d;
	struct dirent	*e;
	int		 empty = 1;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return (util_mkdirs(dir, 0750, cause));
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
		    strcmp(e->d_name, "lost+found") != 0)
			empty = 0;
	closedir(d);
	if (!empty) {
		xasprintf(cause, "%s is not empty: a backup is restored into an "
		    "empty folder only (nothing is overwritten)", dir);
		return (-1);
	}
	return (0);
}

static const char	*restore_top;

static int
restore_rm_cb(const char *path, const struct stat *sb, int flag,
    struct FTW *ftw)
{
	const char	*base = path + ftw->base;

	if (strcmp(path, restore_top) == 0 || (ftw->level == 1 &&
	    strcmp(base, "lost+found") == 0) || strstr(path, "/lost+found/"))
		return (0);
	if (remove(path) == -1)
		log_warn("restore: removing %s", path);
	return (0);
}

/* Remove everything the failed restore put in dir (dir itself stays). */
static void
restore_empty(const char *dir)
{
	restore_top = dir;
	nftw(dir, restore_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Is name a member a backup may hold? Its mode in *mode. */
static int
restore_member_ok(const char *name, int *mode)
{
	const struct backup_file *f;

	*mode = 0640;
	if (strcmp(name, "opsn.db") == 0 || strcmp(name, BACKUP_CONF_MEMBER) ==
	    0)
		return (1);
	for (f = backup_files; f->bf_name != NULL; f++)
		if (strcmp(name, f->bf_name) == 0) {
			*mode = f->bf_mode;
			return (1);
		}
	return (0);
}

/* FILE.sha256 beside the file, as opsnctl writes it: must match. */
static int
restore_check_sum(const char *file, const char *sha, char **cause)
{
	char	*path, *text = NULL;
	size_t	 len;
	int	 rv = 0;

	xasprintf(&path, "%s.sha256", file);
	if (access(path, F_OK) == 0) {
		if (util_read_file(path, 4096, &text, &len, cause) == -1)
			rv = -1;
		else if (len < 64 || strncmp(text, sha, 64) != 0) {
			xasprintf(cause, "%s: the SHA-256 is %s, %s says "
			    "otherwise: the file is damaged", file, sha, path);
			rv = -1;
		} else
			printf("checksum: %s matches %s\n", sha, path);
	}
	free(text);
	free(path);
	return (rv);
}

/* Extract every member into tmp; check each against the manifest. */
static int
restore_extract(const char *file, const char *tmp, json_t **manifest,
    char sha_file[65], char **cause)
{
	struct tar	 t;
	json_t		*got = json_object(), *files, *f;
	char		 name[TAR_NAME_MAX], sha[65], *path, *text = NULL;
	const char	*base, *k;
	uint64_t	 size;
	size_t		 i, len, prefix = strlen(BACKUP_MEMBER_DIR "/");
	int		 mode, rv = -1, r;

	*manifest = NULL;
	if (tar_open(&t, file, cause) == -1)
		goto out;
	while ((r = tar_next(&t, name, &size, &mode, cause)) == 1) {
		if (strncmp(name, BACKUP_MEMBER_DIR "/", prefix) != 0) {
			xasprintf(cause, "%s: '%s' is not a member of an opsn "
			    "backup", file, name);
			goto out;
		}
		base = name + prefix;
		if (strcmp(base, BACKUP_MANIFEST) == 0) {
			if (tar_read_mem(&t, RESTORE_MANIFEST_MAX, &text, &len,
			    cause) == -1)
				goto out;
			continue;
		}
		if (!restore_member_ok(base, &mode)) {
			xasprintf(cause, "%s: unexpected member '%s'", file,
			    name);
			goto out;
		}
		xasprintf(&path, "%s/%s", tmp, base);
		r = tar_extract(&t, path, mode, sha, cause);
		free(path);
		if (r == -1)
			goto out;
		json_object_set_new(got, base, json_pack("{s:s,s:I}", "sha256",
		    sha, "size", (json_int_t)size));
	}
	if (r == -1 || tar_end(&t, sha_file, cause) == -1)
		goto out;
	if (text == NULL || (*manifest = json_loads(text, 0, NULL)) == NULL) {
		xasprintf(cause, "%s: no readable manifest: not an opsn "
		    "backup, or truncated", file);
		goto out;
	}
	if (json_integer_value(json_object_get(*manifest, "format")) !=
	    BACKUP_FORMAT) {
		xasprintf(cause, "%s: backup format %lld, this controller "
		    "reads format %d", file, (long long)json_integer_value(
		    json_object_get(*manifest, "format")), BACKUP_FORMAT);
		goto out;
	}
	files = json_object_get(*manifest, "files");
	json_array_foreach(files, i, f) {
		k = json_string_value(json_object_get(f, "name"));
		if (k == NULL || json_object_get(got, k) == NULL) {
			xasprintf(cause, "%s: '%s' is missing", file,
			    k ? k : "?");
			goto out;
		}
		if (strcmp(json_string_value(json_object_get(json_object_get(
		    got, k), "sha256")), json_string_value(json_object_get(f,
		    "sha256"))) != 0) {
			xasprintf(cause, "%s: '%s' does not match its SHA-256 "
			    "in the manifest: the backup is damaged", file, k);
			goto out;
		}
		json_object_del(got, k);
	}
	if (json_object_size(got) > 0) {
		xasprintf(cause, "%s: members missing from its manifest", file);
		goto out;
	}
	rv = 0;
out:
	if (rv == -1) {
		json_decref(*manifest);
		*manifest = NULL;
	}
	json_decref(got);
	free(text);
	tar_close(&t);
	return (rv);
}

/* Move the extracted files into the data folder, durably. */
static int
restore_install(const char *tmp, const char *dir, char **cause)
{
	const struct backup_file *f;
	const char	*names[16];
	char		*from, *to;
	size_t		 n = 0, i;
	int		 fd;

	names[n++] = "opsn.db";
	for (f = backup_files; f->bf_name != NULL && n < nitems(names) - 1;
	    f++)
		names[n++] = f->bf_name;
	names[n++] = BACKUP_CONF_MEMBER;
	for (i = 0; i < n; i++) {
		xasprintf(&from, "%s/%s", tmp, names[i]);
		if (strcmp(names[i], BACKUP_CONF_MEMBER) == 0)
			xasprintf(&to, "%s/%s.restored", dir, names[i]);
		else
			xasprintf(&to, "%s/%s", dir, names[i]);
		if (access(from, F_OK) == 0 && rename(from, to) == -1) {
			xasprintf(cause, "%s: %s", to, strerror(errno));
			free(from);
			free(to);
			return (-1);
		}
		free(from);
		free(to);
	}
	if (rmdir(tmp) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		return (-1);
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		fsync(fd);
		close(fd);
	}
	return (0);
}

/* PRAGMA integrity_check must say "ok". */
static int
restore_integrity(sqlite3 *db, char **cause)
{
	sqlite3_stmt	*st;
	const char	*v;
	int		 rv = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
	    SQLITE_OK)
		return (-1);
	if (store_step(st) == SQLITE_ROW &&
	    (v = (const char *)sqlite3_column_text(st, 0)) != NULL) {
		if (strcmp(v, "ok") == 0)
			rv = 0;
		else
			xasprintf(cause, "the restored database fails its "
			    "integrity check: %s", v);
	}
	sqlite3_finalize(st);
	return (rv);
}

/* A new epoch, the modules' hooks and an audit record: one transaction. */
static int
restore_epoch(struct ctl *c, json_t *manifest, const char *sha,
    char **cause)
{
	const struct ctl_module *const *mp;
	sqlite3_stmt	*st;
	uint64_t	 old, now = (uint64_t)util_now();
	const char	*name = json_string_value(json_object_get(manifest,
			    "name"));

	if (store_epoch(c->db, &old) == -1) {
		xasprintf(cause, "reading the epoch: %s", sqlite3_errmsg(c->db));
		return (-1);
	}
	/* Above every epoch before, and above a restore of the same backup. */
	c->epoch = old + 1 > now ? old + 1 : now;
	if (store_begin(c->db) == -1) {
		xasprintf(cause, "%s", sqlite3_errmsg(c->db));
		return (-1);
	}
	st = store_prepare(c->db, "UPDATE controller_epoch SET epoch = ?, "
	    "since = ?, restored_from = ?");
	sqlite3_bind_int64(st, 1, (int64_t)c->epoch);
	sqlite3_bind_int64(st, 2, (int64_t)now);
	sqlite3_bind_text(st, 3, name ? name : "", -1, SQLITE_STATIC);
	if (store_step(st) != SQLITE_DONE) {
		xasprintf(cause, "setting the epoch: %s", sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	for (mp = c->modules; *mp != NULL; mp++)
		if ((*mp)->m_restored != NULL && (*mp)->m_restored(c,
		    cause) == -1)
			goto fail;
	if (audit_record(NULL, "controller.restore", "controller",
	    json_pack("{s:s?,s:O?,s:s,s:I,s:I}", "backup", name, "created_at",
	    json_object_get(manifest, "created_at"), "sha256", sha,
	    "epoch", (json_int_t)c->epoch, "epoch_was", (json_int_t)old)) ==
	    -1) {
		xasprintf(cause, "recording the restore failed");
		goto fail;
	}
	if (store_commit(c->db) == -1) {
		xasprintf(cause, "committing: %s", sqlite3_errmsg(c->db));
		return (-1);
	}
	return (0);
fail:
	store_rollback(c->db);
	return (-1);
}

/* Image files the database names that the data folder lacks. */
static void
restore_images(struct ctl *c)
{
	sqlite3_stmt	*st;
	char		*path;
	int		 missing = 0;

	st = store_prepare(c->db, "SELECT DISTINCT p.sha256, i.name, p.part "
	    "FROM image_parts p JOIN images i ON i.id = p.image_id WHERE "
	    "p.uploaded = 1 ORDER BY i.name");
	while (store_step(st) == SQLITE_ROW) {
		xasprintf(&path, "%s/images/%s", c->conf.data_dir,
		    sqlite3_column_text(st, 0));
		if (access(path, F_OK) == -1) {
			if (missing++ == 0)
				printf("images: copy these files from the old "
				    "data folder's images/ (they are not in "
				    "backups):\n");
			printf("  images/%s  (%s, %s)\n",
			    sqlite3_column_text(st, 0),
			    sqlite3_column_text(st, 1),
			    sqlite3_column_text(st, 2));
		}
		free(path);
	}
	sqlite3_finalize(st);
}

/* Restore a backup into an empty data folder (see backup.h). */
int
backup_restore(struct ctl *c, const char *file, char **cause)
{
	json_t		*manifest = NULL;
	char		*tmp = NULL, *dbpath = NULL, sha[65];
	uint64_t	 t0 = util_mono_ms();
	int		 rv = -1;

	if (restore_dir_empty(c->conf.data_dir, cause) == -1)
		return (-1);
	xasprintf(&tmp, "%s/" RESTORE_TMP, c->conf.data_dir);
	if (mkdir(tmp, 0700) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	/* One pass: each member checked, and the whole file's sum. */
	if (restore_extract(file, tmp, &manifest, sha, cause) == -1 ||
	    restore_check_sum(file, sha, cause) == -1 ||
	    restore_install(tmp, c->conf.data_dir, cause) == -1)
		goto out;
	xasprintf(&dbpath, "%s/opsn.db", c->conf.data_dir);
	if (store_open(dbpath, &c->db, cause) == -1)
		goto out;
	if (restore_integrity(c->db, cause) == -1 ||
	    restore_epoch(c, manifest, sha, cause) == -1)
		goto out;
	printf("restored %s (taken %s, schema %lld) into %s in %llu ms\n",
	    json_string_value(json_object_get(manifest, "name")),
	    json_string_value(json_object_get(manifest, "created_at")),
	    (long long)json_integer_value(json_object_get(manifest,
	    "schema_version")), c->conf.data_dir,
	    (unsigned long long)(util_mono_ms() - t0));
	printf("epoch: %llu (agents accept this controller's states and "
	    "hold the VMs it does not know)\n", (unsigned long long)c->epoch);
	if (json_object_get(manifest, "files") != NULL) {
		json_t	*f;
		size_t	 i;

		json_array_foreach(json_object_get(manifest, "files"), i, f)
			if (strcmp(json_string_value(json_object_get(f, "name")),
			    BACKUP_CONF_MEMBER) == 0)
				printf("configuration: %s/%s.restored (put it "
				    "in place of the configuration file)\n",
				    c->conf.data_dir, BACKUP_CONF_MEMBER);
	}
	restore_images(c);
	rv = 0;
out:
	store_close(c->db);
	/* Leave no half-restored folder behind a failure: empty it again. */
	if (rv == -1 && tmp != NULL)
		restore_empty(c->conf.data_dir);
	c->db = NULL;
	json_decref(manifest);
	free(dbpath);
	free(tmp);
	return (rv);
}
