/* astgate command line: argument parsing and dispatch to the subcommands. */
#include "util.h"

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 0;
}
