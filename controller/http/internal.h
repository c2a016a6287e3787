/*
 * The http module's own header: what api.c shares with parts.c (bodies
 * sent in parts) and ratelimit.c. No other module includes it.
 */
#ifndef OPSN_HTTP_INTERNAL_H
#define OPSN_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "http.h"

#define API_MAX_PARAMS		8	/* {param} segments per pattern */
#define API_MAX_ID		64	/* incoming X-Request-Id bytes */

struct api_param {
	const char	*p_name;	/* into the route's pattern */
	size_t		 p_namelen;
	char		*p_value;	/* decoded, in the request pool */
};

struct api_kv {
	char		*kv_key;
	char		*kv_value;
};

/*
 * A link from work in flight (a deferred reply, a part written on the
 * thread pool) to its request: a shared chunk of the request pool whose
 * dispose callback runs when h2o clears the pool, so whichever goes
 * first cuts the link.
 */
struct api_link {
	void		(*l_gone)(void *);	/* the request is gone */
	void		*l_arg;			/* NULL once cut */
};

struct api_req {
	h2o_req_t		*r_req;		/* NULL: a deferral's stand-in */
	const struct api_route	*r_route;	/* NULL until routed */
	size_t			 r_stat;	/* row in api.stats */
	uint64_t		 r_t0;		/* uv_hrtime() at arrival */
	int			 r_replied;
	int			 r_deferred;	/* api_defer() took the reply */
	int			 r_pending;	/* a part on the thread pool */
	int			 r_authed;
	int			 r_in_handler;	/* the handler is running */
	uint64_t		 r_failures;	/* write failures before it */
	struct api_principal	 r_principal;
	char			 r_id[API_MAX_ID + 1];
	struct api_param	 r_params[API_MAX_PARAMS];
	size_t			 r_nparams;
	int			 r_qparsed;
	struct api_kv		*r_query;
	size_t			 r_nquery;
	char			*r_file;	/* API_BODY_FILE body (malloc) */
	uint64_t		 r_file_size;
	char			 r_file_sha[65];
};

/* api.c */
/* A link to ar's request; gone(arg) runs if h2o disposes of it first. */
struct api_link	*api_link_new(struct api_req *, void (*gone)(void *),
		    void *arg);
/* The body as the handler will see it (pool-owned copy of a loaded one). */
void	api_set_entity_owned(struct api_req *, char *body, size_t len);
/* Authorize and run the handler of an authenticated, routed request. */
void	api_run(struct api_req *);
/* The caller's permission for its route (api_hooks.permits); -1 replied. */
int	api_permits(struct api_req *);
/* Has the handler or the dispatcher replied, or will it later? */
void	api_check_replied(struct api_req *);
/* The route's own body limit. */
size_t	api_route_max(const struct api_route *);
/* The server's limit on one request's body. */
size_t	api_max_body(void);

/* parts.c */
/* Set the folder for bodies sent in parts (NULL: refuse them). */
void	parts_init(uv_loop_t *, const char *dir);
/*
 * A request with a Content-Range header: store the part, answer it, or
 * on the last one hand the whole body to api_run(). Replies on errors.
 */
void	parts_handle(struct api_req *, const char *range);

/* ratelimit.c */
void	ratelimit_configure(double rate, double burst);
/*
 * May name make one more request now (monotonic ms)? 0 yes; -1 no, with
 * the seconds to wait in *retry.
 */
int	ratelimit_take(const char *name, uint64_t now_ms, unsigned *retry);
void	ratelimit_clear(void);

#endif
