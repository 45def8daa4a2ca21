# The one version number: default_version in pg_ext/lwwsync.control.
# Every Makefile that compiles the core includes this file.
LWWSYNC_VERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(dir $(lastword $(MAKEFILE_LIST)))pg_ext/lwwsync.control)
VERSION_FLAGS := -DLWWSYNC_VERSION='"$(LWWSYNC_VERSION)"'
