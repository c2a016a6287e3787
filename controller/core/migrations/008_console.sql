-- Console accounts: people who log in to the web console with a
-- password (yescrypt) and maybe a second factor (TOTP), with the same
-- roles and member scopes as API tokens. Sessions live in the
-- controller's memory only: a restart logs everyone out.

CREATE TABLE users (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL UNIQUE,
	role		TEXT NOT NULL CHECK (role IN ('admin', 'operator',
			    'finance', 'auditor')),
	tenant_id	INTEGER REFERENCES tenants (id),
	email		TEXT,
	password_hash	TEXT,		-- crypt(3) yescrypt; NULL until set
	password_at	INTEGER,
	totp_secret	TEXT,		-- base32; NULL = no second factor
	totp_pending	TEXT,		-- being enrolled, not yet confirmed
	totp_last_step	INTEGER NOT NULL DEFAULT 0,	-- no code used twice
	disabled_at	INTEGER,
	created_at	INTEGER NOT NULL,
	last_login_at	INTEGER
);

-- One-time links to set a password: only the hash of the secret.
CREATE TABLE user_setup_tokens (
	hash		TEXT PRIMARY KEY,
	user_id		INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at	INTEGER NOT NULL,
	expires_at	INTEGER NOT NULL
);
CREATE INDEX user_setup_tokens_user ON user_setup_tokens (user_id);
