// lwwsync core: the version, from pg_ext/lwwsync.control (see version.mk).
#pragma once
#ifndef LWWSYNC_VERSION
#error "LWWSYNC_VERSION is not defined: build through the Makefiles (version.mk reads pg_ext/lwwsync.control)"
#endif
