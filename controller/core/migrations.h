/* Schema migrations, numbered from 1; generated from migrations/NNN_*.sql. */
#ifndef OPSN_MIGRATIONS_H
#define OPSN_MIGRATIONS_H

#include <stddef.h>

struct migration {
	int		 m_version;
	const char	*m_name;
	const char	*m_sql;
};

extern const struct migration	migrations[];
extern const size_t		nmigrations;

#endif
