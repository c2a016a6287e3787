/* The members module: what other modules may ask about a member. */
#ifndef OPSN_MEMBERS_H
#define OPSN_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct api_req;

extern const struct ctl_module members_module;

int	tenants_insee_ok(const char *);
int	tenants_siren_ok(const char *);
/* SIRET: 14 digits, Luhn (La Poste's establishments: digits sum to 5k). */
int	tenants_siret_ok(const char *);
/*
 * The accounting category of a member (commune, groupement, ccas,
 * department, region, other): set, the one set; NULL, its kind's.
 */
const char *tenants_category(const char *kind, const char *set);
/* Printable text of at most max bytes, no control character. */
int	tenants_text_ok(const char *, size_t max);
/* A member by id, INSEE code or SIREN; -1 if none. */
int64_t	tenants_resolve(const char *ref);
/* tenants_resolve, or -1 after replying 404. */
int64_t	tenants_from_path(struct api_req *, const char *ref);
json_t	*tenants_json(int64_t id);
/* May the member get new services (active)? -1 with a reason if not. */
int	tenants_may_grow(int64_t id, char **cause);

#endif
