/*
 * sqlref: the reference for small writes, one row per transaction with
 * synchronous=FULL into a table of its own in a given database file (the
 * controller's, once it has stopped), for SECONDS. Prints one line:
 *
 *   SQLREF commits=N seconds=S commits_per_s=R p50_us=N p99_us=N
 *
 * usage: sqlref -d SECONDS DB
 */
#include <sys/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

static double
now_us(void)
{
	struct timeval	 tv;

	gettimeofday(&tv, NULL);
	return ((double)tv.tv_sec * 1e6 + tv.tv_usec);
}

static int
cmp(const void *a, const void *b)
{
	double	 x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

static void
must(sqlite3 *db, const char *sql)
{
	char	*err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "sqlref: %s: %s\n", sql, err);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	sqlite3		*db;
	sqlite3_stmt	*ins, *begin, *commit;
	double		 t0, t1, t, *lat = NULL, seconds = 10;
	size_t		 n = 0, cap = 0;
	int		 ch;

	while ((ch = getopt(argc, argv, "d:")) != -1) {
		if (ch != 'd') {
			fprintf(stderr, "usage: sqlref -d SECONDS DB\n");
			return (2);
		}
		seconds = atof(optarg);
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: sqlref -d SECONDS DB\n");
		return (2);
	}
	if (sqlite3_open(argv[optind], &db) != SQLITE_OK) {
		fprintf(stderr, "sqlref: %s: %s\n", argv[optind],
		    sqlite3_errmsg(db));
		return (1);
	}
	sqlite3_busy_timeout(db, 5000);
	must(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
	    "DROP TABLE IF EXISTS sqlref; CREATE TABLE sqlref (id INTEGER "
	    "PRIMARY KEY, name TEXT NOT NULL UNIQUE, vcpus INTEGER, memory_mib "
	    "INTEGER, disk_bytes INTEGER, created_at INTEGER)");
	sqlite3_prepare_v2(db, "INSERT INTO sqlref (name, vcpus, memory_mib, "
	    "disk_bytes, created_at) VALUES (?, 1, 512, 2147483648, 0)", -1,
	    &ins, NULL);
	sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL);
	sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL);
	t0 = now_us();
	do {
		char	 name[32];

		t = now_us();
		snprintf(name, sizeof(name), "ref-%zu", n);
		sqlite3_reset(begin);
		sqlite3_reset(ins);
		sqlite3_reset(commit);
		sqlite3_bind_text(ins, 1, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(begin) != SQLITE_DONE ||
		    sqlite3_step(ins) != SQLITE_DONE ||
		    sqlite3_step(commit) != SQLITE_DONE) {
			fprintf(stderr, "sqlref: %s\n", sqlite3_errmsg(db));
			return (1);
		}
		t1 = now_us();
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			lat = realloc(lat, cap * sizeof(*lat));
			if (lat == NULL)
				return (1);
		}
		lat[n++] = t1 - t;
	} while (t1 - t0 < seconds * 1e6);
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	must(db, "DROP TABLE sqlref");
	sqlite3_close(db);
	qsort(lat, n, sizeof(*lat), cmp);
	printf("SQLREF commits=%zu seconds=%.2f commits_per_s=%.0f p50_us=%.0f "
	    "p99_us=%.0f\n", n, (t1 - t0) / 1e6, n / ((t1 - t0) / 1e6),
	    lat[n / 2], lat[n * 99 / 100]);
	free(lat);
	return (0);
}
