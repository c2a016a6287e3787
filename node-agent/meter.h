/*
 * The agent's metering: sources take samples every interval, the spool
 * (DATA_DIR/spool.db, SQLite WAL, synchronous=FULL) numbers and keeps
 * them until the controller acknowledges their sequence number, and the
 * sender sends what is unacknowledged whenever the link is up.
 */
#ifndef OPSN_METER_H
#define OPSN_METER_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "metering.pb-c.h"

#define METER_BATCH_SAMPLES	1000	/* per MSG_SAMPLES */
#define METER_WINDOW		4	/* batches sent and not acknowledged */

/* A growing list of samples (each owned: meter_sample_free). */
struct meter_list {
	Opsn__Sample	**ml_v;
	size_t		  ml_n, ml_cap;
};

/* A new sample in l, zeroed, strings empty (owned by the list). */
Opsn__Sample	*meter_list_add(struct meter_list *, const char *kind,
		    const char *resource, int64_t ts_ms);
void		 meter_list_clear(struct meter_list *);
void		 meter_sample_free(Opsn__Sample *);

/* ---- the spool (meter_spool.c): blocking, one thread at a time ------- */

struct meter_spool {
	sqlite3		*sp_db;
	uint64_t	 sp_next;	/* next sequence number */
	uint64_t	 sp_count;	/* samples held */
	uint64_t	 sp_bytes;	/* their encoded size */
	uint64_t	 sp_max_count;
	uint64_t	 sp_max_bytes;
	uint64_t	 sp_dropped;	/* refused: the spool was full */
	int		 sp_warned;	/* the 80 % warning was logged */
};

/* Open (creating) the spool at path; -1 with *cause. */
int	 meter_spool_open(struct meter_spool *, const char *path,
	    uint64_t max_count, uint64_t max_bytes, char **cause);
void	 meter_spool_close(struct meter_spool *);
/*
 * Number the samples of l and commit them (FULL) in one transaction.
 * When the spool is full the newest samples are refused (counted in
 * sp_dropped, seq left 0). Returns the number stored, or -1.
 */
int	 meter_spool_append(struct meter_spool *, struct meter_list *,
	    char **cause);
/*
 * Read up to max consecutive samples from seq from on (0: the lowest)
 * into l; *low gets the lowest seq held and *oldest_ms its time.
 */
int	 meter_spool_read(struct meter_spool *, uint64_t from, size_t max,
	    struct meter_list *, uint64_t *low, int64_t *oldest_ms,
	    char **cause);
/* Forget every sample up to and including seq. */
int	 meter_spool_ack(struct meter_spool *, uint64_t seq, char **cause);

/* ---- sources ---------------------------------------------------------- */

/*
 * The hypervisor source (meter_hv.c), on the thread pool: one sample per
 * domain whose opsn metadata names node. Opens its own read-only libvirt
 * connection on first use and reopens it after an error.
 */
int	 meter_hv_collect(const char *uri, const char *node, int64_t now_ms,
	    uint32_t interval_ms, struct meter_list *, char **cause);
void	 meter_hv_close(void);

#endif
