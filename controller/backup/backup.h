/*
 * The backup module: backups taken while the controller runs
 * (POST /v1/backups) and the restore of one into an empty data folder
 * (opsn-controller --restore).
 */
#ifndef OPSN_BACKUP_H
#define OPSN_BACKUP_H

struct ctl;

extern const struct ctl_module backup_module;

/*
 * Restore the backup file into c->conf.data_dir (absent or empty), apply
 * the migrations, start a new epoch and run the modules' m_restored hooks
 * (c->modules) in one transaction. Prints what it did on stdout. Runs
 * before any module's init; c->db is closed again on return.
 */
int	backup_restore(struct ctl *c, const char *file, char **cause);

#endif
