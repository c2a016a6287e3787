/* The members module's own handlers. */
#ifndef OPSN_MEMBERS_TENANTS_H
#define OPSN_MEMBERS_TENANTS_H

#include <stddef.h>

struct api_req;

/* members/tenants.c */
struct ctl;
int	tenants_init(struct ctl *, char **cause);
/* name folded for search into out (len bytes); its length. */
size_t	tenants_fold(const char *name, char *out, size_t len);
void	tenants_create(struct api_req *);
void	tenants_list(struct api_req *);
void	tenants_get(struct api_req *);
void	tenants_update(struct api_req *);
void	tenants_suspend(struct api_req *);
void	tenants_withdraw(struct api_req *);
void	tenants_activate(struct api_req *);

/*
 * What a titre needs of its debtor, fields 0 to TENANT_NACC - 1: siret,
 * address, postcode, town, accounting_category (tenants.c).
 */
#define TENANT_NACC	5
const char *tenants_acc_name(size_t);
/* Is v a valid value of field i? Else *rule says why. */
int	tenants_acc_ok(size_t i, const char *v, const char **rule);

/* members/import.c */
void	import_tenants(struct api_req *);

#endif
