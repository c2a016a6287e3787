// Member records from the files an operator has: Etalab's
// decoupage-administratif communes.json and epci.json, or a CSV file
// (insee;siren;name;population;kind). The same records as `opsnctl tenant
// import` sends; the controller checks them and imports all or nothing,
// naming a bad record by its "where".

// A département code as Etalab writes it: "31", "2A", "971".
export function departementOk(d) {
	return /^(\d{2}|2[AB]|97\d)$/.test(d);
}

// Current communes (not delegated or associated ones, nor the
// arrondissements of Paris, Lyon and Marseille) of a département, or all.
export function etalabRecords(list, dep) {
	if (!Array.isArray(list))
		throw new Error("not an Etalab file (a JSON list)");
	const out = [];
	list.forEach((e, i) => {
		if (!e || typeof e !== "object" || e.type !== "commune-actuelle")
			return;
		if (dep && e.departement !== dep)
			return;
		const rec = { where: e.code ? `entry ${i + 1} (code ${e.code})` :
		    `entry ${i + 1}`, kind: "commune" };
		if (e.code)
			rec.insee = e.code;
		if (e.siren)
			rec.siren = e.siren;
		if (e.nom)
			rec.name = e.nom;
		if (Number.isInteger(e.population))
			rec.population = e.population;
		out.push(rec);
	});
	return out;
}

// EPCIs with the SIRENs of their member communes; with a département,
// those that have a member in it.
export function epciRecords(list, dep) {
	if (!Array.isArray(list))
		throw new Error("not an Etalab file (a JSON list)");
	const out = [];
	list.forEach((e, i) => {
		if (!e || typeof e !== "object")
			return;
		const members = Array.isArray(e.membres) ? e.membres : [];
		if (dep && !members.some((m) => m && typeof m.code === "string" &&
		    m.code.startsWith(dep)))
			return;
		const rec = { where: e.code ? `entry ${i + 1} (SIREN ${e.code})` :
		    `entry ${i + 1}`, kind: "epci" };
		if (e.code)
			rec.siren = e.code;
		if (e.nom)
			rec.name = e.nom;
		if (Number.isInteger(e.populationTotale))
			rec.population = e.populationTotale;
		rec.members = members.filter((m) => m && m.siren).map((m) =>
		    m.siren);
		out.push(rec);
	});
	return out;
}

// CSV text as spreadsheets write it: ';' (or ',' when the header has no
// ';'), quotes doubled inside quotes, any line ending, a byte order mark.
export function parseCsv(text) {
	if (text.charCodeAt(0) === 0xfeff)
		text = text.slice(1);
	const firstLine = text.split(/\r\n|\n|\r/, 1)[0];
	const sep = firstLine.includes(";") || !firstLine.includes(",") ?
	    ";" : ",";
	const rows = [];
	let row = [], field = "", quoted = false, line = 1, rowLine = 1;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (quoted) {
			if (c === '"' && text[i + 1] === '"') {
				field += '"';
				i++;
			} else if (c === '"') {
				quoted = false;
			} else {
				if (c === "\n")
					line++;
				field += c;
			}
		} else if (c === '"') {
			quoted = true;
		} else if (c === sep) {
			row.push(field);
			field = "";
		} else if (c === "\n" || c === "\r") {
			if (c === "\r" && text[i + 1] === "\n")
				i++;
			row.push(field);
			if (row.length > 1 || row[0] !== "")
				rows.push({ line: rowLine, fields: row });
			row = [];
			field = "";
			line++;
			rowLine = line;
		} else {
			field += c;
		}
	}
	if (quoted)
		throw new Error(`line ${rowLine}: a quote is never closed`);
	row.push(field);
	if (row.length > 1 || row[0] !== "")
		rows.push({ line: rowLine, fields: row });
	return { sep, rows };
}

const CSV_COLS = ["insee", "siren", "name", "population", "kind"];
const CSV_HEADER = CSV_COLS.join(";");

export function csvRecords(text, name = "CSV") {
	const { sep, rows } = parseCsv(text);
	if (!rows.length)
		throw new Error(`${name}: empty: the first line must be the ` +
		    `header ${CSV_HEADER}`);
	const col = {};
	rows[0].fields.forEach((f, i) => {
		const k = f.trim().toLowerCase();
		if (!CSV_COLS.includes(k))
			throw new Error(`${name}:${rows[0].line}: header: unknown ` +
			    `column '${k}' (the first line must be the header ` +
			    `${CSV_HEADER})`);
		if (k in col)
			throw new Error(`${name}:${rows[0].line}: header: column ` +
			    `'${k}' comes twice`);
		col[k] = i;
	});
	for (const k of ["name", "kind"])
		if (!(k in col))
			throw new Error(`${name}:${rows[0].line}: header: no '${k}' ` +
			    `column (the header is ${CSV_HEADER})`);
	const out = [];
	for (const r of rows.slice(1)) {
		if (r.fields.length !== rows[0].fields.length)
			throw new Error(`${name}:${r.line}: fields: ` +
			    `${r.fields.length} instead of ${rows[0].fields.length} ` +
			    `(separator '${sep}')`);
		const rec = { where: `line ${r.line}` };
		for (const [k, i] of Object.entries(col)) {
			let v = r.fields[i].trim();
			if (v === "")
				continue;
			if (k === "population") {
				if (!/^\d{1,12}$/.test(v))
					throw new Error(`${name}:${r.line}: population: ` +
					    `'${v}' is not a whole number`);
				rec.population = Number(v);
				continue;
			}
			if (k === "kind")
				v = v.toLowerCase();
			rec[k] = v;
		}
		out.push(rec);
	}
	if (!out.length)
		throw new Error(`${name}: no members, only the header`);
	return out;
}
