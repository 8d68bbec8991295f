"""A bounded reader of the protobuf wire format, for sign-ins sent as gRPC-Web (Snapchat).

Protobuf carries field numbers, not names, so a login rule names the field that holds the
account by its path of field numbers (`[2]`, `[5, 1, 1]`; `*` stands for any number). Only the
messages on such a path are parsed, never the whole tree. Everything is bounded: nesting by the
path's length (at most MAX_PATH), the fields read per body by MAX_FIELDS, and the values, each a
slice of the body, may not add up to more than the message. A body that is not exactly one
well-formed message, or that breaks a bound, raises ProtobufError: the login is unverifiable.

Pure code: no I/O, no mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator

from gatekeeper.core.logins import Form, Value

MAX_PATH = 8  # field numbers in a path: the deepest message parsed
MAX_FIELDS = 4096  # fields read per body, all levels and paths together
MAX_FIELD_NUMBER = (1 << 29) - 1
# The media types a login rule with `protobuf:` reads; gRPC-Web frames the message.
FRAMED = frozenset({"application/grpc-web", "application/grpc-web+proto"})
FRAMED_TEXT = frozenset({"application/grpc-web-text", "application/grpc-web-text+proto"})
UNFRAMED = frozenset({"application/x-protobuf", "application/protobuf"})
FRAME_HEADER = 5  # flag byte, then the message length (4 bytes, big-endian)
ANY = None  # `*` in a path: any field number

FieldPath = tuple[int | None, ...]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5  # wire types; 3 and 4 (groups) are refused


class ProtobufError(ValueError):
    """A body this reader refuses: malformed, ambiguous, or beyond a bound."""


class TooManyFieldsError(ProtobufError):
    """The body holds more fields than MAX_FIELDS."""


def path_name(path: FieldPath) -> str:
    """The name a path's values go by in a `Form`: `5.*.1`."""
    return ".".join("*" if number is ANY else str(number) for number in path)


def read_message(content_type: str, body: bytes, paths: Iterable[FieldPath]) -> Form:
    """The values at `paths` of the message in a gRPC-Web or protobuf body, as a `Form`
    whose names are `path_name`s. Raises ProtobufError for a body it cannot read exactly."""
    message = unframe(content_type, body)
    budget = [MAX_FIELDS]
    pairs: list[tuple[str, Value]] = []
    output = 0
    for path in paths:
        name = path_name(path)
        for value in _values(message, path, budget):
            output += len(value) if value else 0
            if output > len(message):  # only paths that overlap can read a byte twice
                raise ProtobufError("the values outgrow the message")
            pairs.append((name, value))
    return Form(pairs)


def protobuf_media(content_type: str) -> bool:
    """Whether a body of this type is read as protobuf (gRPC-Web, framed or text, or bare)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in FRAMED or media in FRAMED_TEXT or media in UNFRAMED


def unframe(content_type: str, body: bytes) -> memoryview:
    """The protobuf message of a body: a gRPC-Web request is exactly one uncompressed data
    frame (flag 0); a compressed frame, a trailer, a second frame or a length that does not
    match is refused, since a server could read those bytes another way."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in UNFRAMED:
        return memoryview(body)
    if media in FRAMED_TEXT:
        try:
            body = base64.b64decode(body, validate=True)  # only shrinks the body
        except (binascii.Error, ValueError) as e:
            raise ProtobufError("not base64") from e
    elif media not in FRAMED:
        raise ProtobufError(f"not a protobuf body: {media or 'untyped'}")
    if len(body) < FRAME_HEADER or body[0] != 0:
        raise ProtobufError("not one uncompressed gRPC-Web data frame")
    length = int.from_bytes(body[1:FRAME_HEADER], "big")
    if length != len(body) - FRAME_HEADER:
        raise ProtobufError("gRPC-Web frame length does not match the body")
    return memoryview(body)[FRAME_HEADER:]


def _values(message: memoryview, path: FieldPath, budget: list[int]) -> Iterator[Value]:
    """Every value at `path` below `message`: a string (None when it is not UTF-8 text, or
    not length-delimited). A message on the way that does not parse raises, except under
    `*`, where a field that is not a message (a string, a number) is not on the path."""
    number, rest = path[0], path[1:]
    for field, wire_type, value in _fields(message, budget):
        if number is ANY and wire_type != LENGTH:
            continue
        if field != number and number is not ANY:
            continue
        if wire_type != LENGTH:
            yield None  # a number where a message or a string belongs: unreadable
            continue
        if rest and number is ANY:
            try:
                found = list(_values(value, rest, budget))
            except TooManyFieldsError:
                raise
            except ProtobufError:
                continue  # not a message: another kind of answer
            yield from found
            continue
        if rest:
            yield from _values(value, rest, budget)
            continue
        try:
            yield bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            yield None


def _fields(message: memoryview, budget: list[int]) -> Iterator[tuple[int, int, memoryview]]:
    """The (number, wire type, value) of each field of one message, in order."""
    position, end = 0, len(message)
    while position < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise TooManyFieldsError("too many fields")
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if not 0 < number <= MAX_FIELD_NUMBER:
            raise ProtobufError("invalid field number")
        if wire_type == VARINT:
            start = position
            _, position = _varint(message, position)
        elif wire_type == FIXED64:
            start, position = position, position + 8
        elif wire_type == FIXED32:
            start, position = position, position + 4
        elif wire_type == LENGTH:
            length, start = _varint(message, position)
            position = start + length
        else:
            raise ProtobufError(f"wire type {wire_type} (groups are not read)")
        if position > end:
            raise ProtobufError("field runs past the end of its message")
        yield number, wire_type, message[start:position]


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    """A base-128 varint at `position` (at most 10 bytes) and the position after it."""
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >= 1 << 64:
                raise ProtobufError("varint too large")
            return result, position
    raise ProtobufError("varint longer than 10 bytes")
