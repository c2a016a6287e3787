/*
 * Logging: log_reopen (SIGHUP after a rotation) while other threads are
 * logging, as the controller's thread-pool work does. Every line lands
 * whole in the old file or the new one; none is lost or cut, nothing is
 * written through a closed FILE (make check runs this under ASan).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "opsn/log.h"
#include "opsn/util.h"

#define WRITERS	4
#define LINES	5000

static void *
writer(void *arg)
{
	int	 i;

	for (i = 0; i < LINES; i++)
		log_info("writer %ld line %d of a reasonably long log line",
		    (long)(intptr_t)arg, i);
	return (NULL);
}

/* Lines in path that are whole (end with the text a writer put). */
static int
whole_lines(const char *path, int *cut)
{
	FILE	*f = fopen(path, "r");
	char	 line[512];
	int	 n = 0;

	if (f == NULL)
		return (0);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "a reasonably long log line\n") != NULL)
			n++;
		else
			(*cut)++;
	}
	fclose(f);
	return (n);
}

static void
reopen_while_threads_log_loses_no_line(void **state)
{
	char		 dir[] = "/tmp/opsn-test-log.XXXXXX", *path, *old, *cmd;
	pthread_t	 t[WRITERS];
	int		 i, rotations = 0, cut = 0, total = 0;
	char		*rot;

	assert_non_null(mkdtemp(dir));
	xasprintf(&path, "%s/ctl.log", dir);
	assert_int_equal(log_init("test", LOG_LEVEL_INFO, path), 0);
	for (i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer,
		    (void *)(intptr_t)i), 0);
	/* Rotate as logrotate would: rename, then SIGHUP (log_reopen). */
	for (i = 0; i < 50; i++) {
		xasprintf(&old, "%s/ctl.log.%d", dir, i);
		if (rename(path, old) == 0) {
			log_reopen();
			rotations++;
		}
		free(old);
		usleep(200);
	}
	for (i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	log_init("test", LOG_LEVEL_ERR, NULL);
	total = whole_lines(path, &cut);
	for (i = 0; i < 50; i++) {
		xasprintf(&rot, "%s/ctl.log.%d", dir, i);
		total += whole_lines(rot, &cut);
		free(rot);
	}
	assert_true(rotations > 1);
	assert_int_equal(cut, 0);
	assert_int_equal(total, WRITERS * LINES);
	xasprintf(&cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reopen_while_threads_log_loses_no_line),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
