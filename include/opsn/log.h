/* Logging: levels, to stderr with syslog priority prefixes or to a file. */
#ifndef OPSN_LOG_H
#define OPSN_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARN = 4,
	LOG_LEVEL_NOTICE = 5,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Start logging as progname; file NULL means stderr with "<N>" prefixes. */
int	log_init(const char *progname, enum log_level, const char *file);
void	log_set_level(enum log_level);
int	log_level_parse(const char *, enum log_level *);
/* Reopen the log file (after rotation); no-op for stderr. */
void	log_reopen(void);

void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Log at LOG_ERR and exit(1). */
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
