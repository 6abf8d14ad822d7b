#!/bin/sh
echo "${GREETING:-hello} (running as $(id -u) on $(uname -s))"
