"""A WebRTC offer's body is checked before aiortc sees it: each malformed one gets the same
400 saying what the body must be (an "sdp" that is not text got "None is not in list")."""

import json

import pytest
from aiohttp import web

from streamer.watch.web.webrtc import _read_offer


class _Body:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def json(self):
        return json.loads(self.raw)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"offer"', b'{"type": "answer", "sdp": "v=0"}', b'{"type": "offer"}',
     b'{"type": "offer", "sdp": 123}', b'{"type": "offer", "sdp": ["v=0"]}',
     b'{"type": "offer", "sdp": ""}'],
)  # fmt: skip
async def test_a_malformed_offer_is_refused_saying_what_the_body_must_be(raw):
    with pytest.raises(web.HTTPBadRequest) as refused:
        await _read_offer(_Body(raw))
    assert '"type": "offer", "sdp"' in json.loads(refused.value.text)["error"]


async def test_a_well_formed_offer_gives_its_sdp():
    assert await _read_offer(_Body(b'{"type": "offer", "sdp": "v=0\\r\\n"}')) == "v=0\r\n"
