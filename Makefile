# Two commands do all the set-up on a fresh Debian 12 / Python 3.11 machine:
#   make demo   installs everything, then runs the whole pipeline on the embedded default dataset
#   make test   installs everything, then runs the test suite
SHELL := /bin/bash
PY := .venv/bin/python
APT_PACKAGES := sox libsox-fmt-all fluidsynth fluid-soundfont-gm musescore-general-soundfont-small csound-soundfont \
	avldrums.lv2-soundfont hydrogen-drumkits libportaudio2 libsndfile1 \
	pulseaudio pulseaudio-utils libasound2-plugins \
	slurmctld slurmd slurm-client munge
DATA_ROOT ?= $(or $(FSDTAG_DATA_ROOT),data)
EXP_ROOT ?= $(or $(FSDTAG_EXP_ROOT),experiments)

.PHONY: demo test install apt

demo: install
	./run_demo.sh $(DATA_ROOT) $(EXP_ROOT)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=15 tests

install: apt .venv/.installed

# Each step skips what is already there, so both targets work on their own on a fresh machine.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	touch $@
