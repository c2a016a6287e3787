/* The agents module's own: the listener, node state, enrolment. */
#ifndef OPSN_AGENTS_NODES_H
#define OPSN_AGENTS_NODES_H

#include <stdint.h>
#include <jansson.h>

struct ctl;

/* agents/nodes.c */
int	nodes_init(struct ctl *, char **cause);
void	nodes_stop(void);
/*
 * Revoke a node in the caller's transaction (-1 if there is no such
 * node), then, once it committed, drop it and run the modules' gone hooks.
 */
int	nodes_revoke(const char *name, int64_t *id, char **cause);
void	nodes_revoked(int64_t id);
/* JSON of one node (NULL if none) and of all nodes (array). */
json_t	*nodes_json(const char *name);
struct jsonw;
void	 nodes_list_write(struct jsonw *, const char *after, int limit,
	    char **next);

/* The module's families for GET /metrics. */
struct prom;
void	nodes_metrics(struct prom *);

/* agents/enrol.c */
/* A new join token valid for ttl seconds (caller frees the token). */
int	enrol_join_create(struct ctl *, int64_t ttl, char **token,
	    int64_t *expires, char **cause);
/* Consume a join token for node name: 0, or -1 with a reason for the agent. */
int	enrol_join_consume(struct ctl *, const char *token, const char *name,
	    char **cause);

#endif
