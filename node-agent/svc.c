/*
 * What the mail and web roles share: desired generations applied in order,
 * one at a time, on the uv thread pool, and the status sent back; running
 * the daemons' tools; file helpers for the pool threads.
 *
 * Generations (docs/services.md). Each desired state is the complete state
 * and is applied as received, in order; its generation is a label to
 * report back, applied even when lower than an earlier one (a controller
 * restored from a backup). While an apply runs, the newest state received
 * waits and replaces any other waiting one: the states in between are
 * never applied. Applying the same content again costs a comparison (the
 * roles skip writing and reloading). A generation that failed as a whole
 * (a map not written, a daemon not reloaded) is retried with backoff until
 * another state arrives; the last good configuration stays in service.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "svc.h"

#define SVC_RETRY_MIN_MS	2000
#define SVC_RETRY_MAX_MS	300000
#define SVC_OUT_MAX		(64 * 1024)
#define SVC_MSG_MAX		1024	/* of a program's output in a status */

extern char	**environ;

static int	(*svc_send_hook)(uint16_t, const ProtobufCMessage *);

static void	svc_next(struct svc *);
static void	svc_maybe_done(struct svc *);

/* ---- results ------------------------------------------------------------ */

static Opsn__ObjectStatus *
svc_obj_new(const char *kind, const char *id, const char *state,
    const char *msg)
{
	Opsn__ObjectStatus	*o = xmalloc(sizeof(*o));

	opsn__object_status__init(o);
	o->kind = xstrdup(kind);
	o->id = xstrdup(id != NULL ? id : "");
	o->state = xstrdup(state);
	o->message = xstrdup(msg != NULL ? msg : "");
	return (o);
}

static void
svc_obj_free(Opsn__ObjectStatus *o)
{
	if (o == NULL)
		return;
	free(o->kind);
	free(o->id);
	free(o->state);
	free(o->message);
	free(o);
}

/* Add an object status to a result. */
void
svc_result_add(struct svc_result *r, const char *kind, const char *id,
    const char *state, const char *msg)
{
	if (r->r_nobjs == 0 || (r->r_nobjs & (r->r_nobjs - 1)) == 0)
		r->r_objs = xrealloc(r->r_objs, (r->r_nobjs == 0 ? 8 :
		    2 * r->r_nobjs) * sizeof(*r->r_objs));
	r->r_objs[r->r_nobjs++] = svc_obj_new(kind, id, state, msg);
}

/* The generation failed as a whole: say why, and mark every object. */
void
svc_result_fail(struct svc_result *r, const char *fmt, ...)
{
	va_list	 ap;
	size_t	 i;

	free(r->r_error);
	va_start(ap, fmt);
	xvasprintf(&r->r_error, fmt, ap);
	va_end(ap);
	r->r_failed = 1;
	for (i = 0; i < r->r_nobjs; i++) {
		if (strcmp(r->r_objs[i]->state, "purged") == 0)
			continue;
		free(r->r_objs[i]->state);
		r->r_objs[i]->state = xstrdup("error");
		if (*r->r_objs[i]->message == '\0') {
			free(r->r_objs[i]->message);
			r->r_objs[i]->message = xstrdup(r->r_error);
		}
	}
}

/* Free what a result holds. */
void
svc_result_clear(struct svc_result *r)
{
	size_t	 i;

	for (i = 0; i < r->r_nobjs; i++)
		svc_obj_free(r->r_objs[i]);
	free(r->r_objs);
	free(r->r_error);
	memset(r, 0, sizeof(*r));
}

/* Replace link_send, for unit tests. */
void
svc_set_send(int (*fn)(uint16_t, const ProtobufCMessage *))
{
	svc_send_hook = fn;
}

/* Send a frame to the controller, or to the unit tests' hook. */
int
svc_send(uint16_t type, const ProtobufCMessage *m)
{
	if (svc_send_hook != NULL)
		return (svc_send_hook(type, m));
	return (link_send(type, m));
}

/* Send the last status; kept for the next connection if the link is down. */
static void
svc_report(struct svc *s)
{
	Opsn__ServicesStatus	 st = OPSN__SERVICES_STATUS__INIT;

	if (!s->s_have_last)
		return;
	st.generation = s->s_last.r_gen;
	/* Objects in error say so themselves; ok is the generation's. */
	st.ok = !s->s_last.r_failed;
	st.error = s->s_last.r_error != NULL ? s->s_last.r_error : "";
	st.objects = s->s_last.r_objs;
	st.n_objects = s->s_last.r_nobjs;
	if (svc_send(MSG_SERVICES_STATUS, &st.base) == -1)
		log_debug("%s: status of generation %llu kept until the link "
		    "is up", s->s_name, (unsigned long long)st.generation);
}

/* ---- the queue ---------------------------------------------------------- */

static void
svc_retry_cb(uv_timer_t *t)
{
	struct svc	*s = t->data;

	if (s->s_stopping || s->s_busy || s->s_pending != NULL ||
	    s->s_current == NULL)
		return;
	log_info("%s: retrying generation %llu", s->s_name,
	    (unsigned long long)s->s_current->generation);
	svc_reapply(s);
}

static void
svc_work_cb(uv_work_t *req)
{
	struct svc_job	*j = req->data;

	j->j_svc->s_apply(j);
}

static void
svc_after_cb(uv_work_t *req, int status)
{
	struct svc_job	*j = req->data;
	struct svc	*s = j->j_svc;
	uint64_t	 delay;

	s->s_busy = 0;
	if (s->s_stopping) {
		svc_result_clear(&j->j_res);
		if (s->s_current != NULL)
			opsn__services_desired__free_unpacked(s->s_current,
			    NULL);
		s->s_current = NULL;
		free(j);
		svc_maybe_done(s);
		return;
	}
	svc_result_clear(&s->s_last);
	s->s_last = j->j_res;
	s->s_have_last = 1;
	if (s->s_last.r_failed)
		log_warnx("%s: generation %llu failed: %s", s->s_name,
		    (unsigned long long)s->s_last.r_gen, s->s_last.r_error);
	else
		log_info("%s: generation %llu applied (%zu objects)",
		    s->s_name, (unsigned long long)s->s_last.r_gen,
		    s->s_last.r_nobjs);
	free(j);
	svc_report(s);
	if (s->s_applied != NULL)
		s->s_applied(s);
	if (s->s_last.r_failed && s->s_pending == NULL) {
		unsigned shift = s->s_failures < 10 ? s->s_failures : 10;

		delay = (uint64_t)SVC_RETRY_MIN_MS << shift;
		if (delay > SVC_RETRY_MAX_MS)
			delay = SVC_RETRY_MAX_MS;
		s->s_failures++;
		uv_timer_start(&s->s_retry, svc_retry_cb, delay, 0);
	} else if (!s->s_last.r_failed)
		s->s_failures = 0;
	if (s->s_again) {
		s->s_again = 0;
		svc_reapply(s);
	}
	svc_next(s);
}

/* Apply the current state once more (see svc.h). */
void
svc_reapply(struct svc *s)
{
	if (!s->s_inited || s->s_stopping || s->s_pending != NULL)
		return;
	if (s->s_busy) {
		s->s_again = 1;
		return;
	}
	if (s->s_current == NULL)
		return;
	s->s_pending = s->s_current;
	s->s_current = NULL;
	svc_next(s);
}

/* Start the waiting generation if nothing runs. */
static void
svc_next(struct svc *s)
{
	struct svc_job	*j;

	if (s->s_busy || s->s_pending == NULL || s->s_stopping)
		return;
	uv_timer_stop(&s->s_retry);
	if (s->s_current != NULL)
		opsn__services_desired__free_unpacked(s->s_current, NULL);
	s->s_current = s->s_pending;
	s->s_pending = NULL;
	j = xcalloc(1, sizeof(*j));
	j->j_req.data = j;
	j->j_svc = s;
	j->j_desired = s->s_current;
	j->j_res.r_gen = s->s_current->generation;
	s->s_busy = 1;
	if (uv_queue_work(s->s_loop, &j->j_req, svc_work_cb,
	    svc_after_cb) != 0)
		fatalx("%s: uv_queue_work failed", s->s_name);
}

/* Start the queue of one role. */
void
svc_init(struct svc *s, uv_loop_t *loop, const char *name,
    void (*apply)(struct svc_job *), void (*done)(void))
{
	memset(s, 0, sizeof(*s));
	s->s_name = name;
	s->s_loop = loop;
	s->s_apply = apply;
	s->s_done = done;
	uv_timer_init(loop, &s->s_retry);
	s->s_retry.data = s;
	s->s_timer_open = 1;
	s->s_inited = 1;
}

/* A desired state from the controller: it is applied next. */
void
svc_desired(struct svc *s, const uint8_t *p, size_t len)
{
	Opsn__ServicesDesired	*d;

	if (!s->s_inited || s->s_stopping)
		return;
	if ((d = opsn__services_desired__unpack(NULL, len, p)) == NULL) {
		log_warnx("%s: a desired state that does not decode", s->s_name);
		return;
	}
	if (d->generation < s->s_newest)
		log_notice("%s: generation %llu after %llu: the controller's "
		    "state went back; applying it", s->s_name,
		    (unsigned long long)d->generation,
		    (unsigned long long)s->s_newest);
	s->s_newest = d->generation;
	if (s->s_pending != NULL)
		opsn__services_desired__free_unpacked(s->s_pending, NULL);
	s->s_pending = d;
	s->s_failures = 0;
	log_debug("%s: generation %llu queued", s->s_name,
	    (unsigned long long)d->generation);
	svc_next(s);
}

/* The link is up again. */
void
svc_connected(struct svc *s)
{
	if (s->s_inited && !s->s_busy)
		svc_report(s);
}

/* Is nothing running or waiting? */
int
svc_idle(const struct svc *s)
{
	return (!s->s_busy && s->s_pending == NULL);
}

/* Stop the queue; the running apply finishes (its result is dropped). */
void
svc_stop(struct svc *s)
{
	if (!s->s_inited || s->s_stopping)
		return;
	s->s_stopping = 1;
	if (s->s_timer_open) {
		uv_timer_stop(&s->s_retry);
		uv_close((uv_handle_t *)&s->s_retry, NULL);
		s->s_timer_open = 0;
	}
	if (s->s_pending != NULL)
		opsn__services_desired__free_unpacked(s->s_pending, NULL);
	s->s_pending = NULL;
	/* A running job still reads s_current: svc_after_cb frees it. */
	if (!s->s_busy && s->s_current != NULL) {
		opsn__services_desired__free_unpacked(s->s_current, NULL);
		s->s_current = NULL;
	}
	svc_result_clear(&s->s_last);
	s->s_have_last = 0;
	svc_maybe_done(s);
}

/* Once stopped, and nothing on the pool reads the role's state: s_done. */
static void
svc_maybe_done(struct svc *s)
{
	if (!s->s_stopping || s->s_busy || s->s_holds > 0 || s->s_done_called)
		return;
	s->s_done_called = 1;
	if (s->s_done != NULL)
		s->s_done();
}

/* Pool work of the role starts (see svc.h). */
int
svc_hold(struct svc *s)
{
	if (!s->s_inited || s->s_stopping)
		return (-1);
	s->s_holds++;
	return (0);
}

/* That work is over (loop thread). */
void
svc_release(struct svc *s)
{
	s->s_holds--;
	svc_maybe_done(s);
}

/* A frame of the services range for this role. */
void
svc_frame(struct svc *s, uint16_t type, const uint8_t *p, size_t len)
{
	if (type == MSG_SERVICES_DESIRED)
		svc_desired(s, p, len);
	else
		log_debug("%s: ignoring message type %u", s->s_name, type);
}

/* ---- usage walks ------------------------------------------------------------ */

struct svc_use {
	char	*u_id;
	char	*u_tenant;
	char	*u_path;
	int64_t	 u_bytes;
};

struct svc_uses {
	uv_work_t	 w_req;
	struct svc	*w_svc;
	const char	*w_kind;
	void		(*w_list)(struct svc_uses *);
	svc_usage_cb	 w_emit;
	void		*w_arg;
	struct svc_use	*w_v;
	size_t		 w_n;
	size_t		 w_cap;
};

/* Add an object to a walk (pool thread). */
void
svc_uses_add(struct svc_uses *w, const char *id, const char *tenant,
    const char *path)
{
	if (w->w_n == w->w_cap) {
		w->w_cap = w->w_cap ? 2 * w->w_cap : 64;
		w->w_v = xrealloc(w->w_v, w->w_cap * sizeof(*w->w_v));
	}
	w->w_v[w->w_n].u_id = xstrdup(id);
	w->w_v[w->w_n].u_tenant = xstrdup(tenant != NULL ? tenant : "");
	w->w_v[w->w_n].u_path = xstrdup(path);
	w->w_v[w->w_n].u_bytes = 0;
	w->w_n++;
}

static void
svc_usage_work_cb(uv_work_t *req)
{
	struct svc_uses	*w = req->data;
	size_t		 i;

	w->w_list(w);
	for (i = 0; i < w->w_n; i++)
		w->w_v[i].u_bytes = svc_du(w->w_v[i].u_path);
}

static void
svc_usage_after_cb(uv_work_t *req, int status)
{
	struct svc_uses	*w = req->data;
	struct svc	*s = w->w_svc;
	size_t		 i;

	for (i = 0; i < w->w_n; i++) {
		w->w_emit(w->w_arg, w->w_kind, w->w_v[i].u_id,
		    w->w_v[i].u_tenant, w->w_v[i].u_bytes);
		free(w->w_v[i].u_id);
		free(w->w_v[i].u_tenant);
		free(w->w_v[i].u_path);
	}
	w->w_emit(w->w_arg, NULL, NULL, NULL, 0);
	free(w->w_v);
	free(w);
	svc_release(s);
}

/* Measure the role's objects on the pool (see svc.h). */
void
svc_usage(struct svc *s, const char *kind, void (*list)(struct svc_uses *),
    svc_usage_cb emit, void *arg)
{
	struct svc_uses	*w;

	if (svc_hold(s) == -1) {
		emit(arg, NULL, NULL, NULL, 0);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->w_req.data = w;
	w->w_svc = s;
	w->w_kind = kind;
	w->w_list = list;
	w->w_emit = emit;
	w->w_arg = arg;
	if (uv_queue_work(s->s_loop, &w->w_req, svc_usage_work_cb,
	    svc_usage_after_cb) != 0)
		fatalx("%s: uv_queue_work failed", s->s_name);
}

/* ---- running programs ----------------------------------------------------- */

/* Run a program and capture what it says. */
int
svc_run(char *const argv[], int timeout_ms, char **out)
{
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 none, dfl;
	struct pollfd			 pfd;
	char				*buf;
	size_t				 have = 0;
	uint64_t			 deadline;
	ssize_t				 n;
	pid_t				 pid, w;
	int				 p[2], rc, status = 0, exited = 0;
	int				 killed = 0;

	*out = NULL;
	if (pipe2(p, O_CLOEXEC) == -1) {
		xasprintf(out, "pipe: %s", strerror(errno));
		return (-1);
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	posix_spawnattr_init(&attr);
	/* Pool threads and the agent ignore or block signals; not the tools. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGCHLD);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		xasprintf(out, "%s: %s", argv[0], strerror(rc));
		return (-1);
	}
	buf = xmalloc(SVC_OUT_MAX + 1);
	deadline = util_mono_ms() + (uint64_t)timeout_ms;
	/*
	 * Read until the program exits and its output is drained. A daemon
	 * it starts may keep the pipe open: once our child has exited, what
	 * is already there is read and the pipe is left.
	 */
	pfd.fd = p[0];
	pfd.events = POLLIN;
	for (;;) {
		if (!exited) {
			w = waitpid(pid, &status, WNOHANG);
			if (w == pid)
				exited = 1;
		}
		rc = poll(&pfd, 1, exited ? 0 : 50);
		if (rc > 0) {
			char	 tmp[4096];

			n = read(p[0], tmp, sizeof(tmp));
			if (n > 0) {
				if (have < SVC_OUT_MAX) {
					size_t c = (size_t)n;

					if (c > SVC_OUT_MAX - have)
						c = SVC_OUT_MAX - have;
					memcpy(buf + have, tmp, c);
					have += c;
				}
				continue;
			}
			if (n == -1 && errno == EINTR)
				continue;
			/* EOF: wait for the exit status. */
			if (!exited) {
				while ((w = waitpid(pid, &status, 0)) == -1 &&
				    errno == EINTR)
					;
				exited = 1;
			}
			break;
		}
		if (exited)
			break;
		if (util_mono_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
				;
			killed = 1;
			break;
		}
	}
	close(p[0]);
	buf[have] = '\0';
	*out = buf;
	if (killed) {
		char	*m;

		xasprintf(&m, "%s%s%s: killed after %d ms", buf,
		    have ? "\n" : "", argv[0], timeout_ms);
		free(buf);
		*out = m;
		return (-1);
	}
	if (WIFEXITED(status))
		return (WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return (128 + WTERMSIG(status));
	return (-1);
}

/* A short message from a program's output for a status or a log line. */
char *
svc_run_message(const char *prog, int status, const char *out)
{
	char	*msg, *copy, *line, *save = NULL;
	char	*pick = NULL, *p;
	size_t	 len;

	copy = xstrdup(out != NULL ? out : "");
	/* Errors first ([emerg], fatal:, Error:), else the last line. */
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0')
			continue;
		/* nginx: "2026/11/29 20:06:33 [emerg] 2058#2058: text". */
		if ((p = strstr(line, "[emerg]")) != NULL) {
			pick = p;
			if ((p = strstr(p, "#")) != NULL &&
			    (p = strstr(p, ": ")) != NULL)
				pick = p + 2;
			break;
		}
		if (strstr(line, "fatal:") != NULL ||
		    strstr(line, "Fatal:") != NULL ||
		    strstr(line, "Error:") != NULL ||
		    strstr(line, "error:") != NULL) {
			pick = line;
			break;
		}
		pick = line;
	}
	if (status == -1)
		xasprintf(&msg, "%s", pick != NULL ? pick : prog);
	else if (pick != NULL)
		xasprintf(&msg, "%s (exit %d): %s", prog, status, pick);
	else
		xasprintf(&msg, "%s: exit %d", prog, status);
	free(copy);
	len = strlen(msg);
	if (len > SVC_MSG_MAX)
		msg[SVC_MSG_MAX] = '\0';
	return (msg);
}

/* ---- names ---------------------------------------------------------------- */

/* A host name in punycode. */
int
svc_valid_hostname(const char *h, char **cause)
{
	const char	*p, *label = h;
	size_t		 len = strlen(h);
	int		 dots = 0;

	if (len == 0 || len > 253) {
		xasprintf(cause, "host name '%.64s' is empty or longer than "
		    "253 characters", h);
		return (-1);
	}
	for (p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t l = (size_t)(p - label);

			if (l == 0 || l > 63 || label[0] == '-' ||
			    p[-1] == '-') {
				xasprintf(cause, "host name '%.253s' has a bad "
				    "label", h);
				return (-1);
			}
			if (*p == '\0')
				break;
			dots++;
			label = p + 1;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-')) {
			xasprintf(cause, "host name '%.253s' is not lower-case "
			    "letters, digits and '-'", h);
			return (-1);
		}
	}
	if (dots == 0) {
		xasprintf(cause, "host name '%.253s' has no dot", h);
		return (-1);
	}
	return (0);
}

/* An address for the maps: local@domain, or @domain when allowed. */
int
svc_valid_address(const char *a, int allow_catchall, char **cause)
{
	const char	*at = strchr(a, '@'), *p;

	if (at == NULL || strchr(at + 1, '@') != NULL || strlen(a) > 320) {
		xasprintf(cause, "address '%.64s' is not local@domain", a);
		return (-1);
	}
	if (at == a && !allow_catchall) {
		xasprintf(cause, "address '%.64s' has no local part", a);
		return (-1);
	}
	if (at - a > 64 || (at > a && (a[0] == '.' || at[-1] == '.'))) {
		xasprintf(cause, "address '%.64s' has a bad local part", a);
		return (-1);
	}
	for (p = a; p < at; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr(".-_+=~!#$%&*^`{|}'?", *p) != NULL)
			continue;
		xasprintf(cause, "address '%.64s' has a character the maps "
		    "do not take ('%c')", a, isprint((unsigned char)*p) ?
		    *p : '?');
		return (-1);
	}
	if (strstr(a, "..") != NULL) {
		xasprintf(cause, "address '%.64s' has a bad local part", a);
		return (-1);
	}
	return (svc_valid_hostname(at + 1, cause));
}

/* ---- files ----------------------------------------------------------------- */

/* mkdir -p with owner and mode for the folders made. */
int
svc_mkdirs(const char *path, mode_t mode, uid_t uid, gid_t gid, char **cause)
{
	char		*copy, *p;
	struct stat	 st;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return (0);
		xasprintf(cause, "%s: not a folder", path);
		return (-1);
	}
	copy = xstrdup(path);
	for (p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(copy, mode) == 0) {
			if (chmod(copy, mode) == -1 || (uid != (uid_t)-1 &&
			    chown(copy, uid, gid) == -1)) {
				xasprintf(cause, "%s: %s", copy,
				    strerror(errno));
				free(copy);
				return (-1);
			}
		} else if (errno != EEXIST) {
			xasprintf(cause, "mkdir %s: %s", copy, strerror(errno));
			free(copy);
			return (-1);
		}
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return (0);
}

static int
svc_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	if (flag == FTW_DP)
		return (rmdir(path) == -1 && errno != ENOENT ? -1 : 0);
	return (unlink(path) == -1 && errno != ENOENT ? -1 : 0);
}

/* rm -rf. */
int
svc_rmtree(const char *path, char **cause)
{
	struct stat	 st;

	if (lstat(path, &st) == -1)
		return (errno == ENOENT ? 0 : (xasprintf(cause, "%s: %s", path,
		    strerror(errno)), -1));
	if (nftw(path, svc_rm_cb, 16, FTW_DEPTH | FTW_PHYS) == -1) {
		xasprintf(cause, "removing %s: %s", path, strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * nftw keeps no user pointer: each pool thread sums into its own counter.
 */
static __thread int64_t	 svc_du_total;

static int
svc_du_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	if (flag == FTW_F && S_ISREG(st->st_mode))
		svc_du_total += st->st_size;
	return (0);
}

/* Bytes in the regular files under path. */
int64_t
svc_du(const char *path)
{
	svc_du_total = 0;
	if (nftw(path, svc_du_cb, 16, FTW_PHYS) == -1)
		return (svc_du_total);
	return (svc_du_total);
}

/* fsync a folder. */
int
svc_fsync_dir(const char *path, char **cause)
{
	return (util_fsync_dir(path, cause));
}

/* A whole small file, or NULL. */
char *
svc_read(const char *path, size_t max)
{
	char	*buf = NULL, *cause = NULL;
	size_t	 len;

	if (util_read_file(path, max, &buf, &len, &cause) == -1) {
		free(cause);
		return (NULL);
	}
	return (buf);
}

/* value, or def when value is empty or unset. */
const char *
svc_opt(const char *value, const char *def)
{
	return (value != NULL && *value != '\0' ? value : def);
}

/* value, or DATA_DIR/sub when value is empty or unset. */
char *
svc_path_option(const struct agent *a, const char *value, const char *sub)
{
	char	*p;

	if (value != NULL && *value != '\0')
		return (xstrdup(value));
	xasprintf(&p, "%s/%s", a->conf.data_dir, sub);
	return (p);
}

/*
 * The agent makes its data folder 0700; a role folder inside it must be
 * reached by postfix, the mail user and nginx's workers. Traversal only:
 * the key and certificates stay 0600.
 */
int
svc_traversable(const struct agent *a, const char *path, char **cause)
{
	struct stat	 st;
	size_t		 n = strlen(a->conf.data_dir);

	if (strncmp(path, a->conf.data_dir, n) != 0 || path[n] != '/')
		return (0);
	if (stat(a->conf.data_dir, &st) == -1) {
		xasprintf(cause, "%s: %s", a->conf.data_dir, strerror(errno));
		return (-1);
	}
	if ((st.st_mode & 0011) == 0011)
		return (0);
	if (chmod(a->conf.data_dir, (st.st_mode & 07777) | 0011) == -1) {
		xasprintf(cause, "chmod %s: %s", a->conf.data_dir,
		    strerror(errno));
		return (-1);
	}
	log_info("agent: %s can now be traversed (not read) by the daemons",
	    a->conf.data_dir);
	return (0);
}
