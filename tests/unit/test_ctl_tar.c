/*
 * The backup archive's tar reader and writer (controller/backup/tar.c):
 * what it writes reads back, GNU tar's archives read too, and a damaged
 * header is refused with a clear error, its number fields read within
 * their bounds (fuzz_tar).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "opsn/util.h"
#include "backup/tar.h"

static char	 tdir[] = "/tmp/opsn-tar-XXXXXX";

static int
setup(void **state)
{
	(void)state;
	return (mkdtemp(tdir) == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	char	*cmd;

	(void)state;
	xasprintf(&cmd, "rm -rf '%s'", tdir);
	if (system(cmd) != 0)
		return (-1);
	free(cmd);
	return (0);
}

/* Read every member of path into memory; their names joined by ' '. */
static int
read_all(const char *path, char *names, size_t len, char **cause)
{
	struct tar	 t;
	char		 name[TAR_NAME_MAX], sha[65], *text;
	uint64_t	 size;
	size_t		 got;
	int		 mode, r;

	names[0] = '\0';
	assert_int_equal(tar_open(&t, path, cause), 0);
	while ((r = tar_next(&t, name, &size, &mode, cause)) == 1) {
		if (tar_read_mem(&t, 1 << 20, &text, &got, cause) == -1) {
			r = -1;
			break;
		}
		assert_int_equal(got, size);
		snprintf(names + strlen(names), len - strlen(names), "%s ",
		    name);
		free(text);
	}
	if (r == 0)
		r = tar_end(&t, sha, cause);
	tar_close(&t);
	return (r);
}

static void
what_is_written_reads_back(void **state)
{
	struct tar	 t;
	char		*path, sha[65], sha2[65], name[TAR_NAME_MAX], *text;
	char		*cause = NULL;
	uint64_t	 size, fsize;
	size_t		 got;
	int		 mode;

	(void)state;
	xasprintf(&path, "%s/a.tar", tdir);
	assert_int_equal(tar_create(&t, path, &cause), 0);
	assert_int_equal(tar_put_mem(&t, "opsn-backup/manifest.json", 0640,
	    "{\"format\":1}", 12, sha, &cause), 0);
	assert_int_equal(tar_finish(&t, sha, &fsize, &cause), 0);
	tar_close(&t);

	assert_int_equal(tar_open(&t, path, &cause), 0);
	assert_int_equal(tar_next(&t, name, &size, &mode, &cause), 1);
	assert_string_equal(name, "opsn-backup/manifest.json");
	assert_int_equal(size, 12);
	assert_int_equal(mode, 0640);
	assert_int_equal(tar_read_mem(&t, 100, &text, &got, &cause), 0);
	assert_string_equal(text, "{\"format\":1}");
	free(text);
	assert_int_equal(tar_next(&t, name, &size, &mode, &cause), 0);
	assert_int_equal(tar_end(&t, sha2, &cause), 0);
	assert_string_equal(sha, sha2);
	tar_close(&t);
	free(path);
}

static void
gnu_tar_archives_read(void **state)
{
	char	*cmd, *path, names[256], *cause = NULL;

	(void)state;
	xasprintf(&path, "%s/gnu.tar", tdir);
	xasprintf(&cmd, "cd '%s' && mkdir -p g && printf 'x' > g/one && "
	    "printf 'yz' > g/two && tar --format=ustar -cf gnu.tar g/one "
	    "g/two", tdir);
	assert_int_equal(system(cmd), 0);
	if (read_all(path, names, sizeof(names), &cause) != 0)
		fail_msg("%s", cause);
	assert_string_equal(names, "g/one g/two ");
	free(cmd);
	free(path);
}

/* Write a one-block header with field bytes set, its checksum made right. */
static char *
write_header(const char *file, size_t off, const char *bytes, size_t n)
{
	unsigned char	 b[512 * 3];
	unsigned	 sum = 0;
	char		*path;
	size_t		 i;
	FILE		*f;

	memset(b, 0, sizeof(b));
	memcpy(b, "member", 6);
	memcpy(b + 100, "0000644", 7);
	memcpy(b + 124, "00000000000", 11);
	b[156] = '0';
	memcpy(b + 257, "ustar", 6);
	memcpy(b + 263, "00", 2);
	memcpy(b + off, bytes, n);
	memset(b + 148, ' ', 8);
	for (i = 0; i < 512; i++)
		sum += b[i];
	if (off != 148)
		snprintf((char *)b + 148, 8, "%06o", sum);
	else
		memcpy(b + off, bytes, n);
	xasprintf(&path, "%s/%s", tdir, file);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fwrite(b, 1, sizeof(b), f), sizeof(b));
	fclose(f);
	return (path);
}

static void
expect_refused(const char *path, const char *what)
{
	char	 names[256], *cause = NULL;

	assert_int_equal(read_all(path, names, sizeof(names), &cause), -1);
	if (strstr(cause, what) == NULL)
		fail_msg("'%s' does not say '%s'", cause, what);
	free(cause);
}

static void
damaged_headers_are_refused(void **state)
{
	char	 digits[512 - 148], names[256], *cause = NULL, *p;

	(void)state;
	/* The well-formed one first, so that the others test one field. */
	p = write_header("ok.tar", 0, "member", 6);
	assert_int_equal(read_all(p, names, sizeof(names), &cause), 0);
	assert_string_equal(names, "member ");
	free(p);
	/* Digits from the checksum to the block's end: never read past. */
	memset(digits, '7', sizeof(digits));
	p = write_header("run.tar", 148, digits, sizeof(digits));
	expect_refused(p, "damaged at byte 0");
	free(p);
	p = write_header("size.tar", 124, "0000000001x", 11);
	expect_refused(p, "damaged");
	free(p);
	p = write_header("mode.tar", 100, "06x4", 4);
	expect_refused(p, "damaged");
	free(p);
	/* Base-256: a size no file has, whose block count would wrap. */
	p = write_header("huge.tar", 124,
	    "\x80\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff", 12);
	expect_refused(p, "claims 18446744073709551615 bytes");
	free(p);
	p = write_header("link.tar", 156, "2", 1);
	expect_refused(p, "not a regular file");
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(what_is_written_reads_back),
		cmocka_unit_test(gnu_tar_archives_read),
		cmocka_unit_test(damaged_headers_are_refused),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
