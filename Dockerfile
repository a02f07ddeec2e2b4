# netdoctor as a diagnostic container (see README "Run as a container").
#
#   docker build -t netdoctor .                                  # public base: python:3.12-slim
#   bash scripts/build-image.sh                                  # no registry: a local Debian base
#
# BASE must provide python3 with the venv module: python:3.12-slim has it in /usr/local/bin, a Debian
# image with python3 + python3-venv in /usr/bin; `python3 -m venv` works with both.
ARG BASE=python:3.12-slim

# --- the dependency list alone, so the slow layer below is rebuilt only when the list changes ----------
FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /requirements.txt

# --- build: a virtualenv in /opt/netdoctor, copied whole into the runtime stage ----------------------
FROM ${BASE} AS build
# pip's index, for builds that must use a mirror (scripts/build-image.sh passes this machine's setting).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/netdoctor
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN /opt/netdoctor/bin/pip install -q -r /tmp/requirements.txt
COPY . /src
# pip and setuptools (25 MB) are not needed to run. Plugins: `FROM netdoctor`, then
# `RUN python -m ensurepip && python -m pip install my-checks`.
RUN /opt/netdoctor/bin/pip install -q --no-deps /src \
 && /opt/netdoctor/bin/python -m pip uninstall -q -y pip setuptools
# Every library but netdoctor itself as bytecode only (scripts/bytecode-only.sh): half their size.
COPY scripts/bytecode-only.sh /usr/local/bin/
RUN cd "$(/opt/netdoctor/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && find . -mindepth 1 -maxdepth 1 ! -name 'netdoctor' ! -name 'netdoctor-*' \
      -exec sh /usr/local/bin/bytecode-only.sh /opt/netdoctor/bin/python {} +

# --- runtime root: the base, iptables and nftables, without what only installing packages needs ---------
FROM ${BASE} AS runtime-root
# iptables (both backends: iptables-nft-save, iptables-legacy-save) and nftables (nft -j, for firewalld's and
# Docker 29's native tables): netdoctor runs them from THIS image on a thread that has entered the host's
# network namespace (setns), so the firewall checks read the host's rules without needing anything
# installed on the host. Nothing else is needed: links, routes, sockets and sysctls are read through
# netlink and /proc.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables nftables >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
# The image runs netdoctor and nothing else, so it keeps no package manager (apt, dpkg and the perl,
# debconf and gpg they need: 20 MB), no glibc charset converters (gconv: Python has its own codecs), no
# docs but the copyright files, no locales, and the standard library as bytecode only. Plugins still
# install with pip (see above).
COPY scripts/bytecode-only.sh /usr/local/bin/
RUN python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])' >/tmp/stdlib \
 && cd "$(cat /tmp/stdlib)" && rm -rf test lib2to3 pydoc_data idlelib turtledemo \
 && find . -mindepth 1 -maxdepth 1 ! -name 'site-packages' ! -name 'dist-packages' \
      -exec sh /usr/local/bin/bytecode-only.sh python3 {} + \
 && rm -rf /var/lib/apt /var/cache/apt /var/cache/debconf /var/lib/dpkg /var/log/* /etc/apt /etc/dpkg \
      /usr/bin/apt* /usr/bin/dpkg* /usr/bin/debconf* /usr/bin/perl* /usr/bin/gpgv /usr/lib/apt /usr/lib/dpkg \
      /usr/share/dpkg /usr/share/debconf /usr/share/perl* /usr/lib/*-linux-gnu/perl* /usr/lib/*-linux-gnu/libapt-* \
      /usr/lib/*-linux-gnu/gconv /usr/share/man /usr/share/info /usr/share/locale /usr/share/lintian \
      /usr/local/bin/bytecode-only.sh /tmp/stdlib \
 && find /usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete

# --- runtime ---------------------------------------------------------------------------------------------
FROM scratch
COPY --from=runtime-root / /
COPY --from=build /opt/netdoctor /opt/netdoctor
ENV PATH=/opt/netdoctor/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# Runs as root, on purpose. What netdoctor may do is bounded by the capabilities `docker run` grants
# (NET_ADMIN, SYS_ADMIN, SYS_PTRACE), not by the uid: setns needs CAP_SYS_ADMIN, iptables-save
# CAP_NET_ADMIN, and opening the host's /proc/1/ns/net is a ptrace-read check that needs CAP_SYS_PTRACE
# (PID 1 holds capabilities the container lacks). A non-root user with file capabilities on python would need every one of those caps
# added anyway, plus ambient caps for the iptables-save child, plus the host-specific gid of
# docker.sock, and the socket is root-equivalent on the host in any case: more flags, same power.
USER root
# Python turns SIGINT into a clean exit even as PID 1, where SIGTERM would be ignored: `docker stop`
# and Ctrl-C both end a run (or the TUI) at once.
STOPSIGNAL SIGINT
# The exit status is netdoctor's own (0 healthy, 1 findings at --fail-on, 2 bad input, 3 could not
# check), so `docker run --rm ... netdoctor check web` works as a health probe or a CI gate.
ENTRYPOINT ["netdoctor"]
CMD ["check"]

ARG BASE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="netdoctor" \
      org.opencontainers.image.description="Read-only network doctor for Docker containers: diagnosis with evidence and fixes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE}"
