/* The airlock-sandbox executable: all of it lives in CAirlockShim (helper.c). */
#include <CAirlockShim.h>

int main(int argc, char **argv) { return al_helper_main(argc, argv); }
