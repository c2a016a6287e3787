/*
 * Logging. To stderr, each line starts with its syslog priority in angle
 * brackets ("<4>controller: ...") so journald files it at the right level;
 * to a file, lines carry a UTC timestamp and the level name instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "opsn/log.h"

static const char	*log_prog = "opsn";
static enum log_level	 log_lvl = LOG_LEVEL_INFO;
static char		*log_path;
static FILE		*log_file;

static const char *const log_names[] = {
	[LOG_LEVEL_ERR] = "error",
	[LOG_LEVEL_WARN] = "warning",
	[LOG_LEVEL_NOTICE] = "notice",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

int
log_init(const char *prog, enum log_level lvl, const char *file)
{
	log_prog = prog;
	log_lvl = lvl;
	free(log_path);
	log_path = NULL;
	if (log_file != NULL) {
		fclose(log_file);
		log_file = NULL;
	}
	if (file != NULL && *file != '\0') {
		if ((log_file = fopen(file, "ae")) == NULL)
			return (-1);
		setvbuf(log_file, NULL, _IOLBF, 0);
		log_path = strdup(file);
	}
	return (0);
}

void
log_set_level(enum log_level lvl)
{
	log_lvl = lvl;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (log_names[i] != NULL && strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return (0);
		}
	}
	return (-1);
}

/*
 * Thread-pool work may be writing a line at this very moment: the FILE
 * stays the same and only the descriptor under it is replaced (dup3 is
 * atomic), so a line goes whole to the old file or to the new one.
 */
void
log_reopen(void)
{
	int	 fd;

	if (log_path == NULL || log_file == NULL)
		return;
	if ((fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0640)) == -1)
		return;
	fflush(log_file);
	dup3(fd, fileno(log_file), O_CLOEXEC);
	close(fd);
}

static void
log_vwrite(enum log_level lvl, const char *fmt, va_list ap, const char *err)
{
	char		 msg[4096], ts[32];
	struct tm	 tm;
	time_t		 now;

	if (lvl > log_lvl)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_file != NULL) {
		now = time(NULL);
		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(log_file, "%s %s[%ld] %s: %s%s%s\n", ts, log_prog,
		    (long)getpid(), log_names[lvl], msg, err ? ": " : "",
		    err ? err : "");
	} else {
		fprintf(stderr, "<%d>%s: %s%s%s\n", (int)lvl, log_prog, msg,
		    err ? ": " : "", err ? err : "");
	}
}

#define LOG_FN(name, lvl)						\
void									\
name(const char *fmt, ...)						\
{									\
	va_list	 ap;							\
									\
	va_start(ap, fmt);						\
	log_vwrite(lvl, fmt, ap, NULL);					\
	va_end(ap);							\
}

LOG_FN(log_warnx, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_notice, LOG_LEVEL_NOTICE)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	 err[256];

	strerror_r(errno, err, sizeof(err));
	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, fmt, ap, err);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	 err[256];

	strerror_r(errno, err, sizeof(err));
	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERR, fmt, ap, err);
	va_end(ap);
	exit(1);
}
