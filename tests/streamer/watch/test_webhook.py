"""The alert webhook against a real local HTTP receiver (aiohttp): what it POSTs, how it retries,
and that a receiver that is down or hangs never holds up a run."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import threading

import cv2
import numpy as np
import pytest
from live_helpers import free_port
from media import read_jsonl
from webhook_receiver import Receiver

from streamer import ConfigError, OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import Alert, AlertCleared, AlertRule
from streamer.core.retry import RetryPolicy
from streamer.watch import webhook
from streamer.watch.webhook import WebhookPolicy, WebhookSender

FIELDS = {"type", "stream", "time", "wall", "frame", "query", "score", "threshold", "caption",
          "snapshot_jpeg_base64", "clip"}  # fmt: skip
# Retries in milliseconds, so the tests do not wait; no jitter, so they are exact.
FAST = WebhookPolicy(
    retry=RetryPolicy(initial=0.01, cap=0.05, jitter=0.5, max_attempts=3), flush_s=5.0
)


def an_alert(query: str = "a person at the door", image=None) -> Alert:
    if image is None:
        image = np.zeros((120, 160, 3), np.uint8)
        image[:, :80] = (255, 0, 0)  # left half red (RGB)
    return Alert("door", 12.5, 1_700_000_000.25, query, 0.3121, 0.27, 312, "a man", image)


async def send(url: str, alerts: list[Alert], policy: WebhookPolicy = FAST) -> WebhookSender:
    sender = WebhookSender(url, policy, random=lambda: 0.0)
    await sender.start(None)
    for alert in alerts:
        sender.alert(alert.stream, alert)
    await sender.stop()
    return sender


# ---------------------------------------------------------------------------------------------
# One sender, alerts handed in directly.


async def test_posts_every_field_and_a_decodable_jpeg_snapshot():
    async with Receiver() as receiver:
        sender = await send(receiver.url, [an_alert()])
    (payload,) = receiver.payloads
    assert set(payload) == FIELDS
    assert payload["type"] == "alert" and payload["stream"] == "door" and payload["frame"] == 312
    assert payload["time"] == 12.5 and payload["wall"] == 1_700_000_000.25
    assert payload["query"] == "a person at the door" and payload["caption"] == "a man"
    assert payload["score"] == 0.3121 and payload["threshold"] == 0.27
    jpeg = np.frombuffer(base64.b64decode(payload["snapshot_jpeg_base64"]), np.uint8)
    bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert bgr.shape == (120, 160, 3)
    assert bgr[60, 20, 2] > 200 and bgr[60, 20, 0] < 60  # still red on the left: RGB kept
    assert bgr[60, 140].max() < 60
    assert (sender.delivered, sender.undelivered) == (1, 0)


async def test_an_alert_that_clears_is_posted_after_it_in_the_same_shape_told_apart_by_type():
    alert = an_alert()
    cleared = AlertCleared("door", 20.0, 1_700_000_007.5, alert.query, 0.19031, 0.27, 500, 12.5)
    offline = dataclasses.replace(cleared, score=float("nan"), reason="offline")
    async with Receiver() as receiver:
        sender = WebhookSender(receiver.url, FAST, random=lambda: 0.0)
        await sender.start(None)
        sender.alert("door", alert)
        sender.alert_cleared("door", cleared)
        sender.alert_cleared("door", offline)
        await sender.stop()
    first, off, gone = receiver.payloads
    assert [p["type"] for p in receiver.payloads] == ["alert", "alert_cleared", "alert_cleared"]
    assert set(off) == set(gone) == FIELDS | {"fired", "reason"}
    assert (off["time"], off["wall"], off["frame"], off["score"]) == (20.0, 1_700_000_007.5, 500,
                                                                      0.1903)  # fmt: skip
    assert (off["query"], off["threshold"], off["fired"]) == (first["query"], 0.27, first["time"])
    assert off["snapshot_jpeg_base64"] is off["caption"] is off["clip"] is None
    assert (off["reason"], gone["reason"], gone["score"]) == ("no match", "offline", None)
    assert (sender.delivered, sender.undelivered) == (3, 0)


async def test_a_large_frame_is_sent_scaled_down():
    async with Receiver() as receiver:
        await send(receiver.url, [an_alert(image=np.full((1080, 1920, 3), 128, np.uint8))])
    (payload,) = receiver.payloads
    jpeg = np.frombuffer(base64.b64decode(payload["snapshot_jpeg_base64"]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (576, 1024, 3)


async def test_the_body_and_its_jpeg_are_made_on_the_low_priority_thread(monkeypatch):
    threads, build = [], webhook.webhook_body

    def spy(alert, long_edge):
        threads.append(threading.current_thread().name)
        return build(alert, long_edge)

    monkeypatch.setattr(webhook, "webhook_body", spy)
    async with Receiver() as receiver:
        await send(receiver.url, [an_alert()])
    assert len(threads) == 1 and threads[0].startswith("background")
    assert len(receiver.bodies) == 1


async def test_a_server_error_is_retried_until_it_is_accepted():
    async with Receiver(statuses=(500, 503, 200)) as receiver:
        sender = await send(receiver.url, [an_alert()])
    assert len(receiver.bodies) == 3 and len(set(receiver.bodies)) == 1  # the same body again
    assert (sender.delivered, sender.failed, sender.undelivered) == (1, 0, 0)


async def test_too_many_requests_is_retried_after_the_time_it_asks_for():
    async with Receiver(statuses=(429, 200), headers={"Retry-After": "0.2"}) as receiver:
        sender = await send(receiver.url, [an_alert()])
    assert len(receiver.bodies) == 2 and sender.delivered == 1


async def test_attempts_are_bounded_and_the_give_up_is_counted(caplog):
    async with Receiver(statuses=(502,)) as receiver:
        with caplog.at_level(logging.WARNING, logger="streamer.watch.webhook"):
            sender = await send(receiver.url, [an_alert("one"), an_alert("two")])
    assert len(receiver.bodies) == 2 * FAST.retry.max_attempts
    assert (sender.delivered, sender.failed, sender.undelivered) == (0, 2, 2)
    retrying = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retrying) == 1  # once per outage, not once per attempt
    (summary,) = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert "2 of 2 alerts" in summary.getMessage()
    assert "secret-token" not in caplog.text  # the URL's path can be its secret


async def test_a_client_error_is_not_retried_and_is_logged_once(caplog):
    async with Receiver(statuses=(404,)) as receiver:
        with caplog.at_level(logging.WARNING, logger="streamer.watch.webhook"):
            sender = await send(receiver.url, [an_alert("one"), an_alert("two")])
    assert len(receiver.bodies) == 2  # one try each
    assert (sender.refused, sender.undelivered) == (2, 2)
    assert len([r for r in caplog.records if "HTTP 404" in r.getMessage()]) == 1


async def test_a_full_queue_drops_the_oldest_and_warns_once_per_burst(caplog):
    sender = WebhookSender("http://127.0.0.1:9/hook", WebhookPolicy(queue=2))
    with caplog.at_level(logging.WARNING, logger="streamer.watch.webhook"):
        for i in range(5):  # not started: nothing is sent, the queue only fills
            sender.alert("door", an_alert(f"query {i}"))
        assert [a.query for a in sender._queue] == ["query 3", "query 4"]
        await sender.stop()
    assert (sender.dropped, sender.abandoned, sender.undelivered) == (3, 2, 5)
    assert len([r for r in caplog.records if "dropping the oldest" in r.getMessage()]) == 1


async def test_alert_returns_at_once_while_the_receiver_hangs():
    policy = WebhookPolicy(timeout_s=30.0, flush_s=0.2)
    async with Receiver(hang=True) as receiver:
        sender = WebhookSender(receiver.url, policy)
        await sender.start(None)
        sender.alert("door", an_alert())
        # The request is out and unanswered; another alert still only queues.
        for _ in range(200):
            if receiver.bodies:
                break
            await asyncio.sleep(0.01)
        assert len(receiver.bodies) == 1
        sender.alert("door", an_alert("second"))
        assert len(sender._queue) == 1
        await sender.stop()  # gives up after flush_s, with both counted
    assert (sender.delivered, sender.abandoned) == (0, 2)


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "http:///hook", "example.com/hook"])
def test_a_webhook_url_must_be_http_or_https_with_a_host(url, small_clip):
    with pytest.raises(ConfigError, match="--webhook must be an http:// or https:// URL"):
        RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl="a.jsonl"),
                  alerts=(AlertRule("a dog"),), webhook=url)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Whole runs: the small clip with an alert that always matches (the tiny encoder is random).


def run_config(clip, folder, webhook: str | None = None) -> RunConfig:
    rule = AlertRule("a rabbit", threshold=-1.0, frames=1, cooldown_s=0.0)  # every analysed frame
    return RunConfig(input=f"clip={clip}", outputs=OutputConfig(jsonl=str(folder / "a.jsonl")),
                     alerts=(rule,), webhook=webhook)  # fmt: skip


async def test_a_run_posts_each_alert_it_records(tmp_path, small_clip, tiny_encoder):
    async with Receiver() as receiver:
        config = run_config(small_clip, tmp_path, webhook=receiver.url)  # --webhook's path
        summary = await run_pipeline(config, encoder=tiny_encoder)
    recorded = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "alert"]
    *posted, cleared = receiver.payloads  # on at the file's end: over then
    assert cleared["type"] == "alert_cleared" and cleared["reason"] == "ended"
    assert summary.frames == 50 and len(recorded) == 4  # 2 s analysed at 2 per second
    assert [(p["stream"], p["time"], p["frame"], p["query"], p["score"], p["caption"])
            for p in posted] == [(r["stream"], r["pts"], r["frame"], r["query"], r["score"],
                                  r["caption"]) for r in recorded]  # fmt: skip
    for p in posted:
        jpeg = np.frombuffer(base64.b64decode(p["snapshot_jpeg_base64"]), np.uint8)
        assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (180, 320, 3)


async def test_a_receiver_that_is_down_costs_the_run_nothing(
    tmp_path, small_clip, tiny_encoder, caplog
):
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", FAST)
    with caplog.at_level(logging.WARNING, logger="streamer.watch.webhook"):
        summary = await run_pipeline(
            run_config(small_clip, tmp_path), encoder=tiny_encoder, observers=[sender]
        )
    assert summary.frames == 50
    alerts = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "alert"]
    assert len(alerts) == 4 and sender.delivered == 0
    assert sender.undelivered == 5  # and the alert cleared at the file's end
    assert "5 of 5 alerts not delivered" in caplog.text


async def test_a_receiver_that_hangs_does_not_hold_up_the_run(tmp_path, small_clip, tiny_encoder):
    retry = dataclasses.replace(webhook.DEFAULT_RETRY, max_attempts=2)
    policy = WebhookPolicy(timeout_s=60.0, retry=retry, flush_s=0.5)
    async with Receiver(hang=True) as receiver:
        sender = WebhookSender(receiver.url, policy)
        summary = await run_pipeline(
            run_config(small_clip, tmp_path), encoder=tiny_encoder, observers=[sender]
        )
        assert summary.frames == 50
        assert len(receiver.bodies) == 1  # the first request never got an answer
    assert sender.delivered == 0 and sender.undelivered == 5  # 4 alerts, 1 cleared at the end
    assert sender.abandoned == 5  # still queued or in flight when the run ended
