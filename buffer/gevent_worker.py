"""gunicorn's `gevent_pywsgi` worker, with an idle limit on keep-alive connections.

gevent's pywsgi handler waits for the next request on a keep-alive connection
without any time limit, and gunicorn's `keepalive` setting does not reach it
(gunicorn 27.0.1, gevent 26.9.0). An idle client connection then occupies a
greenlet and one of `worker_connections` until the client closes it. A
worker that receives SIGTERM keeps waiting for such connections until its
graceful timeout ends and the master kills it.

`RouterPyWSGIWorker` gives each connection `keepalive` seconds to send the
request line and then the headers of its next request, and closes it
otherwise, as gunicorn's own `gevent` worker does. On SIGTERM it closes the
connections that are waiting for a request at once, so only requests in
progress delay the stop. `buffer/gunicorn_router.py` uses it when
`ROUTER_WORKER_CLASS` is `gevent_pywsgi`.

The handler also responds with 400 to requests whose framing or header lines
are ambiguous, where pywsgi alone would guess (RFC 9112 sections 5 and 6):

- a header line that is not a field, such as `Bad Name: x`, or a field name
  that is not a token. pywsgi's parser stops at such a line and drops every
  field after it, a `Content-Length` included, so the body would be read as
  the next request on the connection;
- `Transfer-Encoding` with `Content-Length`, a `Transfer-Encoding` other than
  one `chunked`, or chunked framing in an HTTP/1.0 request;
- more than one `Content-Length`, or one that is not plain digits (`int()`
  would take `+5` or `1_0`).

A proxy in front of the router may read such a request differently, and the
difference is how request smuggling works. gunicorn's own parser, used by the
`gthread` and `gevent` workers, rejects the same requests.
"""

from __future__ import annotations

import re
from io import BytesIO

import gevent
from gevent import pywsgi
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

# http.client's limits, which pywsgi's own header parser applies.
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
# A field name is a token (RFC 9110 section 5.6.2).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELD_NAME = re.compile(_TOKEN)
# A plain `name: value` line, which the email parser that pywsgi uses reads as one field.
_PLAIN_FIELD = re.compile(_TOKEN.encode() + rb":")
_END_OF_HEADERS = (b"\r\n", b"\n", b"")
_CONTENT_LENGTH = "content-length"
_TRANSFER_ENCODING = "transfer-encoding"


class InvalidFraming(ValueError):
    """An error for a request whose header block or body length is ambiguous.

    pywsgi responds with 400 to a ValueError raised while it reads the request.
    """

# Greenlets of this worker process that wait for a request line. Only the
# process's one event loop touches it, so it needs no lock.
_waiting: set[gevent.Greenlet] = set()
_stopping = False


class _IdleClosed(Exception):
    """Raised in a waiting handler to close its idle connection when the worker stops."""


class IdleLimitHandler(PyWSGIHandler):
    """A pywsgi handler that closes a connection idle for `idle_timeout` seconds."""

    idle_timeout = 5.0  # set from gunicorn's `keepalive` by the worker

    def read_requestline(self):
        if _stopping:
            return None  # an empty request line makes pywsgi close the connection
        current = gevent.getcurrent()
        _waiting.add(current)
        try:
            with gevent.Timeout(self.idle_timeout, False):
                return super().read_requestline()
            return None  # reached only when the timeout fired
        except _IdleClosed:
            return None
        finally:
            _waiting.discard(current)

    def MessageClass(self, fp, *args):  # noqa: N802 - the name pywsgi calls
        """Parse and check the request's header fields; raise InvalidFraming for a 400."""
        message = parse_fields(fp)
        check_framing(message, self.request_version)
        return message

    def log_request(self):
        # gunicorn's handler builds the access log entry before its logger checks
        # whether access logging is on, which costs time on every request.
        if self.server.log.access_log_enabled:
            super().log_request()

    def _sendall(self, data):
        # gevent's sendall reads the socket's send buffer size (getsockopt) on
        # every call. A response usually fits in one send, which needs no such read.
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as error:
            # The same handling as pywsgi's own _sendall, so the access log shows the failure.
            self.status = f"socket error: {error}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def read_request(self, raw_requestline):
        # pywsgi responds 400 and closes the connection when this raises ValueError.
        error = ValueError(f"request headers timed out after {self.idle_timeout:g} s")
        timeout = gevent.Timeout(self.idle_timeout, error)
        with timeout:
            return super().read_request(raw_requestline)


def parse_fields(fp) -> pywsgi.OldMessage:
    """Parse a request's header fields into the message object pywsgi expects.

    pywsgi parses them with http.client and the email package: about 20 us
    for four fields on the development machine, against 8 us here for
    plain `name: value` lines. Anything else (folded or malformed lines,
    too long or too many lines) goes to pywsgi's own parser, so odd requests
    get exactly its result. There, a line it cannot read as a field and a field
    name that is not a token raise InvalidFraming.
    """
    lines = []
    plain = True
    while True:
        line = fp.readline(MAX_LINE_BYTES + 1)
        lines.append(line)
        if len(line) > MAX_LINE_BYTES or len(lines) > MAX_HEADERS:  # the end of headers counts too
            plain = False
            break
        if line in _END_OF_HEADERS:
            break
        # The email parser also ends a line at a lone carriage return.
        if plain and (not _PLAIN_FIELD.match(line) or b"\r" in line[:-2]):
            plain = False
    if not plain:
        message = pywsgi.headers_factory(BytesIO(b"".join(lines)))
        if message.defects:
            # For example a line without a colon: the email parser ends the fields
            # there and keeps the rest of the block, later fields included, as a body.
            raise InvalidFraming(
                f"invalid header line ({type(message.defects[0]).__name__}): write each field as name: value"
            )
        for name in message.keys():
            if not _FIELD_NAME.fullmatch(name):
                raise InvalidFraming(f"invalid header name {name[:100]!r}: a name is a token, without spaces")
        return message
    message = pywsgi.OldMessage()
    for line in lines[:-1]:
        name, _, value = line.decode("iso-8859-1").partition(":")
        message[name] = value.lstrip(" \t").rstrip("\r\n")  # as the email parser stores it
    return message


def check_framing(message: pywsgi.OldMessage, version: str) -> None:
    """Raise InvalidFraming unless the fields give the body's length one way only."""
    lengths, codings = [], []
    for name, value in message.items():
        lowered = name.lower()
        if lowered == _CONTENT_LENGTH:
            lengths.append(value)
        elif lowered == _TRANSFER_ENCODING:
            codings.append(value)
    if codings:
        if lengths:
            raise InvalidFraming("invalid framing: Transfer-Encoding and Content-Length together, send one")
        # pywsgi reads a chunked body only when the value is exactly this word.
        if len(codings) > 1 or codings[0].lower() != "chunked":
            coding = ", ".join(codings)[:100]
            raise InvalidFraming(f"Transfer-Encoding {coding!r} is not supported: send chunked or a length")
        if version != "HTTP/1.1":
            raise InvalidFraming(f"invalid framing: chunked Transfer-Encoding needs HTTP/1.1, not {version}")
    if len(lengths) > 1:
        raise InvalidFraming("invalid framing: the request has more than one Content-Length, send one")
    if lengths:
        length = lengths[0].strip(" \t")
        if not (length.isascii() and length.isdigit()):
            raise InvalidFraming(f"invalid Content-Length {length[:40]!r}: send the size in decimal digits")


class RouterPyWSGIWorker(GeventPyWSGIWorker):
    """The `gevent_pywsgi` worker with `IdleLimitHandler` and a prompt close of idle connections on stop."""

    wsgi_handler = IdleLimitHandler

    def init_process(self):
        # gunicorn's keepalive of 0 turns keep-alive off. pywsgi cannot do that, so a
        # 0.1 s wait is used instead.
        IdleLimitHandler.idle_timeout = max(float(self.cfg.keepalive), 0.1)
        super().init_process()

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(_close_idle_connections)


def _close_idle_connections() -> None:
    global _stopping
    _stopping = True
    for greenlet in list(_waiting):
        greenlet.kill(_IdleClosed(), block=False)
