# A small app: dependencies, then sources, each followed by a build step.
ARG BASE=busybox:latest
FROM ${BASE}
WORKDIR /app
COPY deps.txt ./
RUN sed 's/^/resolved: /' deps.txt > deps.lock
COPY src/ ./src/
RUN find src -type f | sort | xargs cat | md5sum > build.out
CMD ["cat", "/app/build.out"]
