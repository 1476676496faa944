# syntax=docker/dockerfile:1
#
# okta-ldap-hook: one service process (hook port 8080, ops port 9090) running as UID/GID 10001, ready for
# a read-only root filesystem (it writes to /tmp only; mount an emptyDir there).
#
#   docker build -t okta-ldap-hook .                    # production image (last stage: runtime)
#   docker build --target dev -t okta-ldap-hook:dev .   # + writable sources in /app for skaffold sync
#
# Both stages use the same base (the venv is copied between them): Python 3.11 as in CI, on Debian 12.
# Tag, not digest, so security rebuilds of the base image are picked up; requirements.lock pins every
# Python dependency with hashes.

# ---------------------------------------------------------------------------------------------- build
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/okta-ldap-hook
ENV PATH=/opt/okta-ldap-hook/bin:$PATH
WORKDIR /src
# Dependencies first, so their layer is reused until the lock changes. --require-hashes and --no-deps:
# exactly the locked files, nothing resolved or fetched beyond them.
COPY requirements.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements.lock
# The service, built with the locked setuptools (no build isolation, so nothing unlocked is downloaded).
COPY pyproject.toml ./
COPY service/ service/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && pip check \
 && python -m compileall -q /opt/okta-ldap-hook/lib

# ------------------------------------------------------------------------------------- runtime-base
FROM python:3.11-slim-bookworm AS runtime-base
# A numeric user and group (Kubernetes' runAsNonRoot can only verify a numeric USER); no home, no login.
RUN groupadd --system --gid 10001 okta-ldap-hook \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin okta-ldap-hook
# Root-owned and read-only for the service user: the code cannot be modified at run time.
COPY --from=build /opt/okta-ldap-hook /opt/okta-ldap-hook
ENV PATH=/opt/okta-ldap-hook/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
# checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the chart probes /livez and /readyz on port 9090
# Exec form: the service is PID 1 and receives SIGTERM itself (10 s graceful drain).
ENTRYPOINT ["okta-ldap-hook"]
CMD ["serve", "--config", "/etc/okta-ldap-hook/config.yaml"]

# ---------------------------------------------------------------------------------------------- dev
# For `skaffold dev` only: the sources in /app, owned by the service user so skaffold can sync *.py
# files into the running container; PYTHONPATH puts them before the installed copy, and
# `serve --reload` restarts on changes. Needs readOnlyRootFilesystem: false (deploy/dev/values.yaml).
FROM runtime-base AS dev
COPY --chown=10001:10001 service/ /app/service/
ENV PYTHONPATH=/app
WORKDIR /app

# ------------------------------------------------------------------------------------------ runtime
# The default (last) stage: the production image.
FROM runtime-base AS runtime
LABEL org.opencontainers.image.title="okta-ldap-hook" \
      org.opencontainers.image.description="Answers Okta inline hooks with data from an LDAP directory" \
      org.opencontainers.image.licenses="Apache-2.0"
