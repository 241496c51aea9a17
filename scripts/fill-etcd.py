#!/usr/bin/env python3
# Usage: fill-etcd.py http://127.0.0.1:2379 /prefix ASSIGNMENTS WHITELIST [split]
# (for promotion-time figures). Fills <prefix>/state/ with N game nodes (each one server/ key:
# name and slot) and W whitelist entries; with "split", the layout of earlier versions
# instead (assign/ and name/ keys per node), which the member that takes over rewrites.
import base64, json, struct, sys, urllib.request
url, prefix, n, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
split = len(sys.argv) > 5 and sys.argv[5] == 'split'
b = lambda x: base64.b64encode(x).decode()
def s(x): x = x.encode(); return struct.pack('>H', len(x)) + x
ops = []
crosses = n // 1000 + 1
NAME, SLOT = 1, 4
for i in range(n):
    serv = 100000 + i
    slot = struct.pack('>IH', 90 + i % crosses, i // crosses + 1)
    if split:
        ops.append((f'assign/{serv}', slot))
        ops.append((f'name/{serv}', f'S{serv}'.encode()))
    else:
        ops.append((f'server/{serv}', bytes([NAME | SLOT]) + s(f'S{serv}') + slot))
for c in range(crosses):
    ops.append((f'cross/{90 + c}', s(f'cross{90 + c}@h') + s('p') + struct.pack('>H', 1000)))
for i in range(w):
    ops.append((f'whitelist/player-{i:06d}', b''))
ops.append(('whitelist-version', struct.pack('>I', w)))
for at in range(0, len(ops), 128):
    body = {'success': [{'requestPut': {'key': b((prefix + '/state/' + k).encode()), 'value': b(v)}} for k, v in ops[at:at + 128]]}
    urllib.request.urlopen(urllib.request.Request(url + '/v3/kv/txn', json.dumps(body).encode())).read()
print('wrote', len(ops), 'keys')
