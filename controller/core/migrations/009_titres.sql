-- Titres de recettes for the public accountant (PES V2): what a member
-- needs to be a debtor, and the numbers of the files, bordereaux and
-- titres sent, allocated once and never reused.

-- The debtor: the SIRET of the establishment billed, its postal address,
-- and its accounting category (NULL: derived from kind).
ALTER TABLE tenants ADD COLUMN siret TEXT
    CHECK (siret IS NULL OR length(siret) = 14);
ALTER TABLE tenants ADD COLUMN address TEXT;
ALTER TABLE tenants ADD COLUMN postcode TEXT
    CHECK (postcode IS NULL OR length(postcode) = 5);
ALTER TABLE tenants ADD COLUMN town TEXT;
ALTER TABLE tenants ADD COLUMN accounting_category TEXT
    CHECK (accounting_category IS NULL OR accounting_category IN
    ('commune', 'groupement', 'ccas', 'department', 'region', 'other'));

-- One PES file per period, kept as sent: exporting the period again
-- gives these bytes. seq numbers the files of a fiscal year.
CREATE TABLE pes_exports (
	id		INTEGER PRIMARY KEY,
	period		TEXT NOT NULL UNIQUE REFERENCES billing_periods (period),
	exer		INTEGER NOT NULL,
	seq		INTEGER NOT NULL CHECK (seq >= 1),
	name		TEXT NOT NULL,
	day		TEXT NOT NULL,		-- DteStr, YYYY-MM-DD
	content		BLOB NOT NULL,
	sha256		TEXT NOT NULL,
	summary		TEXT NOT NULL,		-- JSON: bordereaux, titres
	created_at	INTEGER NOT NULL,
	created_by	TEXT NOT NULL,
	UNIQUE (exer, seq)
);

-- Bordereaux: numbered per fiscal year and type (1 ordinary, 2
-- annulation/reduction), as Hélios requires.
CREATE TABLE pes_bordereaux (
	exer		INTEGER NOT NULL,
	type		INTEGER NOT NULL CHECK (type IN (1, 2)),
	number		INTEGER NOT NULL CHECK (number BETWEEN 1 AND 9999999),
	export_id	INTEGER NOT NULL REFERENCES pes_exports (id),
	pieces		INTEGER NOT NULL CHECK (pieces >= 1),
	amount_cents	INTEGER NOT NULL CHECK (amount_cents > 0),
	cumul_cents	INTEGER NOT NULL,	-- MtCumulAnnuel
	PRIMARY KEY (exer, type, number)
);

-- Titres (pièces), numbered per fiscal year; a reduction names the titre
-- it reduces.
CREATE TABLE pes_titres (
	exer		INTEGER NOT NULL,
	number		INTEGER NOT NULL CHECK (number BETWEEN 1 AND 99999999),
	type		INTEGER NOT NULL CHECK (type IN (1, 2)),
	bordereau	INTEGER NOT NULL,
	export_id	INTEGER NOT NULL REFERENCES pes_exports (id),
	statement_id	INTEGER NOT NULL REFERENCES statements (id),
	tenant_id	INTEGER NOT NULL REFERENCES tenants (id),
	amount_cents	INTEGER NOT NULL CHECK (amount_cents > 0),
	orig_exer	INTEGER,
	orig_number	INTEGER,
	PRIMARY KEY (exer, number),
	FOREIGN KEY (exer, type, bordereau)
	    REFERENCES pes_bordereaux (exer, type, number),
	CHECK ((type = 2) = (orig_number IS NOT NULL))
);
CREATE INDEX pes_titres_statement ON pes_titres (statement_id, type);
CREATE INDEX pes_titres_tenant ON pes_titres (tenant_id, exer, type);
CREATE INDEX pes_titres_orig ON pes_titres (orig_exer, orig_number)
    WHERE orig_number IS NOT NULL;

CREATE TABLE pes_titre_lines (
	exer		INTEGER NOT NULL,
	number		INTEGER NOT NULL,
	line		INTEGER NOT NULL CHECK (line >= 1),
	product		TEXT NOT NULL,		-- CodProdLoc
	nature		TEXT NOT NULL,		-- the revenue account
	label		TEXT,
	amount_cents	INTEGER NOT NULL CHECK (amount_cents > 0),
	orig_line	INTEGER,		-- a reduction's line reduced
	PRIMARY KEY (exer, number, line),
	FOREIGN KEY (exer, number) REFERENCES pes_titres (exer, number)
);

-- What was sent stays as it was sent: numbers are never reused.
CREATE TRIGGER pes_exports_kept_u BEFORE UPDATE ON pes_exports
BEGIN
	SELECT RAISE(ABORT, 'a PES export never changes');
END;
CREATE TRIGGER pes_exports_kept_d BEFORE DELETE ON pes_exports
BEGIN
	SELECT RAISE(ABORT, 'a PES export never changes');
END;
CREATE TRIGGER pes_bordereaux_kept_u BEFORE UPDATE ON pes_bordereaux
BEGIN
	SELECT RAISE(ABORT, 'a bordereau never changes');
END;
CREATE TRIGGER pes_bordereaux_kept_d BEFORE DELETE ON pes_bordereaux
BEGIN
	SELECT RAISE(ABORT, 'a bordereau never changes');
END;
CREATE TRIGGER pes_titres_kept_u BEFORE UPDATE ON pes_titres
BEGIN
	SELECT RAISE(ABORT, 'a titre never changes');
END;
CREATE TRIGGER pes_titres_kept_d BEFORE DELETE ON pes_titres
BEGIN
	SELECT RAISE(ABORT, 'a titre never changes');
END;
CREATE TRIGGER pes_titre_lines_kept_u BEFORE UPDATE ON pes_titre_lines
BEGIN
	SELECT RAISE(ABORT, 'a titre never changes');
END;
CREATE TRIGGER pes_titre_lines_kept_d BEFORE DELETE ON pes_titre_lines
BEGIN
	SELECT RAISE(ABORT, 'a titre never changes');
END;
