-- Usage rollups that fit finance's questions: hourly rows for VMs
-- (usage_hourly, as before), daily rows for mailboxes and sites
-- (usage_daily), and monthly totals per member, resource class and metric
-- (usage_monthly), kept up to date by triggers on the two others, so that
-- every writer (the rollup, a repair by hand) keeps them exact. Days and
-- months are the operator's calendar ([operator] tz, through opsn_day()
-- and opsn_month()), listed in usage_calendar so that the triggers need
-- no function.

-- Every local day from 2000 to 2200: its first instant (UTC seconds) and
-- the first instant of its month.
CREATE TABLE usage_calendar (
	day		INTEGER PRIMARY KEY,
	month		INTEGER NOT NULL
);
WITH RECURSIVE d(day) AS (
	SELECT opsn_day(946728000)			-- 2000-01-01T12:00Z
	UNION ALL
	SELECT opsn_day(day + 129600) FROM d WHERE day < 7258075200
)
INSERT INTO usage_calendar (day, month) SELECT day, opsn_month(day) FROM d;

-- Mailboxes and sites: one row per local day, the sum of the hours the
-- rollup computes for that day (each rounded as usage_hourly's are).
CREATE TABLE usage_daily (
	day		INTEGER NOT NULL,	-- usage_calendar.day
	kind		TEXT NOT NULL,
	resource	TEXT NOT NULL,
	metric		TEXT NOT NULL,
	tenant_id	INTEGER,		-- NULL: the platform
	month		INTEGER NOT NULL,	-- usage_calendar.month of day
	quantity	INTEGER NOT NULL,
	PRIMARY KEY (day, kind, resource, metric)
) WITHOUT ROWID;
CREATE INDEX usage_daily_tenant ON usage_daily (tenant_id, day);
CREATE INDEX usage_daily_resource ON usage_daily (kind, resource, day);

-- Per member (0: the platform), month, resource class and metric: the sum
-- of usage_hourly and usage_daily. changed is meter_state.change_seq when
-- the row last changed: billing finds late usage in closed months by it
-- (a month's rows are few enough to read without an index on it).
CREATE TABLE usage_monthly (
	month		INTEGER NOT NULL,
	tenant_id	INTEGER NOT NULL,
	kind		TEXT NOT NULL,
	metric		TEXT NOT NULL,
	quantity	INTEGER NOT NULL,
	changed		INTEGER NOT NULL,
	PRIMARY KEY (month, tenant_id, kind, metric)
) WITHOUT ROWID;
CREATE INDEX usage_monthly_tenant ON usage_monthly (tenant_id, month);

-- change_seq: bumped by each rollup write; what usage_monthly.changed
-- takes. quiet: set while metering writes rows whose totals it keeps
-- itself (the rollup adds up a round's changes per member) or that leave
-- their totals be (retention of old hours); the triggers stand aside.
-- calendar_tz: the zone usage_calendar was built for.
ALTER TABLE meter_state ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meter_state ADD COLUMN quiet INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meter_state ADD COLUMN calendar_tz TEXT NOT NULL DEFAULT '';
UPDATE meter_state SET calendar_tz = opsn_tz();

-- What exists: mailbox and site hours become days, then every total.
INSERT INTO usage_daily (day, kind, resource, metric, tenant_id, month,
    quantity)
SELECT opsn_day(hour), kind, resource, metric, max(tenant_id),
    opsn_month(hour), sum(quantity)
FROM usage_hourly WHERE kind != 'vm'
GROUP BY opsn_day(hour), kind, resource, metric;
DELETE FROM usage_hourly WHERE kind != 'vm';
INSERT INTO usage_monthly (month, tenant_id, kind, metric, quantity, changed)
SELECT month, tenant, kind, metric, sum(q), 0 FROM (
	SELECT opsn_month(hour) AS month, coalesce(tenant_id, 0) AS tenant,
	    kind, metric, quantity AS q FROM usage_hourly
	UNION ALL
	SELECT month, coalesce(tenant_id, 0), kind, metric, quantity
	    FROM usage_daily
) GROUP BY month, tenant, kind, metric;

-- The totals follow every change of the rows below them, whoever makes
-- it: an insert adds the row's quantity to its total, a delete takes it
-- away, an update does both. Each goes through usage_monthly_add, which
-- adds a quantity to a total (creating it) and stamps it changed.
CREATE VIEW usage_monthly_add (month, tenant_id, kind, metric, quantity) AS
	SELECT month, tenant_id, kind, metric, quantity FROM usage_monthly;
CREATE TRIGGER usage_monthly_add INSTEAD OF INSERT ON usage_monthly_add
BEGIN
	INSERT INTO usage_monthly (month, tenant_id, kind, metric, quantity,
	    changed)
	VALUES (NEW.month, coalesce(NEW.tenant_id, 0), NEW.kind, NEW.metric,
	    NEW.quantity, (SELECT change_seq FROM meter_state))
	ON CONFLICT (month, tenant_id, kind, metric) DO UPDATE SET
	    quantity = quantity + excluded.quantity,
	    changed = excluded.changed;
END;

CREATE TRIGGER usage_hourly_add AFTER INSERT ON usage_hourly
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES ((SELECT month FROM usage_calendar
	    WHERE day <= NEW.hour ORDER BY day DESC LIMIT 1), NEW.tenant_id,
	    NEW.kind, NEW.metric, NEW.quantity);
END;
CREATE TRIGGER usage_hourly_sub AFTER DELETE ON usage_hourly
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES ((SELECT month FROM usage_calendar
	    WHERE day <= OLD.hour ORDER BY day DESC LIMIT 1), OLD.tenant_id,
	    OLD.kind, OLD.metric, -OLD.quantity);
END;
CREATE TRIGGER usage_hourly_set AFTER UPDATE ON usage_hourly
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES ((SELECT month FROM usage_calendar
	    WHERE day <= OLD.hour ORDER BY day DESC LIMIT 1), OLD.tenant_id,
	    OLD.kind, OLD.metric, -OLD.quantity);
	INSERT INTO usage_monthly_add VALUES ((SELECT month FROM usage_calendar
	    WHERE day <= NEW.hour ORDER BY day DESC LIMIT 1), NEW.tenant_id,
	    NEW.kind, NEW.metric, NEW.quantity);
END;

CREATE TRIGGER usage_daily_add AFTER INSERT ON usage_daily
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES (NEW.month, NEW.tenant_id,
	    NEW.kind, NEW.metric, NEW.quantity);
END;
CREATE TRIGGER usage_daily_sub AFTER DELETE ON usage_daily
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES (OLD.month, OLD.tenant_id,
	    OLD.kind, OLD.metric, -OLD.quantity);
END;
CREATE TRIGGER usage_daily_set AFTER UPDATE ON usage_daily
WHEN (SELECT quiet FROM meter_state) = 0 BEGIN
	INSERT INTO usage_monthly_add VALUES (OLD.month, OLD.tenant_id,
	    OLD.kind, OLD.metric, -OLD.quantity);
	INSERT INTO usage_monthly_add VALUES (NEW.month, NEW.tenant_id,
	    NEW.kind, NEW.metric, NEW.quantity);
END;
