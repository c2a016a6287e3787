/*
 * Cold migrations, hypervisor side (migrate.c): a disk server that lets
 * another agent fetch the overlay of a stopped VM, and fetches of the
 * overlays of VMs coming here. What hv.c and migrate.c tell each other.
 */
#ifndef OPSN_AGENT_MIGRATE_H
#define OPSN_AGENT_MIGRATE_H

#include <stdint.h>

#include "agent.h"

/* Listen for other agents; -1 with *cause if the address is unusable. */
int	migrate_init(struct agent *, char **cause);
void	migrate_stop(void);
/* The link is up: announce the disk server, report every fetch again. */
void	migrate_on_connected(void);
/* A desired state was accepted: what to serve and what to fetch now. */
void	migrate_desired(const Opsn__DesiredState *);
/*
 * Where a fetched disk waits until the VM is given to this node (caller
 * frees); hv.c moves it into the pool instead of creating an overlay.
 */
char	*migrate_incoming_path(const char *vm_id);

/* hv.c, for migrate.c */
/* The overlay of VM id in the pool (caller frees). */
char	*hv_disk_path(const char *vm_id);
/* Is VM id shut off here (a domain of ours, not running, nothing busy)? */
int	hv_vm_is_off(const char *vm_id);
/* Is VM id in this node's desired state? */
int	hv_vm_wanted(const char *vm_id);
/* The DAC label QEMU runs with ("+UID:+GID"), or NULL. */
const char *hv_qemu_label(void);
/* A deep copy of an image reference (opsn__image_ref__free_unpacked). */
Opsn__ImageRef *hv_image_copy(const Opsn__ImageRef *);
/* The pool's folder. */
const char *hv_pool_folder(void);

#endif
