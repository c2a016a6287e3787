/* The compute module's own: handlers and what its files share. */
#ifndef OPSN_COMPUTE_VMS_H
#define OPSN_COMPUTE_VMS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "opsn.pb-c.h"
#include "place.h"

struct api_req;

/* compute/plans.c; a plan's size, and a size asked about, within these. */
#define PLAN_VCPUS_MAX		256
#define PLAN_MEMORY_MIN		16		/* MiB */
#define PLAN_MEMORY_MAX		4194304
#define PLAN_DISK_MIN		((int64_t)1 << 20)	/* bytes */
#define PLAN_DISK_MAX		((int64_t)1 << 44)
int	compute_name_ok(const char *);
/* Reply a page of a list ordered by name (sql: cursor ?1, limit ?2). */
void	compute_page_by_name(struct api_req *, const char *sql,
	    json_t *(*row)(sqlite3_stmt *));
int64_t	plans_find(const char *, int64_t *vcpus, int64_t *mem, int64_t *disk);
void	plans_create(struct api_req *);
void	plans_list(struct api_req *);

/* compute/sched.c: the placement engine kept in step with the store */
struct ctl;
int	sched_init(struct ctl *, char **cause);
void	sched_stop(void);
void	sched_rebuild(void);
struct place	*sched_engine(void);
enum place_policy sched_default_policy(void);
/* Bring a node's capacity, settings and state into the model. */
void	sched_node_sync(int64_t node_id);
/* Where a new VM goes (node > 0: that node, if it passes the filters). */
int64_t	sched_decide(const struct place_vm *, enum place_policy,
	    int64_t node, char **cause);
int	sched_claim(int64_t vm_id, const struct place_vm *, int64_t node,
	    char **cause);
void	sched_release(int64_t vm_id);
int	sched_resize(int64_t vm_id, int64_t vcpus, int64_t mem, char **cause);

/* compute/groups.c */
int64_t	groups_find(const char *name);
void	groups_create(struct api_req *);
void	groups_list(struct api_req *);
void	groups_delete(struct api_req *);
/* "group", "policy", "require" of a create request; -1 after replying. */
int	groups_parse_request(struct api_req *, json_t *body,
	    struct place_vm *, int *policy);

/* compute/nodeops.c */
json_t	*nodeops_node_json(int64_t node_id);
void	nodeops_get(struct api_req *);
void	nodeops_set(struct api_req *);
void	nodeops_cordon(struct api_req *);
void	nodeops_uncordon(struct api_req *);
void	nodeops_drain(struct api_req *);
void	nodeops_evacuate(struct api_req *);
void	nodeops_capacity(struct api_req *);
void	nodeops_rebalance(struct api_req *);

/* compute/migrate.c */
int	migrate_init(struct ctl *, char **cause);
void	migrate_stop(void);
void	migrate_tick(void);
int	migrate_active(int64_t vm_id);
json_t	*migrate_vm_json(int64_t vm_id);
/*
 * The columns and joins of a VM's unfinished migration, for a query on
 * vms v: MIGRATE_COLS are read by migrate_json_cols() (NULL: none).
 */
#define MIGRATE_COLS "m.id, m.state, m.reason, ms.name, md.name"
#define MIGRATE_FROM "LEFT JOIN migrations m ON m.id = (SELECT max(id) " \
	"FROM migrations WHERE vm_id = v.id AND state IN ('queued', " \
	"'stopping', 'copying', 'starting')) " \
	"LEFT JOIN nodes ms ON ms.id = m.src_node " \
	"LEFT JOIN nodes md ON md.id = m.dst_node "
json_t	*migrate_json_cols(sqlite3_stmt *, int col);
void	migrate_desired(int64_t node_id, Opsn__DesiredState *);
void	migrate_desired_free(Opsn__DesiredState *);
void	migrate_observed(int64_t node_id, const Opsn__ObservedState *);
void	migrate_agent_msg(int64_t node_id, uint16_t type, const uint8_t *,
	    size_t);
void	migrate_node_fenced(int64_t node_id);

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
/* Bump a node's generation inside the caller's transaction. */
int64_t	vms_bump(int64_t node_id);
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
