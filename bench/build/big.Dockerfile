# The whole (1 GB) context in one layer, then a step reading it.
ARG BASE=busybox:latest
FROM ${BASE}
COPY . /ctx
RUN wc -c /ctx/d00/f000000.dat > /size
