#!/usr/bin/env python3
"""ch_harness.py — drives a ClickHouse executable UDF exactly as ClickHouse does (DESIGN.md §9).

It reads the <functions> XML config, starts the command (split on single spaces, the program
resolved under user_scripts_path), and for each call:
  * sends one block per max_block_size rows, never an empty block; a single row when every
    argument is constant;
  * `executable`: a new process per block, stdin closed after the rows, stdout read to EOF;
  * `executable_pool`: up to pool_size long-lived processes reused across blocks; with
    send_chunk_header each block is preceded by "<rows>\\n"; exactly N rows are read back;
  * writes and reads concurrently, with command_write_timeout / command_read_timeout (ms);
  * checks the row count, the exit code (check_exit_code) and that stderr stays empty unless the
    process failed.
Formats: TabSeparated, CSV, JSONEachRow, RowBinary, with Nullable and ClickHouse's escaping.

Library use: `Harness(config_xml_path, user_scripts_dir)`; `h.call(name, rows, block_size)`.
Standard library only.
"""
import datetime
import errno
import fcntl
import json
import math
import os
import select
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET


class UdfError(Exception):
    """What ClickHouse would raise: the query fails with this message."""


# ---------------------------------------------------------------- types

INT_RANGES = {
    'Int8': ('<b', 1), 'Int16': ('<h', 2), 'Int32': ('<i', 4), 'Int64': ('<q', 8),
    'UInt8': ('<B', 1), 'UInt16': ('<H', 2), 'UInt32': ('<I', 4), 'UInt64': ('<Q', 8),
}


def parse_type(t):
    t = t.strip()
    if t.startswith('Nullable(') and t.endswith(')'):
        return t[9:-1], True
    return t, False


def ch_float_text(d):
    """A double as ClickHouse writes it: shortest round-trip text, integers without '.0'."""
    if math.isnan(d):
        return 'nan'
    if math.isinf(d):
        return 'inf' if d > 0 else '-inf'
    if d == int(d) and abs(d) < 1e16:
        return str(int(d))
    return repr(d)


EPOCH = datetime.date(1970, 1, 1)
EPOCH_DT = datetime.datetime(1970, 1, 1)


def time_text(base, v):
    """Date and DateTime as ClickHouse writes them (a server in UTC)."""
    return v.strftime('%Y-%m-%d' if base == 'Date' else '%Y-%m-%d %H:%M:%S')


def parse_time(base, s):
    if base == 'Date':
        return datetime.datetime.strptime(s, '%Y-%m-%d').date()
    return datetime.datetime.strptime(s, '%Y-%m-%d %H:%M:%S')


def as_bytes(v):
    return v if isinstance(v, bytes) else v.encode('utf-8')


# ---------------------------------------------------------------- input encoders

TSV_ESC = {0x08: b'\\b', 0x0c: b'\\f', 0x0a: b'\\n', 0x0d: b'\\r', 0x09: b'\\t', 0x00: b'\\0',
           0x27: b"\\'", 0x5c: b'\\\\'}


def tsv_escape(b):
    return b''.join(TSV_ESC.get(c, bytes((c,))) for c in b) if any(c in TSV_ESC for c in b) else b


def text_value(base, v, csv):
    if v is None:
        return b'\\N'
    if base == 'String':
        b = as_bytes(v)
        return b'"' + b.replace(b'"', b'""') + b'"' if csv else tsv_escape(b)
    if base == 'Bool':
        return b'true' if v else b'false'
    if base in ('Date', 'DateTime'):
        return time_text(base, v).encode()
    if base.startswith('Float'):
        return ch_float_text(float(v)).encode()
    return str(int(v)).encode()


def encode_rows(fmt, columns, rows):
    """columns: [(name, type)]; rows: lists of Python values (None = NULL)."""
    types = [parse_type(t) for _, t in columns]
    out = []
    if fmt in ('TabSeparated', 'TSV', 'CSV'):
        sep = b',' if fmt == 'CSV' else b'\t'
        for r in rows:
            out.append(sep.join(text_value(b, v, fmt == 'CSV') for (b, _), v in zip(types, r)) + b'\n')
    elif fmt == 'JSONEachRow':
        for r in rows:
            obj = {}
            for (name, _), (base, _), v in zip(columns, types, r):
                if v is None:
                    obj[name] = None
                elif base in ('Int64', 'UInt64'):
                    obj[name] = str(int(v))          # output_format_json_quote_64bit_integers
                elif base.startswith('Float'):
                    obj[name] = None if (math.isnan(v) or math.isinf(v)) else float(v)
                elif base == 'String':
                    obj[name] = v if isinstance(v, str) else v.decode('utf-8', 'surrogateescape')
                elif base in ('Date', 'DateTime'):
                    obj[name] = time_text(base, v)
                else:
                    obj[name] = v
            out.append(json.dumps(obj, ensure_ascii=False, separators=(',', ':')).encode('utf-8', 'surrogateescape') + b'\n')
    elif fmt == 'RowBinary':
        for r in rows:
            for (base, nullable), v in zip(types, r):
                if nullable:
                    out.append(b'\x01' if v is None else b'\x00')
                    if v is None:
                        continue
                if base == 'Nothing':
                    raise UdfError('non-NULL Nothing')
                if base == 'String':
                    b = as_bytes(v)
                    n = len(b)
                    leb = bytearray()
                    while True:
                        leb.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
                        n >>= 7
                        if not n:
                            break
                    out.append(bytes(leb) + b)
                elif base == 'Float64':
                    out.append(struct.pack('<d', v))
                elif base == 'Float32':
                    out.append(struct.pack('<f', v))
                elif base == 'Bool':
                    out.append(b'\x01' if v else b'\x00')
                elif base == 'Date':
                    out.append(struct.pack('<H', (v - EPOCH).days))
                elif base == 'DateTime':
                    out.append(struct.pack('<I', int((v - EPOCH_DT).total_seconds())))
                else:
                    out.append(struct.pack(INT_RANGES[base][0], int(v)))
    else:
        raise UdfError('unknown format %s' % fmt)
    return b''.join(out)


# ---------------------------------------------------------------- output decoding

class Reader:
    """Buffered non-blocking pipe reader with ClickHouse's read timeout per wait."""

    def __init__(self, fd, timeout_ms):
        self.fd, self.timeout, self.buf, self.pos, self.eof = fd, timeout_ms / 1000.0, b'', 0, False
        self.abort = None                      # returns a message when the query must stop waiting
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)

    def _more(self):
        if self.eof:
            return False
        deadline = time.time() + self.timeout
        while True:                            # in slices, so a failed writer ends the wait too
            r, _, _ = select.select([self.fd], [], [], min(0.05, max(0.0, deadline - time.time())))
            if r:
                break
            if self.abort and self.abort():
                raise UdfError(self.abort())
            if time.time() >= deadline:
                raise UdfError('Timeout exceeded while reading from pipe (command_read_timeout %d ms)'
                               % int(self.timeout * 1000))
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self):
        while self.pos >= len(self.buf):
            if not self._more():
                return None
        return self.buf[self.pos]

    def get(self):
        c = self.peek()
        if c is not None:
            self.pos += 1
        return c

    def exact(self, n):
        while len(self.buf) - self.pos < n:
            if not self._more():
                raise UdfError('Cannot read all data: expected %d more bytes' % (n - (len(self.buf) - self.pos)))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def line(self):
        while True:
            i = self.buf.find(b'\n', self.pos)
            if i >= 0:
                b = self.buf[self.pos:i]
                self.pos = i + 1
                return b
            if not self._more():
                raise UdfError('Unexpected end of stream: row without a newline')

    def at_eof(self):
        return self.peek() is None


TSV_UNESC = {ord('b'): 8, ord('f'): 12, ord('r'): 13, ord('n'): 10, ord('t'): 9, ord('0'): 0,
             ord('a'): 7, ord('v'): 11, ord('e'): 27}


def tsv_unescape(b):
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i]
        if c == 0x5c and i + 1 < len(b):
            e = b[i + 1]
            out.append(TSV_UNESC.get(e, e))
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def from_text(base, nullable, raw, quoted=False):
    if raw == b'\\N' and not quoted:
        if not nullable:
            raise UdfError('NULL in a non-Nullable result')
        return None
    if base == 'String':
        return raw
    s = raw.decode()
    if base == 'Bool':
        if s not in ('true', 'false'):
            raise UdfError('Cannot parse Bool from %r' % s)
        return s == 'true'
    if base.startswith('Float'):
        try:
            return float(s)
        except ValueError:
            raise UdfError('Cannot parse Float64 from %r' % s)
    if base in ('Date', 'DateTime'):
        try:
            return parse_time(base, s)
        except ValueError:
            raise UdfError('Cannot parse %s from %r' % (base, s))
    try:
        return int(s)
    except ValueError:
        raise UdfError('Cannot parse %s from %r' % (base, s))


def read_result(reader, fmt, rtype, rname):
    base, nullable = parse_type(rtype)
    if fmt in ('TabSeparated', 'TSV'):
        line = reader.line()
        if b'\t' in line:
            raise UdfError('More columns than expected in a TabSeparated result row')
        if line == b'\\N':
            return from_text(base, nullable, line)
        return from_text(base, nullable, tsv_unescape(line), quoted=True)
    if fmt == 'CSV':
        c = reader.peek()
        if c in (0x22, 0x27):
            q = reader.get()
            val = bytearray()
            while True:
                c = reader.get()
                if c is None:
                    raise UdfError('Unexpected end of stream inside a CSV string')
                if c == q:
                    if reader.peek() == q:
                        reader.get()
                    else:
                        break
                val.append(c)
            if reader.line().rstrip(b'\r') != b'':
                raise UdfError('More columns than expected in a CSV result row')
            return from_text(base, nullable, bytes(val), quoted=True)
        return from_text(base, nullable, reader.line().rstrip(b'\r'))
    if fmt == 'JSONEachRow':
        obj = json.loads(reader.line())
        if set(obj) != {rname}:
            raise UdfError('JSONEachRow result keys %s, expected %s' % (sorted(obj), rname))
        v = obj[rname]
        if v is None:
            if not nullable and base != 'Float64':
                raise UdfError('null in a non-Nullable result')
            return None
        if base == 'String':
            return v.encode('utf-8', 'surrogateescape')
        if base == 'Bool':
            return bool(v)
        if base in ('Date', 'DateTime'):
            try:
                return parse_time(base, v)
            except (TypeError, ValueError):
                raise UdfError('Cannot parse %s from %r' % (base, v))
        return float(v) if base.startswith('Float') else int(v)
    if fmt == 'RowBinary':
        if nullable:
            flag = reader.exact(1)[0]
            if flag == 1:
                return None
            if flag != 0:
                raise UdfError('bad Nullable flag %d' % flag)
        if base == 'String':
            n, shift = 0, 0
            while True:
                b = reader.exact(1)[0]
                n |= (b & 0x7f) << shift
                shift += 7
                if not b & 0x80:
                    break
            return reader.exact(n)
        if base == 'Float64':
            return struct.unpack('<d', reader.exact(8))[0]
        if base == 'Float32':
            return struct.unpack('<f', reader.exact(4))[0]
        if base == 'Bool':
            return reader.exact(1)[0] == 1
        if base == 'Date':
            return EPOCH + datetime.timedelta(days=struct.unpack('<H', reader.exact(2))[0])
        if base == 'DateTime':
            return EPOCH_DT + datetime.timedelta(seconds=struct.unpack('<I', reader.exact(4))[0])
        fmtc, w = INT_RANGES[base]
        return struct.unpack(fmtc, reader.exact(w))[0]
    raise UdfError('unknown format %s' % fmt)


# ---------------------------------------------------------------- config

class Function:
    def __init__(self, el):
        g = lambda tag, d=None: (el.findtext(tag) if el.find(tag) is not None else d)
        self.type = g('type').strip()
        if self.type not in ('executable', 'executable_pool'):
            raise UdfError('unknown function type %r' % self.type)
        self.name = g('name').strip()
        self.return_type = g('return_type').strip()
        self.return_name = (g('return_name') or 'result').strip()
        self.format = g('format').strip()
        self.command = g('command').strip()
        self.send_chunk_header = (g('send_chunk_header', 'false').strip().lower() in ('1', 'true'))
        self.pool_size = int(g('pool_size', '16'))
        self.read_timeout = int(g('command_read_timeout', '10000'))
        self.write_timeout = int(g('command_write_timeout', '10000'))
        self.termination_timeout = float(g('command_termination_timeout', '10'))
        self.max_execution_time = float(g('max_command_execution_time', '10'))
        self.check_exit_code = g('check_exit_code', 'true').strip().lower() in ('1', 'true')
        self.arguments = []
        for i, a in enumerate(el.findall('argument')):
            name = a.findtext('name') if a.find('name') is not None else 'c%d' % (i + 1)
            self.arguments.append((name, a.findtext('type').strip()))


class Process:
    """One running command, with its stderr drained in the background."""

    def __init__(self, argv, fn):
        self.fn = fn
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = Reader(self.p.stdout.fileno(), fn.read_timeout)
        self.reader.abort = lambda: self.write_error
        self.stderr = b''
        self.t_err = threading.Thread(target=self._drain_err, daemon=True)
        self.t_err.start()
        self.write_error = None

    def _drain_err(self):
        self.stderr = self.p.stderr.read()

    def write_async(self, data, close):
        """ClickHouse writes and reads concurrently; the writer is a thread with a write timeout."""
        def run():
            fd = self.p.stdin.fileno()
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            view, off = memoryview(data), 0
            try:
                while off < len(data):
                    _, w, _ = select.select([], [fd], [], self.fn.write_timeout / 1000.0)
                    if not w:
                        self.write_error = 'Timeout exceeded while writing to pipe (command_write_timeout)'
                        return
                    try:
                        off += os.write(fd, view[off:off + (1 << 16)])
                    except BlockingIOError:
                        continue
                if close:
                    self.p.stdin.close()
            except (BrokenPipeError, OSError) as e:
                if getattr(e, 'errno', None) != errno.EPIPE and not isinstance(e, BrokenPipeError):
                    self.write_error = str(e)
                # a process that exits early is judged by its exit code and output
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def finish(self):
        """Closes stdin, waits (command_termination_timeout), checks the exit code and stderr."""
        try:
            if not self.p.stdin.closed:
                self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.p.wait(timeout=self.fn.termination_timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise UdfError('command did not exit within command_termination_timeout')
        self.t_err.join(5)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.t_err.join(5)

    def failure(self, rc):
        err = self.stderr.decode('utf-8', 'replace')
        lines = [l for l in err.split('\n') if l]
        if rc != 0 and self.fn.check_exit_code:
            if len(lines) != 1:
                return 'exit code %d with %d stderr lines (want exactly one): %r' % (rc, len(lines), err[:300])
            return 'Child process was exited with return code %d: %s' % (rc, lines[0])
        if err:
            return 'Executable generates stderr: %s' % err[:300]
        return None


class Harness:
    def __init__(self, config_path, user_scripts):
        self.user_scripts = user_scripts
        self.functions = {}
        root = ET.parse(config_path).getroot()
        for el in root.iter('function'):
            f = Function(el)
            self.functions[f.name] = f
        self.pools = {}
        self.stats = {'processes': 0, 'blocks': 0}

    def argv(self, fn):
        parts = fn.command.split(' ')          # ClickHouse splits on single spaces
        prog = parts[0]
        if '/' not in prog or not prog.startswith('/'):
            prog = os.path.join(self.user_scripts, prog)
        return [prog] + parts[1:]

    def _spawn(self, fn):
        self.stats['processes'] += 1
        return Process(self.argv(fn), fn)

    def _block_executable(self, fn, data, nrows):
        proc = self._spawn(fn)
        writer = proc.write_async(data, close=True)
        results, err = [], None
        try:
            deadline = time.time() + fn.max_execution_time
            for _ in range(nrows):
                if time.time() > deadline:
                    raise UdfError('max_command_execution_time exceeded')
                results.append(read_result(proc.reader, fn.format, fn.return_type, fn.return_name))
            if not proc.reader.at_eof():
                raise UdfError('Executable returned more rows than the %d of the block' % nrows)
        except UdfError as e:
            err = str(e)
        writer.join(fn.write_timeout / 1000.0 + 1)
        if err is None:
            rc = proc.finish()
        else:
            try:                               # a failing command exits on its own; give it a moment
                proc.p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
            rc = proc.p.returncode
        fail = proc.failure(rc)
        if fail:
            raise UdfError(fail)
        if proc.write_error:
            raise UdfError(proc.write_error)
        if err:
            raise UdfError(err)
        return results

    def _block_pool(self, fn, data, nrows):
        pool = self.pools.setdefault(fn.name, [])
        proc = pool.pop() if pool else None
        if proc is not None and proc.p.poll() is not None:
            proc = None
        if proc is None:
            proc = self._spawn(fn)
        header = b'%d\n' % nrows if fn.send_chunk_header else b''
        writer = proc.write_async(header + data, close=False)
        results = []
        try:
            for _ in range(nrows):
                results.append(read_result(proc.reader, fn.format, fn.return_type, fn.return_name))
        except UdfError as e:
            try:
                proc.p.wait(timeout=2)
                exited = True
            except subprocess.TimeoutExpired:
                exited = False
            proc.kill()
            fail = proc.failure(proc.p.returncode) if exited else None
            raise UdfError(fail or str(e))
        writer.join(fn.write_timeout / 1000.0 + 1)
        if proc.reader.pos < len(proc.reader.buf):
            proc.kill()
            raise UdfError('Executable returned more than the %d rows of the block' % nrows)
        if proc.write_error:
            proc.kill()
            raise UdfError(proc.write_error)
        if proc.stderr:
            proc.kill()
            raise UdfError('Executable generates stderr: %r' % proc.stderr[:300])
        if len(pool) < fn.pool_size:
            pool.append(proc)
        else:
            self._close(proc)
        return results

    def _close(self, proc):
        # Anything still buffered or arriving now would have corrupted the next block.
        extra = proc.reader.buf[proc.reader.pos:]
        rc = proc.finish()
        rest = proc.p.stdout.read()
        fail = proc.failure(rc)
        if fail:
            raise UdfError(fail)
        if extra or rest:
            raise UdfError('Executable wrote %d bytes beyond the rows of its blocks' % (len(extra) + len(rest)))

    def close(self):
        """Ends every pooled process, checking each for stray output, exit code and stderr."""
        errors = []
        for name, pool in self.pools.items():
            for proc in pool:
                try:
                    self._close(proc)
                except UdfError as e:
                    errors.append('%s: %s' % (name, e))
        self.pools = {}
        if errors:
            raise UdfError('; '.join(errors))

    def call(self, name, rows, block_size=65536, constant=None):
        """Evaluates `name` over rows (lists of argument values), in blocks like a query would.
        constant: a tuple of booleans, one per argument; all-constant calls send a single row."""
        fn = self.functions[name]
        if not rows:
            return []                          # ClickHouse never calls with an empty block
        for r in rows:
            if len(r) != len(fn.arguments):
                raise UdfError('function %s takes %d arguments, got %d' % (name, len(fn.arguments), len(r)))
        if constant and all(constant):
            return self.call(name, rows[:1], block_size) * len(rows)
        out = []
        for i in range(0, len(rows), block_size):
            block = rows[i:i + block_size]
            data = encode_rows(fn.format, fn.arguments, block)
            self.stats['blocks'] += 1
            if fn.type == 'executable':
                res = self._block_executable(fn, data, len(block))
            else:
                res = self._block_pool(fn, data, len(block))
            if len(res) != len(block):
                raise UdfError('row count mismatch: %d results for %d rows' % (len(res), len(block)))
            out.extend(res)
        return out


# ---------------------------------------------------------------- XML for tests

def function_xml(name, ftype, fmt, command, arguments, return_type, return_name=None,
                 chunk_header=False, pool_size=None, read_timeout=None, write_timeout=None):
    """One <function> element as text (argument names are XML-escaped by ElementTree)."""
    f = ET.Element('function')
    for tag, val in (('type', ftype), ('name', name), ('return_type', return_type),
                     ('return_name', return_name), ('format', fmt), ('command', command),
                     ('send_chunk_header', 'true' if chunk_header else None),
                     ('pool_size', pool_size), ('command_read_timeout', read_timeout),
                     ('command_write_timeout', write_timeout)):
        if val is not None:
            ET.SubElement(f, tag).text = str(val)
    for aname, atype in arguments:
        a = ET.SubElement(f, 'argument')
        ET.SubElement(a, 'type').text = atype
        ET.SubElement(a, 'name').text = aname
    return ET.tostring(f, encoding='unicode')


def functions_xml(elements):
    return '<functions>\n' + '\n'.join(elements) + '\n</functions>\n'


def arg_spec(arguments):
    """The --arguments value: name:Type,… with names %XX-escaped (spaces, ',', ':', '%')."""
    def esc(n):
        return ''.join(c if (c.isalnum() or c == '_') and ord(c) < 128 else
                       ''.join('%%%02X' % b for b in c.encode()) for c in n)
    return ','.join('%s:%s' % (esc(n), t) for n, t in arguments)
