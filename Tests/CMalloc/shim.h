// glibc's allocator statistics (malloc.h is not in Glibc's Swift module), for tests that a
// structure does not grow.
#pragma once
#include <malloc.h>
