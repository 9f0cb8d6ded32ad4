#!/usr/bin/env python3
"""A Kafka protocol proxy in front of a one-broker dev broker that hides partitions of a topic.

librdkafka's mock cluster cannot add partitions to a topic (it has no CreatePartitions), so a test
of "new partitions are picked up without a restart" creates the topic with all its partitions
and lets clients see only the first N: this proxy forwards every request and response unchanged
except Metadata responses (v0-v2, what librdkafka 2.0.2 uses with the mock), where it advertises
itself as the broker and drops the partitions of TOPIC whose index is >= the number in
VISIBLE_FILE (read at each response; absent = all). Writing a larger number there "adds"
partitions.

usage: metadata_proxy.py UPSTREAM_HOST:PORT TOPIC VISIBLE_FILE PORT_FILE
"""
import os
import socket
import struct
import sys
import threading

METADATA = 3


def read_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(sock):
    size = struct.unpack('>i', read_exact(sock, 4))[0]
    return read_exact(sock, size)


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take('>h')
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s


def string(s):
    return struct.pack('>h', -1) if s is None else struct.pack('>h', len(s)) + s


def visible_partitions(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def rewrite_metadata(body, version, host, port, topic, visible):
    """body: the response after its correlation id."""
    r = Reader(body)
    out = []
    nbrokers = r.take('>i')
    out.append(struct.pack('>i', nbrokers))
    for _ in range(nbrokers):
        node = r.take('>i')
        r.string()
        r.take('>i')
        out.append(struct.pack('>i', node) + string(host) + struct.pack('>i', port))
        if version >= 1:
            out.append(string(r.string()))          # rack
    if version >= 2:
        out.append(string(r.string()))              # cluster id
    if version >= 1:
        out.append(struct.pack('>i', r.take('>i')))  # controller
    ntopics = r.take('>i')
    out.append(struct.pack('>i', ntopics))
    for _ in range(ntopics):
        err = r.take('>h')
        name = r.string()
        out.append(struct.pack('>h', err) + string(name))
        if version >= 1:
            out.append(struct.pack('>b', r.take('>b')))  # is_internal
        nparts = r.take('>i')
        parts = []
        for _ in range(nparts):
            start = r.pos
            r.take('>h')
            index = r.take('>i')
            r.take('>i')
            for _ in range(2):                       # replicas, isr
                n = r.take('>i')
                r.pos += 4 * n
            if name != topic or visible is None or index < visible:
                parts.append(body[start:r.pos])
        out.append(struct.pack('>i', len(parts)) + b''.join(parts))
    out.append(body[r.pos:])
    return b''.join(out)


def serve(client, upstream, topic, visible_file, my_port):
    server = socket.create_connection(upstream)
    pending = {}                                     # correlation id -> (api key, version)
    lock = threading.Lock()

    def requests():
        try:
            while True:
                frame = read_frame(client)
                key, version, corr = struct.unpack_from('>hhi', frame, 0)
                with lock:
                    pending[corr] = (key, version)
                server.sendall(struct.pack('>i', len(frame)) + frame)
        except (EOFError, OSError):
            pass
        finally:
            server.close()

    threading.Thread(target=requests, daemon=True).start()
    try:
        while True:
            frame = read_frame(server)
            corr = struct.unpack_from('>i', frame, 0)[0]
            with lock:
                key, version = pending.pop(corr, (None, None))
            if key == METADATA and version is not None and version <= 2:
                frame = frame[:4] + rewrite_metadata(frame[4:], version, b'127.0.0.1', my_port,
                                                     topic, visible_partitions(visible_file))
            elif key == METADATA:
                print(f'metadata_proxy: Metadata v{version} passed through unchanged', file=sys.stderr)
            client.sendall(struct.pack('>i', len(frame)) + frame)
    except (EOFError, OSError):
        pass
    finally:
        client.close()


def main():
    upstream_host, upstream_port = sys.argv[1].rsplit(':', 1)
    topic = sys.argv[2].encode()
    visible_file, port_file = sys.argv[3], sys.argv[4]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', 0))
    listener.listen(64)
    my_port = listener.getsockname()[1]
    with open(port_file + '.tmp', 'w') as f:
        f.write(str(my_port))
    os.rename(port_file + '.tmp', port_file)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, daemon=True,
                         args=(client, (upstream_host, int(upstream_port)), topic, visible_file, my_port)).start()


if __name__ == '__main__':
    main()
