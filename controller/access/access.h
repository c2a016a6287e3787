/*
 * The access module: API tokens, and the router that authenticates and
 * authorizes every call to every module's routes.
 */
#ifndef OPSN_ACCESS_H
#define OPSN_ACCESS_H

struct ctl;

extern const struct ctl_module access_module;

/* Serve every module's routes (after the modules' init). */
int	router_start(struct ctl *, char **cause);
/* A role's rank (admin 3, operator 2, finance and auditor 1), -1 if none. */
int	router_role_rank(const char *role);

#endif
