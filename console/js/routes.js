// Every address of the console and the page that draws it. Public pages
// are the ones shown without a session.

import { loginPage, setupPage, accountPage } from "./pages/auth.js";
import { dashboardPage } from "./pages/dashboard.js";
import { membersPage, memberPage } from "./pages/members.js";
import { domainsPage, domainPage } from "./pages/mail.js";
import { sitesPage } from "./pages/sites.js";
import { vmsPage, vmPage } from "./pages/vms.js";
import { nodesPage, nodePage } from "./pages/nodes.js";
import { usagePage, periodsPage, statementsPage, statementPage,
    adjustmentsPage } from "./pages/finance.js";
import { usersPage } from "./pages/users.js";

export const routes = [
	{ re: /^\/login$/, page: loginPage, public: true },
	{ re: /^\/setup$/, page: setupPage, public: true },
	{ re: /^\/account$/, page: accountPage },
	{ re: /^\/dashboard$/, page: dashboardPage },
	{ re: /^\/members$/, page: membersPage },
	{ re: /^\/members\/([^/]+)$/, page: memberPage },
	{ re: /^\/mail$/, page: domainsPage },
	{ re: /^\/mail\/([^/]+)$/, page: domainPage },
	{ re: /^\/sites$/, page: sitesPage },
	{ re: /^\/vms$/, page: vmsPage },
	{ re: /^\/vms\/([^/]+)$/, page: vmPage },
	{ re: /^\/nodes$/, page: nodesPage },
	{ re: /^\/nodes\/([^/]+)$/, page: nodePage },
	{ re: /^\/finance$/, page: usagePage },
	{ re: /^\/finance\/periods$/, page: periodsPage },
	{ re: /^\/finance\/statements$/, page: statementsPage },
	{ re: /^\/finance\/statements\/(\d+)$/, page: statementPage },
	{ re: /^\/finance\/adjustments$/, page: adjustmentsPage },
	{ re: /^\/users$/, page: usersPage },
];
