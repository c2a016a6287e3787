/*
 * The console module's own parts: accounts (users.c), sessions and
 * logins (session.c), one-time codes (totp.c), the web console's files
 * (files.c). Nothing outside controller/console includes this.
 */
#ifndef OPSN_CONSOLE_SESSION_H
#define OPSN_CONSOLE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct api_req;
struct api_route;
struct api_principal;
struct ctl;

/* The shortest password an account may have (the console says so too). */
#define PASSWORD_MIN		12
#define PASSWORD_MAX		1024
#define USER_NAME_MAX		64

/* totp.c */
char	*totp_base32(const unsigned char *, size_t);
int	 totp_unbase32(const char *, unsigned char *, size_t max);
char	*totp_new_secret(void);
void	 totp_at(const char *secret, int64_t now, char out[7]);
int	 totp_check(const char *secret, const char *code, int64_t now,
	    int64_t last, int64_t *step);

/*
 * users.c: password hashes (yescrypt through crypt_r) are made and
 * checked on the thread pool; done runs on the loop thread.
 */
struct pw_job {
	uv_work_t	 pj_work;
	char		*pj_password;	/* to check against pj_hash */
	char		*pj_hash;	/* the stored hash, or NULL */
	char		*pj_make;	/* a new password to hash, or NULL */
	char		*pj_new;	/* out: pj_make's hash (if pj_ok) */
	int		 pj_ok;		/* out: pj_password matched */
	void		(*pj_done)(struct pw_job *);
	void		*pj_arg;
};
/*
 * Run job (consumes it: passwords wiped and everything freed after its
 * done callback): check pj_password against pj_hash when both are set,
 * then hash pj_make unless the check failed.
 */
void	 users_pw_run(struct pw_job *);
/* A password the controller accepts? NULL, or why not (static text). */
const char *users_pw_weak(const char *);
/* A one-time link's secret for user id, stored hashed (caller frees). */
char	*users_setup_token(int64_t user, int64_t *expires, char **cause);
/* Is name an account name (letters, digits, '.', '-', '_', '@')? */
int	 users_name_ok(const char *);
/* The account routes (console.c's table). */
void	 users_create(struct api_req *);
void	 users_list(struct api_req *);
void	 users_show(struct api_req *);
void	 users_delete(struct api_req *);
void	 users_reset(struct api_req *);
void	 users_disable(struct api_req *);
void	 users_enable(struct api_req *);
void	 users_totp_reset(struct api_req *);

/* session.c */
int	 session_init(struct ctl *, char **cause);
void	 session_stop(void);
int	 session_authenticate(struct api_req *, const struct api_route *,
	    struct api_principal *);
/* End every session of a user (password set, account disabled). */
void	 session_drop_user(int64_t user, const char *keep_hash);
/* The session routes (console.c's table). */
void	 session_login(struct api_req *);
void	 session_show(struct api_req *);
void	 session_logout(struct api_req *);
void	 session_password(struct api_req *);
void	 session_totp_start(struct api_req *);
void	 session_totp_confirm(struct api_req *);
void	 session_setup(struct api_req *);

/* Login throttling: per account and per address. */
struct throttle;
/*
 * Seconds until key may try again (0: now); *first is set on the first
 * refusal of a lock (the one worth an audit record).
 */
int64_t	 session_throttle_wait(const char *key, int64_t now, int *first);
/* A failure for key: the wait it starts, and whether it is the first. */
int64_t	 session_throttle_fail(const char *key, int64_t now, int free,
	    int *first);
void	 session_throttle_ok(const char *key);
void	 session_throttle_reset(void);

/* files.c */
int	 files_init(struct ctl *, char **cause);
void	 files_serve(struct api_req *);

#endif
