# strata: `make demo` and `make test` set up everything on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
BIN ?= /usr/local/bin

.PHONY: all setup build link test demo bench clean

all: build

setup:
	bash native-deps/setup.sh

build: setup
	npm run --silent build

# `strata` on PATH: package.json's bin (the bundled CLI), linked where root's PATH finds it; and
# mount(8)'s helper for `mount -t fuse.strata` and fstab entries.
link: build
	ln -sf "$(CURDIR)/dist/bundle/strata.cjs" "$(BIN)/strata"
	ln -sf "$(CURDIR)/dist/bundle/strata.cjs" /sbin/mount.fuse.strata

test: link
	bash test/run.sh

demo: link
	bash examples/demo.sh

bench: link
	bash bench/run.sh
	bash bench/store.sh
	bash bench/registry.sh
	bash bench/build.sh
	bash bench/containers.sh
	bash bench/docker-driver.sh

clean:
	rm -rf dist native-deps/sys/build
