// libsodium: X25519, base64, random bytes, constant-time compare, memzero.
#pragma once
#include <sodium.h>
