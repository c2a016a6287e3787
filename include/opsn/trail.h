/*
 * The audit trail's evidence, shared by the controller and opsnctl's
 * offline check: the hash chain of the records, and the checkpoints that
 * sign the chain's head with a key kept outside the database. Anyone who
 * can write the database can recompute the chain; no one without the key
 * can sign a checkpoint over the recomputed one.
 */
#ifndef OPSN_TRAIL_H
#define OPSN_TRAIL_H

#include <stdint.h>
#include <openssl/evp.h>

/* The export's format name (opsnctl audit export). */
#define TRAIL_FORMAT	"opsn-audit/1"

/* One record as the chain hashes it. */
struct trail_record {
	int64_t		 tr_id;
	int64_t		 tr_at;
	const char	*tr_token, *tr_role, *tr_action, *tr_object;
	const char	*tr_summary, *tr_request_id;
	const char	*tr_prev;	/* the previous record's hash */
	const char	*tr_hash;	/* as stored (ignored by trail_hash) */
};

/* SHA-256 of a record's fields and its predecessor's hash, in hex. */
void	 trail_hash(const struct trail_record *, char out[65]);
/* The text a checkpoint signs (caller frees). */
char	*trail_checkpoint_text(int64_t count, const char *hash, int64_t at);

/* The outcome of a check. */
struct trail_result {
	int64_t		 tr_records;	/* intact records read */
	int64_t		 tr_checkpoints;	/* signed checkpoints matched */
	int64_t		 tr_anchored;	/* records up to the last of them */
	int64_t		 tr_first_bad;	/* 0 if none */
	char		*tr_why;	/* NULL if intact */
	char		 tr_head[65];	/* the last intact record's hash */
};

/*
 * A check in progress: checkpoints first (any order), then the records
 * in id order, then trail_check_end(). key is the signer's public key.
 */
struct trail_check;
struct trail_check *trail_check_new(EVP_PKEY *key);
/* A signed checkpoint; -1 if its signature does not verify. */
int	 trail_check_checkpoint(struct trail_check *, int64_t count,
	    const char *hash, int64_t at, const char *sig);
/* The next record; -1 once a record breaks the chain or a checkpoint. */
int	 trail_check_record(struct trail_check *, const struct trail_record *);
/*
 * After the last record: 0 if every record and every checkpoint holds,
 * else -1. Fills *res (its tr_why is the caller's).
 */
int	 trail_check_end(struct trail_check *, struct trail_result *res);
void	 trail_check_free(struct trail_check *);

#endif
