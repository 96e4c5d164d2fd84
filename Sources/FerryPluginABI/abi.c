/* The ABI target is the header; a C target needs one translation unit. The
 * asserts pin the layouts so an accidental change fails the build: structs only
 * grow at the end, and each version's size stays what it was. */
#include "ferry_plugin.h"

_Static_assert(FERRY_HOST_V1_SIZE == 8 + 23 * sizeof(void *), "ferry_host v1 layout changed");
_Static_assert(FERRY_HOST_V1_1_SIZE == 8 + 26 * sizeof(void *), "ferry_host v1.1 layout changed");
_Static_assert(offsetof(ferry_host, job_minimum_retry_delay) == FERRY_HOST_V1_SIZE, "v1.1 must only append to v1");
_Static_assert(offsetof(ferry_host, abi_minor) == FERRY_HOST_V1_1_SIZE, "v1.2 must only append to v1.1");
_Static_assert(FERRY_HOST_V1_2_SIZE == sizeof(ferry_host), "ferry_host v1.2 layout changed");
_Static_assert(FERRY_PLUGIN_DESCRIPTOR_V1_SIZE == sizeof(ferry_plugin_descriptor), "descriptor v1 layout changed");
_Static_assert(sizeof(ferry_error_info) == 56, "ferry_error_info v1 layout changed");
_Static_assert(sizeof(ferry_progress) == 32, "ferry_progress v1 layout changed");
_Static_assert(sizeof(ferry_source_health) == 48, "ferry_source_health layout changed");
