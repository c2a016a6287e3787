/*
 * opsnctl backup: take a backup while the controller runs and bring it
 * here, checked against the SHA-256 the controller computed; list and
 * delete the copies the controller keeps. The restore is offline, on the
 * controller's host: opsn-controller --restore FILE --data-dir DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "opsn/util.h"

#include "cli.h"

static const struct format_col backup_cols[] = {
	{ "NAME",	"name",		NULL },
	{ "SIZE",	"size",		format_size },
	{ "CREATED",	"created_at",	format_time },
	{ "SHA256",	"sha256",	NULL },
};

static const struct format_col backup_fields[] = {
	{ "name",		"name",			NULL },
	{ "file",		"file",			NULL },
	{ "size",		"size",			format_size_exact },
	{ "sha256",		"sha256",		NULL },
	{ "created-at",		"created_at",		NULL },
	{ "schema-version",	"schema_version",	NULL },
	{ "epoch",		"epoch",		NULL },
	{ "tenants",		"tenants",		NULL },
	{ "samples",		"samples",		NULL },
	{ "duration-ms",	"duration_ms",		NULL },
};

/* Download the backup name into file (via file.part), checked. */
static int
backup_fetch(const char *name, const char *file, const char *want)
{
	char		*path, *tmp, sha[65], *sum;
	uint64_t	 size;
	FILE		*f;
	int		 fd, rc;

	xasprintf(&tmp, "%s.part", file);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1 || (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "opsnctl: %s: %s\n", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		free(tmp);
		return (-1);
	}
	xasprintf(&path, "/v1/backups/%s", name);
	rc = cli_download_sum(path, f, name, &size, sha);
	free(path);
	if (rc == 0 && (fflush(f) == EOF || fsync(fd) == -1)) {
		fprintf(stderr, "opsnctl: %s: %s\n", tmp, strerror(errno));
		rc = -1;
	}
	fclose(f);
	if (rc == 0 && strcmp(sha, want) != 0) {
		fprintf(stderr, "opsnctl: %s: SHA-256 %s, the controller "
		    "computed %s: the copy is damaged\n", tmp, sha, want);
		rc = -1;
	}
	xasprintf(&sum, "%s  %s\n", sha, file);
	xasprintf(&path, "%s.sha256", file);
	if (rc == 0 && (util_write_file(path, sum, strlen(sum), 0600, NULL) ==
	    -1 || rename(tmp, file) == -1)) {
		fprintf(stderr, "opsnctl: %s: %s\n", file, strerror(errno));
		rc = -1;
	}
	if (rc == -1)
		unlink(tmp);
	free(path);
	free(sum);
	free(tmp);
	return (rc);
}

int
backup_create(struct cli_call *call)
{
	const char	*file = cli_opt(call, "file");
	struct cli_http	 http;
	json_t		*reply;
	char		*path, *def = NULL;
	const char	*name, *sha;
	int		 rc;

	memset(&http, 0, sizeof(http));
	http.h_long = 1;	/* a large database takes a while to copy */
	if (cli_request_http("POST", "/v1/backups", NULL, &http, &reply) == -1)
		return (CLI_EXIT_ERROR);
	cli_http_clear(&http);
	name = json_string_value(json_object_get(reply, "name"));
	sha = json_string_value(json_object_get(reply, "sha256"));
	if (name == NULL || sha == NULL) {
		fprintf(stderr, "opsnctl: the controller's reply names no "
		    "backup\n");
		json_decref(reply);
		return (CLI_EXIT_ERROR);
	}
	if (file == NULL) {
		xasprintf(&def, "%s.tar", name);
		file = def;
	}
	rc = backup_fetch(name, file, sha);
	if (rc == 0 && cli_opt(call, "keep") == NULL) {
		xasprintf(&path, "/v1/backups/%s", name);
		if (cli_request("DELETE", path, NULL, NULL) == -1)
			fprintf(stderr, "opsnctl: the controller keeps its copy "
			    "%s\n", name);
		free(path);
	}
	if (rc == -1) {
		json_decref(reply);
		free(def);
		return (CLI_EXIT_ERROR);
	}
	json_object_set_new(reply, "file", json_string(file));
	json_object_del(reply, "files");
	free(def);
	return (cli_show_object(reply, backup_fields, nitems(backup_fields)));
}

int
backup_list(struct cli_call *call)
{
	(void)call;
	return (cli_show_list("/v1/backups", backup_cols, nitems(backup_cols)));
}

int
backup_delete(struct cli_call *call)
{
	return (cli_delete("/v1/backups", call->ca_argv[0]) == -1 ?
	    CLI_EXIT_ERROR : CLI_EXIT_OK);
}
