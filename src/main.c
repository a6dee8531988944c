/* main.c: placeholder until the event loop lands. */
#include <stdio.h>
int main(void)
{
    fputs("memrelay: not built yet\n", stderr);
    return 1;
}
