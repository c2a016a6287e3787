/*
 * The access module: API tokens, and the router that authenticates and
 * authorizes every call to every module's routes.
 */
#ifndef OPSN_ACCESS_H
#define OPSN_ACCESS_H

struct ctl;
struct api_principal;
struct api_route;

extern const struct ctl_module access_module;

/* Serve every module's routes (after the modules' init). */
int	router_start(struct ctl *, char **cause);
#ifdef OPSN_FUZZ
void	router_fuzz_start(struct ctl *);
#endif
/* A role's rank (admin 3, operator 2, finance and auditor 1), -1 if none. */
int	router_role_rank(const char *role);
/* Would the router let p call rt (its role and the route's scope)? 1 or 0. */
int	router_allows(const struct api_principal *, const struct api_route *);
/* Every route served, once the router has started. */
const struct api_route *router_routes(size_t *n);

#endif
