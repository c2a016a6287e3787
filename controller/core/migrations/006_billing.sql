-- Billing: tariff versions, member bindings, periods, statements and their
-- lines, adjustments. Money is integer: micro-euros for prices, cents for
-- amounts. Days are YYYY-MM-DD in the operator's zone, or day numbers
-- (days since 1970-01-01) where the code compares them.

-- One row per version; doc is the normalized tariff (JSON, prices as
-- decimal strings). Immutable but for effective_to, set once on an
-- open-ended version (see the trigger below).
CREATE TABLE tariffs (
	id		INTEGER PRIMARY KEY,
	name		TEXT NOT NULL,
	version		INTEGER NOT NULL CHECK (version >= 1),
	deliberation_number TEXT NOT NULL,
	deliberation_date TEXT NOT NULL,
	effective_from	TEXT NOT NULL,
	effective_to	TEXT,		-- last day; NULL: open-ended
	currency	TEXT NOT NULL DEFAULT 'EUR' CHECK (currency = 'EUR'),
	doc		TEXT NOT NULL,
	created_at	INTEGER NOT NULL,
	UNIQUE (name, version)
);
CREATE TRIGGER tariffs_immutable BEFORE UPDATE ON tariffs
WHEN OLD.effective_to IS NOT NULL OR NEW.name IS NOT OLD.name OR
    NEW.version IS NOT OLD.version OR NEW.doc IS NOT OLD.doc OR
    NEW.effective_from IS NOT OLD.effective_from OR
    NEW.deliberation_number IS NOT OLD.deliberation_number OR
    NEW.deliberation_date IS NOT OLD.deliberation_date
BEGIN
	SELECT RAISE(ABORT, 'a tariff version never changes');
END;
CREATE TRIGGER tariffs_kept BEFORE DELETE ON tariffs
BEGIN
	SELECT RAISE(ABORT, 'a tariff version is never deleted');
END;

-- The tariff of members bound to none.
CREATE TABLE billing_default (
	one		INTEGER PRIMARY KEY CHECK (one = 1),
	name		TEXT NOT NULL
);

CREATE TABLE tenant_tariffs (
	tenant_id	INTEGER PRIMARY KEY REFERENCES tenants (id),
	tariff		TEXT NOT NULL,
	bound_at	INTEGER NOT NULL
);

-- A billing period ('2026-10', '2026-Q4', '2026'): draft until closed.
CREATE TABLE billing_periods (
	period		TEXT PRIMARY KEY,
	first_day	INTEGER NOT NULL,	-- day number
	end_day		INTEGER NOT NULL,	-- the day after the last
	tz		TEXT NOT NULL,
	start_utc	INTEGER NOT NULL,
	end_utc		INTEGER NOT NULL,
	status		TEXT NOT NULL DEFAULT 'draft'
			CHECK (status IN ('draft', 'closed')),
	revision	INTEGER NOT NULL DEFAULT 0,
	generated_at	INTEGER,
	closed_at	INTEGER,
	close_seq	INTEGER,		-- order of closing
	checksum	TEXT
);
CREATE TRIGGER billing_periods_closed BEFORE UPDATE ON billing_periods
WHEN OLD.status = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed period never changes');
END;

-- One statement per member and period; its id stays the same when a
-- draft is regenerated. The member's fields are copied as they were.
CREATE TABLE statements (
	id		INTEGER PRIMARY KEY,
	tenant_id	INTEGER NOT NULL REFERENCES tenants (id),
	period		TEXT NOT NULL REFERENCES billing_periods (period),
	status		TEXT NOT NULL DEFAULT 'draft'
			CHECK (status IN ('draft', 'closed')),
	revision	INTEGER NOT NULL DEFAULT 1,
	first_day	INTEGER NOT NULL,
	end_day		INTEGER NOT NULL,
	tz		TEXT NOT NULL,
	member_kind	TEXT NOT NULL,
	member_name	TEXT NOT NULL,
	insee		TEXT,
	siren		TEXT,
	population	INTEGER NOT NULL,
	total_cents	INTEGER NOT NULL DEFAULT 0,
	checksum	TEXT NOT NULL DEFAULT '',
	generated_at	INTEGER NOT NULL,
	closed_at	INTEGER,
	UNIQUE (tenant_id, period)
);
CREATE INDEX statements_period ON statements (period, id);
CREATE INDEX statements_tenant ON statements (tenant_id, first_day);

-- The stretches of a statement with one tariff version: what late usage
-- for a closed statement is compared against.
CREATE TABLE statement_segments (
	statement_id	INTEGER NOT NULL REFERENCES statements (id)
			ON DELETE CASCADE,
	seq		INTEGER NOT NULL,
	tariff_id	INTEGER NOT NULL REFERENCES tariffs (id),
	band		TEXT NOT NULL,
	day_from	INTEGER NOT NULL,
	day_end		INTEGER NOT NULL,
	start_utc	INTEGER NOT NULL,
	end_utc		INTEGER NOT NULL,
	member_days	INTEGER NOT NULL,	-- days of membership in it
	member_mf	INTEGER NOT NULL,	-- months of it, in 1/377580
	PRIMARY KEY (statement_id, seq)
);
CREATE INDEX statement_segments_tariff ON statement_segments (tariff_id);

-- Lines: usage (quantity_base/divisor display units at unit_price_micro),
-- fee, contribution, adjustment, late_usage. used_base is the metered
-- quantity before the allowance; for late_usage it is the new total, and
-- basis_cents the amount that total costs (the next comparison's base).
CREATE TABLE statement_lines (
	statement_id	INTEGER NOT NULL REFERENCES statements (id)
			ON DELETE CASCADE,
	seq		INTEGER NOT NULL,
	type		TEXT NOT NULL CHECK (type IN ('usage', 'fee',
			    'contribution', 'adjustment', 'late_usage')),
	class		TEXT,			-- vm, mailbox, site
	metric		TEXT NOT NULL,
	label		TEXT NOT NULL,
	unit		TEXT NOT NULL,
	used_base	INTEGER,
	allowance_base	INTEGER,
	quantity_base	INTEGER NOT NULL,
	divisor		INTEGER NOT NULL CHECK (divisor > 0),
	unit_price_micro INTEGER NOT NULL,
	amount_cents	INTEGER NOT NULL,
	basis_cents	INTEGER,
	tariff_id	INTEGER REFERENCES tariffs (id),
	band		TEXT,
	day_from	INTEGER,
	day_end		INTEGER,
	start_utc	INTEGER,
	end_utc		INTEGER,
	corrects_period	TEXT,
	corrects_statement INTEGER,
	adjustment_id	INTEGER,
	reason		TEXT,
	PRIMARY KEY (statement_id, seq)
);
CREATE INDEX statement_lines_corrects ON statement_lines
    (corrects_statement) WHERE corrects_statement IS NOT NULL;

-- Corrections entered by an operator: pending until a statement holds
-- them (the member's earliest open one).
CREATE TABLE adjustments (
	id		INTEGER PRIMARY KEY,
	tenant_id	INTEGER NOT NULL REFERENCES tenants (id),
	amount_cents	INTEGER NOT NULL,
	reason		TEXT NOT NULL,
	corrects_period	TEXT,
	statement_id	INTEGER REFERENCES statements (id),
	created_at	INTEGER NOT NULL,
	created_by	TEXT NOT NULL
);
CREATE INDEX adjustments_tenant ON adjustments (tenant_id, statement_id);

-- A closed statement never changes, whatever path the change takes.
CREATE TRIGGER statements_closed_update BEFORE UPDATE ON statements
WHEN OLD.status = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER statements_closed_delete BEFORE DELETE ON statements
WHEN OLD.status = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER statement_lines_closed_insert BEFORE INSERT ON statement_lines
WHEN (SELECT status FROM statements WHERE id = NEW.statement_id) = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER statement_lines_closed_update BEFORE UPDATE ON statement_lines
WHEN (SELECT status FROM statements WHERE id = OLD.statement_id) = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER statement_lines_closed_delete BEFORE DELETE ON statement_lines
WHEN (SELECT status FROM statements WHERE id = OLD.statement_id) = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER statement_segments_closed BEFORE DELETE ON statement_segments
WHEN (SELECT status FROM statements WHERE id = OLD.statement_id) = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'a closed statement never changes');
END;
CREATE TRIGGER adjustments_closed BEFORE UPDATE ON adjustments
WHEN (SELECT status FROM statements WHERE id = OLD.statement_id) = 'closed'
BEGIN
	SELECT RAISE(ABORT, 'an adjustment on a closed statement never changes');
END;
