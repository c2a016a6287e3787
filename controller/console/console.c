/*
 * The console module: the web console's files (files.c), console
 * accounts (users.c) and their sessions (session.c). An account has a
 * role and maybe a member exactly as an API token has; the router
 * authorizes a session's calls from the same table and scopes.
 */
#include "opsn/util.h"
#include "core/core.h"
#include "console.h"
#include "session.h"

#define USER_OWNER	"sql:SELECT tenant_id FROM users WHERE name = :name"

static const struct api_route console_routes[] = {
	/* Sessions: a person's own. */
	{ "POST", "/v1/session", NULL, API_PUBLIC, NULL, session_login,
	  "Log in to the console: a session cookie and its CSRF token" },
	{ "GET", "/v1/session", "account.read", API_MEMBER, NULL,
	  session_show, "The console session: account, expiry, CSRF token, "
	  "the routes it may call" },
	{ "DELETE", "/v1/session", "account.write", API_MEMBER, NULL,
	  session_logout, "Log out of the console" },
	{ "POST", "/v1/session/password", "account.write", API_MEMBER, NULL,
	  session_password, "Change one's own password (current, password)" },
	{ "POST", "/v1/session/totp", "account.write", API_MEMBER, NULL,
	  session_totp_start, "Start setting up a second factor (TOTP)" },
	{ "POST", "/v1/session/totp/confirm", "account.write", API_MEMBER,
	  NULL, session_totp_confirm,
	  "Confirm the second factor with a code from the app" },
	{ "POST", "/v1/password-setup", NULL, API_PUBLIC, NULL, session_setup,
	  "Set an account's password with its one-time link" },

	/* Accounts. */
	{ "POST", "/v1/users", "users.write", API_MEMBER, "body:tenant",
	  users_create, "Add a console account (a one-time link, or "
	  "\"password\")" },
	{ "GET", "/v1/users", "users.read", API_MEMBER, "query:tenant",
	  users_list, "List console accounts (tenant)" },
	{ "GET", "/v1/users/{name}", "users.read", API_MEMBER, USER_OWNER,
	  users_show, "Show a console account" },
	{ "DELETE", "/v1/users/{name}", "users.write", API_MEMBER, USER_OWNER,
	  users_delete, "Delete a console account and end its sessions" },
	{ "POST", "/v1/users/{name}/reset", "users.write", API_MEMBER,
	  USER_OWNER, users_reset,
	  "A new one-time link to set the account's password" },
	{ "POST", "/v1/users/{name}/disable", "users.write", API_MEMBER,
	  USER_OWNER, users_disable,
	  "Disable an account and end its sessions" },
	{ "POST", "/v1/users/{name}/enable", "users.write", API_MEMBER,
	  USER_OWNER, users_enable, "Enable a disabled account" },
	{ "DELETE", "/v1/users/{name}/totp", "users.write", API_MEMBER,
	  USER_OWNER, users_totp_reset,
	  "Remove an account's second factor (a lost phone)" },

	/*
	 * The console's files and pages. They match any path of one to
	 * three segments, so they come last of all the routes (main.c lists
	 * this module last): every API path is matched first.
	 */
	{ "GET", "/", NULL, API_PUBLIC, NULL, files_serve,
	  "The web console" },
	{ "GET", "/{file}", NULL, API_PUBLIC, NULL, files_serve,
	  "The web console's files and pages" },
	{ "GET", "/{dir}/{file}", NULL, API_PUBLIC, NULL, files_serve,
	  "The web console's files and pages" },
	{ "GET", "/{dir}/{sub}/{file}", NULL, API_PUBLIC, NULL, files_serve,
	  "The web console's files and pages" },
};

static int
console_init(struct ctl *c, char **cause)
{
	if (files_init(c, cause) == -1)
		return (-1);
	return (session_init(c, cause));
}

static void
console_stop(void)
{
	session_stop();
}

const struct ctl_module console_module = {
	.m_name = "console",
	.m_init = console_init,
	.m_stop = console_stop,
	.m_routes = console_routes,
	.m_nroutes = nitems(console_routes),
	.m_authenticate = session_authenticate,
};
