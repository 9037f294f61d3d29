#!/bin/sh
echo "$GREETING from $(uname -s), uid $(id -u), in $(pwd)"
cat /etc/app/app.conf
