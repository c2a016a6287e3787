/*
 * Titres de recettes: what a closed period's statements become for the
 * public accountant (a PES V2 file, pes.h), with bordereau and titre
 * numbers allocated once and kept. docs/billing.md maps the fields.
 */
#ifndef OPSN_BILLING_TITRE_H
#define OPSN_BILLING_TITRE_H

#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

struct period;

/* The OPSN's accounting identity: [accounting] in the configuration. */
struct titre_conf {
	const char	*tc_siret;	/* IdColl */
	const char	*tc_poste;	/* IdPost: codique of the poste */
	const char	*tc_poste_label;
	const char	*tc_collectivity;	/* CodCol */
	const char	*tc_budget;	/* CodBud */
	const char	*tc_budget_label;
	/*
	 * "KEY=PRODUCT:NATURE ...": the product code (CodProdLoc) and the
	 * revenue account (Nature) of statement lines; KEY is a metric
	 * (vm.vcpu_hours, fee.monthly), a service (vm, mailbox, site), a
	 * line type (fee, contribution, adjustment, late_usage) or "*".
	 */
	const char	*tc_products;
	const char	*tc_lines;	/* "service" or "statement" */
	const char	*tc_fonction;	/* Fonction, or "" */
	const char	*tc_object;	/* ObjPce before the period */
	int		 tc_signed;	/* InfoDematerialisee */
	int64_t		 tc_first_bordereau;	/* a new fiscal year's first */
	int64_t		 tc_first_titre;
};

/* What an export holds. */
struct titre_file {
	char	*tf_content;	/* the PES_Aller file (ISO-8859-1) */
	size_t	 tf_len;
	char	*tf_name;
	/*
	 * {"period","exercise","file","date","sha256","bordereaux":[...],
	 * "titres","total_cents","reduced_cents","warnings":[...]}
	 */
	json_t	*tf_summary;
	int	 tf_new;	/* numbered by this call */
	/* On a refusal for missing data: what is missing, one per entry. */
	json_t	*tf_missing;
};

#define TITRE_EINCOMPLETE	422

/*
 * Titles are worked out on the thread pool and recorded on the loop
 * thread:
 *
 *	titre_prepare(reader, ...)	a snapshot: the stored file (*job
 *					NULL), or a new one to record
 *	titre_commit(writer, job, ...)	in the caller's transaction
 *	titre_job_free(job)
 *
 * titre_prepare fails (-1 with *cause and *status: BILLING_E*, 404, or
 * TITRE_EINCOMPLETE with tf_missing listing what members and the
 * configuration lack) without numbering anything. titre_commit records
 * the numbers and the file (by who, at now), or refuses with 409 if other
 * titres were numbered since the snapshot.
 */
struct titre_job;
int	 titre_prepare(sqlite3 *, const struct titre_conf *,
	    const struct period *, int64_t now, struct titre_file *,
	    struct titre_job **, int *status, char **cause);
int	 titre_commit(sqlite3 *, struct titre_job *, const char *who,
	    int64_t now, struct titre_file *, int *status, char **cause);
void	 titre_job_free(struct titre_job *);
/* Both in the caller's transaction on one connection. */
int	 titre_export(sqlite3 *, const struct titre_conf *,
	    const struct period *, const char *who, int64_t now,
	    struct titre_file *, int *status, char **cause);
void	 titre_file_clear(struct titre_file *);

struct api_req;
/* GET /v1/billing-periods/{period}/pes */
void	 titre_route_pes(struct api_req *);

#endif
