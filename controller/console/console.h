/* The console module: the web console's files, its accounts and sessions. */
#ifndef OPSN_CONSOLE_H
#define OPSN_CONSOLE_H

extern const struct ctl_module console_module;

#endif
