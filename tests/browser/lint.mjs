// The console's static checks: every string key the pages use is written
// in French and in English, with the same {placeholders}, none empty; and
// index.html preloads every module (a module it does not name is fetched
// only once the one importing it has arrived).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const top = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
    "..", "..");
const js = path.join(top, "console", "js");
const { strings } = await import(pathToFileURL(path.join(js, "strings.js")));
const problems = [];
const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort()
    .join(",");

for (const [a, b] of [["fr", "en"], ["en", "fr"]])
	for (const k of Object.keys(strings[a]))
		if (!(k in strings[b]))
			problems.push(`${k}: in ${a}, not in ${b}`);
for (const k of Object.keys(strings.fr)) {
	if (!strings.fr[k] || (k in strings.en && !strings.en[k]))
		problems.push(`${k}: empty`);
	if (k in strings.en && holes(strings.fr[k]) !== holes(strings.en[k]))
		problems.push(`${k}: placeholders differ`);
}

// Keys written out in the code: t("key"), tOr("key", ...), and the
// "section.word" literals of the navigation and tab tables.
const files = [];
(function walk(d) {
	for (const e of fs.readdirSync(d, { withFileTypes: true }))
		if (e.isDirectory())
			walk(path.join(d, e.name));
		else if (e.name.endsWith(".js") && e.name !== "strings.js")
			files.push(path.join(d, e.name));
})(js);
let used = 0;
for (const f of files) {
	const src = fs.readFileSync(f, "utf8");
	for (const m of src.matchAll(/\b(?:t|tOr)\(\s*"([a-z_.0-9]+)"\s*[,)]/g)) {
		used++;
		if (!(m[1] in strings.fr))
			problems.push(`${path.relative(top, f)}: ${m[1]}: no string`);
	}
	for (const m of src.matchAll(/\["\/[^"]*", "([a-z]+\.[a-z_]+)"/g)) {
		used++;
		if (!(m[1] in strings.fr))
			problems.push(`${path.relative(top, f)}: ${m[1]}: no string`);
	}
}
const index = fs.readFileSync(path.join(top, "console", "index.html"),
    "utf8");
for (const f of files.concat([path.join(js, "strings.js")])) {
	const href = "/" + path.relative(path.join(top, "console"), f);
	if (!f.endsWith("app.js") && !index.includes(
	    `<link rel="modulepreload" href="${href}">`))
		problems.push(`index.html: no modulepreload of ${href}`);
}
if (problems.length) {
	console.log(problems.join("\n"));
	process.exit(1);
}
console.log(`${Object.keys(strings.fr).length} strings in French and ` +
    `English; ${used} uses in ${files.length} files`);
