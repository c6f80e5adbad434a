#!/bin/sh
# thumbnail IN OUT [SIZE]: a SIZExSIZE JPEG cut from the middle of IN.
# GraphicsMagick's own limits come first: an untrusted image may claim a huge
# size (a "decompression bomb") to exhaust memory or disk before it is decoded.
set -eu
size=${3:-120}
exec gm convert -limit Pixels 50000000 -limit Width 20000 -limit Height 20000 \
    -limit Memory 64MB -limit Map 128MB -limit Disk 0 \
    "$1" -thumbnail "${size}x${size}^" -gravity center -extent "${size}x${size}" -strip "jpeg:$2"
