/*
 * Shared by the mail and web roles (node-agent/mail.c, web.c): the queue
 * of desired generations applied one at a time on the thread pool, the
 * status report, running a program, and file helpers.
 */
#ifndef OPSN_SVC_H
#define OPSN_SVC_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "services.pb-c.h"

struct agent;

/*
 * Storage used by one object, for metering: kind "mailbox" or "site", the
 * object's id and tenant as the controller gave them, and bytes (the sum
 * of the sizes of its files). Called on the loop thread; the strings are
 * valid during the call only. A last call with kind NULL ends the walk.
 */
typedef void (*svc_usage_cb)(void *arg, const char *kind, const char *id,
    const char *tenant, int64_t bytes);

/*
 * Walk the maildirs of every mailbox in the live maps (deleted ones still
 * within their retention included) on the thread pool and call emit for
 * each, then once with kind NULL. Works while the controller is away. When
 * the mail role is not running, emit(arg, NULL, ...) is called at once.
 */
void	mail_usage(svc_usage_cb emit, void *arg);
/* The same for the document roots of the sites nginx serves. */
void	web_usage(svc_usage_cb emit, void *arg);

/* Nothing applying or waiting in the role (unit tests). */
int	mail_idle(void);
/* Generations applied as a patch of the live maps (unit tests). */
unsigned mail_patched(void);
int	web_idle(void);

/* ---- the generation queue ---------------------------------------------- */

/* The outcome of one apply, filled on a pool thread. */
struct svc_result {
	uint64_t		 r_gen;
	int			 r_failed;	/* the whole generation */
	char			*r_error;
	Opsn__ObjectStatus	**r_objs;
	size_t			 r_nobjs;
};

/* The objects a delta named ("kind id"), sorted; NULL: every object. */
struct svc_only;

struct svc_job {
	uv_work_t		 j_req;
	struct svc		*j_svc;
	const Opsn__ServicesDesired *j_desired;	/* owned by the svc */
	struct svc_only		*j_only;	/* report these only */
	/* With j_only: the generation applied before, which it changes. */
	uint64_t		 j_base_gen;
	struct svc_result	 j_res;
};

struct svc_parts;

struct svc {
	const char		*s_name;	/* "mail", "web" (logs) */
	uv_loop_t		*s_loop;
	/* Apply a desired state on a pool thread; fills j_res. */
	void			(*s_apply)(struct svc_job *);
	/* After svc_stop, once no apply runs: the role may free its state. */
	void			(*s_done)(void);
	Opsn__ServicesDesired	*s_current;	/* last one applied (or tried) */
	Opsn__ServicesDesired	*s_pending;	/* newest one waiting */
	uint64_t		 s_newest;	/* last generation received */
	int			 s_busy;
	int			 s_stopping;
	int			 s_inited;
	struct svc_result	 s_last;	/* last status, resent on connect */
	int			 s_have_last;
	uv_timer_t		 s_retry;
	unsigned		 s_failures;
	int			 s_timer_open;
	unsigned		 s_holds;	/* pool work reading the role */
	int			 s_done_called;
	int			 s_again;	/* apply s_current once more */
	/* On the loop thread after each apply (may be NULL). */
	void			(*s_applied)(struct svc *);
	/* Protocol 2 (svcsync.c): what s_pending changed, parts coming. */
	struct svc_only		*s_pending_only;
	struct svc_parts	*s_parts;
};

/* Start the queue (on the loop thread). */
void	svc_init(struct svc *, uv_loop_t *, const char *name,
	    void (*apply)(struct svc_job *), void (*done)(void));
/* A MSG_SERVICES_DESIRED payload: the state to apply next. */
void	svc_desired(struct svc *, const uint8_t *, size_t);
/* Queue a whole state (consumed) to apply next. */
void	svc_queue(struct svc *, Opsn__ServicesDesired *);
/* The link is back: send the last status again. */
void	svc_connected(struct svc *);
/* Stop: no new apply; s_done runs once no apply and no walk runs. */
void	svc_stop(struct svc *);
/* Is an apply running or waiting (for tests)? */
int	svc_idle(const struct svc *);
/*
 * Apply the current state again (what it depends on changed: a new
 * certificate). After the running apply if there is one; nothing when a
 * newer state waits anyway.
 */
void	svc_reapply(struct svc *);
/*
 * Pool work of the role besides applies (usage walks, a certificate to
 * store) holds the queue: s_done waits for its release. svc_hold returns
 * -1 when the queue is stopping or not started (do not queue the work).
 */
int	svc_hold(struct svc *);
void	svc_release(struct svc *);
/* Send a frame to the controller (or to the unit tests' hook). */
int	svc_send(uint16_t type, const ProtobufCMessage *);
/* A frame for the role: MSG_SERVICES_DESIRED is queued, others ignored. */
void	svc_frame(struct svc *, uint16_t type, const uint8_t *, size_t);

/* ---- protocol 2: parts and deltas (svcsync.c) --------------------------- */

/* The link is up: say which generation the role holds (protocol 2). */
void	svc_sync_connected(struct svc *);
/* MSG_SERVICES_PART: a part of a whole state; the last one queues it. */
void	svc_sync_part(struct svc *, const uint8_t *, size_t);
/* MSG_SERVICES_DELTA: merged into the newest state held, then queued. */
void	svc_sync_delta(struct svc *, const uint8_t *, size_t);
/* Drop a partial state (stopping). */
void	svc_sync_free(struct svc *);
/* Keep only the objects a delta named in a result; free the set. */
void	svc_only_filter(const struct svc_only *, struct svc_result *);
void	svc_only_free(struct svc_only *);
/*
 * The ids of one kind a delta named, sorted (the array is the caller's,
 * the strings the set's); *others counts the objects of other kinds.
 */
const char **svc_only_ids(const struct svc_only *, const char *kind,
	    size_t *n, size_t *others);
/* The protocol the link speaks (0: down); tests set it (0: the link's). */
uint32_t svc_proto(void);
void	svc_set_proto(uint32_t);

/* ---- usage walks, for metering ----------------------------------------- */

/* The objects one walk measures (filled on a pool thread). */
struct svc_uses;

/* Add an object: its id, its tenant and the folder its files are in. */
void	svc_uses_add(struct svc_uses *, const char *id, const char *tenant,
	    const char *path);
/*
 * Measure the role's objects for metering: list runs on the pool and adds
 * each object with svc_uses_add, the folders are summed there, then emit
 * gets each object (with kind) on the loop thread, and a last call with
 * kind NULL. When the queue is not running, emit(arg, NULL, ...) at once.
 * The role's s_done waits for the walks still running.
 */
void	svc_usage(struct svc *, const char *kind,
	    void (*list)(struct svc_uses *), svc_usage_cb emit, void *arg);

/* Add an object status to a result (from the pool thread); msg may be NULL. */
void	svc_result_add(struct svc_result *, const char *kind, const char *id,
	    const char *state, const char *msg);
/* The generation failed as a whole: every object gets the message. */
void	svc_result_fail(struct svc_result *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	svc_result_clear(struct svc_result *);
void	svc_obj_free(Opsn__ObjectStatus *);

/*
 * Replace link_send (unit tests capture the frames); NULL restores it.
 */
void	svc_set_send(int (*)(uint16_t, const ProtobufCMessage *));

/* ---- helpers for the pool threads -------------------------------------- */

/*
 * Run argv (argv[0] a path) with stdin from /dev/null, stdout and stderr
 * captured into *out (NUL-terminated, at most 64 KiB, caller frees),
 * killed after timeout_ms. Returns its exit status (0 success), or -1 with
 * *out saying why it could not run.
 */
int	svc_run(char *const argv[], int timeout_ms, char **out);
/* The last non-empty lines of a program's output, for a status message. */
char	*svc_run_message(const char *prog, int status, const char *out);

/* A host name in punycode: lower-case LDH labels, a dot, at most 253. */
int	svc_valid_hostname(const char *, char **cause);
/* local@domain as the maps want it (lower case, no '/', no spaces). */
int	svc_valid_address(const char *, int allow_catchall, char **cause);

/* mkdir -p; each folder made gets mode, and uid/gid unless uid is -1. */
int	svc_mkdirs(const char *path, mode_t mode, uid_t uid, gid_t gid,
	    char **cause);
/* rm -rf without following symbolic links; a missing path is fine. */
int	svc_rmtree(const char *path, char **cause);
/* Sum of the sizes of the regular files under path (0 if absent). */
int64_t	svc_du(const char *path);
/* fsync a folder (after renames in it). */
int	svc_fsync_dir(const char *path, char **cause);
/* Read a whole small file (NULL if absent or over max). */
char	*svc_read(const char *path, size_t max);
/* A string option: value, or def when it is unset or empty. */
const char *svc_opt(const char *value, const char *def);
/* The default of a folder option: value, or DATA_DIR/sub when empty. */
char	*svc_path_option(const struct agent *, const char *value,
	    const char *sub);
/* Let the daemons' users traverse the agent's 0700 data folder. */
int	svc_traversable(const struct agent *, const char *path, char **cause);

#endif
