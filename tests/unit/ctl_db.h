/*
 * The controller's unit tests: one value of a query on the controller's
 * database (ctl->db), -1 or NULL when the query returns no row.
 */
#ifndef OPSN_TEST_CTL_DB_H
#define OPSN_TEST_CTL_DB_H

#include <stdint.h>
#include <sqlite3.h>

#include "opsn/util.h"
#include "core/core.h"

static inline int64_t
db_int(const char *sql)
{
	sqlite3_stmt	*st = store_prepare(ctl->db, sql);
	int64_t		 v = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return (v);
}

/* The caller frees the text. */
static inline char *
db_text(const char *sql)
{
	sqlite3_stmt	*st = store_prepare(ctl->db, sql);
	char		*v = NULL;

	if (sqlite3_step(st) == SQLITE_ROW)
		v = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return (v);
}

#endif
