/*
 * The store's group commit and statement cache: writes of several
 * callers in one loop iteration share one transaction, one caller's
 * failure undoes its own work only, nothing is visible to another
 * connection before the commit, and watchers learn how the group ended.
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
#include <uv.h>

#include "opsn/log.h"
#include "opsn/util.h"
#include "core/core.h"

static char	 tdir[] = "/tmp/opsn-store-XXXXXX";
static char	*path;
static sqlite3	*db;
static uv_loop_t loop;
static int	 ended, ended_ok;

static void
watch_cb(int ok, void *arg)
{
	ended++;
	ended_ok = ok;
}

static int
setup(void **state)
{
	char	*cause = NULL;

	if (mkdtemp(tdir) == NULL)
		return (-1);
	xasprintf(&path, "%s/opsn.db", tdir);
	if (store_open(path, &db, &cause) == -1) {
		fprintf(stderr, "%s\n", cause);
		return (-1);
	}
	uv_loop_init(&loop);
	store_group_start(db, &loop);
	/* Counted in iterations only: the machine's speed cannot matter. */
	store_group_wait(4, UINT64_MAX, NULL);
	store_group_watch(watch_cb, NULL);
	return (0);
}

static int
teardown(void **state)
{
	char	*cmd;

	store_close(db);
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_loop_close(&loop);
	xasprintf(&cmd, "rm -rf %s", tdir);
	if (system(cmd) != 0)
		return (-1);
	free(cmd);
	free(path);
	return (0);
}

/* Rows of plans another connection sees (what is durable). */
static int
durable_plans(void)
{
	sqlite3		*r;
	sqlite3_stmt	*st;
	int		 n = -1;

	assert_int_equal(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(r, "SELECT count(*) FROM plans",
	    -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(r);
	return (n);
}

static int
insert_plan(const char *name)
{
	sqlite3_stmt	*st;
	int		 rc;

	st = store_stmt(db, "INSERT INTO plans (name, vcpus, memory_mib, "
	    "disk_bytes, created_at) VALUES (?, 1, 512, 1048576, 0)");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	store_done(st);
	return (rc == SQLITE_DONE ? 0 : -1);
}

/*
 * Loop iterations until the group commits: the first check phase after
 * writes keeps it open for one more iteration, which brings none.
 */
static void
group_commits(void)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_false(store_group_open());
}

static void
callers_share_one_commit_and_a_failure_stays_its_own(void **state)
{
	struct store_stats	 s0, s1;

	store_group_stats(&s0);
	/* First caller: a plan. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("a"), 0);
	assert_int_equal(store_commit(db), 0);
	/* Second: a plan, then a clash; it rolls back its own work. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("b"), 0);
	assert_int_equal(insert_plan("a"), -1);
	store_rollback(db);
	/* Third: a plan. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("c"), 0);
	assert_int_equal(store_commit(db), 0);

	/* Nothing is durable before the iteration's check phase. */
	assert_true(store_group_open());
	assert_int_equal(durable_plans(), 0);
	assert_int_equal(ended, 0);

	/*
	 * Writes joined since the last check phase: the group waits one
	 * iteration more for others, and commits at one that brings none.
	 */
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_true(store_group_open());
	assert_int_equal(durable_plans(), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_false(store_group_open());
	assert_int_equal(ended, 1);
	assert_int_equal(ended_ok, 1);
	assert_int_equal(durable_plans(), 2);
	store_group_stats(&s1);
	assert_int_equal(s1.ss_commits - s0.ss_commits, 1);
	assert_int_equal(s1.ss_joined - s0.ss_joined, 2);
}

static void
a_stray_rollback_leaves_the_group_alone(void **state)
{
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("d"), 0);
	assert_int_equal(store_commit(db), 0);
	/* A caller's error path rolling back after its own commit. */
	store_rollback(db);
	group_commits();
	assert_int_equal(durable_plans(), 3);
}

/* What the API's api_held_writes() would say. */
static uint64_t	 waiting;

static uint64_t
waiting_now(void)
{
	return (waiting);
}

/*
 * How long a group waits for more: at most four iterations that bring
 * writes, only for callers that wait on it, a little for those the last
 * commit answered, only while it is young.
 */
static void
a_group_waits_for_waiting_callers_and_no_longer(void **state)
{
	char	 name[32];
	int	 i, before = durable_plans();

	for (i = 0; i < 1000 && (i == 0 || store_group_open()); i++) {
		snprintf(name, sizeof(name), "grow-%d", i);
		assert_int_equal(store_begin(db), 0);
		assert_int_equal(insert_plan(name), 0);
		assert_int_equal(store_commit(db), 0);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	/* Four iterations at most, however many bring writes. */
	assert_int_equal(i, 4);
	assert_false(store_group_open());
	assert_int_equal(durable_plans(), before + i);
	/* Writes no caller waits on (an agent's) do not make it wait. */
	store_group_wait(4, UINT64_MAX, waiting_now);
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("agent"), 0);
	assert_int_equal(store_commit(db), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_false(store_group_open());
	/* Those of a client that waits (a held reply to a write) do. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("client"), 0);
	assert_int_equal(store_commit(db), 0);
	waiting++;
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_true(store_group_open());
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_false(store_group_open());
	/*
	 * That group answered one client. The next holds no write from it
	 * yet: it waits for it a little (a blocking poll), then commits.
	 */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("late"), 0);
	assert_int_equal(store_commit(db), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_true(store_group_open());
	for (i = 0; i < 100 && store_group_open(); i++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_false(store_group_open());
	/* A group older than the limit commits at once. */
	store_group_wait(4, 0, NULL);
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("old"), 0);
	assert_int_equal(store_commit(db), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_false(store_group_open());
	store_group_wait(4, UINT64_MAX, NULL);
	/* Remove them: the tests below count the plans. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(store_exec(db, "DELETE FROM plans WHERE name LIKE "
	    "'grow-%' OR name IN ('old', 'agent', 'client', 'late')", NULL),
	    0);
	assert_int_equal(store_commit(db), 0);
	group_commits();
	assert_int_equal(durable_plans(), before);
}

static void
cached_statements_are_reused_but_never_shared_while_busy(void **state)
{
	sqlite3_stmt	*a, *b, *c;

	a = store_stmt(db, "SELECT name FROM plans ORDER BY name");
	assert_int_equal(sqlite3_step(a), SQLITE_ROW);
	/* The same SQL inside its own loop: a fresh statement. */
	b = store_stmt(db, "SELECT name FROM plans ORDER BY name");
	assert_ptr_not_equal(a, b);
	assert_int_equal(sqlite3_step(b), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(a, 0), "a");
	store_done(b);
	store_done(a);
	/* Done with: the cached one comes back, reset. */
	c = store_stmt(db, "SELECT name FROM plans ORDER BY name");
	assert_ptr_equal(a, c);
	assert_int_equal(sqlite3_step(c), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(c, 0), "a");
	store_done(c);
}

/*
 * A long write of its own: what the group holds commits first, the write
 * is durable at its own commit, and no grouped write joins it meanwhile.
 */
static void
a_long_write_commits_the_group_then_runs_alone(void **state)
{
	int	 before = ended;

	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("e"), 0);
	assert_int_equal(store_commit(db), 0);
	assert_int_equal(durable_plans(), 3);
	assert_int_equal(store_begin_alone(db), 0);
	assert_false(store_group_open());
	assert_int_equal(ended, before + 1);
	assert_int_equal(durable_plans(), 4);
	assert_int_equal(store_begin(db), -1);
	assert_int_equal(store_begin_alone(db), -1);
	assert_int_equal(insert_plan("f"), 0);
	store_rollback(db);
	assert_int_equal(durable_plans(), 4);
	assert_int_equal(store_begin_alone(db), 0);
	assert_int_equal(insert_plan("g"), 0);
	assert_int_equal(store_commit(db), 0);
	assert_int_equal(durable_plans(), 5);
	/* Grouping goes on after it. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("h"), 0);
	assert_int_equal(store_commit(db), 0);
	assert_true(store_group_open());
	group_commits();
	assert_int_equal(durable_plans(), 6);
}

/* A watched table's counter moves with its rows and with rollbacks. */
static void
a_watched_table_counts_its_changes_and_rollbacks(void **state)
{
	static uint64_t	 plans;
	uint64_t	 c;

	store_table_watch(db, "plans", &plans);
	c = plans;
	/* A write to another table leaves it alone. */
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(store_exec(db, "CREATE TABLE scratch (x); INSERT "
	    "INTO scratch VALUES (1)", NULL), 0);
	assert_int_equal(store_commit(db), 0);
	assert_int_equal(plans, c);
	assert_int_equal(store_begin(db), 0);
	assert_int_equal(insert_plan("w1"), 0);
	assert_int_equal(store_commit(db), 0);
	assert_true(plans > c);
	c = plans;
	/* A savepoint rolled back: what was built meanwhile is stale. */
	assert_int_equal(store_begin(db), 0);
	store_rollback(db);
	assert_true(plans > c);
	c = plans;
	assert_int_equal(store_exec(db, "UPDATE plans SET vcpus = 2 WHERE "
	    "name = 'w1'", NULL), 0);
	assert_true(plans > c);
	uv_run(&loop, UV_RUN_NOWAIT);
}

struct reader_run {
	sqlite3		*db[2];
	sqlite3_stmt	*st[3];
	int		 n[2];
};

/* A pool job, twice: the thread's reader and its statements are kept. */
static void *
reader_thread(void *arg)
{
	struct reader_run *r = arg;
	char		*cause = NULL;
	int		 i;

	for (i = 0; i < 2; i++) {
		if (store_reader(path, &r->db[i], &cause) == -1)
			return (NULL);
		r->st[i] = store_stmt(r->db[i], "SELECT count(*) FROM plans");
		if (sqlite3_step(r->st[i]) == SQLITE_ROW)
			r->n[i] = sqlite3_column_int(r->st[i], 0);
		/* Left running: store_reader_done() ends its read. */
		store_reader_done(r->db[i]);
	}
	r->st[2] = store_stmt(r->db[1], "SELECT count(*) FROM plans");
	store_done(r->st[2]);
	store_reader_drop();
	return (NULL);
}

/* Each thread has its own cache and its own kept reader. */
static void
a_pool_thread_keeps_its_reader_and_statements(void **state)
{
	struct reader_run r;
	sqlite3_stmt	*mine;
	pthread_t	 t;

	memset(&r, 0, sizeof(r));
	mine = store_stmt(db, "SELECT count(*) FROM plans");
	store_done(mine);
	assert_int_equal(pthread_create(&t, NULL, reader_thread, &r), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_non_null(r.db[0]);
	assert_ptr_equal(r.db[0], r.db[1]);
	assert_ptr_not_equal(r.db[0], db);
	assert_ptr_equal(r.st[0], r.st[1]);
	assert_ptr_equal(r.st[1], r.st[2]);
	assert_ptr_not_equal(r.st[0], mine);
	assert_int_equal(r.n[0], durable_plans());
	assert_int_equal(r.n[1], r.n[0]);
	assert_ptr_equal(store_stmt(db, "SELECT count(*) FROM plans"), mine);
	store_done(mine);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(callers_share_one_commit_and_a_failure_stays_its_own),
		cmocka_unit_test(a_stray_rollback_leaves_the_group_alone),
		cmocka_unit_test(a_group_waits_for_waiting_callers_and_no_longer),
		cmocka_unit_test(cached_statements_are_reused_but_never_shared_while_busy),
		cmocka_unit_test(a_long_write_commits_the_group_then_runs_alone),
		cmocka_unit_test(a_pool_thread_keeps_its_reader_and_statements),
		cmocka_unit_test(a_watched_table_counts_its_changes_and_rollbacks),
	};

	log_init("test", LOG_LEVEL_WARN, NULL);
	return (cmocka_run_group_tests_name("store", tests, setup, teardown));
}
