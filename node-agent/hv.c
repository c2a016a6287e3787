/*
 * The hypervisor role: turns the controller's desired state into libvirt
 * domains and reports what is really there.
 *
 * Threads. The uv loop thread owns every structure here. libvirt's default
 * event loop runs on a thread of its own: its callbacks only copy the
 * domain's UUID and the event into a queue under a mutex and wake the loop
 * with uv_async_send. Every libvirt call that talks to the daemon runs on
 * the uv thread pool (struct hv_work); a work item holds a reference on
 * the connection and never keeps a virDomainPtr beyond its own function.
 *
 * Ownership. A domain is ours only when its opsn metadata names our node;
 * anything else (another agent's domains, hand-made ones) is never touched,
 * not even when its UUID is one the controller gives us.
 *
 * Rounds. For each VM, reconcile_decide() gives the operations to run now;
 * one work item runs them in order, reads the domain back, and the VM is
 * decided again until the answer is "none". One VM at a time has one work
 * item at most; a VM's error stops its own operations only, and it is
 * retried on the next trigger (a new desired state, an event, a resync).
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "opsn/frame.h"
#include "opsn/log.h"
#include "opsn/util.h"
#include "agent.h"
#include "domxml.h"
#include "imgcache.h"
#include "migrate.h"
#include "reconcile.h"

#define HV_SHUTDOWN_TIMEOUT_MS	20000	/* graceful, then destroy */
#define HV_TICK_MS		1000	/* consoles, deadlines, holds */
#define HV_REPORT_DELAY_MS	50	/* partial reports are coalesced */
#define HV_RECONNECT_MIN_MS	1000
#define HV_RECONNECT_MAX_MS	30000
#define HV_HOLD_MIN_MS		5000	/* first restart after a crash */
#define HV_HOLD_MAX_MS		300000
#define HV_HOLD_RESET_MS	600000	/* up this long: a crash is new */
#define HV_MAX_ROUNDS		8	/* rounds without a trigger */
#define HV_CONSOLE_FRAME	(32 * 1024)
#define HV_CONSOLE_TAIL		(16 * 1024)
#define HV_CONSOLE_FRAMES	8	/* per VM per tick */
#define HV_QUEUE_MAX		4096
#define HV_PID_DIR		"/var/run/libvirt/qemu"
#define HV_LOG_BACKUPS		10	/* virtlogd's max_backups is 3 */

/* What a work item read about one domain. */
struct hv_obs {
	int		 o_exists;	/* a domain has the VM's UUID */
	int		 o_foreign;	/* ... and it is not ours */
	int		 o_state;	/* virDomainState */
	int		 o_reason;
	uint32_t	 o_vcpus;
	uint64_t	 o_memory_mib;
	uint64_t	 o_reboot_seq;	/* applied, from our metadata */
	int64_t		 o_pid;
	int		 o_disk;	/* overlay volume: 1, 0, -1 unknown */
	char		 o_name[64];	/* from our metadata */
};

enum hv_img {
	HV_IMG_NONE,
	HV_IMG_FETCHING,
	HV_IMG_READY,
	HV_IMG_FAILED,
};

struct hv_imgreq;

struct hv_vm {
	TAILQ_ENTRY(hv_vm) v_entry;
	char		*v_id;
	Opsn__VmSpec	*v_spec;	/* in hv_desired; NULL: not wanted */
	int		 v_want_run;	/* power of the previous spec */
	int		 v_invalid;	/* the spec failed domxml_check */
	int		 v_moved_said;	/* "moved away" was logged */
	uint64_t	 v_gen;		/* generation its status reflects */
	int		 v_held;	/* kept since an epoch change */

	int		 v_known;	/* v_obs was read at least once */
	struct hv_obs	 v_obs;
	int		 v_disk;
	char		 v_state[16];
	char		 v_reason[24];
	int64_t		 v_since;
	char		*v_error;
	int		 v_changed;	/* in the next partial report */

	enum hv_img	 v_img;
	char		*v_img_key;
	char		*v_img_disk;
	char		*v_img_kernel;
	char		*v_img_initrd;
	struct hv_imgreq *v_imgreq;

	int		 v_busy;	/* a work item runs for it */
	int		 v_dirty;	/* decide again when it is done */
	int		 v_refresh;	/* read again when it is done */
	int		 v_blocked;	/* failed: wait for a trigger */
	int		 v_rounds;
	int		 v_seen;	/* by the scan being merged */
	uint64_t	 v_touched;	/* hv_epoch of its last work item */
	uint64_t	 v_shutdown_at;	/* graceful shutdown asked (mono ms) */
	int		 v_expect_stop;	/* we stop it: not a crash */
	uint64_t	 v_hold_until;	/* no restart before (mono ms) */
	unsigned	 v_nstops;
	uint64_t	 v_started_at;

	int		 v_con_fd;
	uint64_t	 v_con_off;
	ino_t		 v_con_ino;
	int		 v_con_reset;
};
TAILQ_HEAD(hv_vms, hv_vm);

/* An image request; outlives its VM if the VM goes first. */
struct hv_imgreq {
	struct hv_vm	*r_vm;
	Opsn__ImageRef	*r_img;		/* a copy: the desired state may go */
	char		*r_url;
};

struct hv_opargs {
	struct rec_action a_act;
	char		*a_xml;		/* DEFINE, SET_VCPUS_MEMORY */
	char		*a_meta;	/* after START or REBOOT, or NULL */
	char		*a_backing;	/* CREATE_DISK */
	char		*a_format;
	uint64_t	 a_bytes;
	char		*a_owner;	/* DAC label of the overlay, or NULL */
	char		*a_console;	/* logs to remove with the disk */
	int		 a_disk_only;	/* DELETE_DISK alone, domain untouched */
	char		*a_incoming;	/* CREATE_DISK: a migrated disk */
	char		*a_disk;	/* CREATE_DISK: where it goes */
};

enum hv_kind {
	HV_W_CONNECT,
	HV_W_DISCONNECT,
	HV_W_SCAN,
	HV_W_OP,
	HV_W_READ,
};

/* One of our domains (or a volume of ours) found by a scan. */
struct hv_found {
	char		 f_id[VIR_UUID_STRING_BUFLEN];
	struct hv_obs	 f_obs;
};

struct hv_work {
	uv_work_t	 w_req;
	enum hv_kind	 w_kind;
	virConnectPtr	 w_conn;	/* a reference the work drops */
	char		*w_cause;
	/* HV_W_CONNECT, HV_W_DISCONNECT */
	const char	*w_type;
	char		*w_label;
	char		*w_pool_path;
	int		 w_cb_id;
	/* HV_W_SCAN */
	struct hv_found	*w_found;
	size_t		 w_nfound;
	uint64_t	 w_epoch;
	uint64_t	 w_t0;		/* when the scan was queued, ns */
	/* HV_W_OP, HV_W_READ */
	struct hv_vm	*w_vm;		/* busy: it stays until we are done */
	char		 w_id[VIR_UUID_STRING_BUFLEN];
	struct hv_opargs w_args;
	struct hv_obs	 w_obs;
	int		 w_obs_ok;
};

struct hv_event {
	char		 e_id[VIR_UUID_STRING_BUFLEN];
	int		 e_event;
	int		 e_detail;
};

enum hv_cstate {
	HV_DOWN,
	HV_CONNECTING,
	HV_UP,
};

static struct agent	*ha;
static struct hv_hooks	 hv_hooks;
static int		 hv_inited;
static int		 hv_stopping;
static int		 hv_finished;
static struct hv_vms	 hv_vms = TAILQ_HEAD_INITIALIZER(hv_vms);
static Opsn__DesiredState *hv_desired;
static uint64_t		 hv_applied_gen;
/*
 * The controller's epoch (docs/protocol.md): the highest this node has
 * seen, kept in DATA_DIR/hv-state with the VMs held since it changed.
 * Until the scan that follows a change is merged, a VM of ours that the
 * desired state does not list is held, never deleted.
 */
static uint64_t		 hv_ctl_epoch;
static int		 hv_epoch_sweep;
static uint64_t		 hv_reported_gen, hv_reported_epoch;
/*
 * The newest (epoch, generation) this node has accepted, kept across
 * restarts (DATA_DIR/hv-generation): an older desired state is refused,
 * so that a node coming back never acts on stale instructions. A new
 * epoch (a restored controller) starts its generations afresh.
 */
static uint64_t		 hv_gen_floor, hv_gen_floor_epoch;
static uint64_t		 hv_gen_saved, hv_gen_saved_epoch;
static int		 hv_gen_saving;
static uint64_t		 hv_epoch;
static unsigned		 hv_inflight;

static char		*hv_pool_name;
static char		*hv_pool_dir;	/* configured */
static char		*hv_disk_dir;	/* the pool's real path */
static char		*hv_console_dir;
static const char	*hv_type = "qemu";
static char		*hv_dac_label;

static virConnectPtr	 hv_conn;
static int		 hv_cb_id = -1;
static enum hv_cstate	 hv_cstate;
static unsigned		 hv_conn_failures;
static int		 hv_scanned;	/* a scan since the connection */
static int		 hv_scanning;

static uv_timer_t	 hv_tick;
static uv_timer_t	 hv_resync;
static uv_timer_t	 hv_report_timer;
static uv_timer_t	 hv_reconnect;
static uv_async_t	 hv_async;

/* Shared with libvirt's event thread, under hv_qlock. */
static pthread_mutex_t	 hv_qlock = PTHREAD_MUTEX_INITIALIZER;
static struct hv_event	*hv_queue;
static size_t		 hv_qlen;
static int		 hv_qoverflow;
static virConnectPtr	 hv_qlost;	/* compared, never dereferenced */
static int		 hv_async_open;

static pthread_once_t	 hv_evonce = PTHREAD_ONCE_INIT;
static int		 hv_evok;

static void	hv_kick(struct hv_vm *);
static void	hv_vm_read(struct hv_vm *);
static void	hv_scan(void);
static void	hv_connect(void);
static void	hv_finish(void);
static void	hv_report_soon(void);
static void	hv_state_save(void);
static void	hv_epoch_swept(void);
static void	hv_gen_save(uint64_t, uint64_t);
static void	hv_op_work_cb(uv_work_t *);
static void	hv_vm_work_after_cb(uv_work_t *, int);

/* ---- words for libvirt's states and reasons ---------------------------- */

static const char *const hv_running_reasons[] = {
	"unknown", "booted", "migrated", "restored", "from_snapshot",
	"unpaused", "migration_canceled", "save_canceled", "wakeup", "crashed",
	"postcopy", "postcopy_failed",
};
static const char *const hv_paused_reasons[] = {
	"unknown", "user", "migration", "save", "dump", "ioerror", "watchdog",
	"from_snapshot", "shutting_down", "snapshot", "crashed", "starting_up",
	"postcopy", "postcopy_failed", "api_error",
};
static const char *const hv_shutoff_reasons[] = {
	"unknown", "shutdown", "destroyed", "crashed", "migrated", "saved",
	"failed", "from_snapshot", "daemon",
};
static const char *const hv_crashed_reasons[] = { "unknown", "panicked" };

static const char *
hv_state_word(int state)
{
	switch (state) {
	case VIR_DOMAIN_PAUSED:
	case VIR_DOMAIN_PMSUSPENDED:
		return ("paused");
	case VIR_DOMAIN_SHUTOFF:
		return ("shutoff");
	case VIR_DOMAIN_CRASHED:
		return ("crashed");
	default:
		return ("running");
	}
}

static const char *
hv_reason_word(int state, int reason)
{
	const char *const	*t;
	size_t			 n;

	switch (state) {
	case VIR_DOMAIN_RUNNING:
		t = hv_running_reasons;
		n = nitems(hv_running_reasons);
		break;
	case VIR_DOMAIN_PAUSED:
		t = hv_paused_reasons;
		n = nitems(hv_paused_reasons);
		break;
	case VIR_DOMAIN_SHUTOFF:
		t = hv_shutoff_reasons;
		n = nitems(hv_shutoff_reasons);
		break;
	case VIR_DOMAIN_CRASHED:
		t = hv_crashed_reasons;
		n = nitems(hv_crashed_reasons);
		break;
	case VIR_DOMAIN_BLOCKED:
		return ("blocked");
	case VIR_DOMAIN_SHUTDOWN:
		return ("shutting_down");
	case VIR_DOMAIN_PMSUSPENDED:
		return ("pmsuspended");
	default:
		return ("unknown");
	}
	if (reason < 0 || (size_t)reason >= n)
		return ("unknown");
	return (t[reason]);
}

/* Is QEMU there for this state (a stop from here is a stop)? */
static int
hv_up(int state)
{
	return (state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED);
}

static enum rec_state
hv_rec_state(const struct hv_obs *o)
{
	if (!o->o_exists)
		return (REC_ABSENT);
	switch (o->o_state) {
	case VIR_DOMAIN_SHUTOFF:
		return (REC_SHUTOFF);
	case VIR_DOMAIN_PAUSED:
		return (REC_PAUSED);
	case VIR_DOMAIN_CRASHED:
		return (REC_CRASHED);
	default:
		return (REC_RUNNING);
	}
}

/* ---- libvirt's event thread --------------------------------------------- */

static void
hv_quiet(void *arg, virErrorPtr err)
{
	/* Errors are read where they matter with virGetLastErrorMessage. */
}

static void *
hv_event_main(void *arg)
{
	for (;;)
		virEventRunDefaultImpl();
	return (NULL);
}

static void
hv_event_start(void)
{
	sigset_t	 all, old;
	pthread_t	 t;

	if (virEventRegisterDefaultImpl() == -1)
		return;
	/* Signals belong to the uv loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&t, NULL, hv_event_main, NULL) == 0) {
		pthread_detach(t);
		hv_evok = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* On libvirt's event thread: queue a copy and wake the loop. */
static void
hv_queue_push(const struct hv_event *ev, virConnectPtr lost)
{
	pthread_mutex_lock(&hv_qlock);
	if (!hv_async_open) {
		pthread_mutex_unlock(&hv_qlock);
		return;
	}
	if (ev != NULL) {
		if (hv_qlen >= HV_QUEUE_MAX)
			hv_qoverflow = 1;
		else {
			if (hv_qlen == 0 || (hv_qlen & (hv_qlen - 1)) == 0)
				hv_queue = xrealloc(hv_queue, (hv_qlen == 0 ?
				    1 : 2 * hv_qlen) * sizeof(*hv_queue));
			hv_queue[hv_qlen++] = *ev;
		}
	}
	if (lost != NULL)
		hv_qlost = lost;
	uv_async_send(&hv_async);
	pthread_mutex_unlock(&hv_qlock);
}

static int
hv_lifecycle_cb(virConnectPtr c, virDomainPtr dom, int event, int detail,
    void *arg)
{
	struct hv_event	 ev;

	if (virDomainGetUUIDString(dom, ev.e_id) == -1)
		return (0);
	ev.e_event = event;
	ev.e_detail = detail;
	hv_queue_push(&ev, NULL);
	return (0);
}

static void
hv_close_cb(virConnectPtr c, int reason, void *arg)
{
	hv_queue_push(NULL, c);
}

/* ---- work on the thread pool ------------------------------------------- */

static void
hv_err(char **cause, const char *what)
{
	if (cause != NULL && *cause == NULL)
		xasprintf(cause, "%s: %s", what, virGetLastErrorMessage());
}

/* 1 ours (m filled), 0 not ours, -1 error. */
static int
hv_dom_ours(virDomainPtr dom, struct domxml_meta *m, char **cause)
{
	char	*xml, *why = NULL, uuid[VIR_UUID_STRING_BUFLEN];

	xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, DOMXML_NS,
	    0);
	if (xml == NULL) {
		if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_METADATA)
			return (0);
		hv_err(cause, "reading the domain's metadata");
		return (-1);
	}
	if (domxml_meta_parse(xml, m, &why) == -1) {
		free(why);
		free(xml);
		return (0);
	}
	free(xml);
	if (strcmp(m->dm_node, ha->conf.name) != 0 ||
	    virDomainGetUUIDString(dom, uuid) == -1 ||
	    strcmp(m->dm_id, uuid) != 0) {
		domxml_meta_free(m);
		return (0);
	}
	return (1);
}

static int64_t
hv_pid(const char *name)
{
	char		 path[PATH_MAX], buf[32];
	ssize_t		 n;
	long long	 v;
	int		 fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s.pid", HV_PID_DIR,
	    name) >= sizeof(path))
		return (0);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	v = strtoll(buf, NULL, 10);
	return (v > 0 ? v : 0);
}

/* Read the state of one of our domains. */
static int
hv_read_dom(virDomainPtr dom, const struct domxml_meta *m, struct hv_obs *o,
    char **cause)
{
	virDomainInfo	 info;
	const char	*name;

	o->o_exists = 1;
	o->o_reboot_seq = m->dm_reboot_seq;
	if (m->dm_name != NULL)
		strlcpy(o->o_name, m->dm_name, sizeof(o->o_name));
	if (virDomainGetState(dom, &o->o_state, &o->o_reason, 0) == -1) {
		hv_err(cause, "reading the domain's state");
		return (-1);
	}
	if (virDomainGetInfo(dom, &info) == -1) {
		hv_err(cause, "reading the domain's info");
		return (-1);
	}
	o->o_vcpus = info.nrVirtCpu;
	o->o_memory_mib = info.maxMem / 1024;
	o->o_pid = 0;
	if (hv_up(o->o_state) && (name = virDomainGetName(dom)) != NULL)
		o->o_pid = hv_pid(name);
	return (0);
}

static virStoragePoolPtr
hv_pool(virConnectPtr c, char **cause)
{
	virStoragePoolPtr	 pool;

	if ((pool = virStoragePoolLookupByName(c, hv_pool_name)) == NULL)
		hv_err(cause, "looking the storage pool up");
	return (pool);
}

static int
hv_disk_exists(virConnectPtr c, const char *id)
{
	virStoragePoolPtr	 pool;
	virStorageVolPtr	 vol;
	char			*name;
	int			 rc = -1;

	if ((pool = hv_pool(c, NULL)) == NULL)
		return (-1);
	xasprintf(&name, "%s.qcow2", id);
	if ((vol = virStorageVolLookupByName(pool, name)) != NULL) {
		virStorageVolFree(vol);
		rc = 1;
	} else if (virGetLastErrorCode() == VIR_ERR_NO_STORAGE_VOL)
		rc = 0;
	free(name);
	virStoragePoolFree(pool);
	return (rc);
}

/* Read VM id: absent, foreign, or ours with its state. */
static int
hv_read_one(virConnectPtr c, const char *id, struct hv_obs *o, char **cause)
{
	virDomainPtr		 dom;
	struct domxml_meta	 m;
	int			 ours, rc = 0;

	memset(o, 0, sizeof(*o));
	o->o_disk = hv_disk_exists(c, id);
	if ((dom = virDomainLookupByUUIDString(c, id)) == NULL) {
		if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
			return (0);
		hv_err(cause, "looking the domain up");
		return (-1);
	}
	if ((ours = hv_dom_ours(dom, &m, cause)) == 1) {
		rc = hv_read_dom(dom, &m, o, cause);
		domxml_meta_free(&m);
	} else if (ours == 0) {
		o->o_exists = 1;
		o->o_foreign = 1;
	} else
		rc = -1;
	virDomainFree(dom);
	return (rc);
}

/* The virtual size of a base image: qcow2 header or raw file size. */
static int
hv_image_vsize(const char *path, const char *format, uint64_t *size,
    char **cause)
{
	unsigned char	 h[32];
	struct stat	 st;
	int		 fd, i;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	if (strcmp(format, "raw") == 0) {
		*size = (uint64_t)st.st_size;
		close(fd);
		return (0);
	}
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h, "QFI\xfb", 4) != 0) {
		xasprintf(cause, "%s is not a qcow2 image", path);
		close(fd);
		return (-1);
	}
	close(fd);
	*size = 0;
	for (i = 24; i < 32; i++)
		*size = (*size << 8) | h[i];
	return (0);
}

static int
hv_disk_create(virConnectPtr c, const char *id, const struct hv_opargs *a,
    char **cause)
{
	virStoragePoolPtr	 pool;
	virStorageVolPtr	 vol;
	uint64_t		 base;
	char			*name, *xml;
	int			 rc = 0;

	/* A disk fetched from the VM's previous node takes the place. */
	if (a->a_incoming != NULL && access(a->a_incoming, F_OK) == 0) {
		if (rename(a->a_incoming, a->a_disk) == -1) {
			xasprintf(cause, "moving the migrated disk in: %s",
			    strerror(errno));
			return (-1);
		}
		if ((pool = hv_pool(c, cause)) == NULL)
			return (-1);
		virStoragePoolRefresh(pool, 0);
		virStoragePoolFree(pool);
		return (0);
	}

	if (hv_image_vsize(a->a_backing, a->a_format, &base, cause) == -1)
		return (-1);
	if ((pool = hv_pool(c, cause)) == NULL)
		return (-1);
	xasprintf(&name, "%s.qcow2", id);
	/* An overlay smaller than its base would cut the guest's disk. */
	xml = domxml_volume(name, a->a_bytes > base ? a->a_bytes : base,
	    a->a_backing, a->a_format, a->a_owner);
	if ((vol = virStorageVolCreateXML(pool, xml, 0)) != NULL)
		virStorageVolFree(vol);
	else if (virGetLastErrorCode() != VIR_ERR_STORAGE_VOL_EXIST) {
		hv_err(cause, "creating the disk");
		rc = -1;
	}
	free(xml);
	free(name);
	virStoragePoolFree(pool);
	return (rc);
}

static int
hv_disk_delete(virConnectPtr c, const char *id, char **cause)
{
	virStoragePoolPtr	 pool;
	virStorageVolPtr	 vol;
	char			*name;
	int			 rc = 0;

	if ((pool = hv_pool(c, cause)) == NULL)
		return (-1);
	xasprintf(&name, "%s.qcow2", id);
	if ((vol = virStorageVolLookupByName(pool, name)) == NULL) {
		if (virGetLastErrorCode() != VIR_ERR_NO_STORAGE_VOL) {
			hv_err(cause, "looking the disk up");
			rc = -1;
		}
	} else {
		if (virStorageVolDelete(vol, 0) == -1) {
			hv_err(cause, "deleting the disk");
			rc = -1;
		}
		virStorageVolFree(vol);
	}
	free(name);
	virStoragePoolFree(pool);
	return (rc);
}

static void
hv_console_unlink(const char *path)
{
	char	*p;
	int	 i;

	unlink(path);
	for (i = 0; i < HV_LOG_BACKUPS; i++) {
		xasprintf(&p, "%s.%d", path, i);
		unlink(p);
		free(p);
	}
}

static int
hv_undefine(virDomainPtr dom)
{
	unsigned int	 all = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
	    VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
	    VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
	    VIR_DOMAIN_UNDEFINE_NVRAM;
	int		 code;

	if (virDomainUndefineFlags(dom, all) == 0)
		return (0);
	/* Drivers without NVRAM or checkpoints (test:///) refuse the flags. */
	code = virGetLastErrorCode();
	if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT)
		return (-1);
	if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
	    VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) == 0)
		return (0);
	code = virGetLastErrorCode();
	if (code != VIR_ERR_INVALID_ARG && code != VIR_ERR_NO_SUPPORT)
		return (-1);
	return (virDomainUndefine(dom));
}

static int
hv_set_meta(virDomainPtr dom, const char *meta, char **cause)
{
	unsigned int	 flags = VIR_DOMAIN_AFFECT_CONFIG;

	if (virDomainIsActive(dom) == 1)
		flags |= VIR_DOMAIN_AFFECT_LIVE;
	if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, meta,
	    DOMXML_NS_PREFIX, DOMXML_NS, flags) == -1) {
		hv_err(cause, "recording the reboot sequence");
		return (-1);
	}
	return (0);
}

/* Run one operation; *dom follows defines and undefines. */
static int
hv_op_one(struct hv_work *w, enum rec_op op, virDomainPtr *dom)
{
	const struct hv_opargs	*a = &w->w_args;
	virDomainPtr		 nd;
	char			**cause = &w->w_cause;

	if (*dom == NULL && op != REC_NONE && op != REC_CREATE_DISK &&
	    op != REC_DEFINE && op != REC_SET_VCPUS_MEMORY &&
	    op != REC_DELETE_DISK && op != REC_UNDEFINE &&
	    op != REC_DESTROY) {
		xasprintf(cause, "%s: the domain is gone",
		    reconcile_op_name(op));
		return (-1);
	}
	switch (op) {
	case REC_NONE:
		return (0);
	case REC_CREATE_DISK:
		return (hv_disk_create(w->w_conn, w->w_id, a, cause));
	case REC_DEFINE:
	case REC_SET_VCPUS_MEMORY:
		if (op == REC_DEFINE && *dom != NULL)
			return (0);	/* defined meanwhile */
		if ((nd = virDomainDefineXML(w->w_conn, a->a_xml)) == NULL) {
			hv_err(cause, "defining the domain");
			return (-1);
		}
		if (*dom != NULL)
			virDomainFree(*dom);
		*dom = nd;
		return (0);
	case REC_START:
		if (virDomainCreate(*dom) == -1 &&
		    virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID) {
			hv_err(cause, "starting the domain");
			return (-1);
		}
		return (a->a_meta ? hv_set_meta(*dom, a->a_meta, cause) : 0);
	case REC_RESUME:
		if (virDomainResume(*dom) == -1) {
			hv_err(cause, "resuming the domain");
			return (-1);
		}
		return (0);
	case REC_SHUTDOWN:
		if (virDomainShutdown(*dom) == -1 &&
		    virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID) {
			hv_err(cause, "shutting the domain down");
			return (-1);
		}
		return (0);
	case REC_DESTROY:
		if (*dom != NULL && virDomainDestroy(*dom) == -1 &&
		    virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID) {
			hv_err(cause, "destroying the domain");
			return (-1);
		}
		return (0);
	case REC_UNDEFINE:
		if (*dom == NULL)
			return (0);
		if (hv_undefine(*dom) == -1) {
			hv_err(cause, "undefining the domain");
			return (-1);
		}
		virDomainFree(*dom);
		*dom = NULL;
		return (0);
	case REC_DELETE_DISK:
		if (hv_disk_delete(w->w_conn, w->w_id, cause) == -1)
			return (-1);
		if (a->a_console != NULL)
			hv_console_unlink(a->a_console);
		return (0);
	case REC_REBOOT:
		if (virDomainReboot(*dom, 0) == -1) {
			hv_err(cause, "rebooting the domain");
			return (-1);
		}
		return (a->a_meta ? hv_set_meta(*dom, a->a_meta, cause) : 0);
	}
	return (0);
}

static void
hv_op_work_cb(uv_work_t *req)
{
	struct hv_work		*w = req->data;
	struct domxml_meta	 m;
	virDomainPtr		 dom;
	size_t			 i;
	int			 ours;

	dom = w->w_args.a_disk_only ? NULL :
	    virDomainLookupByUUIDString(w->w_conn, w->w_id);
	if (w->w_args.a_disk_only)
		;	/* the domain on this UUID is not ours to look at */
	else if (dom == NULL && virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
		hv_err(&w->w_cause, "looking the domain up");
	else if (dom != NULL) {
		if ((ours = hv_dom_ours(dom, &m, &w->w_cause)) == 1)
			domxml_meta_free(&m);
		else if (ours == 0 && w->w_args.a_act.ra_n == 1 &&
		    w->w_args.a_act.ra_ops[0] == REC_DELETE_DISK) {
			/* Our disk goes; the other domain is not touched. */
			virDomainFree(dom);
			dom = NULL;
		} else if (ours == 0)
			xasprintf(&w->w_cause, "a domain with UUID %s exists and "
			    "is not managed by node %s: it is left alone",
			    w->w_id, ha->conf.name);
	}
	for (i = 0; i < w->w_args.a_act.ra_n && w->w_cause == NULL; i++)
		if (hv_op_one(w, w->w_args.a_act.ra_ops[i], &dom) == -1)
			break;
	if (dom != NULL)
		virDomainFree(dom);
	w->w_obs_ok = hv_read_one(w->w_conn, w->w_id, &w->w_obs,
	    w->w_cause ? NULL : &w->w_cause) == 0;
	virConnectClose(w->w_conn);
}

static void
hv_read_work_cb(uv_work_t *req)
{
	struct hv_work	*w = req->data;

	w->w_obs_ok = hv_read_one(w->w_conn, w->w_id, &w->w_obs,
	    &w->w_cause) == 0;
	virConnectClose(w->w_conn);
}

/* The id of a volume of ours ("<uuid>.qcow2"), or -1. */
static int
hv_volume_id(const char *name, char id[VIR_UUID_STRING_BUFLEN])
{
	size_t	 len = strlen(name);

	if (len != VIR_UUID_STRING_BUFLEN - 1 + 6 ||
	    strcmp(name + len - 6, ".qcow2") != 0)
		return (-1);
	memcpy(id, name, VIR_UUID_STRING_BUFLEN - 1);
	id[VIR_UUID_STRING_BUFLEN - 1] = '\0';
	return (0);
}

static struct hv_found *
hv_found_add(struct hv_work *w, const char *id)
{
	struct hv_found	*f;
	size_t		 i;

	for (i = 0; i < w->w_nfound; i++)
		if (strcmp(w->w_found[i].f_id, id) == 0)
			return (&w->w_found[i]);
	w->w_found = xrealloc(w->w_found, (w->w_nfound + 1) *
	    sizeof(*w->w_found));
	f = &w->w_found[w->w_nfound++];
	memset(f, 0, sizeof(*f));
	strlcpy(f->f_id, id, sizeof(f->f_id));
	return (f);
}

/* Every domain of ours and every overlay in our pool. */
static void
hv_scan_work_cb(uv_work_t *req)
{
	struct hv_work		*w = req->data;
	virDomainPtr		*doms = NULL;
	virStoragePoolPtr	 pool;
	virStorageVolPtr	*vols = NULL;
	struct domxml_meta	 m;
	struct hv_found		*f;
	char			 id[VIR_UUID_STRING_BUFLEN], *why = NULL;
	int			 n, i;

	if ((n = virConnectListAllDomains(w->w_conn, &doms, 0)) == -1) {
		hv_err(&w->w_cause, "listing the domains");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (virDomainGetUUIDString(doms[i], id) == 0 &&
		    hv_dom_ours(doms[i], &m, &why) == 1) {
			f = hv_found_add(w, id);
			f->f_obs.o_disk = 0;
			/* One that vanished meanwhile is simply not listed. */
			if (hv_read_dom(doms[i], &m, &f->f_obs, &why) == -1)
				w->w_nfound--;
			domxml_meta_free(&m);
		}
		free(why);
		why = NULL;
		virDomainFree(doms[i]);
	}
	free(doms);
	if ((pool = hv_pool(w->w_conn, &w->w_cause)) == NULL)
		goto out;
	/* Notice overlays removed behind libvirt's back. */
	virStoragePoolRefresh(pool, 0);
	if ((n = virStoragePoolListAllVolumes(pool, &vols, 0)) == -1)
		hv_err(&w->w_cause, "listing the volumes");
	for (i = 0; i < n; i++) {
		if (hv_volume_id(virStorageVolGetName(vols[i]), id) == 0)
			hv_found_add(w, id)->f_obs.o_disk = 1;
		virStorageVolFree(vols[i]);
	}
	free(vols);
	virStoragePoolFree(pool);
out:
	virConnectClose(w->w_conn);
}

/* The path of the pool from its XML, or NULL. */
static char *
hv_pool_path(virStoragePoolPtr pool)
{
	char	*xml, *p, *e, *path = NULL;

	if ((xml = virStoragePoolGetXMLDesc(pool, 0)) == NULL)
		return (NULL);
	if ((p = strstr(xml, "<path>")) != NULL &&
	    (e = strstr(p, "</path>")) != NULL)
		path = xstrndup(p + 6, (size_t)(e - p - 6));
	free(xml);
	return (path);
}

static int
hv_pool_ensure(virConnectPtr c, char **path, char **cause)
{
	virStoragePoolPtr	 pool;
	char			*xml;
	int			 rc = -1;

	if ((pool = virStoragePoolLookupByName(c, hv_pool_name)) == NULL) {
		if (virGetLastErrorCode() != VIR_ERR_NO_STORAGE_POOL) {
			hv_err(cause, "looking the storage pool up");
			return (-1);
		}
		xml = domxml_pool(hv_pool_name, hv_pool_dir);
		pool = virStoragePoolDefineXML(c, xml, 0);
		free(xml);
		if (pool == NULL) {
			hv_err(cause, "defining the storage pool");
			return (-1);
		}
		if (virStoragePoolBuild(pool, 0) == -1) {
			hv_err(cause, "building the storage pool");
			goto out;
		}
		virStoragePoolSetAutostart(pool, 1);
	}
	if (virStoragePoolIsActive(pool) != 1 &&
	    virStoragePoolCreate(pool, 0) == -1) {
		hv_err(cause, "starting the storage pool");
		goto out;
	}
	if ((*path = hv_pool_path(pool)) == NULL) {
		hv_err(cause, "reading the storage pool");
		goto out;
	}
	rc = 0;
out:
	virStoragePoolFree(pool);
	return (rc);
}

static void
hv_connect_work_cb(uv_work_t *req)
{
	struct hv_work	*w = req->data;
	const char	*vt = ha->conf.virt_type;
	char		*caps;

	if ((w->w_conn = virConnectOpen(ha->conf.libvirt_uri)) == NULL) {
		xasprintf(&w->w_cause, "%s: %s", ha->conf.libvirt_uri,
		    virGetLastErrorMessage());
		return;
	}
	if ((caps = virConnectGetCapabilities(w->w_conn)) == NULL) {
		hv_err(&w->w_cause, "reading the capabilities");
		goto fail;
	}
	if (strcmp(vt, "kvm") == 0 || strcmp(vt, "qemu") == 0)
		w->w_type = strcmp(vt, "kvm") == 0 ? "kvm" : "qemu";
	else
		w->w_type = domxml_caps_has_kvm(caps) ? "kvm" : "qemu";
	w->w_label = domxml_caps_dac_label(caps);
	free(caps);
	if (hv_pool_ensure(w->w_conn, &w->w_pool_path, &w->w_cause) == -1)
		goto fail;
	/* Drivers without a remote socket (test:///) have nothing to close. */
	virConnectRegisterCloseCallback(w->w_conn, hv_close_cb, NULL, NULL);
	w->w_cb_id = virConnectDomainEventRegisterAny(w->w_conn, NULL,
	    VIR_DOMAIN_EVENT_ID_LIFECYCLE,
	    VIR_DOMAIN_EVENT_CALLBACK(hv_lifecycle_cb), NULL, NULL);
	if (w->w_cb_id == -1) {
		hv_err(&w->w_cause, "registering for domain events");
		virConnectUnregisterCloseCallback(w->w_conn, hv_close_cb);
		goto fail;
	}
	return;
fail:
	virConnectClose(w->w_conn);
	w->w_conn = NULL;
}

static void
hv_disconnect_work_cb(uv_work_t *req)
{
	struct hv_work	*w = req->data;

	if (w->w_cb_id != -1)
		virConnectDomainEventDeregisterAny(w->w_conn, w->w_cb_id);
	virConnectUnregisterCloseCallback(w->w_conn, hv_close_cb);
	virConnectClose(w->w_conn);
}

/* ---- the loop thread: VMs ---------------------------------------------- */

static struct hv_vm *
hv_vm_find(const char *id)
{
	struct hv_vm	*vm;

	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		if (strcmp(vm->v_id, id) == 0)
			return (vm);
	return (NULL);
}

static struct hv_vm *
hv_vm_new(const char *id)
{
	struct hv_vm	*vm = xcalloc(1, sizeof(*vm));

	vm->v_id = xstrdup(id);
	vm->v_since = util_now();
	vm->v_disk = 0;
	vm->v_con_fd = -1;
	TAILQ_INSERT_TAIL(&hv_vms, vm, v_entry);
	return (vm);
}

static void
hv_vm_free(struct hv_vm *vm)
{
	TAILQ_REMOVE(&hv_vms, vm, v_entry);
	if (vm->v_imgreq != NULL)
		vm->v_imgreq->r_vm = NULL;
	if (vm->v_con_fd != -1)
		close(vm->v_con_fd);
	free(vm->v_id);
	free(vm->v_error);
	free(vm->v_img_key);
	free(vm->v_img_disk);
	free(vm->v_img_kernel);
	free(vm->v_img_initrd);
	free(vm);
}

static char *
hv_console_path(const struct hv_vm *vm)
{
	char	*p;

	xasprintf(&p, "%s/%s.log", hv_console_dir, vm->v_id);
	return (p);
}

static void
hv_vm_set_error(struct hv_vm *vm, const char *error)
{
	if (error == NULL && vm->v_error == NULL)
		return;
	if (error != NULL && vm->v_error != NULL &&
	    strcmp(error, vm->v_error) == 0)
		return;
	free(vm->v_error);
	vm->v_error = error ? xstrdup(error) : NULL;
	vm->v_changed = 1;
}

/* Derive the reported state and reason; a new state restarts "since". */
static void
hv_vm_status(struct hv_vm *vm)
{
	const char	*state = NULL, *reason = "";
	int		 ours = vm->v_known && vm->v_obs.o_exists &&
			    !vm->v_obs.o_foreign;

	if (vm->v_spec == NULL && !ours && !vm->v_busy && !vm->v_disk &&
	    vm->v_imgreq == NULL)
		state = "deleted";	/* nothing of it is left here */
	else if (vm->v_spec != NULL && vm->v_spec->adopt_only && !ours &&
	    !vm->v_busy && vm->v_known)
		state = "absent";	/* restored, and not here: not made */
	else if (ours) {
		state = hv_state_word(vm->v_obs.o_state);
		reason = hv_reason_word(vm->v_obs.o_state, vm->v_obs.o_reason);
	} else if (vm->v_spec != NULL && strcmp(vm->v_spec->power,
	    "parked") == 0 && vm->v_error == NULL)
		state = "parked";	/* its disk only, for its next node */
	else if (vm->v_img == HV_IMG_FETCHING && vm->v_error == NULL)
		state = "downloading";	/* a retry stays "error" till known */
	else if (vm->v_obs.o_foreign || (vm->v_error != NULL && !vm->v_busy))
		state = "error";
	else if (vm->v_spec != NULL)
		state = "creating";
	if (state == NULL)
		return;
	if (strcmp(state, vm->v_state) != 0) {
		strlcpy(vm->v_state, state, sizeof(vm->v_state));
		vm->v_since = util_now();
		vm->v_changed = 1;
	}
	if (strcmp(reason, vm->v_reason) != 0) {
		strlcpy(vm->v_reason, reason, sizeof(vm->v_reason));
		vm->v_changed = 1;
	}
}

/* Take in a fresh reading; a stop we did not ask for holds the restart. */
static void
hv_vm_observe(struct hv_vm *vm, const struct hv_obs *o)
{
	int		 was_up, is_up;
	uint64_t	 now = util_mono_ms(), hold;

	was_up = vm->v_known && vm->v_obs.o_exists && !vm->v_obs.o_foreign &&
	    hv_up(vm->v_obs.o_state);
	is_up = o->o_exists && !o->o_foreign && hv_up(o->o_state);
	if (was_up && !is_up && !vm->v_expect_stop && vm->v_spec != NULL &&
	    strcmp(vm->v_spec->power, "running") == 0) {
		if (now - vm->v_started_at > HV_HOLD_RESET_MS)
			vm->v_nstops = 0;
		hold = (uint64_t)HV_HOLD_MIN_MS << (vm->v_nstops < 6 ?
		    vm->v_nstops : 6);
		if (hold > HV_HOLD_MAX_MS)
			hold = HV_HOLD_MAX_MS;
		vm->v_nstops++;
		vm->v_hold_until = now + hold;
		log_notice("hv: VM %s stopped by itself (%s); restarting it in "
		    "%llu s", vm->v_id, hv_reason_word(o->o_state, o->o_reason),
		    (unsigned long long)hold / 1000);
	}
	if (!is_up) {
		vm->v_expect_stop = 0;
		vm->v_shutdown_at = 0;
	} else if (!was_up)
		vm->v_started_at = now;
	if (!vm->v_known || memcmp(o, &vm->v_obs, sizeof(*o)) != 0)
		vm->v_changed = 1;
	vm->v_obs = *o;
	if (o->o_disk >= 0)
		vm->v_disk = o->o_disk;
	vm->v_known = 1;
}

static struct hv_work *
hv_work_new(enum hv_kind kind)
{
	struct hv_work	*w = xcalloc(1, sizeof(*w));

	w->w_req.data = w;
	w->w_kind = kind;
	w->w_cb_id = -1;
	return (w);
}

static void
hv_work_free(struct hv_work *w)
{
	free(w->w_cause);
	free(w->w_label);
	free(w->w_pool_path);
	free(w->w_found);
	free(w->w_args.a_xml);
	free(w->w_args.a_meta);
	free(w->w_args.a_backing);
	free(w->w_args.a_format);
	free(w->w_args.a_owner);
	free(w->w_args.a_console);
	free(w->w_args.a_incoming);
	free(w->w_args.a_disk);
	free(w);
}

static void
hv_queue_work(struct hv_work *w, uv_work_cb work, uv_after_work_cb after)
{
	hv_inflight++;
	if (uv_queue_work(ha->loop, &w->w_req, work, after) != 0)
		fatalx("hv: uv_queue_work failed");
}

static void	hv_vm_work_after_cb(uv_work_t *, int);

static void
hv_image_key(const Opsn__ImageRef *img, char **key)
{
	xasprintf(key, "%s:%s:%s:%s", img->format, img->disk_sha256,
	    img->kernel_sha256, img->initrd_sha256);
}

static void
hv_image_done_cb(void *arg, const struct imgcache_result *res)
{
	struct hv_imgreq	*r = arg;
	struct hv_vm		*vm = r->r_vm;
	char			*msg;

	if (vm != NULL && !hv_stopping) {
		vm->v_imgreq = NULL;
		if (res->ir_ok) {
			vm->v_img = HV_IMG_READY;
			free(vm->v_img_disk);
			free(vm->v_img_kernel);
			free(vm->v_img_initrd);
			vm->v_img_disk = xstrdup(res->ir_disk);
			vm->v_img_kernel = res->ir_kernel ?
			    xstrdup(res->ir_kernel) : NULL;
			vm->v_img_initrd = res->ir_initrd ?
			    xstrdup(res->ir_initrd) : NULL;
			hv_vm_set_error(vm, NULL);
		} else {
			vm->v_img = HV_IMG_FAILED;
			/* imgcache's error names the image already. */
			if (res->ir_error != NULL)
				msg = xstrdup(res->ir_error);
			else
				xasprintf(&msg, "image %s: failed",
				    r->r_img->name);
			log_warnx("hv: VM %s: %s", vm->v_id, msg);
			hv_vm_set_error(vm, msg);
			free(msg);
			if (hv_desired != NULL)
				vm->v_gen = hv_desired->generation;
		}
		hv_vm_status(vm);
		hv_report_soon();
		if (vm->v_img == HV_IMG_READY)
			hv_kick(vm);
	} else if (vm != NULL)
		vm->v_imgreq = NULL;
	opsn__image_ref__free_unpacked(r->r_img, NULL);
	free(r->r_url);
	free(r);
}

/* A deep copy of an image reference (opsn__image_ref__free_unpacked). */
Opsn__ImageRef *
hv_image_copy(const Opsn__ImageRef *img)
{
	uint8_t		*buf;
	size_t		 len;
	Opsn__ImageRef	*copy;

	len = opsn__image_ref__get_packed_size(img);
	buf = xmalloc(len ? len : 1);
	opsn__image_ref__pack(img, buf);
	if ((copy = opsn__image_ref__unpack(NULL, len, buf)) == NULL)
		fatalx("hv: copying an image reference");
	free(buf);
	return (copy);
}

static void
hv_vm_fetch(struct hv_vm *vm, char *key)
{
	struct hv_imgreq	*r = xcalloc(1, sizeof(*r));

	r->r_vm = vm;
	r->r_img = hv_image_copy(vm->v_spec->image);
	r->r_url = xstrdup(hv_desired->image_url);
	vm->v_imgreq = r;
	vm->v_img = HV_IMG_FETCHING;
	free(vm->v_img_key);
	vm->v_img_key = key;
	hv_vm_status(vm);
	hv_report_soon();
	if (hv_hooks.hh_image != NULL)
		hv_hooks.hh_image(r->r_img, r->r_url, hv_image_done_cb, r);
	else
		imgcache_ensure(r->r_img, r->r_url, hv_image_done_cb, r);
}

static void
hv_ctx(const struct hv_vm *vm, struct domxml_ctx *ctx, char *disk,
    char *console, uint64_t reboot_seq)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->dx_node = ha->conf.name;
	ctx->dx_generation = hv_desired->generation;
	ctx->dx_reboot_seq = reboot_seq;
	ctx->dx_type = hv_type;
	ctx->dx_disk = disk;
	ctx->dx_kernel = vm->v_img_kernel;
	ctx->dx_initrd = vm->v_img_initrd;
	ctx->dx_console_log = console;
	ctx->dx_dac_label = hv_dac_label;
	/* Without a DAC label to run with, keep libvirt off the base. */
	if (hv_dac_label == NULL) {
		ctx->dx_backing = vm->v_img_disk;
		ctx->dx_backing_format = vm->v_spec->image->format;
	}
}

/* Once: say that a VM the controller moved away loses its copy here. */
static void
hv_say_moved(struct hv_vm *vm)
{
	size_t	 i;

	for (i = 0; hv_desired != NULL && i < hv_desired->n_moved &&
	    !vm->v_moved_said; i++)
		if (strcmp(hv_desired->moved[i], vm->v_id) == 0) {
			log_notice("hv: VM %s was rebuilt on another node "
			    "while this one was away: removing its copy here, "
			    "never starting it", vm->v_id);
			vm->v_moved_said = 1;
		}
}

/* Delete a VM's overlay without looking at the domain on its UUID. */
static void
hv_delete_disk_only(struct hv_vm *vm)
{
	struct hv_work	*w = hv_work_new(HV_W_OP);

	log_info("hv: VM %s: delete_disk (its UUID is another node's domain)",
	    vm->v_id);
	w->w_args.a_act.ra_ops[0] = REC_DELETE_DISK;
	w->w_args.a_act.ra_n = 1;
	w->w_args.a_disk_only = 1;
	w->w_args.a_console = hv_console_path(vm);
	w->w_vm = vm;
	strlcpy(w->w_id, vm->v_id, sizeof(w->w_id));
	w->w_conn = hv_conn;
	virConnectRef(hv_conn);
	vm->v_busy = 1;
	vm->v_dirty = 0;
	vm->v_touched = ++hv_epoch;
	hv_queue_work(w, hv_op_work_cb, hv_vm_work_after_cb);
}

/* Decide for one VM and start its operations. */
static void
hv_kick(struct hv_vm *vm)
{
	const Opsn__VmSpec	*s = vm->v_spec;
	struct rec_desired	 d;
	struct rec_observed	 o;
	struct rec_action	 act;
	struct domxml_ctx	 ctx;
	struct hv_work		*w;
	struct hv_opargs	*a;
	char			*key, *disk, *console, ops[128];
	uint64_t		 now = util_mono_ms();

	if (hv_stopping || hv_cstate != HV_UP || !hv_scanned ||
	    hv_desired == NULL)
		return;
	if (vm->v_busy) {
		vm->v_dirty = 1;
		return;
	}
	if (vm->v_blocked || vm->v_invalid || vm->v_imgreq != NULL)
		return;
	if (vm->v_obs.o_foreign) {
		/*
		 * Its UUID is taken by a domain that is not ours (on a shared
		 * daemon, the node it moved to): that domain is left alone,
		 * but a disk of ours that is no longer wanted still goes.
		 */
		if (s == NULL && vm->v_disk) {
			hv_say_moved(vm);
			hv_delete_disk_only(vm);
			return;
		}
		vm->v_gen = hv_desired->generation;
		hv_vm_status(vm);
		hv_report_soon();
		return;
	}
	if ((s == NULL && (vm->v_held || hv_epoch_sweep)) ||
	    (s != NULL && s->adopt_only)) {
		/*
		 * Held, or not listed before the scan that decides whether to
		 * hold it; or a restored controller's VM, which it learns from
		 * our report (absent when it is not here): touch nothing.
		 */
		vm->v_gen = hv_desired->generation;
		hv_vm_status(vm);
		hv_report_soon();
		return;
	}
	memset(&d, 0, sizeof(d));
	memset(&o, 0, sizeof(o));
	if (s == NULL)
		hv_say_moved(vm);
	if (s != NULL) {
		d.rd_present = 1;
		d.rd_power = strcmp(s->power, "running") == 0 ?
		    REC_POWER_RUNNING : strcmp(s->power, "parked") == 0 ?
		    REC_POWER_PARKED : REC_POWER_STOPPED;
		d.rd_vcpus = s->vcpus;
		d.rd_memory_mib = s->memory_mib;
		d.rd_reboot_seq = s->reboot_seq;
	}
	o.ro_state = hv_rec_state(&vm->v_obs);
	o.ro_disk = vm->v_disk;
	o.ro_vcpus = vm->v_obs.o_vcpus;
	o.ro_memory_mib = vm->v_obs.o_memory_mib;
	o.ro_reboot_seq = vm->v_obs.o_reboot_seq;
	o.ro_shutdown_sent = vm->v_shutdown_at != 0;
	o.ro_shutdown_expired = vm->v_shutdown_at != 0 &&
	    now - vm->v_shutdown_at >= HV_SHUTDOWN_TIMEOUT_MS;
	o.ro_start_held = vm->v_hold_until > now;
	reconcile_decide(&d, &o, &act);
	if (act.ra_ops[0] == REC_NONE) {
		/* Where it should be: whatever failed before is behind. */
		hv_vm_set_error(vm, NULL);
		vm->v_rounds = 0;
		vm->v_gen = hv_desired->generation;
		hv_vm_status(vm);
		hv_report_soon();
		return;
	}
	reconcile_format(&act, ops, sizeof(ops));
	if (++vm->v_rounds > HV_MAX_ROUNDS) {
		log_warnx("hv: VM %s: still not converged after %d rounds "
		    "(%s)", vm->v_id, HV_MAX_ROUNDS, ops);
		hv_vm_set_error(vm, "the agent could not bring the VM to its "
		    "desired state");
		vm->v_blocked = 1;
		vm->v_gen = hv_desired->generation;
		hv_vm_status(vm);
		hv_report_soon();
		return;
	}
	if (reconcile_has(&act, REC_CREATE_DISK) ||
	    reconcile_has(&act, REC_DEFINE) ||
	    reconcile_has(&act, REC_SET_VCPUS_MEMORY)) {
		hv_image_key(s->image, &key);
		if (vm->v_img != HV_IMG_READY || vm->v_img_key == NULL ||
		    strcmp(key, vm->v_img_key) != 0) {
			if (vm->v_img == HV_IMG_FAILED && vm->v_img_key != NULL &&
			    strcmp(key, vm->v_img_key) == 0) {
				free(key);	/* retried on the next trigger */
				return;
			}
			hv_vm_fetch(vm, key);
			return;
		}
		free(key);
	}

	log_info("hv: VM %s: %s", vm->v_id, ops);
	w = hv_work_new(HV_W_OP);
	a = &w->w_args;
	a->a_act = act;
	w->w_vm = vm;
	strlcpy(w->w_id, vm->v_id, sizeof(w->w_id));
	w->w_conn = hv_conn;
	virConnectRef(hv_conn);
	xasprintf(&disk, "%s/%s.qcow2", hv_disk_dir, vm->v_id);
	console = hv_console_path(vm);
	if (reconcile_has(&act, REC_DEFINE)) {
		hv_ctx(vm, &ctx, disk, console, s->reboot_seq);
		a->a_xml = domxml_build(s, &ctx);
	} else if (reconcile_has(&act, REC_SET_VCPUS_MEMORY)) {
		/* A redefinition is no reboot: keep the sequence applied. */
		hv_ctx(vm, &ctx, disk, console, vm->v_obs.o_reboot_seq);
		a->a_xml = domxml_build(s, &ctx);
	}
	if (s != NULL && !reconcile_has(&act, REC_DEFINE) &&
	    (reconcile_has(&act, REC_START) ||
	    reconcile_has(&act, REC_REBOOT)) &&
	    s->reboot_seq > vm->v_obs.o_reboot_seq) {
		/* A fresh boot answers a reboot request too. */
		hv_ctx(vm, &ctx, disk, console, s->reboot_seq);
		a->a_meta = domxml_metadata(s, &ctx);
	}
	if (reconcile_has(&act, REC_CREATE_DISK)) {
		a->a_backing = xstrdup(vm->v_img_disk);
		a->a_format = xstrdup(s->image->format);
		a->a_bytes = s->disk_bytes;
		a->a_owner = hv_dac_label ? xstrdup(hv_dac_label) : NULL;
		a->a_incoming = migrate_incoming_path(vm->v_id);
		a->a_disk = xstrdup(disk);
	}
	if (s == NULL && reconcile_has(&act, REC_DELETE_DISK))
		a->a_console = xstrdup(console);
	free(disk);
	free(console);
	if (reconcile_has(&act, REC_SHUTDOWN) ||
	    reconcile_has(&act, REC_DESTROY) ||
	    reconcile_has(&act, REC_UNDEFINE))
		vm->v_expect_stop = 1;
	vm->v_busy = 1;
	vm->v_dirty = 0;
	vm->v_touched = ++hv_epoch;
	hv_vm_status(vm);
	hv_queue_work(w, hv_op_work_cb, hv_vm_work_after_cb);
}

/* Read one VM again (after an event). */
static void
hv_vm_read(struct hv_vm *vm)
{
	struct hv_work	*w;

	if (hv_stopping || hv_cstate != HV_UP)
		return;
	if (vm->v_busy) {
		vm->v_refresh = 1;
		return;
	}
	w = hv_work_new(HV_W_READ);
	w->w_vm = vm;
	strlcpy(w->w_id, vm->v_id, sizeof(w->w_id));
	w->w_conn = hv_conn;
	virConnectRef(hv_conn);
	vm->v_busy = 1;
	vm->v_refresh = 0;
	vm->v_touched = ++hv_epoch;
	hv_queue_work(w, hv_read_work_cb, hv_vm_work_after_cb);
}

static void
hv_vm_work_after_cb(uv_work_t *req, int status)
{
	struct hv_work	*w = req->data;
	struct hv_vm	*vm = w->w_vm;
	int		 op = w->w_kind == HV_W_OP;

	hv_inflight--;
	vm->v_busy = 0;
	if (w->w_cause != NULL) {
		log_warnx("hv: VM %s: %s", vm->v_id, w->w_cause);
		if (op) {
			hv_vm_set_error(vm, w->w_cause);
			vm->v_blocked = 1;
			if (hv_desired != NULL)
				vm->v_gen = hv_desired->generation;
		}
	} else if (op)
		hv_vm_set_error(vm, NULL);
	if (op && w->w_cause == NULL &&
	    reconcile_has(&w->w_args.a_act, REC_SHUTDOWN))
		vm->v_shutdown_at = util_mono_ms();
	if (w->w_obs_ok)
		hv_vm_observe(vm, &w->w_obs);
	hv_vm_status(vm);
	hv_report_soon();
	hv_work_free(w);
	if (hv_stopping) {
		hv_finish();
		return;
	}
	if (vm->v_refresh)
		hv_vm_read(vm);
	else
		hv_kick(vm);
}

/* ---- reports ------------------------------------------------------------ */

static int
hv_send(uint16_t type, const ProtobufCMessage *m)
{
	if (hv_hooks.hh_send != NULL)
		return (hv_hooks.hh_send(type, m));
	return (link_send(type, m));
}

static int
hv_link_up(void)
{
	return (hv_hooks.hh_send != NULL || link_is_up());
}

/* The generation every VM has been brought to (or reported failing at). */
static uint64_t
hv_applied(void)
{
	struct hv_vm	*vm;

	if (hv_desired == NULL)
		return (hv_applied_gen);
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		if ((vm->v_spec != NULL || strcmp(vm->v_state, "deleted") != 0)
		    && vm->v_gen != hv_desired->generation)
			return (hv_applied_gen);
	hv_applied_gen = hv_desired->generation;
	return (hv_applied_gen);
}

static void
hv_report(int full)
{
	Opsn__ObservedState	 os = OPSN__OBSERVED_STATE__INIT;
	Opsn__VmStatus		*st, **sts;
	struct hv_vm		*vm, *next;
	size_t			 n = 0;
	uint64_t		 gen;
	int			 saved = 0;

	sts = NULL;
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		if ((!full && !vm->v_changed) || *vm->v_state == '\0')
			continue;
		sts = xrealloc(sts, (n + 1) * sizeof(*sts));
		st = xcalloc(1, sizeof(*st));
		opsn__vm_status__init(st);
		st->id = vm->v_spec ? vm->v_spec->id : vm->v_id;
		st->state = vm->v_state;
		st->reason = vm->v_reason;
		st->since = vm->v_since;
		st->error = vm->v_error ? vm->v_error : "";
		st->generation = vm->v_gen;
		if (vm->v_held && vm->v_spec == NULL) {
			st->held = 1;
			st->name = vm->v_obs.o_name;
		}
		if (vm->v_obs.o_exists && !vm->v_obs.o_foreign) {
			st->vcpus = vm->v_obs.o_vcpus;
			st->memory_mib = vm->v_obs.o_memory_mib;
			st->reboot_seq = vm->v_obs.o_reboot_seq;
			st->pid = vm->v_obs.o_pid;
		}
		sts[n++] = st;
	}
	gen = hv_applied();
	/* A generation that changed nothing here is still news to report. */
	if (full || n > 0 || gen != hv_reported_gen ||
	    hv_ctl_epoch != hv_reported_epoch) {
		os.generation = gen;
		os.epoch = hv_ctl_epoch;
		hv_reported_gen = gen;
		hv_reported_epoch = hv_ctl_epoch;
		os.full = full;
		os.vms = sts;
		os.n_vms = n;
		if (hv_send(MSG_OBSERVED_STATE, &os.base) == -1)
			log_debug("hv: observed state not sent (no link)");
	}
	while (n > 0)
		free(sts[--n]);
	free(sts);
	/* A VM reported deleted is forgotten; a full report omits it. */
	for (vm = TAILQ_FIRST(&hv_vms); vm != NULL; vm = next) {
		next = TAILQ_NEXT(vm, v_entry);
		vm->v_changed = 0;
		if (strcmp(vm->v_state, "deleted") == 0 && vm->v_spec == NULL &&
		    !vm->v_busy && vm->v_imgreq == NULL) {
			/* A held VM removed by hand is no longer held. */
			saved |= vm->v_held;
			hv_vm_free(vm);
		}
	}
	if (saved)
		hv_state_save();
}

static void
hv_report_cb(uv_timer_t *t)
{
	hv_report(0);
}

static void
hv_report_soon(void)
{
	if (!hv_stopping && !uv_is_active((uv_handle_t *)&hv_report_timer))
		uv_timer_start(&hv_report_timer, hv_report_cb,
		    HV_REPORT_DELAY_MS, 0);
}

/* ---- consoles ----------------------------------------------------------- */

static void
hv_console_send(struct hv_vm *vm, const uint8_t *data, size_t len)
{
	Opsn__ConsoleData	 cd = OPSN__CONSOLE_DATA__INIT;

	cd.vm_id = vm->v_spec ? vm->v_spec->id : vm->v_id;
	cd.offset = vm->v_con_off;
	cd.data.data = (uint8_t *)data;
	cd.data.len = len;
	cd.reset = vm->v_con_reset;
	hv_send(MSG_CONSOLE_DATA, &cd.base);
	vm->v_con_reset = 0;
	vm->v_con_off += len;
}

/* Open the VM's log; tail: start at most HV_CONSOLE_TAIL from its end. */
static int
hv_console_open(struct hv_vm *vm, int tail)
{
	struct stat	 st;
	char		*path = hv_console_path(vm);
	int		 fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd == -1)
		return (-1);
	if (fstat(fd, &st) == -1) {
		close(fd);
		return (-1);
	}
	if (vm->v_con_fd != -1)
		close(vm->v_con_fd);
	vm->v_con_fd = fd;
	vm->v_con_ino = st.st_ino;
	vm->v_con_off = 0;
	if (tail && st.st_size > HV_CONSOLE_TAIL)
		vm->v_con_off = (uint64_t)st.st_size - HV_CONSOLE_TAIL;
	vm->v_con_reset = 1;
	return (0);
}

/*
 * Send what virtlogd appended since the last tick. The old file stays open
 * across a rotation, so its last bytes are read before the new file. The
 * reads are small and from a local file: they stay on the loop thread.
 */
static void
hv_console_poll(struct hv_vm *vm)
{
	static uint8_t	 buf[HV_CONSOLE_FRAME];
	struct stat	 st, cur;
	char		*path;
	ssize_t		 n;
	int		 frames = 0;

	if (!hv_link_up())
		return;
	/* A log found for the first time (an adopted VM): its tail only. */
	if (vm->v_con_fd == -1 && hv_console_open(vm, 1) == -1)
		return;
	while (frames < HV_CONSOLE_FRAMES) {
		n = pread(vm->v_con_fd, buf, sizeof(buf), (off_t)vm->v_con_off);
		if (n <= 0)
			break;
		hv_console_send(vm, buf, (size_t)n);
		frames++;
	}
	if (frames == HV_CONSOLE_FRAMES || fstat(vm->v_con_fd, &cur) == -1)
		return;
	if ((uint64_t)cur.st_size < vm->v_con_off) {
		/* Truncated in place: a new stream from its start. */
		vm->v_con_off = 0;
		vm->v_con_reset = 1;
		return;
	}
	path = hv_console_path(vm);
	if (stat(path, &st) == 0 && st.st_ino != vm->v_con_ino)
		hv_console_open(vm, 0);	/* rotated: read the new file next */
	free(path);
}

/* After a (re)connection: the last HV_CONSOLE_TAIL bytes, as a new stream. */
static void
hv_console_tail(struct hv_vm *vm)
{
	struct stat	 st;

	if (hv_console_open(vm, 1) == -1)
		return;
	/* An empty frame still tells the controller the stream restarted. */
	if (fstat(vm->v_con_fd, &st) == 0 &&
	    (uint64_t)st.st_size <= vm->v_con_off)
		hv_console_send(vm, (const uint8_t *)"", 0);
	hv_console_poll(vm);
}

/* ---- the loop thread: connection, scans, timers ------------------------ */

static void
hv_reconnect_cb(uv_timer_t *t)
{
	hv_connect();
}

static void
hv_reconnect_later(void)
{
	uint64_t	 delay;
	unsigned	 shift = hv_conn_failures < 10 ? hv_conn_failures : 10;

	if (hv_stopping)
		return;
	delay = (uint64_t)HV_RECONNECT_MIN_MS << shift;
	if (delay > HV_RECONNECT_MAX_MS)
		delay = HV_RECONNECT_MAX_MS;
	hv_conn_failures++;
	uv_timer_start(&hv_reconnect, hv_reconnect_cb, delay, 0);
}

static void
hv_disconnect_after_cb(uv_work_t *req, int status)
{
	hv_inflight--;
	hv_work_free(req->data);
	if (hv_stopping)
		hv_finish();
}

/* Deregister and close a connection on the thread pool. */
static void
hv_disconnect(virConnectPtr c, int cb_id)
{
	struct hv_work	*w = hv_work_new(HV_W_DISCONNECT);

	w->w_conn = c;
	w->w_cb_id = cb_id;
	hv_queue_work(w, hv_disconnect_work_cb, hv_disconnect_after_cb);
}

static void
hv_conn_lost(void)
{
	if (hv_cstate != HV_UP)
		return;
	log_warnx("hv: lost the connection to %s; reconnecting",
	    ha->conf.libvirt_uri);
	hv_disconnect(hv_conn, hv_cb_id);
	hv_conn = NULL;
	hv_cb_id = -1;
	hv_cstate = HV_DOWN;
	hv_scanned = 0;
	hv_conn_failures = 0;
	hv_reconnect_later();
}

static void
hv_connect_after_cb(uv_work_t *req, int status)
{
	struct hv_work	*w = req->data;

	hv_inflight--;
	if (hv_stopping) {
		if (w->w_conn != NULL)
			hv_disconnect(w->w_conn, w->w_cb_id);
		hv_work_free(w);
		hv_finish();
		return;
	}
	if (w->w_conn == NULL) {
		if (hv_conn_failures == 0)
			log_warnx("hv: libvirt: %s; retrying", w->w_cause);
		else
			log_debug("hv: libvirt: %s", w->w_cause);
		hv_cstate = HV_DOWN;
		hv_work_free(w);
		hv_reconnect_later();
		return;
	}
	hv_conn = w->w_conn;
	hv_cb_id = w->w_cb_id;
	hv_type = w->w_type;
	free(hv_dac_label);
	hv_dac_label = w->w_label;
	w->w_label = NULL;
	if (strcmp(w->w_pool_path, hv_pool_dir) != 0)
		log_warnx("hv: storage pool %s is at %s, not %s; its disks "
		    "stay there", hv_pool_name, w->w_pool_path, hv_pool_dir);
	free(hv_disk_dir);
	hv_disk_dir = w->w_pool_path;
	w->w_pool_path = NULL;
	hv_cstate = HV_UP;
	hv_conn_failures = 0;
	log_notice("hv: connected to %s (domain type %s, pool %s%s)",
	    ha->conf.libvirt_uri, hv_type, hv_pool_name,
	    hv_dac_label ? ", no relabelling" : "");
	hv_work_free(w);
	hv_scan();
}

static void
hv_connect(void)
{
	struct hv_work	*w;

	if (hv_stopping || hv_cstate != HV_DOWN)
		return;
	hv_cstate = HV_CONNECTING;
	w = hv_work_new(HV_W_CONNECT);
	hv_queue_work(w, hv_connect_work_cb, hv_connect_after_cb);
}

static void
hv_scan_after_cb(uv_work_t *req, int status)
{
	struct hv_work	*w = req->data;
	struct hv_found	*f;
	struct hv_vm	*vm;
	struct hv_obs	 absent;
	size_t		 i, nfound = w->w_nfound;
	uint64_t	 t0 = w->w_t0;
	int		 first = !hv_scanned;

	hv_inflight--;
	hv_scanning = 0;
	if (hv_stopping || w->w_cause != NULL) {
		if (w->w_cause != NULL)
			log_warnx("hv: resync: %s", w->w_cause);
		hv_work_free(w);
		if (hv_stopping)
			hv_finish();
		return;
	}
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		vm->v_seen = 0;
	for (i = 0; i < w->w_nfound; i++) {
		f = &w->w_found[i];
		if ((vm = hv_vm_find(f->f_id)) == NULL) {
			vm = hv_vm_new(f->f_id);
			if (f->f_obs.o_exists)
				log_info("hv: adopted VM %s (%s, pid %lld)",
				    f->f_id, hv_state_word(f->f_obs.o_state),
				    (long long)f->f_obs.o_pid);
		}
		vm->v_seen = 1;
		/* A work item that ran meanwhile has fresher news. */
		if (vm->v_busy || vm->v_touched > w->w_epoch)
			continue;
		/* A foreign domain on a VM's UUID is not in a scan. */
		if (!f->f_obs.o_exists && vm->v_obs.o_foreign)
			continue;
		hv_vm_observe(vm, &f->f_obs);
	}
	memset(&absent, 0, sizeof(absent));
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		if (vm->v_seen)
			continue;
		if (vm->v_busy || vm->v_touched > w->w_epoch ||
		    vm->v_obs.o_foreign)
			continue;
		hv_vm_observe(vm, &absent);
	}
	hv_work_free(w);
	hv_scanned = 1;
	if (first)
		log_info("hv: libvirt scanned");
	hv_epoch_swept();
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		/* A resync retries what failed. */
		vm->v_blocked = 0;
		vm->v_rounds = 0;
		if (vm->v_img == HV_IMG_FAILED)
			vm->v_img = HV_IMG_NONE;
		hv_vm_status(vm);
	}
	if (hv_link_up())
		hv_report(1);
	log_debug("hv: resync: %zu domains of ours, %.2f ms", nfound,
	    (double)(uv_hrtime() - t0) / 1e6);
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		hv_kick(vm);
}

static void
hv_scan(void)
{
	struct hv_work	*w;

	if (hv_stopping || hv_cstate != HV_UP || hv_scanning)
		return;
	hv_scanning = 1;
	w = hv_work_new(HV_W_SCAN);
	w->w_conn = hv_conn;
	virConnectRef(hv_conn);
	w->w_epoch = hv_epoch;
	w->w_t0 = uv_hrtime();
	hv_queue_work(w, hv_scan_work_cb, hv_scan_after_cb);
}

static void
hv_resync_cb(uv_timer_t *t)
{
	hv_scan();
}

static void
hv_tick_cb(uv_timer_t *t)
{
	struct hv_vm	*vm;
	uint64_t	 now = util_mono_ms();

	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		if (vm->v_shutdown_at != 0 &&
		    now - vm->v_shutdown_at >= HV_SHUTDOWN_TIMEOUT_MS)
			hv_kick(vm);
		if (vm->v_hold_until != 0 && now >= vm->v_hold_until) {
			vm->v_hold_until = 0;
			hv_kick(vm);
		}
		hv_console_poll(vm);
	}
}

static void
hv_async_cb(uv_async_t *h)
{
	struct hv_event	*q;
	struct hv_vm	*vm;
	virConnectPtr	 lost;
	size_t		 n, i;
	int		 overflow;

	pthread_mutex_lock(&hv_qlock);
	q = hv_queue;
	n = hv_qlen;
	lost = hv_qlost;
	overflow = hv_qoverflow;
	hv_queue = NULL;
	hv_qlen = 0;
	hv_qlost = NULL;
	hv_qoverflow = 0;
	pthread_mutex_unlock(&hv_qlock);

	if (lost != NULL && lost == hv_conn)
		hv_conn_lost();
	for (i = 0; i < n; i++) {
		if ((vm = hv_vm_find(q[i].e_id)) == NULL)
			continue;	/* not one of ours */
		log_debug("hv: VM %s: event %d/%d", vm->v_id, q[i].e_event,
		    q[i].e_detail);
		vm->v_blocked = 0;
		vm->v_rounds = 0;
		hv_vm_read(vm);
	}
	free(q);
	if (overflow)
		hv_scan();
}

/* ---- the controller's epoch and the held VMs ---------------------------- */

#define HV_STATE_FILE	"hv-state"
#define HV_STATE_MAX	(1 << 20)

/* Write the epoch and the held VMs (atomically, fsynced). */
static void
hv_state_save(void)
{
	struct hv_vm	*vm;
	char		*path = enrol_path(ha, HV_STATE_FILE), *buf, *cause = NULL;
	size_t		 len = 0, cap = 256;
	int		 n;

	buf = xmalloc(cap);
	len = (size_t)snprintf(buf, cap, "# opsn-agent: the controller's epoch "
	    "and the VMs held since it changed\nepoch %llu\n",
	    (unsigned long long)hv_ctl_epoch);
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		if (!vm->v_held)
			continue;
		if (len + strlen(vm->v_id) + 8 > cap) {
			cap = (len + strlen(vm->v_id) + 8) * 2;
			buf = xrealloc(buf, cap);
		}
		n = snprintf(buf + len, cap - len, "held %s\n", vm->v_id);
		len += (size_t)n;
	}
	if (util_write_file(path, buf, len, 0600, &cause) == -1) {
		log_warnx("hv: saving %s: %s", path, cause);
		free(cause);
	}
	free(buf);
	free(path);
}

/* Read the epoch and the held VMs back (none yet: epoch 0). */
static void
hv_state_load(void)
{
	char		*path = enrol_path(ha, HV_STATE_FILE), *buf = NULL;
	char		*cause = NULL, *line, *next, id[VIR_UUID_STRING_BUFLEN];
	unsigned long long v;
	struct hv_vm	*vm;
	size_t		 len;

	hv_ctl_epoch = 0;
	if (access(path, F_OK) == -1) {
		free(path);
		return;
	}
	if (util_read_file(path, HV_STATE_MAX, &buf, &len, &cause) == -1) {
		log_warnx("hv: %s", cause);
		free(cause);
		free(path);
		return;
	}
	for (line = buf; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (sscanf(line, "epoch %llu", &v) == 1)
			hv_ctl_epoch = v;
		else if (sscanf(line, "held %36s", id) == 1 &&
		    strlen(id) == VIR_UUID_STRING_BUFLEN - 1) {
			if ((vm = hv_vm_find(id)) == NULL)
				vm = hv_vm_new(id);
			vm->v_held = 1;
		}
	}
	log_info("hv: controller epoch %llu", (unsigned long long)hv_ctl_epoch);
	free(buf);
	free(path);
}

/*
 * A desired state of a new epoch: a controller restored from a backup.
 * What it does not list may have been made after the backup: hold it.
 */
static void
hv_epoch_change(const Opsn__DesiredState *ds)
{
	struct hv_vm	*vm;
	size_t		 i, nheld = 0;

	log_notice("hv: controller epoch %llu (was %llu): the controller was "
	    "restored; VMs it does not list are kept and reported, not "
	    "deleted", (unsigned long long)ds->epoch,
	    (unsigned long long)hv_ctl_epoch);
	hv_ctl_epoch = ds->epoch;
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		for (i = 0; i < ds->n_vms; i++)
			if (strcmp(ds->vms[i]->id, vm->v_id) == 0)
				break;
		if (i == ds->n_vms && strcmp(vm->v_state, "deleted") != 0 &&
		    (vm->v_disk || (vm->v_known && vm->v_obs.o_exists &&
		    !vm->v_obs.o_foreign))) {
			vm->v_held = 1;
			vm->v_changed = 1;
			nheld++;
		}
	}
	if (nheld > 0)
		log_notice("hv: holding %zu VMs unknown to the controller",
		    nheld);
	/* And whatever the next scan finds that it does not list. */
	hv_epoch_sweep = 1;
	hv_state_save();
	hv_scan();
}

/* The scan after an epoch change is merged: hold what it found unlisted. */
static void
hv_epoch_swept(void)
{
	struct hv_vm	*vm;

	if (!hv_epoch_sweep)
		return;
	hv_epoch_sweep = 0;
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		if (vm->v_spec == NULL && !vm->v_held && (vm->v_disk ||
		    (vm->v_obs.o_exists && !vm->v_obs.o_foreign))) {
			log_notice("hv: holding VM %s (%s): unknown to the "
			    "controller", vm->v_id, vm->v_obs.o_name);
			vm->v_held = 1;
			vm->v_changed = 1;
		}
	hv_state_save();
}

/* ---- the generation floor ---------------------------------------------- */

struct hv_genw {
	uv_work_t	 g_req;
	uint64_t	 g_gen;
	uint64_t	 g_epoch;
	char		*g_cause;
};

/* Is (e1, g1) newer than (e2, g2)? Epochs first, then generations. */
static int
hv_gen_newer(uint64_t e1, uint64_t g1, uint64_t e2, uint64_t g2)
{
	return (e1 > e2 || (e1 == e2 && g1 > g2));
}

static char *
hv_gen_path(void)
{
	return (enrol_path(ha, "hv-generation"));
}

static void
hv_gen_work_cb(uv_work_t *req)
{
	struct hv_genw	*g = req->data;
	char		*path = hv_gen_path(), buf[48];
	int		 n;

	/* "GENERATION EPOCH": an older agent reads the generation alone. */
	n = snprintf(buf, sizeof(buf), "%llu %llu\n",
	    (unsigned long long)g->g_gen, (unsigned long long)g->g_epoch);
	util_write_file(path, buf, (size_t)n, 0600, &g->g_cause);
	free(path);
}

static void
hv_gen_after_cb(uv_work_t *req, int status)
{
	struct hv_genw	*g = req->data;

	hv_inflight--;
	hv_gen_saving = 0;
	/* A failed write is not retried before the next generation. */
	if (g->g_cause != NULL)
		log_warnx("hv: saving the generation: %s", g->g_cause);
	if (hv_gen_newer(g->g_epoch, g->g_gen, hv_gen_saved_epoch,
	    hv_gen_saved)) {
		hv_gen_saved = g->g_gen;
		hv_gen_saved_epoch = g->g_epoch;
	}
	free(g->g_cause);
	free(g);
	if (hv_stopping)
		hv_finish();
	else if (hv_gen_newer(hv_gen_floor_epoch, hv_gen_floor,
	    hv_gen_saved_epoch, hv_gen_saved))
		hv_gen_save(hv_gen_floor_epoch, hv_gen_floor);
}

/*
 * Keep the newest (epoch, generation) accepted (one write at a time): a
 * new epoch's generation replaces the floor even when it is lower.
 */
static void
hv_gen_save(uint64_t epoch, uint64_t gen)
{
	struct hv_genw	*g;

	if (hv_gen_newer(epoch, gen, hv_gen_floor_epoch, hv_gen_floor)) {
		hv_gen_floor = gen;
		hv_gen_floor_epoch = epoch;
	}
	if (hv_gen_saving || hv_stopping || !hv_gen_newer(hv_gen_floor_epoch,
	    hv_gen_floor, hv_gen_saved_epoch, hv_gen_saved))
		return;
	g = xcalloc(1, sizeof(*g));
	g->g_req.data = g;
	g->g_gen = hv_gen_floor;
	g->g_epoch = hv_gen_floor_epoch;
	hv_gen_saving = 1;
	hv_inflight++;
	if (uv_queue_work(ha->loop, &g->g_req, hv_gen_work_cb,
	    hv_gen_after_cb) != 0)
		fatalx("hv: uv_queue_work failed");
}

static void
hv_gen_load(void)
{
	char			*path = hv_gen_path(), *buf = NULL, *cause = NULL;
	unsigned long long	 gen = 0, epoch = 0;
	size_t			 len;

	hv_gen_floor = hv_gen_saved = 0;
	hv_gen_floor_epoch = hv_gen_saved_epoch = 0;
	if (util_read_file(path, 64, &buf, &len, &cause) == 0 &&
	    sscanf(buf, "%llu %llu", &gen, &epoch) >= 1) {
		hv_gen_floor = hv_gen_saved = gen;
		hv_gen_floor_epoch = hv_gen_saved_epoch = epoch;
		log_info("hv: generations older than %llu (epoch %llu) are "
		    "refused", gen, epoch);
	}
	free(cause);
	free(buf);
	free(path);
}

/* ---- for migrate.c -------------------------------------------------------- */

/* The overlay of VM id in the pool (caller frees). */
char *
hv_disk_path(const char *id)
{
	char	*p;

	xasprintf(&p, "%s/%s.qcow2", hv_disk_dir, id);
	return (p);
}

/* Is VM id one of ours, shut off, with nothing running on it? */
int
hv_vm_is_off(const char *id)
{
	struct hv_vm	*vm = hv_vm_find(id);

	/* Parked (no domain) or shut off; never foreign, never busy. */
	return (vm != NULL && vm->v_known && !vm->v_obs.o_foreign &&
	    (!vm->v_obs.o_exists || !hv_up(vm->v_obs.o_state)) &&
	    !vm->v_busy && vm->v_disk && vm->v_spec != NULL &&
	    strcmp(vm->v_spec->power, "running") != 0);
}

/* Is VM id in this node's desired state? */
int
hv_vm_wanted(const char *id)
{
	struct hv_vm	*vm = hv_vm_find(id);

	return (vm != NULL && vm->v_spec != NULL);
}

const char *
hv_qemu_label(void)
{
	return (hv_dac_label);
}

const char *
hv_pool_folder(void)
{
	return (hv_disk_dir);
}

/* ---- desired state ------------------------------------------------------ */

static void
hv_desired_state(const uint8_t *p, size_t len)
{
	Opsn__DesiredState	*ds;
	Opsn__VmSpec		*s;
	struct hv_vm		*vm;
	char			*cause = NULL, *key;
	size_t			 i;
	int			 run, held;

	if ((ds = opsn__desired_state__unpack(NULL, len, p)) == NULL) {
		log_warnx("hv: a desired state that does not decode");
		return;
	}
	if (ds->epoch < hv_ctl_epoch) {
		log_warnx("hv: refusing desired generation %llu of controller "
		    "epoch %llu: this node has seen epoch %llu (a controller "
		    "restored from an older backup than another?)",
		    (unsigned long long)ds->generation,
		    (unsigned long long)ds->epoch,
		    (unsigned long long)hv_ctl_epoch);
		opsn__desired_state__free_unpacked(ds, NULL);
		return;
	}
	if (ds->epoch == hv_ctl_epoch && hv_desired != NULL &&
	    ds->generation < hv_desired->generation) {
		log_info("hv: ignoring desired generation %llu (have %llu)",
		    (unsigned long long)ds->generation,
		    (unsigned long long)hv_desired->generation);
		opsn__desired_state__free_unpacked(ds, NULL);
		return;
	}
	if (hv_gen_newer(hv_gen_floor_epoch, hv_gen_floor, ds->epoch,
	    ds->generation)) {
		log_warnx("hv: refusing desired generation %llu (epoch %llu): "
		    "this node has seen generation %llu (epoch %llu)",
		    (unsigned long long)ds->generation,
		    (unsigned long long)ds->epoch,
		    (unsigned long long)hv_gen_floor,
		    (unsigned long long)hv_gen_floor_epoch);
		opsn__desired_state__free_unpacked(ds, NULL);
		return;
	}
	held = 0;
	if (ds->epoch > hv_ctl_epoch)
		hv_epoch_change(ds);
	for (i = 0; i < ds->n_release; i++)
		if ((vm = hv_vm_find(ds->release[i])) != NULL && vm->v_held) {
			log_notice("hv: VM %s released by the controller: it "
			    "goes", vm->v_id);
			vm->v_held = 0;
			held = 1;
		}
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		vm->v_spec = NULL;
	for (i = 0; i < ds->n_vms; i++) {
		s = ds->vms[i];
		if (*s->id == '\0' || strlen(s->id) >= VIR_UUID_STRING_BUFLEN) {
			log_warnx("hv: desired VM with a bad id '%.64s'", s->id);
			continue;
		}
		if ((vm = hv_vm_find(s->id)) == NULL)
			vm = hv_vm_new(s->id);
		else if (vm->v_spec != NULL) {
			log_warnx("hv: VM %s is listed twice", s->id);
			continue;
		}
		vm->v_spec = s;
		if (vm->v_held) {
			/* The controller knows it again. */
			vm->v_held = 0;
			held = 1;
		}
		run = strcmp(s->power, "running") == 0;
		if (run && !vm->v_want_run) {
			/* Started on purpose: no crash hold. */
			vm->v_hold_until = 0;
			vm->v_nstops = 0;
		}
		vm->v_want_run = run;
		vm->v_blocked = 0;
		vm->v_rounds = 0;
		if (vm->v_img == HV_IMG_FAILED && s->image != NULL) {
			hv_image_key(s->image, &key);
			if (vm->v_img_key == NULL ||
			    strcmp(key, vm->v_img_key) != 0 ||
			    hv_desired == NULL ||
			    ds->generation != hv_desired->generation)
				vm->v_img = HV_IMG_NONE;
			free(key);
		}
		vm->v_invalid = domxml_check(s, &cause) == -1;
		if (vm->v_invalid) {
			log_warnx("hv: VM %s: %s", s->id, cause);
			hv_vm_set_error(vm, cause);
			free(cause);
			cause = NULL;
			vm->v_gen = ds->generation;
		}
	}
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		if (vm->v_spec == NULL) {
			vm->v_invalid = 0;
			vm->v_want_run = 0;
			vm->v_blocked = 0;
			vm->v_rounds = 0;
		}
	}
	if (held)
		hv_state_save();
	if (hv_desired != NULL)
		opsn__desired_state__free_unpacked(hv_desired, NULL);
	hv_desired = ds;
	log_info("hv: desired generation %llu (epoch %llu): %zu VMs",
	    (unsigned long long)ds->generation, (unsigned long long)ds->epoch,
	    ds->n_vms);
	hv_gen_save(ds->epoch, ds->generation);
	migrate_desired(ds);
	TAILQ_FOREACH(vm, &hv_vms, v_entry) {
		hv_vm_status(vm);
		hv_kick(vm);
	}
	hv_report_soon();
}

/* ---- role hooks --------------------------------------------------------- */

static int
hv_mkdir(const char *path, char **cause)
{
	if (util_mkdirs(path, 0755, cause) == -1)
		return (-1);
	/* The agent's umask is 077; QEMU must traverse these folders. */
	if (chmod(path, 0755) == -1) {
		xasprintf(cause, "chmod %s: %s", path, strerror(errno));
		return (-1);
	}
	return (0);
}

static int
hv_init(struct agent *a, char **cause)
{
	char	*cache;
	int	 rc;

	ha = a;
	hv_stopping = hv_finished = 0;
	xasprintf(&hv_pool_name, "opsn-%s", a->conf.name);
	if (a->conf.pool_dir != NULL && *a->conf.pool_dir != '\0')
		hv_pool_dir = xstrdup(a->conf.pool_dir);
	else
		xasprintf(&hv_pool_dir, "/var/lib/libvirt/images/opsn-%s",
		    a->conf.name);
	hv_disk_dir = xstrdup(hv_pool_dir);
	xasprintf(&hv_console_dir, "%s/console", hv_pool_dir);
	if (hv_mkdir(hv_pool_dir, cause) == -1 ||
	    hv_mkdir(hv_console_dir, cause) == -1)
		return (-1);
	if (hv_hooks.hh_image == NULL) {
		xasprintf(&cache, "%s/cache", hv_pool_dir);
		rc = imgcache_init(a, cache, cause);
		free(cache);
		if (rc == -1)
			return (-1);
	}
	virSetErrorFunc(NULL, hv_quiet);
	pthread_once(&hv_evonce, hv_event_start);
	if (!hv_evok) {
		xasprintf(cause, "cannot start libvirt's event loop");
		return (-1);
	}
	hv_epoch_sweep = 0;
	hv_reported_gen = hv_reported_epoch = 0;
	hv_state_load();
	uv_async_init(a->loop, &hv_async, hv_async_cb);
	pthread_mutex_lock(&hv_qlock);
	hv_async_open = 1;
	pthread_mutex_unlock(&hv_qlock);
	uv_timer_init(a->loop, &hv_tick);
	uv_timer_init(a->loop, &hv_resync);
	uv_timer_init(a->loop, &hv_report_timer);
	uv_timer_init(a->loop, &hv_reconnect);
	uv_timer_start(&hv_tick, hv_tick_cb, HV_TICK_MS, HV_TICK_MS);
	uv_timer_start(&hv_resync, hv_resync_cb, (uint64_t)a->conf.resync_ms,
	    (uint64_t)a->conf.resync_ms);
	hv_gen_load();
	if (hv_hooks.hh_image == NULL && migrate_init(a, cause) == -1)
		return (-1);
	hv_inited = 1;
	/*
	 * The connection is opened on the thread pool like every other
	 * libvirt call; nothing is decided before its first scan.
	 */
	hv_connect();
	return (0);
}

static void
hv_on_connected(void)
{
	struct hv_vm	*vm;

	if (hv_scanned)
		hv_report(1);
	TAILQ_FOREACH(vm, &hv_vms, v_entry)
		hv_console_tail(vm);
	migrate_on_connected();
}

static void
hv_on_frame(uint16_t type, const uint8_t *payload, size_t len)
{
	switch (type) {
	case MSG_DESIRED_STATE:
		hv_desired_state(payload, len);
		break;
	default:
		log_debug("hv: ignoring message type %u", type);
		break;
	}
}

/* Free everything once no work item is left (the agent is exiting). */
static void
hv_finish(void)
{
	struct hv_vm	*vm;

	if (!hv_stopping || hv_finished || hv_inflight > 0)
		return;
	if (hv_conn != NULL) {
		hv_disconnect(hv_conn, hv_cb_id);
		hv_conn = NULL;
		hv_cb_id = -1;
		return;		/* back here when it is closed */
	}
	hv_finished = 1;
	while ((vm = TAILQ_FIRST(&hv_vms)) != NULL)
		hv_vm_free(vm);
	if (hv_desired != NULL)
		opsn__desired_state__free_unpacked(hv_desired, NULL);
	hv_desired = NULL;
	free(hv_pool_name);
	free(hv_pool_dir);
	free(hv_disk_dir);
	free(hv_console_dir);
	free(hv_dac_label);
	hv_pool_name = hv_pool_dir = hv_disk_dir = hv_console_dir = NULL;
	hv_dac_label = NULL;
	hv_cstate = HV_DOWN;
	hv_scanned = hv_scanning = 0;
	hv_conn_failures = 0;
	hv_applied_gen = 0;
	hv_inited = 0;
}

/*
 * Stop for exit: guests keep running. libvirt's event thread is left
 * running (the process is ending); the connection is closed on the pool.
 */
static void
hv_stop(void)
{
	if (!hv_inited || hv_stopping)
		return;
	hv_stopping = 1;
	uv_timer_stop(&hv_tick);
	uv_timer_stop(&hv_resync);
	uv_timer_stop(&hv_report_timer);
	uv_timer_stop(&hv_reconnect);
	uv_close((uv_handle_t *)&hv_tick, NULL);
	uv_close((uv_handle_t *)&hv_resync, NULL);
	uv_close((uv_handle_t *)&hv_report_timer, NULL);
	uv_close((uv_handle_t *)&hv_reconnect, NULL);
	pthread_mutex_lock(&hv_qlock);
	hv_async_open = 0;
	free(hv_queue);
	hv_queue = NULL;
	hv_qlen = 0;
	pthread_mutex_unlock(&hv_qlock);
	uv_close((uv_handle_t *)&hv_async, NULL);
	if (hv_hooks.hh_image == NULL) {
		migrate_stop();
		imgcache_stop();
	}
	hv_finish();
}

/* Replace the image cache and the link for unit tests. */
void
hv_set_hooks(const struct hv_hooks *h)
{
	if (h != NULL)
		hv_hooks = *h;
	else
		memset(&hv_hooks, 0, sizeof(hv_hooks));
}

const struct role_ops hv_role = {
	"hypervisor", hv_init, hv_on_connected, hv_on_frame, hv_stop
};
