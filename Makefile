# LANrage — every job is one make target. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
# Debian packages the build, the tests and the lab need.
DEB_PACKAGES := libnl-3-dev libnl-genl-3-dev libsodium-dev pkg-config graphviz nftables iproute2 \
	wireguard-tools wireguard-go socat conntrack coturn stun-client iputils-ping xz-utils binutils
RELEASE_FLAGS := -c release --static-swift-stdlib -Xswiftc -gnone

.PHONY: all build release deps test bench size charts clean fuzz bench-stun

all: build

## deps: install missing Debian packages (as root), or say exactly what is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages (run as root or: sudo apt-get install $$missing)"; exit 1; \
		fi; \
	fi

build:
	$(SWIFT) build

release:
	$(SWIFT) build $(RELEASE_FLAGS) --product lanrage

## test: everything — unit tests, lab tests in network namespaces, chart and footprint checks.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

## fuzz: libFuzzer on the STUN decoder and server (ASan), FUZZ_RUNS executions over FUZZ_JOBS processes.
FUZZ_RUNS ?= 10000000
FUZZ_JOBS ?= 2
fuzz:
	$(SWIFT) build --scratch-path .build-fuzz -c release --product STUNFuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
	Tests/Fuzz/run.sh .build-fuzz/release/STUNFuzz $(FUZZ_RUNS) $(FUZZ_JOBS)

## bench-stun: STUN encode/decode throughput and allocations (package-benchmark).
bench-stun:
	$(SWIFT) package --allow-writing-to-package-directory benchmark --target STUNBenchmarks

clean:
	rm -rf .build .build-fuzz
