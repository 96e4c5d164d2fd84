/* The ABI target is the header; a C target needs one translation unit. The
 * asserts pin the v1 layout so an accidental change fails the build. */
#include "ferry_plugin.h"

_Static_assert(FERRY_HOST_V1_SIZE == sizeof(ferry_host), "ferry_host v1 layout changed");
_Static_assert(FERRY_PLUGIN_DESCRIPTOR_V1_SIZE == sizeof(ferry_plugin_descriptor), "descriptor v1 layout changed");
_Static_assert(sizeof(ferry_error_info) == 56, "ferry_error_info v1 layout changed");
_Static_assert(sizeof(ferry_progress) == 32, "ferry_progress v1 layout changed");
