# promote-bot: runs `promote-bot serve` as a non-root user. State lives in /data (a volume),
# the config file is expected at /config/promote-bot.toml (mount it read-only).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 promote \
    && mkdir -p /data /config \
    && chown promote /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install . && rm -rf /src

USER promote
WORKDIR /data
ENV PROMOTE_BOT_DB=/data/promote-bot.db \
    PROMOTE_BOT_CONFIG=/config/promote-bot.toml \
    PORT=3000
VOLUME ["/data"]
EXPOSE 3000
# /healthz answers on PORT in HTTP and Socket Mode alike (the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=4)"]
CMD ["promote-bot", "serve"]
