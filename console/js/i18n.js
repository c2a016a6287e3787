// Language and formats. The console speaks French unless the browser
// prefers English. Numbers, amounts and sizes are always written the
// French way (1 234,56 €), since they are the figures of French public
// accounts; dates are day/month/year in the operator's time zone.

import { strings } from "./strings.js";

// The first of the browser's languages that the console speaks; French
// when none.
export function pickLang(prefs) {
	for (const l of prefs || []) {
		const base = String(l).toLowerCase().split("-")[0];
		if (base === "fr" || base === "en")
			return base;
	}
	return "fr";
}

export const lang = pickLang(typeof navigator !== "undefined" ?
    navigator.languages || [navigator.language] : []);
export const TZ = "Europe/Paris";

// The text for key in the console's language, {name} replaced from vars.
export function t(key, vars) {
	let s = (strings[lang] && strings[lang][key]) ?? strings.fr[key];
	if (s === undefined)
		return key;
	if (vars)
		s = s.replace(/\{(\w+)\}/g, (m, k) => vars[k] ?? m);
	return s;
}

// The text for key, or fallback when the console has none (values the API
// may add later, such as a new metric or state).
export function tOr(key, fallback) {
	const s = t(key);
	return s === key ? fallback : s;
}

const NNBSP = "\u202f";		// French thousands separator
const NBSP = "\u00a0";		// before the euro sign and units

const intFmt = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 0 });

// A whole number: 35 228 -> "35 228".
export function fmtInt(n) {
	if (n === null || n === undefined || n === "")
		return "–";
	return intFmt.format(Number(n));
}

function group(digits) {
	return digits.replace(/\B(?=(\d{3})+(?!\d))/g, NNBSP);
}

// A decimal given as a string ("1344.5000", "-12.5"), exactly: no binary
// fraction. maxFrac trims trailing zeros down to minFrac digits.
export function fmtDecimal(s, minFrac = 0, maxFrac = 4) {
	if (s === null || s === undefined || s === "")
		return "–";
	const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(s).trim());
	if (!m)
		return String(s);
	let frac = (m[3] || "").slice(0, maxFrac).replace(/0+$/, "");
	while (frac.length < minFrac)
		frac += "0";
	return (m[1] ? "-" : "") + group(m[2]) + (frac ? "," + frac : "");
}

// An amount in euros from its decimal string ("1234.56") or from cents
// (a whole number): "1 234,56 €".
export function fmtMoney(v) {
	if (v === null || v === undefined || v === "")
		return "–";
	let s = v;
	if (typeof v === "number" || typeof v === "bigint") {
		const c = BigInt(v), neg = c < 0n, a = neg ? -c : c;
		s = (neg ? "-" : "") + (a / 100n).toString() + "." +
		    (a % 100n).toString().padStart(2, "0");
	}
	return fmtDecimal(s, 2, 2) + NBSP + "€";
}

// "-12,50", "1 234.5", "12" -> "-12.50", "1234.50", "12.00"; null if it is
// not an amount with at most two decimals.
export function parseAmount(s) {
	const m = /^([-+\u2212]?)(\d+)(?:[.,](\d{1,2}))?$/.exec(String(s)
	    .replace(/[\s\u00a0\u202f€]/g, ""));
	if (!m)
		return null;
	const sign = m[1] === "-" || m[1] === "\u2212" ? "-" : "";
	return sign + m[2].replace(/^0+(?=\d)/, "") + "." +
	    (m[3] || "").padEnd(2, "0");
}

const UNITS = { fr: ["o", "Kio", "Mio", "Gio", "Tio", "Pio"],
    en: ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] };

// A size in bytes, in powers of 1024: 1610612736 -> "1,5 Gio".
export function fmtBytes(n) {
	if (n === null || n === undefined)
		return "–";
	let v = Number(n), i = 0;
	while (Math.abs(v) >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	const f = new Intl.NumberFormat("fr-FR", { maximumFractionDigits:
	    i === 0 || v >= 100 ? 0 : 1 });
	return f.format(v) + NBSP + UNITS[lang][i];
}

// "512M", "2G", "1,5 Go" or a number of bytes -> bytes, or null.
export function parseSize(s) {
	const m = /^(\d+(?:[.,]\d+)?)\s*([kmgt]?)(?:i?[bo]|io)?$/i.exec(
	    String(s).trim().replace(/[\u00a0\u202f]/g, ""));
	if (!m)
		return null;
	const p = { "": 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase()];
	return Math.round(Number(m[1].replace(",", ".")) * 1024 ** p);
}

const dateFmt = new Intl.DateTimeFormat(lang === "fr" ? "fr-FR" : "en-GB",
    { day: "2-digit", month: "2-digit", year: "numeric", timeZone: TZ });
const timeFmt = new Intl.DateTimeFormat(lang === "fr" ? "fr-FR" : "en-GB",
    { day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit",
    minute: "2-digit", timeZone: TZ });
const monthFmt = new Intl.DateTimeFormat(lang === "fr" ? "fr-FR" : "en-GB",
    { month: "long", year: "numeric", timeZone: "UTC" });
const shortMonthFmt = new Intl.DateTimeFormat(lang === "fr" ? "fr-FR" :
    "en-GB", { month: "short", year: "numeric", timeZone: "UTC" });

// A calendar day "2026-11-01" -> "01/11/2026" (no time zone shift).
export function fmtDay(s) {
	if (!s)
		return "–";
	const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
	return m ? `${m[3]}/${m[2]}/${m[1]}` : fmtTime(s);
}

// An instant "2026-12-04T20:43:22Z" -> "04/12/2026 21:43" (Paris).
export function fmtTime(s) {
	if (!s)
		return "–";
	const d = new Date(s);
	return isNaN(d) ? String(s) : timeFmt.format(d);
}

export function fmtDate(d) {
	return dateFmt.format(d);
}

// A billing period "2026-11" -> "novembre 2026" (short: "nov. 2026").
export function fmtPeriod(p, short) {
	const m = /^(\d{4})-(\d{2})$/.exec(p || "");
	if (!m)
		return p || "–";
	const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
	return (short ? shortMonthFmt : monthFmt).format(d);
}

// How long ago an instant was, in words: "il y a 3 min".
export function fmtAgo(s) {
	if (!s)
		return t("time.never");
	const sec = Math.max(0, Math.round((Date.now() - new Date(s)) / 1000));
	const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
	if (sec < 60)
		return rtf.format(-sec, "second");
	if (sec < 3600)
		return rtf.format(-Math.floor(sec / 60), "minute");
	if (sec < 86400)
		return rtf.format(-Math.floor(sec / 3600), "hour");
	return rtf.format(-Math.floor(sec / 86400), "day");
}

// A duration in seconds: 95 -> "1 min 35 s".
export function fmtDuration(sec) {
	sec = Math.round(Number(sec) || 0);
	if (sec < 60)
		return `${sec}${NBSP}s`;
	if (sec < 3600)
		return `${Math.floor(sec / 60)}${NBSP}min` + (sec % 60 ?
		    ` ${sec % 60}${NBSP}s` : "");
	return `${Math.floor(sec / 3600)}${NBSP}h ${Math.floor(sec % 3600 /
	    60)}${NBSP}min`;
}

// A percentage of whole parts: 0.1234 -> "12 %".
export function fmtPercent(x) {
	return new Intl.NumberFormat("fr-FR", { style: "percent",
	    maximumFractionDigits: 0 }).format(x);
}

// The period "YYYY-MM" of a date, and the one n months away.
export function periodOf(d) {
	return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2,
	    "0");
}

export function addMonths(p, n) {
	const [y, m] = p.split("-").map(Number);
	const d = new Date(Date.UTC(y, m - 1 + n, 1));
	return d.getUTCFullYear() + "-" + String(d.getUTCMonth() + 1)
	    .padStart(2, "0");
}
