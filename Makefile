# Convenience targets; each is one script that also works on its own.
.PHONY: packages deb rpm systest

packages:        ## .deb and .rpm into dist/, lintian and rpmlint clean
	bash scripts/build-packages.sh

deb:
	bash scripts/build-packages.sh --deb-only

rpm:
	bash scripts/build-packages.sh --rpm-only

systest:         ## the .deb in a booted Debian 12 container (root; see tests/system/)
	.venv/bin/python -m tests.system.systest
