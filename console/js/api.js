// The console's only way to the controller: the public /v1 API, with the
// session cookie (HttpOnly, sent by the browser) and the session's CSRF
// token on every write. Errors keep the API's code and message so that the
// pages can show them as they are.

let csrf = null;
let onUnauthenticated = null;

export class ApiError extends Error {
	constructor(status, code, message, requestId, retryAfter) {
		super(message);
		this.status = status;
		this.code = code;
		this.requestId = requestId || null;
		this.retryAfter = retryAfter || null;
	}
}

// The session's CSRF token, sent as X-CSRF-Token on every write.
export function setCsrf(token) {
	csrf = token || null;
}

// Called when the API answers 401 to a call made inside a session (it
// expired or was closed elsewhere).
export function setUnauthenticatedHandler(fn) {
	onUnauthenticated = fn;
}

function headersFor(method, body, extra) {
	const h = { Accept: "application/json" };
	if (body !== undefined)
		h["Content-Type"] = "application/json";
	if (method !== "GET" && method !== "HEAD" && csrf)
		h["X-CSRF-Token"] = csrf;
	return Object.assign(h, extra || {});
}

async function errorOf(r) {
	let code = "http_" + r.status, message = r.statusText || String(r.status);
	const text = await r.text().catch(() => "");
	try {
		const doc = JSON.parse(text);
		if (doc && doc.error) {
			code = doc.error.code || code;
			message = doc.error.message || message;
		}
	} catch (e) {
		if (text)
			message = text.slice(0, 300);
	}
	return new ApiError(r.status, code, message,
	    r.headers.get("X-Request-Id"), r.headers.get("Retry-After"));
}

// Call the API; resolve to the parsed JSON (or null), reject with ApiError.
// opts.headers adds headers, opts.raw resolves to the Response itself,
// opts.anonymous keeps a 401 from ending the session.
export async function api(method, path, body, opts = {}) {
	let r;
	try {
		r = await fetch(path, {
			method,
			headers: headersFor(method, body, opts.headers),
			body: body === undefined ? undefined : JSON.stringify(body),
			credentials: "same-origin",
			cache: "no-store",
			signal: opts.signal,
		});
	} catch (e) {
		if (e.name === "AbortError")
			throw e;
		throw new ApiError(0, "network", e.message || "network error");
	}
	if (!r.ok) {
		const err = await errorOf(r);
		if (r.status === 401 && !opts.anonymous && onUnauthenticated)
			onUnauthenticated(err);
		throw err;
	}
	if (opts.raw)
		return r;
	if (r.status === 204)
		return null;
	const text = await r.text();
	return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api("GET", path, undefined, opts);
export const post = (path, body, opts) => api("POST", path,
    body === undefined ? {} : body, opts);
export const patch = (path, body, opts) => api("PATCH", path, body, opts);
export const del = (path, opts) => api("DELETE", path, undefined, opts);

// A path with query parameters; empty and null values are left out.
export function url(path, params) {
	const q = new URLSearchParams();
	for (const [k, v] of Object.entries(params || {}))
		if (v !== undefined && v !== null && v !== "")
			q.set(k, String(v));
	const s = q.toString();
	return s ? path + (path.includes("?") ? "&" : "?") + s : path;
}

// Every item of a paged list, following next_cursor, up to max items.
export async function all(path, params = {}, max = 10000) {
	const items = [];
	let cursor = null;
	do {
		const page = await get(url(path, Object.assign({}, params,
		    { limit: 1000, cursor })));
		items.push(...page.items);
		cursor = page.next_cursor;
	} while (cursor && items.length < max);
	return items;
}

// Path segment for a name that may hold '@' or '/'.
export const seg = (s) => encodeURIComponent(String(s));

// Fetch path and save it as filename through the browser's download.
export async function download(path, filename) {
	const r = await api("GET", path, undefined, { raw: true,
	    headers: { Accept: "*/*" } });
	const blob = await r.blob();
	const a = document.createElement("a");
	a.href = URL.createObjectURL(blob);
	a.download = filename;
	a.hidden = true;
	document.body.append(a);
	a.click();
	setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
	return blob.size;
}

// POST a large JSON body with upload progress: onProgress(sent, total).
// XMLHttpRequest is the one browser API that reports upload progress.
export function postWithProgress(path, body, onProgress) {
	return new Promise((resolve, reject) => {
		const data = JSON.stringify(body);
		const x = new XMLHttpRequest();
		x.open("POST", path);
		for (const [k, v] of Object.entries(headersFor("POST", body)))
			x.setRequestHeader(k, v);
		x.upload.onprogress = (e) => onProgress && onProgress(e.loaded,
		    e.lengthComputable ? e.total : data.length);
		x.upload.onload = () => onProgress && onProgress(data.length,
		    data.length, true);
		x.onerror = () => reject(new ApiError(0, "network",
		    "network error"));
		x.onload = () => {
			let doc = null;
			try {
				doc = x.responseText ? JSON.parse(x.responseText) :
				    null;
			} catch (e) {
				doc = null;
			}
			if (x.status >= 200 && x.status < 300)
				return resolve(doc);
			const e = doc && doc.error ? doc.error : {};
			const err = new ApiError(x.status, e.code || "http_" +
			    x.status, e.message || x.statusText,
			    x.getResponseHeader("X-Request-Id"));
			if (x.status === 401 && onUnauthenticated)
				onUnauthenticated(err);
			reject(err);
		};
		x.send(data);
	});
}
