# LANrage — every job is one make target. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
# Debian packages the build, the tests and the lab need.
DEB_PACKAGES := libnl-3-dev libnl-genl-3-dev libsodium-dev pkg-config graphviz nftables iproute2 \
	wireguard-tools wireguard-go socat conntrack coturn stun-client iputils-ping xz-utils binutils
RELEASE_FLAGS := -c release --static-swift-stdlib -Xswiftc -gnone

.PHONY: all build release deps test bench size charts clean

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

clean:
	rm -rf .build

## charts: regenerate StateCharts/*.dot and *.svg from the code.
CHARTS := peer
charts:
	$(SWIFT) build --product lanrage
	@for chart in $(CHARTS); do \
		.build/debug/lanrage chart $$chart > StateCharts/$$chart.dot && \
		dot -Tsvg StateCharts/$$chart.dot > StateCharts/$$chart.svg && echo "StateCharts/$$chart.{dot,svg}"; \
	done
