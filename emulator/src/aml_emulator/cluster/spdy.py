"""SPDY/3.1 framing, the server half of what ``kubectl port-forward`` speaks.

kubectl 1.31+ tunnels a SPDY/3.1 session through a WebSocket (subprotocol
``SPDY/3.1+portforward.k8s.io``, client-go ``tools/portforward/tunneling_dialer.go``): the
binary messages are one byte stream that carries SPDY frames. This module parses and
builds those frames; :mod:`streaming` runs the session. Only what a server needs is here:
it answers ``SYN_STREAM`` with ``SYN_REPLY``, echoes ``PING``, carries data frames with
``FLAG_FIN`` half-closes, and honours ``RST_STREAM`` and ``GOAWAY``. Like the client's
spdystream library, it does no flow control (``WINDOW_UPDATE`` is read and ignored).

Source: the SPDY/3.1 draft (draft-mbelshe-httpbis-spdy, sections 2.2-2.6); header blocks are
zlib streams primed with the protocol's fixed dictionary (section 2.6.10.1), one
compression context per direction for the whole session.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import attrs

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
#: RST_STREAM status codes used here
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 1, 3, 5
#: a frame longer than this is refused (SPDY allows 2^24-1; nothing kubectl sends comes close)
MAX_FRAME = 1 << 24

_HEADER_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
#: the SPDY/3 header compression dictionary: length-prefixed header names, then common values
DICTIONARY = b"".join(struct.pack(">I", len(n)) + n.encode() for n in _HEADER_NAMES) + _DICTIONARY_TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1; the session must end (GOAWAY)."""


@attrs.frozen
class Frame:
    """One parsed frame. ``kind`` is a control frame type, or 0 for a data frame."""

    kind: int
    flags: int
    stream_id: int = 0
    headers: dict[str, str] = attrs.field(factory=dict)
    data: bytes = b""
    status: int = 0  # RST_STREAM / GOAWAY status, PING id

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Codec:
    """Both directions of one session: feed received bytes, get frames; build frames to send."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9,
                                         zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    # -- receiving -----------------------------------------------------------------------

    def feed(self, data: bytes) -> Iterator[Frame]:
        """The complete frames in the bytes received so far (a frame may span messages)."""
        self._buffer += data
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if length >= MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes is too large")
            if len(self._buffer) < 8 + length:
                return
            head, body = bytes(self._buffer[:8]), bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            yield self._parse(head, body)

    def _parse(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(0, flags, int.from_bytes(head[:4], "big") & 0x7FFFFFFF, data=body)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        kind = int.from_bytes(head[2:4], "big")
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")

        def word(i: int) -> int:
            if len(body) < i + 4:
                raise ProtocolError(f"control frame type {kind} is too short")
            return int.from_bytes(body[i:i + 4], "big") & 0x7FFFFFFF

        if kind == SYN_STREAM:
            return Frame(kind, flags, word(0), headers=self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, flags, word(0), headers=self._headers(body[4:]))
        if kind == RST_STREAM:
            return Frame(kind, flags, word(0), status=word(4))
        if kind == PING:
            return Frame(kind, flags, status=int.from_bytes(body[:4], "big"))
        if kind == GOAWAY:
            return Frame(kind, flags, word(0), status=word(4) if len(body) >= 8 else 0)
        if kind == WINDOW_UPDATE:
            return Frame(kind, flags, word(0), status=word(4))
        return Frame(kind, flags)  # SETTINGS, NOOP and unknown types: nothing to act on

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not decompress: {exc}") from exc
        headers: dict[str, str] = {}
        try:
            (count,), at = struct.unpack_from(">I", raw, 0), 4
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, at)
                name = raw[at + 4:at + 4 + n].decode().lower()
                at += 4 + n
                (n,) = struct.unpack_from(">I", raw, at)
                value = raw[at + 4:at + 4 + n].decode()
                at += 4 + n
                headers[name] = value.split("\x00")[0]
        except (struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"malformed header block: {exc}") from exc
        return headers

    # -- sending -------------------------------------------------------------------------

    def _control(self, kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, *, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                             struct.pack(">I", stream_id) + self._header_block(headers or {}))

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    @staticmethod
    def data(stream_id: int, payload: bytes, *, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload

    # -- the client side, for tests that speak SPDY without kubectl --------------------

    def syn_stream(self, stream_id: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        body = struct.pack(">IIH", stream_id, 0, 0) + self._header_block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, body)
