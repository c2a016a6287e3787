// The new-password fields every form uses (account, one-time link,
// mailbox) and their checks. The controller checks the same rule.

import { t } from "./i18n.js";

export const MIN_PASSWORD = 12;

// A new password and its confirmation; labels are string keys.
export function passwordFields(label = "setup.new", confirm = "setup.confirm") {
	return [
		{ name: "password", label: t(label), type: "password",
		  required: true, hint: t("setup.rule", { n: MIN_PASSWORD }),
		  attrs: { autocomplete: "new-password", minlength:
		  String(MIN_PASSWORD) } },
		{ name: "confirm", label: t(confirm), type: "password",
		  required: true, attrs: { autocomplete: "new-password" } },
	];
}

// For form({validate}): the fields' errors, or null.
export function checkPasswords(v) {
	if (v.password.length < MIN_PASSWORD)
		return { password: t("setup.short", { n: MIN_PASSWORD }) };
	if (v.password !== v.confirm)
		return { confirm: t("setup.mismatch") };
	return null;
}
