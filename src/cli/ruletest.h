/* `astgate test`: runs rule tests written in ast-grep's format (sgconfig.yml `testConfigs`, test
 * files with `id`/`valid`/`invalid`, `__snapshots__/<id>-snapshot.yml`) through the engine. */
#ifndef AG_RULETEST_H
#define AG_RULETEST_H

/* The `astgate test` command: argv holds its arguments (after "test"). Prints a line and a diff
 * per failing case, a line per rule and a summary on stdout; errors in sgconfig.yml, rule files
 * and test files on stderr as file:line:col: message. Returns the exit status: 0 when every case
 * passes, 1 on a failing case or a bad file, 2 on a usage error. Not thread-safe (one run). */
int ag_ruletest_main(int argc, char **argv);

#endif
