/* The members module's own handlers. */
#ifndef OPSN_MEMBERS_TENANTS_H
#define OPSN_MEMBERS_TENANTS_H

struct api_req;

/* members/tenants.c */
void	tenants_create(struct api_req *);
void	tenants_list(struct api_req *);
void	tenants_get(struct api_req *);
void	tenants_update(struct api_req *);
void	tenants_suspend(struct api_req *);
void	tenants_withdraw(struct api_req *);
void	tenants_activate(struct api_req *);

/* members/import.c */
void	import_tenants(struct api_req *);

#endif
