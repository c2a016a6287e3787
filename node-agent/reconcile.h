/*
 * What the hypervisor agent does to one VM: a pure function of what the
 * controller wants and what libvirt shows, so every case is a table row in
 * tests/unit/test_agt_reconcile.c.
 */
#ifndef OPSN_RECONCILE_H
#define OPSN_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

enum rec_power {
	REC_POWER_STOPPED,
	REC_POWER_RUNNING,
	REC_POWER_PARKED,	/* migrating away: no domain, the disk kept */
};

struct rec_desired {
	int		 rd_present;	/* 0: the VM must not exist */
	enum rec_power	 rd_power;
	uint32_t	 rd_vcpus;
	uint64_t	 rd_memory_mib;
	uint64_t	 rd_reboot_seq;
};

enum rec_state {
	REC_ABSENT,		/* no domain */
	REC_SHUTOFF,		/* defined, not running */
	REC_RUNNING,		/* also blocked, pmsuspended: QEMU is there */
	REC_PAUSED,
	REC_CRASHED,		/* QEMU is there, the guest is dead */
};

struct rec_observed {
	enum rec_state	 ro_state;
	int		 ro_disk;		/* the overlay volume exists */
	uint32_t	 ro_vcpus;
	uint64_t	 ro_memory_mib;
	uint64_t	 ro_reboot_seq;		/* applied, from our metadata */
	int		 ro_shutdown_sent;	/* graceful shutdown asked */
	int		 ro_shutdown_expired;	/* ... longer than the timeout */
	int		 ro_start_held;		/* stopped by itself lately */
};

enum rec_op {
	REC_NONE,
	REC_CREATE_DISK,
	REC_DEFINE,
	REC_START,
	REC_RESUME,
	REC_SHUTDOWN,		/* graceful; DESTROY follows after a timeout */
	REC_DESTROY,
	REC_UNDEFINE,
	REC_DELETE_DISK,
	REC_SET_VCPUS_MEMORY,	/* stopped only: redefine with new values */
	REC_REBOOT,
};

#define REC_MAX_OPS	4

/* An ordered list of operations; { REC_NONE } when there is nothing to do. */
struct rec_action {
	size_t		 ra_n;
	enum rec_op	 ra_ops[REC_MAX_OPS];
};

/* Decide the operations that bring observed towards desired. */
void		 reconcile_decide(const struct rec_desired *,
		    const struct rec_observed *, struct rec_action *);
/* Does the action list contain op? */
int		 reconcile_has(const struct rec_action *, enum rec_op);
/* The name of an operation ("create_disk", ...). */
const char	*reconcile_op_name(enum rec_op);
/* An action list as text ("create_disk,define,start") into buf. */
void		 reconcile_format(const struct rec_action *, char *buf,
		    size_t len);

#endif
