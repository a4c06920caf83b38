/* `astgate scan`: runs rule files over source files and prints every match, as ast-grep's
 * `scan --json=stream` does (the differential tests against ast-grep read it); -U writes the
 * fixes back. */
#ifndef AG_SCAN_H
#define AG_SCAN_H

/* The `astgate scan` command: argv holds its arguments (after "scan"). Prints one line per match
 * on stdout (a JSON object with --json), rule-file errors on stderr as file:line:col: cause.
 * Returns the exit status: 0 when every file was read (and, with -U, written), 1 on a bad rule
 * file or an unreadable or unwritable input, 2 on a usage error. Not thread-safe (one run). */
int ag_scan_main(int argc, char **argv);

#endif
