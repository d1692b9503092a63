#!/usr/bin/env python3
"""A TLS client that half-closes the way the Docker CLI (Go CloseWrite) does: it sends
close_notify but no TCP FIN, then keeps reading until the server closes.

usage: close_notify_client.py HOST PORT CA CERT KEY SERVERNAME < request > response
Reads all of stdin, sends it, sends close_notify, writes everything received to stdout.
"""
import socket
import ssl
import sys

host, port, ca, cert, key, name = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
raw = socket.create_connection((host, port))
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)


def flush():
    data = outgoing.read()
    if data:
        raw.sendall(data)


def pump_in():
    data = raw.recv(65536)
    if data:
        incoming.write(data)
    else:
        incoming.write_eof()
    return bool(data)


while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        pump_in()
flush()
payload = sys.stdin.buffer.read()
view = memoryview(payload)
while view:
    n = tls.write(view[:16384])
    view = view[n:]
    flush()
try:
    tls.unwrap()  # queues close_notify; raises WantRead while waiting for the peer's
except ssl.SSLWantReadError:
    pass
flush()  # close_notify on the wire, TCP stays open both ways
out = sys.stdout.buffer
while True:
    try:
        data = tls.read(65536)
        if not data:
            break
        out.write(data)
    except ssl.SSLWantReadError:
        if not pump_in():
            break
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
out.flush()
raw.close()
