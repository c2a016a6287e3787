/*
 * opsnctl: global flags, the command table and dispatch. Adding a command is
 * one row below plus a handler in the file of its noun (node.c, ...).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "opsn/log.h"
#include "opsn/util.h"

#include "cli.h"

#define OPSNCTL_USAGE	"usage: opsnctl [-q] [-o table|json] [--url URL] " \
			"[--token-file FILE] [--ca FILE]\n" \
			"               COMMAND [ARGUMENT ...]\n"

enum {
	OPSNCTL_OPT_URL = 0x100,
	OPSNCTL_OPT_TOKEN,
	OPSNCTL_OPT_TOKEN_FILE,
	OPSNCTL_OPT_CA,
	OPSNCTL_OPT_VERSION,
	OPSNCTL_OPT_CMD,	/* + index in the command's c_opts */
};

static int	 opsnctl_help(struct cli_call *);

static const struct cli_cmd opsnctl_cmds[] = {
	{ { "health" }, "",
	  "show the controller's status and node counts",
	  { NULL }, 0, 0, 0, health_show },
	{ { "node", "list" }, "",
	  "list the nodes",
	  { NULL }, 0, 0, 0, node_list },
	{ { "node", "show" }, "NAME",
	  "show one node",
	  { NULL }, 1, 1, 0, node_show },
	{ { "node", "token" }, "[--ttl DURATION]",
	  "create a one-time join token for a new node",
	  { "ttl=" }, 0, 0, 0, node_token },
	{ { "node", "revoke" }, "NAME",
	  "revoke a node's certificate",
	  { NULL }, 1, 1, 0, node_revoke },
	{ { "node", "cordon" }, "NAME",
	  "take a hypervisor out of placement",
	  { NULL }, 1, 1, 0, node_cordon },
	{ { "node", "uncordon" }, "NAME",
	  "put a hypervisor back into placement (stops a drain)",
	  { NULL }, 1, 1, 0, node_uncordon },
	{ { "node", "drain" }, "NAME [--wait [--timeout DURATION]]",
	  "move every VM elsewhere (cold migration); ends cordoned",
	  { "wait", "timeout=" }, 1, 1, 0, node_drain },
	{ { "node", "evacuate" }, "NAME --fenced",
	  "rebuild an off node's VMs elsewhere from their images",
	  { "fenced" }, 1, 1, 0, node_evacuate },
	{ { "node", "set" }, "NAME [--cpu-ratio R] [--memory-ratio R] "
	  "[--disk-ratio R] [--reserve-cpus N] [--reserve-memory SIZE] "
	  "[--tags K=V,...]",
	  "set a hypervisor's allocation ratios, host reserve and tags",
	  { "cpu-ratio=", "memory-ratio=", "disk-ratio=", "reserve-cpus=",
	    "reserve-memory=", "tags=" }, 1, 1, 0, node_set },
	{ { "group", "add" }, "NAME [--policy anti-affinity|"
	  "soft-anti-affinity]",
	  "add an anti-affinity group of VMs",
	  { "policy=" }, 1, 1, 0, group_add },
	{ { "group", "list" }, "",
	  "list the anti-affinity groups",
	  { NULL }, 0, 0, 0, group_list },
	{ { "group", "delete" }, "NAME",
	  "delete an anti-affinity group without VMs",
	  { NULL }, 1, 1, 0, group_delete },
	{ { "cluster", "capacity" }, "[--plan PLAN]",
	  "VMs of each plan that still fit, N+1, empty nodes",
	  { "plan=" }, 0, 0, 0, cluster_capacity },
	{ { "cluster", "rebalance" }, "[--dry-run] [--max-moves N]",
	  "move VMs to lower the imbalance (hbal's way)",
	  { "dry-run", "max-moves=" }, 0, 0, 0, cluster_rebalance },
	{ { "image", "add" }, "NAME --file DISK [--format qcow2|raw] "
	  "[--kernel FILE [--initrd FILE] [--cmdline TEXT]]",
	  "upload a disk image (and a kernel to boot it)",
	  { "file=", "format=", "kernel=", "initrd=", "cmdline=" },
	  1, 1, 0, image_add },
	{ { "image", "list" }, "",
	  "list the images",
	  { NULL }, 0, 0, 0, image_list },
	{ { "image", "show" }, "NAME",
	  "show one image",
	  { NULL }, 1, 1, 0, image_show },
	{ { "vm", "create" }, "--name NAME --image IMAGE [--plan PLAN] "
	  "[--vcpus N] [--memory SIZE] [--disk SIZE] [--node NODE] "
	  "[--group GROUP] [--policy spread|pack] [--require K=V,...] "
	  "[--tenant TENANT] [--nic BRIDGE]... [--stopped] "
	  "[--wait [--timeout DURATION]]",
	  "create a VM, on a node or where it fits",
	  { "name=", "node=", "image=", "plan=", "vcpus=", "memory=", "disk=",
	    "tenant=", "nic=", "stopped", "wait", "timeout=", "group=",
	    "policy=", "require=" },
	  0, 0, 0, vm_create },
	{ { "vm", "list" }, "[--node NODE] [--tenant TENANT] [--state STATE]",
	  "list the VMs",
	  { "node=", "tenant=", "state=" }, 0, 0, 0, vm_list },
	{ { "vm", "show" }, "VM",
	  "show one VM, by name or id",
	  { NULL }, 1, 1, 0, vm_show },
	{ { "vm", "start" }, "VM [--wait [--timeout DURATION]]",
	  "start a VM",
	  { "wait", "timeout=" }, 1, 1, 0, vm_action },
	{ { "vm", "stop" }, "VM [--wait [--timeout DURATION]]",
	  "stop a VM",
	  { "wait", "timeout=" }, 1, 1, 0, vm_action },
	{ { "vm", "reboot" }, "VM [--wait [--timeout DURATION]]",
	  "reboot a VM",
	  { "wait", "timeout=" }, 1, 1, 0, vm_action },
	{ { "vm", "delete" }, "VM [--wait [--timeout DURATION]]",
	  "delete a VM and its disk",
	  { "wait", "timeout=" }, 1, 1, 0, vm_action },
	{ { "vm", "unknown" }, "",
	  "list the VMs nodes hold that a restored controller does not know",
	  { NULL }, 0, 0, 0, vm_unknown_list },
	{ { "vm", "unknown-delete" }, "ID",
	  "let its node delete a VM unknown to the controller",
	  { NULL }, 1, 1, 0, vm_unknown_delete },
	{ { "vm", "console-log" }, "VM [--follow]",
	  "print a VM's console output",
	  { "follow" }, 1, 1, 0, vm_console },
	{ { "tenant", "add" }, "--kind KIND "
	  "--name NAME [--insee CODE] [--siren SIREN] [--population N] "
	  "[--parent EPCI] [--email ADDRESS] [--joined YYYY-MM-DD] "
	  "[--siret SIRET] [--address LINE] [--postcode CODE] [--town TOWN] "
	  "[--category CATEGORY]",
	  "add a member (tenant)",
	  { "kind=", "name=", "insee=", "siren=", "population=", "parent=",
	    "email=", "joined=", "siret=", "address=", "postcode=", "town=",
	    "category=" }, 0, 0, 0, tenant_add },
	{ { "tenant", "list" }, "[--kind KIND] [--status STATUS] "
	  "[--parent EPCI]",
	  "list the members",
	  { "kind=", "status=", "parent=" }, 0, 0, 0, tenant_list },
	{ { "tenant", "show" }, "TENANT",
	  "show a member, with its quotas and use",
	  { NULL }, 1, 1, 0, tenant_show },
	{ { "tenant", "set" }, "TENANT [--name NAME] [--insee CODE] "
	  "[--siren SIREN] [--population N] [--parent EPCI | --no-parent] "
	  "[--email ADDRESS] [--quota-vcpus N|none] [--quota-memory SIZE|none] "
	  "[--quota-disk SIZE|none] [--quota-vms N|none] [--siret SIRET|none] "
	  "[--address LINE|none] [--postcode CODE|none] [--town TOWN|none] "
	  "[--category commune|groupement|ccas|department|region|other|none]",
	  "change a member's fields, quotas, or what it is billed as",
	  { "name=", "insee=", "siren=", "population=", "parent=", "no-parent",
	    "email=", "quota-vcpus=", "quota-memory=", "quota-disk=",
	    "quota-vms=", "siret=", "address=", "postcode=", "town=",
	    "category=" }, 1, 1, 0, tenant_set },
	{ { "tenant", "suspend" }, "TENANT",
	  "suspend a member: it gets no new services",
	  { NULL }, 1, 1, 0, tenant_action },
	{ { "tenant", "withdraw" }, "TENANT",
	  "a member leaves: history kept, no new services",
	  { NULL }, 1, 1, 0, tenant_action },
	{ { "tenant", "activate" }, "TENANT",
	  "reactivate a suspended member",
	  { NULL }, 1, 1, 0, tenant_action },
	{ { "tenant", "import" }, "--etalab FILE | --etalab-epci FILE | "
	  "--csv FILE [--departement CODE | --region CODE | --epci SIREN] "
	  "[--epci-file FILE] [--communes-file FILE]",
	  "import members from Etalab's files or a CSV file",
	  { "etalab=", "etalab-epci=", "csv=", "departement=", "region=",
	    "epci=", "epci-file=", "communes-file=" }, 0, 0, 0,
	  import_tenants },
	{ { "plan", "add" }, "NAME --vcpus N --memory SIZE --disk SIZE",
	  "add a plan: a named VM size",
	  { "vcpus=", "memory=", "disk=" }, 1, 1, 0, plan_add },
	{ { "plan", "list" }, "",
	  "list the plans",
	  { NULL }, 0, 0, 0, plan_list },
	{ { "token", "create" }, "--name NAME "
	  "--role admin|operator|finance|auditor [--tenant TENANT] "
	  "[--ttl DURATION]",
	  "create an API token (shown once)",
	  { "name=", "role=", "tenant=", "ttl=" }, 0, 0, 0, token_create },
	{ { "token", "list" }, "",
	  "list the API tokens",
	  { NULL }, 0, 0, 0, token_list },
	{ { "token", "revoke" }, "NAME",
	  "revoke an API token",
	  { NULL }, 1, 1, 0, token_revoke },
	{ { "user", "add" }, "NAME --role admin|operator|finance|auditor "
	  "[--tenant TENANT] [--email ADDRESS] [--password-stdin]",
	  "add a console account (prints its one-time password link)",
	  { "role=", "tenant=", "email=", "password-stdin" }, 1, 1, 0,
	  user_add },
	{ { "user", "list" }, "[--tenant TENANT]",
	  "list the console accounts",
	  { "tenant=" }, 0, 0, 0, user_list },
	{ { "user", "show" }, "NAME",
	  "show a console account",
	  { NULL }, 1, 1, 0, user_show },
	{ { "user", "link" }, "NAME",
	  "print a new one-time link to set the account's password",
	  { NULL }, 1, 1, 0, user_link },
	{ { "user", "disable" }, "NAME",
	  "disable a console account and end its sessions",
	  { NULL }, 1, 1, 0, user_disable },
	{ { "user", "enable" }, "NAME",
	  "enable a disabled console account",
	  { NULL }, 1, 1, 0, user_enable },
	{ { "user", "totp-reset" }, "NAME",
	  "remove an account's second factor (a lost phone)",
	  { NULL }, 1, 1, 0, user_totp_reset },
	{ { "user", "delete" }, "NAME",
	  "delete a console account and end its sessions",
	  { NULL }, 1, 1, 0, user_delete },
	{ { "audit", "list" }, "[--since DATE|DURATION] [--object OBJECT]",
	  "show the audit trail",
	  { "since=", "object=" }, 0, 0, 0, audit_list },
	{ { "audit", "verify" }, "[--file EXPORT]",
	  "check the audit trail against its signed checkpoints (in the "
	  "controller, or offline in an export with the CA of --ca)",
	  { "file=" }, 0, 0, CLI_CMD_OFFLINE, audit_verify },
	{ { "audit", "export" }, "[--file FILE]",
	  "write the whole audit trail with its signed checkpoints",
	  { "file=" }, 0, 0, 0, audit_export },
	{ { "audit", "checkpoint" }, "",
	  "sign the audit trail's head now",
	  { NULL }, 0, 0, 0, audit_checkpoint },
	{ { "usage" }, "--from DATE --to DATE [--tenant TENANT] "
	  "[--group metric|resource|day|month] [--format table|json|csv|ods] "
	  "[--sep semicolon|comma|tab] [--decimal comma|point] [--file FILE]",
	  "show what members used, per metric, resource, day or month",
	  { "tenant=", "from=", "to=", "group=", "format=", "sep=", "decimal=",
	    "file=" }, 0, 0, 0, usage_show },
	{ { "backend", "list" }, "",
	  "list the mail and web backends and their load",
	  { NULL }, 0, 0, 0, backend_list },
	{ { "backend", "show" }, "NAME",
	  "show one backend",
	  { NULL }, 1, 1, 0, backend_show },
	{ { "backend", "set" }, "NAME --mail-hostname HOST|none",
	  "set a backend's public host name: its MX records and its "
	  "certificate name it (default: the host's full name; "
	  "--public-name is the same)",
	  { "mail-hostname=", "public-name=" }, 1, 1, 0, backend_set },
	{ { "mail", "domain", "add" }, "NAME --tenant TENANT [--quota SIZE] "
	  "[--backend NAME]",
	  "add a mail domain (a DKIM key is made for it)",
	  { "tenant=", "quota=", "backend=" }, 1, 1, 0, mail_domain_add },
	{ { "mail", "domain", "list" }, "[--tenant TENANT] [--backend NAME]",
	  "list the mail domains",
	  { "tenant=", "backend=" }, 0, 0, 0, mail_domain_list },
	{ { "mail", "domain", "show" }, "NAME",
	  "show a mail domain",
	  { NULL }, 1, 1, 0, mail_domain_show },
	{ { "mail", "domain", "dns" }, "NAME",
	  "print the DNS records to publish (MX, SPF, DKIM, DMARC)",
	  { NULL }, 1, 1, 0, mail_domain_dns },
	{ { "mail", "domain", "check" }, "NAME [--resolver ADDR[:PORT]]",
	  "compare the published MX, SPF, DKIM and DMARC records with "
	  "what opsn expects",
	  { "resolver=" }, 1, 1, 0, check_domain },
	{ { "mail", "domain", "dkim-rotate" }, "NAME [--force]",
	  "make a new DKIM key; it signs once its record is published "
	  "(mail domain check), or at once with --force",
	  { "force" }, 1, 1, 0, mail_domain_dkim_rotate },
	{ { "mail", "domain", "delete" }, "NAME",
	  "delete a mail domain that has no mailbox left",
	  { NULL }, 1, 1, 0, mail_domain_delete },
	{ { "mail", "box", "add" }, "ADDRESS --quota SIZE [--name NAME] "
	  "--password-stdin | --password-hash HASH",
	  "add a mailbox",
	  { "name=", "quota=", "password-stdin", "password-hash=" }, 1, 1, 0,
	  mail_box_add },
	{ { "mail", "box", "list" }, "[--domain DOMAIN] [--tenant TENANT] "
	  "[--status STATUS]",
	  "list the mailboxes",
	  { "domain=", "tenant=", "status=" }, 0, 0, 0, mail_box_list },
	{ { "mail", "box", "show" }, "ADDRESS",
	  "show a mailbox and whether it is live on its backend",
	  { NULL }, 1, 1, 0, mail_box_show },
	{ { "mail", "box", "set" }, "ADDRESS [--name NAME] [--quota SIZE]",
	  "change a mailbox's name or quota",
	  { "name=", "quota=" }, 1, 1, 0, mail_box_set },
	{ { "mail", "box", "passwd" }, "ADDRESS --password-stdin | "
	  "--password-hash HASH",
	  "set a mailbox's password",
	  { "password-stdin", "password-hash=" }, 1, 1, 0, mail_box_passwd },
	{ { "mail", "box", "suspend" }, "ADDRESS",
	  "suspend a mailbox: no login, incoming mail held",
	  { NULL }, 1, 1, 0, mail_box_action },
	{ { "mail", "box", "activate" }, "ADDRESS",
	  "reactivate a suspended mailbox",
	  { NULL }, 1, 1, 0, mail_box_action },
	{ { "mail", "box", "delete" }, "ADDRESS",
	  "delete a mailbox; its mail is kept for the retention period",
	  { NULL }, 1, 1, 0, mail_box_action },
	{ { "mail", "box", "restore" }, "ADDRESS",
	  "bring back a deleted mailbox within its retention period",
	  { NULL }, 1, 1, 0, mail_box_action },
	{ { "mail", "box", "import" }, "--domain DOMAIN --csv FILE",
	  "add a domain's mailboxes from a CSV file, all or nothing",
	  { "domain=", "csv=" }, 0, 0, 0, mail_box_import },
	{ { "mail", "alias", "add" }, "ADDRESS TARGET...",
	  "add an alias or forward (@DOMAIN for a catch-all)",
	  { NULL }, 2, 101, 0, mail_alias_add },
	{ { "mail", "alias", "list" }, "[--domain DOMAIN]",
	  "list the aliases",
	  { "domain=" }, 0, 0, 0, mail_alias_list },
	{ { "mail", "alias", "delete" }, "ADDRESS",
	  "delete an alias",
	  { NULL }, 1, 1, 0, mail_alias_delete },
	{ { "site", "add" }, "HOST --tenant TENANT [--alias HOST]... "
	  "[--quota SIZE] [--backend NAME]",
	  "add a website",
	  { "tenant=", "alias=", "quota=", "backend=" }, 1, 1, 0, site_add },
	{ { "site", "list" }, "[--tenant TENANT] [--backend NAME]",
	  "list the websites",
	  { "tenant=", "backend=" }, 0, 0, 0, site_list },
	{ { "site", "show" }, "HOST",
	  "show a website",
	  { NULL }, 1, 1, 0, site_show },
	{ { "site", "suspend" }, "HOST",
	  "suspend a website: it shows a \"suspended\" page",
	  { NULL }, 1, 1, 0, site_action },
	{ { "site", "activate" }, "HOST",
	  "reactivate a suspended website",
	  { NULL }, 1, 1, 0, site_action },
	{ { "site", "delete" }, "HOST",
	  "delete a website",
	  { NULL }, 1, 1, 0, site_action },
	{ { "site", "cert", "set" }, "HOST --cert FILE --key FILE",
	  "serve a website with its member's certificate (chain and key in "
	  "PEM; the key goes to the web backend only)",
	  { "cert=", "key=" }, 1, 1, 0, site_cert },
	{ { "site", "cert", "acme" }, "HOST",
	  "go back to a certificate by ACME for a website",
	  { NULL }, 1, 1, 0, site_cert },
	{ { "site", "check" }, "HOST [--resolver ADDR[:PORT]]",
	  "compare the host name's and aliases' A/AAAA/CNAME records with "
	  "the web backend",
	  { "resolver=" }, 1, 1, 0, check_site },
	{ { "changes" }, "[--pending | --failed] [--node NAME]",
	  "the provisioning journal of the mail and web backends",
	  { "pending", "failed", "node=" }, 0, 0, 0, changes_list },
	{ { "tariff", "add" }, "--file FILE",
	  "add a tariff version from an INI or JSON file",
	  { "file=" }, 0, 0, 0, tariff_add },
	{ { "tariff", "list" }, "",
	  "list the tariff versions",
	  { NULL }, 0, 0, 0, tariff_list },
	{ { "tariff", "show" }, "NAME [--version N]",
	  "show a tariff's versions with their rates",
	  { "version=" }, 1, 1, 0, tariff_show },
	{ { "tariff", "default" }, "NAME",
	  "bill members bound to no tariff with this one",
	  { NULL }, 1, 1, 0, tariff_default },
	{ { "tariff", "end" }, "NAME VERSION --on YYYY-MM-DD",
	  "give an open-ended tariff version its last day",
	  { "on=" }, 2, 2, 0, tariff_end },
	{ { "tariff", "bind" }, "TENANT NAME|default",
	  "bill a member with a tariff (default: the default one)",
	  { NULL }, 2, 2, 0, tariff_bind },
	{ { "statement", "generate" }, "--period 2026-10|2026-Q4|2026",
	  "write draft statements of a period for every active member",
	  { "period=" }, 0, 0, 0, statement_generate },
	{ { "statement", "close" }, "--period PERIOD",
	  "close a period: its statements never change again",
	  { "period=" }, 0, 0, 0, statement_close },
	{ { "statement", "list" }, "[--period PERIOD] [--tenant TENANT] "
	  "[--status draft|closed]",
	  "list statements",
	  { "period=", "tenant=", "status=" }, 0, 0, 0, statement_list },
	{ { "statement", "show" }, "ID",
	  "show a statement with its lines",
	  { NULL }, 1, 1, 0, statement_show },
	{ { "statement", "periods" }, "",
	  "list billing periods with their status and checksum",
	  { NULL }, 0, 0, 0, statement_periods },
	{ { "statement", "export" }, "--period PERIOD --format csv|json|ods "
	  "[--summary] [--sep ';'|','|tab] [--decimal comma|point] "
	  "[--tenant TENANT] [--file FILE]",
	  "export a period for finance, with its checksum",
	  { "period=", "format=", "summary", "sep=", "decimal=", "tenant=",
	    "file=" }, 0, 0, 0, statement_export },
	{ { "statement", "pes" }, "--period PERIOD [--file FILE]",
	  "the titres de recettes of a closed period: a PES V2 file for the "
	  "public accountant (numbered once)",
	  { "period=", "file=" }, 0, 0, 0, statement_pes },
	{ { "adjustment", "add" }, "--tenant TENANT --amount EUR "
	  "--reason TEXT [--period PERIOD]",
	  "add a correction to a member's next open statement",
	  { "tenant=", "amount=", "reason=", "period=" }, 0, 0, 0,
	  adjustment_add },
	{ { "adjustment", "list" }, "[--tenant TENANT] [--pending]",
	  "list adjustments",
	  { "tenant=", "pending" }, 0, 0, 0, adjustment_list },
	{ { "backup", "create" }, "[--file FILE] [--keep]",
	  "take a backup while the controller runs and download it, checked",
	  { "file=", "keep" }, 0, 0, 0, backup_create },
	{ { "backup", "list" }, "",
	  "list the backups the controller keeps",
	  { NULL }, 0, 0, 0, backup_list },
	{ { "backup", "delete" }, "NAME",
	  "delete a backup the controller keeps",
	  { NULL }, 1, 1, 0, backup_delete },
	{ { "help" }, "[COMMAND]",
	  "list the commands, or show how to use one",
	  { NULL }, 0, CLI_MAXWORDS, CLI_CMD_LOCAL, opsnctl_help },
};

static const struct {
	const char	*name;
	enum cli_output	 output;
} opsnctl_outputs[] = {
	{ "table",	CLI_OUTPUT_TABLE },
	{ "json",	CLI_OUTPUT_JSON },
};

static const struct option opsnctl_globals[] = {
	{ "url",	required_argument,	NULL,	OPSNCTL_OPT_URL },
	{ "token",	required_argument,	NULL,	OPSNCTL_OPT_TOKEN },
	{ "token-file",	required_argument,	NULL, OPSNCTL_OPT_TOKEN_FILE },
	{ "ca",		required_argument,	NULL,	OPSNCTL_OPT_CA },
	{ "output",	required_argument,	NULL,	'o' },
	{ "quiet",	no_argument,		NULL,	'q' },
	{ "help",	no_argument,		NULL,	'h' },
	{ "version",	no_argument,		NULL,	OPSNCTL_OPT_VERSION },
};

#define OPSNCTL_SHORT	"o:qh"
#define OPSNCTL_HELP_COL 32	/* longer usages are cut in the list */

static size_t	 opsnctl_words(const struct cli_cmd *);
static const struct cli_cmd *opsnctl_find(int, char **, int *);
static int	 opsnctl_group(const char *);
static void	 opsnctl_list(FILE *, const char *);
static int	 opsnctl_unknown(int, char **);
static int	 opsnctl_global(int, char *, struct conf_src *);
static void	 opsnctl_set(char **, char *);

static size_t
opsnctl_words(const struct cli_cmd *cmd)
{
	size_t	 n;

	for (n = 0; n < CLI_MAXWORDS && cmd->c_path[n] != NULL; n++)
		;
	return (n);
}

/* The command whose whole path starts argv (longest wins); *used = words. */
static const struct cli_cmd *
opsnctl_find(int argc, char **argv, int *used)
{
	const struct cli_cmd	*best = NULL;
	size_t			 i, w, n;

	*used = 0;
	for (i = 0; i < nitems(opsnctl_cmds); i++) {
		n = opsnctl_words(&opsnctl_cmds[i]);
		if ((int)n > argc || (int)n <= *used)
			continue;
		for (w = 0; w < n; w++) {
			if (strcmp(argv[w], opsnctl_cmds[i].c_path[w]) != 0)
				break;
		}
		if (w == n) {
			best = &opsnctl_cmds[i];
			*used = (int)n;
		}
	}
	return (best);
}

/* Is word the first word of a longer command ("node")? */
static int
opsnctl_group(const char *word)
{
	size_t	 i;

	for (i = 0; i < nitems(opsnctl_cmds); i++) {
		if (opsnctl_words(&opsnctl_cmds[i]) > 1 &&
		    strcmp(opsnctl_cmds[i].c_path[0], word) == 0)
			return (1);
	}
	return (0);
}

/* The commands (those starting with group, or all) with their summaries. */
static void
opsnctl_list(FILE *f, const char *group)
{
	const struct cli_cmd	*cmd;
	char			*line, *tmp;
	size_t			 i, w, width = 0, len;
	int			 pass;

	/* Pass 0 measures the first column, pass 1 prints. */
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < nitems(opsnctl_cmds); i++) {
			cmd = &opsnctl_cmds[i];
			if (group != NULL && strcmp(cmd->c_path[0], group) != 0)
				continue;
			line = xstrdup(cmd->c_path[0]);
			for (w = 1; w < opsnctl_words(cmd); w++) {
				xasprintf(&tmp, "%s %s", line, cmd->c_path[w]);
				free(line);
				line = tmp;
			}
			if (cmd->c_args[0] != '\0') {
				xasprintf(&tmp, "%s %s", line, cmd->c_args);
				/* Keep the operands; "help COMMAND" has all. */
				if (strlen(tmp) > OPSNCTL_HELP_COL) {
					free(tmp);
					len = strcspn(cmd->c_args, "[-");
					xasprintf(&tmp, "%s %.*s...", line,
					    (int)len, cmd->c_args);
				}
				free(line);
				line = tmp;
			}
			len = strlen(line);
			if (pass == 0 && len > width)
				width = len;
			if (pass == 1)
				fprintf(f, "  %-*s  %s\n", (int)width, line,
				    cmd->c_summary);
			free(line);
		}
	}
}

static int
opsnctl_help(struct cli_call *call)
{
	const struct cli_cmd	*cmd;
	int			 used;

	if (call->ca_argc == 0) {
		printf(OPSNCTL_USAGE "\nCommands:\n");
		opsnctl_list(stdout, NULL);
		printf("\n'opsnctl help COMMAND' shows a command's options.\n"
		    "Settings come from ~/.config/opsn/opsnctl.conf, then "
		    "OPSN_URL, OPSN_TOKEN\n(or OPSN_TOKEN_FILE) and OPSN_CA, "
		    "then the flags. See opsnctl(1).\n");
		return (CLI_EXIT_OK);
	}
	cmd = opsnctl_find(call->ca_argc, call->ca_argv, &used);
	if (cmd != NULL && used == call->ca_argc) {
		cli_print_usage(stdout, cmd);
		printf("%s\n", cmd->c_summary);
		return (CLI_EXIT_OK);
	}
	if (call->ca_argc == 1 && opsnctl_group(call->ca_argv[0])) {
		opsnctl_list(stdout, call->ca_argv[0]);
		return (CLI_EXIT_OK);
	}
	return (opsnctl_unknown(call->ca_argc, call->ca_argv));
}

static int
opsnctl_unknown(int argc, char **argv)
{
	char	*clean;

	if (argc == 1 && opsnctl_group(argv[0])) {
		fprintf(stderr, "opsnctl: '%s' needs a command:\n", argv[0]);
		opsnctl_list(stderr, argv[0]);
		return (CLI_EXIT_USAGE);
	}
	clean = format_clean(argv[argc > 1 && opsnctl_group(argv[0]) ? 1 : 0]);
	fprintf(stderr, "opsnctl: unknown command '%s'\n", clean);
	free(clean);
	if (opsnctl_group(argv[0]))
		opsnctl_list(stderr, argv[0]);
	else
		fprintf(stderr, "run 'opsnctl help' for the list\n");
	return (CLI_EXIT_USAGE);
}

/* Take a flag's value, and wipe it from argv so ps(1) no longer shows it. */
static void
opsnctl_set(char **field, char *value)
{
	free(*field);
	*field = xstrdup(value);
	explicit_bzero(value, strlen(value));
}

/* A global flag, wherever it is; -1 to go on, else an exit status. */
static int
opsnctl_global(int ch, char *arg, struct conf_src *flags)
{
	size_t	 i;

	switch (ch) {
	case OPSNCTL_OPT_URL:
		free(flags->cs_url);
		flags->cs_url = xstrdup(arg);
		return (-1);
	case OPSNCTL_OPT_TOKEN:
		opsnctl_set(&flags->cs_token, arg);
		return (-1);
	case OPSNCTL_OPT_TOKEN_FILE:
		free(flags->cs_token_file);
		flags->cs_token_file = xstrdup(arg);
		return (-1);
	case OPSNCTL_OPT_CA:
		free(flags->cs_ca);
		flags->cs_ca = xstrdup(arg);
		return (-1);
	case 'o':
		for (i = 0; i < nitems(opsnctl_outputs); i++) {
			if (strcmp(arg, opsnctl_outputs[i].name) == 0) {
				cli_conf.cc_output = opsnctl_outputs[i].output;
				return (-1);
			}
		}
		fprintf(stderr, "opsnctl: -o: '%s' is not table or json\n",
		    arg);
		return (CLI_EXIT_USAGE);
	case 'q':
		cli_conf.cc_quiet = 1;
		return (-1);
	case OPSNCTL_OPT_VERSION:
		printf("opsnctl %s\n", OPSN_VERSION);
		return (CLI_EXIT_OK);
	default:
		return (CLI_EXIT_USAGE);
	}
}

int
main(int argc, char *argv[])
{
	const struct cli_cmd	*cmd;
	struct conf_src		 flags;
	struct cli_call		 call;
	struct option		 longopts[nitems(opsnctl_globals) +
				    CLI_MAXOPTS + 1];
	char			**avbase, **av, *cause = NULL, *name;
	size_t			 i, n = 0;
	int			 ac, ch, rc, used;

	log_init("opsnctl", LOG_LEVEL_WARN, NULL);
	memset(&flags, 0, sizeof(flags));
	memset(&call, 0, sizeof(call));

	/* getopt names the program in its messages: make it "opsnctl". */
	av = avbase = xcalloc(argc + 1, sizeof(*av));
	av[0] = "opsnctl";
	for (ac = 1; ac < argc; ac++)
		av[ac] = argv[ac];

	/* Flags before the command. */
	memset(longopts, 0, sizeof(longopts));
	memcpy(longopts, opsnctl_globals, sizeof(opsnctl_globals));
	while ((ch = getopt_long(ac, av, "+" OPSNCTL_SHORT, longopts,
	    NULL)) != -1) {
		if (ch == 'h') {
			call.ca_argc = 0;
			rc = opsnctl_help(&call);
			goto out;
		}
		if ((rc = opsnctl_global(ch, optarg, &flags)) != -1) {
			if (rc == CLI_EXIT_USAGE)
				fprintf(stderr, OPSNCTL_USAGE);
			goto out;
		}
	}
	if (optind == ac) {
		rc = opsnctl_help(&call);
		goto out;
	}
	if ((cmd = opsnctl_find(ac - optind, av + optind, &used)) == NULL) {
		rc = opsnctl_unknown(ac - optind, av + optind);
		goto out;
	}
	call.ca_cmd = cmd;

	/*
	 * The command's own options and the global flags, anywhere after the
	 * command's words; getopt sorts the operands to the end.
	 */
	n = nitems(opsnctl_globals);
	for (i = 0; i < CLI_MAXOPTS && cmd->c_opts[i] != NULL; i++, n++) {
		name = xstrdup(cmd->c_opts[i]);
		longopts[n].has_arg = no_argument;
		if (name[0] != '\0' && name[strlen(name) - 1] == '=') {
			name[strlen(name) - 1] = '\0';
			longopts[n].has_arg = required_argument;
		}
		longopts[n].name = name;
		longopts[n].val = OPSNCTL_OPT_CMD + (int)i;
	}
	av[optind + used - 1] = "opsnctl";
	av += optind + used - 1;
	ac -= optind + used - 1;
	optind = 0;
	while ((ch = getopt_long(ac, av, OPSNCTL_SHORT, longopts,
	    NULL)) != -1) {
		if (ch >= OPSNCTL_OPT_CMD &&
		    ch < OPSNCTL_OPT_CMD + CLI_MAXOPTS) {
			i = (size_t)(ch - OPSNCTL_OPT_CMD);
			call.ca_optv[i] = optarg != NULL ? optarg : "";
			call.ca_optl[i] = xrealloc(call.ca_optl[i],
			    (call.ca_optn[i] + 1) * sizeof(*call.ca_optl[i]));
			call.ca_optl[i][call.ca_optn[i]++] = call.ca_optv[i];
			continue;
		}
		if (ch == 'h') {
			cli_print_usage(stdout, cmd);
			printf("%s\n", cmd->c_summary);
			rc = CLI_EXIT_OK;
			goto out;
		}
		if ((rc = opsnctl_global(ch, optarg, &flags)) != -1) {
			if (rc == CLI_EXIT_USAGE)
				cli_usage(&call);
			goto out;
		}
	}
	call.ca_argc = ac - optind;
	call.ca_argv = av + optind;
	if (call.ca_argc < cmd->c_min || call.ca_argc > cmd->c_max) {
		rc = cli_usage(&call);
		goto out;
	}
	for (i = 0; i < (size_t)call.ca_argc; i++) {
		if (call.ca_argv[i][0] == '\0') {
			fprintf(stderr, "opsnctl: empty argument\n");
			rc = cli_usage(&call);
			goto out;
		}
	}
	if (flags.cs_token != NULL && flags.cs_token_file != NULL) {
		fprintf(stderr, "opsnctl: give only one of --token and "
		    "--token-file\n");
		rc = cli_usage(&call);
		goto out;
	}

	if (!(cmd->c_flags & CLI_CMD_LOCAL)) {
		if (conf_load(&flags, &cause) == -1 &&
		    (cmd->c_flags & CLI_CMD_OFFLINE))
			call.ca_conf_error = cause;
		else if (cause != NULL) {
			fprintf(stderr, "opsnctl: %s\n", cause);
			free(cause);
			rc = CLI_EXIT_ERROR;
			goto out;
		}
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			fprintf(stderr, "opsnctl: cannot start libcurl\n");
			rc = CLI_EXIT_ERROR;
			goto out;
		}
	}
	rc = cmd->c_fn(&call);
	cli_close();
	if (!(cmd->c_flags & CLI_CMD_LOCAL))
		curl_global_cleanup();

out:
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "opsnctl: stdout: %s\n", strerror(errno));
		rc = CLI_EXIT_ERROR;
	}
	conf_src_clear(&flags);
	conf_clear();
	for (i = nitems(opsnctl_globals); i < n; i++)
		free((char *)longopts[i].name);
	for (i = 0; i < CLI_MAXOPTS; i++)
		free(call.ca_optl[i]);
	free(call.ca_conf_error);
	free(avbase);
	return (rc);
}
