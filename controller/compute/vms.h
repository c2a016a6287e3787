/* The compute module's own: handlers and what its files share. */
#ifndef OPSN_COMPUTE_VMS_H
#define OPSN_COMPUTE_VMS_H

#include <stddef.h>
#include <stdint.h>

#include "opsn.pb-c.h"

struct api_req;

/* compute/plans.c */
int64_t	plans_find(const char *, int64_t *vcpus, int64_t *mem, int64_t *disk);
void	plans_create(struct api_req *);
void	plans_list(struct api_req *);

/* compute/sched.c */
int64_t	sched_place(int64_t vcpus, int64_t mem_mib, int64_t disk,
	    char **cause);

/* compute/images.c */
void	images_create(struct api_req *);
void	images_upload(struct api_req *);
void	images_list(struct api_req *);
void	images_get(struct api_req *);
void	images_download(struct api_req *);
/* Image id by name if it is ready; -1 otherwise (with *cause). */
int64_t	images_ready_id(const char *name, char **cause);
/* Fill ref for image id (strings owned by the caller: images_ref_free). */
int	images_ref(int64_t id, Opsn__ImageRef *ref);
void	images_ref_free(Opsn__ImageRef *ref);

/* compute/vms.c */
void	vms_create(struct api_req *);
void	vms_list(struct api_req *);
void	vms_get(struct api_req *);
void	vms_start(struct api_req *);
void	vms_stop(struct api_req *);
void	vms_reboot(struct api_req *);
void	vms_delete(struct api_req *);
void	vms_resize(struct api_req *);
void	vms_console(struct api_req *);
/* Send a node its whole desired state (after HELLO and every change). */
void	vms_push(int64_t node_id);
/* Messages from a node's agent. */
void	vms_observed(int64_t node_id, const uint8_t *, size_t);
void	vms_image_progress(int64_t node_id, const uint8_t *, size_t);
void	vms_console_data(int64_t node_id, const uint8_t *, size_t);
/* Bump a node's generation in the caller's transaction (the new one). */
int64_t	vms_bump(int64_t node_id);

/*
 * compute/unknown.c: after a restore from a backup, the VMs its nodes
 * hold that the controller does not know, and the restored VMs learnt
 * back from their nodes.
 */
void	unknown_list(struct api_req *);
void	unknown_delete(struct api_req *);
/* A held VM reported by a node; one reported deleted. */
void	unknown_seen(int64_t node_id, const Opsn__VmStatus *);
void	unknown_gone(int64_t node_id, const char *uuid);
/* A full report: held VMs it no longer lists are gone. */
void	unknown_full(int64_t node_id, const Opsn__ObservedState *);
/* A restored VM's report: adopt it as it is; 1 if the node needs a push. */
int	unknown_adopt(int64_t node_id, const Opsn__VmStatus *);
/* The ids a node may delete although it holds them (caller frees). */
char	**unknown_release_list(int64_t node_id, size_t *n);
/* The module's m_restored hook. */
int	unknown_restored(struct ctl *, char **cause);
struct prom;
void	unknown_metrics(struct prom *);

#endif
