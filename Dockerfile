# pushtrio: the push-notification service in a slim image.
#
#   docker build -t pushtrio .
#   docker run --rm -p 8080:8080 pushtrio          # embedded queue and limiter
#   docker compose up --build                      # with Kafka and Redis (docker-compose.yml)
#
# Configuration comes from the environment (see README.md); the image only sets
# HOST=0.0.0.0 so the service is reachable from outside the container.

# --- build: a wheel of the project (no compiler needed: every dependency, the Kafka
# codecs python-snappy (on cramjam), lz4 and zstandard included, has cp311 manylinux
# wheels for x86_64 and aarch64)
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

# --- runtime
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080
COPY --from=build /wheels /wheels
# The check fails the build if kafka-python cannot decode snappy, lz4 or zstd batches
# (a consumer without them stalls on the first such batch).
RUN pip install --no-index --find-links=/wheels pushtrio \
    && python -c "import kafka.codec as c; assert c.has_snappy() and c.has_lz4() and c.has_zstd()" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin pushtrio
USER pushtrio
WORKDIR /tmp
EXPOSE 8080
# 503 (a component down) or no answer makes urlopen raise: the container turns unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]
# SIGTERM drains in-flight work within SHUTDOWN_TIMEOUT; give docker stop as long.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pushtrio"]
CMD ["serve"]
