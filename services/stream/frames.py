"""What a hub sends, serialized once per wire format: protobuf bytes for gRPC
watchers, Server-Sent Events frames for browsers (WatchLeaderboardSse, WatchQuizSse).

An SSE frame is `id: <n>\\ndata: <JSON>\\n\\n`, wrapped in the HttpBody message that
Envoy's transcoder passes through as it is: the JSON is made here once per message
and process, where Envoy would otherwise print it once per message and browser
(docs/performance.md, "Browser fan-out"). It has the transcoder's own shape: proto
field names, every field without presence printed, 64-bit integers as strings.
"""

from __future__ import annotations

import json
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from quizmesh.common.v1 import common_pb2
from quizmesh.stream.v1 import stream_pb2

CONTENT_TYPE = "text/event-stream"


def to_json(message: Message) -> bytes:
    return json.dumps(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
        separators=(",", ":"),
    ).encode()


def sse(data: bytes, event_id: int | None = None) -> bytes:
    """The serialized stream message carrying one SSE frame of `data` (one line of
    JSON). WatchLeaderboardSseResponse and WatchQuizSseResponse are the same shape,
    so these bytes are either. Written out rather than built with protobuf: a
    player's frame is their own, made once per watcher per board, and protobuf took
    ~8 µs of the ~60 µs each costs the stream process (tests check the bytes)."""
    head = b"data: " if event_id is None else b"id: %d\ndata: " % event_id
    frame = head + data + b"\n\n"
    body = _CONTENT_TYPE_FIELD + _DATA + _varint(len(frame)) + frame
    return _FRAME + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # a negative int32 is sent as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(descriptor: Any, field: str, wire_type: int) -> bytes:
    number = descriptor.fields_by_name[field].number
    return _varint(number << 3 | wire_type)


_FRAME = _tag(stream_pb2.WatchQuizSseResponse.DESCRIPTOR, "frame", 2)
_DATA = _tag(httpbody_pb2.HttpBody.DESCRIPTOR, "data", 2)
_CONTENT_TYPE_FIELD = httpbody_pb2.HttpBody(content_type=CONTENT_TYPE).SerializeToString()
_YOU = _tag(stream_pb2.WatchLeaderboardResponse.DESCRIPTOR, "you", 2)
_RANK = _tag(common_pb2.PlayerStanding.DESCRIPTOR, "rank", 0)
_SCORE = _tag(common_pb2.PlayerStanding.DESCRIPTOR, "score", 0)


class StandingHead:
    """What a player's standing starts with, made once per player: the JSON of their
    id and nickname, and PlayerStanding's bytes of the same two fields."""

    __slots__ = ("json", "proto")

    def __init__(self, player_id: str, nickname: str) -> None:
        self.json = b'{"player_id":%s,"nickname":%s' % (
            json.dumps(player_id).encode(),
            json.dumps(nickname).encode(),
        )
        standing = common_pb2.PlayerStanding(player_id=player_id, nickname=nickname)
        self.proto = standing.SerializeToString()


class Standing:
    """A player's `you`: WatchLeaderboardResponse bytes holding only `you` (appended to
    a snapshot's, they parse as one message carrying both), and its JSON. Both are
    written out from the player's head on first use rather than by protobuf and
    json_format: a stadium's places change with every snapshot, and this is 5-20x
    cheaper (3.5 µs to build and serialize the messages; tests check the bytes)."""

    __slots__ = ("_head", "_json", "_proto", "rank", "score")

    def __init__(self, rank: int, score: int, head: StandingHead) -> None:
        self.rank = rank
        self.score = score
        self._head = head
        self._json: bytes | None = None
        self._proto: bytes | None = None

    @property
    def proto(self) -> bytes:
        if self._proto is None:
            # proto3 leaves out a field at its default: so do these bytes.
            inner = self._head.proto
            if self.rank:
                inner += _RANK + _varint(self.rank)
            if self.score:
                inner += _SCORE + _varint(self.score)
            self._proto = _YOU + _varint(len(inner)) + inner
        return self._proto

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = b'%s,"rank":%d,"score":%d}' % (self._head.json, self.rank, self.score)
        return self._json


class Frame:
    """One message for every watcher: its protobuf bytes, and its SSE frame, made on
    first use (a process with no browser watching never makes one)."""

    __slots__ = ("_event_id", "_json", "_message", "_sse", "proto")

    def __init__(self, message: Message, event_id: int | None) -> None:
        self._message = message
        self._event_id = event_id
        self.proto = message.SerializeToString()
        self._json: bytes | None = None
        self._sse: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:
            self._json = to_json(self._message)
        return self._json

    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = sse(self.json, self._event_id)
        return self._sse

    def sse_with(self, you: Standing) -> bytes:
        """The SSE frame of this (WatchLeaderboardResponse) message with `you` added."""
        return sse(b'%s,"you":%s}' % (self.json[:-1], you.json), self._event_id)


def board_frame(response: stream_pb2.WatchLeaderboardResponse) -> Frame:
    """A leaderboard message; over SSE its id is the snapshot's version."""
    return Frame(response, response.snapshot.version)


def quiz_frame(response: stream_pb2.WatchQuizResponse) -> Frame:
    """A WatchQuiz message; over SSE its id is the event's sequence (Last-Event-ID)."""
    return Frame(response, response.event.sequence)


# Keep-alive messages, {"heartbeat": true}: without an id, so that a reconnect's
# Last-Event-ID stays that of the last real message.
BOARD_HEARTBEAT = Frame(stream_pb2.WatchLeaderboardResponse(heartbeat=True), None)
QUIZ_HEARTBEAT = Frame(stream_pb2.WatchQuizResponse(heartbeat=True), None)
