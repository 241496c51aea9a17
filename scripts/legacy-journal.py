#!/usr/bin/env python3
# Usage: legacy-journal.py DIR ASSIGNMENTS WHITELIST_ENTRIES
# Writes a state directory in the earlier journal format (for migration and start-up figures).
import struct, sys, zlib, os
def rec(body):
    return struct.pack('<II', len(body), zlib.crc32(body) & 0xffffffff) + body
def s(x):
    b = x.encode(); return struct.pack('>H', len(b)) + b
out_dir, n_assign, n_wl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out_dir, mode=0o700, exist_ok=True)
crosses = max(1, n_assign // 60000 + 1)
with open(os.path.join(out_dir, 'journal'), 'wb') as f:
    f.write(b'LNJRNL01')
    buf = []
    for i in range(n_assign):
        serv = 100000 + i
        cross = 90 + i % crosses
        pos = i // crosses + 1
        buf.append(rec(bytes([1]) + struct.pack('>IIH', serv, cross, pos)))
        buf.append(rec(bytes([2]) + struct.pack('>I', serv) + s('S%d' % serv)))
        if len(buf) > 100000:
            f.write(b''.join(buf)); buf = []
    for i in range(n_wl):
        buf.append(rec(bytes([3]) + struct.pack('>I', i + 1) + s('player-%06d' % i)))
        if len(buf) > 100000:
            f.write(b''.join(buf)); buf = []
    f.write(b''.join(buf))
print(out_dir, os.path.getsize(os.path.join(out_dir, 'journal')))
