/*
 * A libturbodiff of another interface, as far as the version goes: preloaded
 * (LD_PRELOAD) over the real one, it makes td_version report the next
 * MAJOR.MINOR, and the filters must refuse to run, saying to rebuild FFmpeg,
 * before they pass the library any struct.
 */
#include "turbodiff.h"

unsigned td_version(void)
{
    return TD_VERSION_INT + (1u << 8);
}
