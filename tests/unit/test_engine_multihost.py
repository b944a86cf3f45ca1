"""The step broadcast over loopback TCP: followers replay the leader's engine calls exactly."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from grok_worker.engine.api import SamplingParams
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.multihost import (
    BroadcastingEngine,
    HostLostError,
    StepBroadcaster,
    StepFollower,
    run_follower,
)
from grok_worker.engine.text import ByteTokenizer

TOK = ByteTokenizer()


class Group:
    """A leader broadcaster and one follower replaying onto its own MockEngine in a thread."""

    def __init__(self, prefill_chunk: int = 0) -> None:
        self.lost: list[str] = []
        self.broadcaster = StepBroadcaster(0, 1, self.lost.append, host="127.0.0.1")
        self.leader = BroadcastingEngine(
            MockEngine(max_batch=2, prefill_chunk=prefill_chunk), self.broadcaster
        )
        self.follower_engine = MockEngine(max_batch=2, prefill_chunk=prefill_chunk)
        self.follower = StepFollower("127.0.0.1", self.broadcaster.port, process_id=1)
        joining = threading.Thread(target=self.follower.connect, args=(10,))  # it waits for the leader
        joining.start()
        self.broadcaster.wait_for_followers(timeout=10)
        joining.join(10)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._replay)
        self.thread.start()

    def _replay(self) -> None:
        try:
            run_follower(self.follower_engine, self.follower)
        except BaseException as exc:
            self.error = exc


def test_follower_ends_in_the_same_state_as_the_leader_and_exits_on_shutdown() -> None:
    group = Group()
    prefix, first = group.leader.prefill(TOK.encode("abc"), SamplingParams(temperature=2.0, seed=5))
    group.leader.insert(prefix, 1)
    outs = [group.leader.decode()[1].token for _ in range(4)]
    group.leader.release(1)
    group.broadcaster.close()
    group.thread.join(10)
    assert group.error is None
    assert not group.lost
    follower = group.follower_engine
    assert (follower.prefills, follower.decode_steps) == (1, 4)
    leader = group.leader.inner
    assert isinstance(leader, MockEngine)
    np.testing.assert_array_equal(follower._positions, leader._positions)
    np.testing.assert_array_equal(follower._sampling.seeds, leader._sampling.seeds)
    assert first.token != 0
    assert len(outs) == 4


def test_follower_replays_a_chunked_prefill_with_decode_steps_between_its_chunks() -> None:
    group = Group(prefill_chunk=8)
    prefix, _ = group.leader.prefill(TOK.encode("abc"), SamplingParams())
    group.leader.insert(prefix, 0)
    chunked = group.leader.begin_prefill(TOK.encode("A" * 20), SamplingParams(temperature=1.0, seed=3))
    between = []
    while group.leader.prefill_chunk(chunked) is None:
        between.append(group.leader.decode()[0].token)  # slot 0 keeps decoding between chunks
    group.leader.insert(chunked, 1)
    last = group.leader.decode()
    group.broadcaster.close()
    group.thread.join(10)
    assert group.error is None
    follower, leader = group.follower_engine, group.leader.inner
    assert isinstance(leader, MockEngine)
    assert (
        list(follower.ops)
        == list(leader.ops)
        == ["prefill", "chunk", "decode", "chunk", "decode", "chunk", "decode"]
    )
    np.testing.assert_array_equal(follower._last, leader._last)
    np.testing.assert_array_equal(follower._positions, leader._positions)
    assert len(between) == 2  # 20 prompt tokens: 3 chunks of 8, decode steps between them
    assert last[1].token == leader._last[1]


def test_follower_replays_chunks_fused_with_decode_steps() -> None:
    group = Group(prefill_chunk=8)
    prefix, _ = group.leader.prefill(TOK.encode("abc"), SamplingParams())
    group.leader.insert(prefix, 0)
    chunked = group.leader.begin_prefill(TOK.encode("A" * 20), SamplingParams(temperature=1.0, seed=3))
    steps = []
    while True:
        outputs, first = group.leader.decode_with_chunk(chunked)  # slot 0 decodes in the same step
        steps.append(outputs[0].token)
        if first is not None:
            break
    group.leader.insert(chunked, 1)
    group.leader.decode()
    group.broadcaster.close()
    group.thread.join(10)
    assert group.error is None
    follower, leader = group.follower_engine, group.leader.inner
    assert isinstance(leader, MockEngine)
    assert list(follower.ops) == list(leader.ops) == ["prefill", *["decode+chunk"] * 3, "decode"]
    np.testing.assert_array_equal(follower._last, leader._last)
    np.testing.assert_array_equal(follower._positions, leader._positions)
    assert len(steps) == 3


def test_a_lost_follower_is_reported_at_once() -> None:
    group = Group()
    group.follower.close()
    group.thread.join(10)
    assert isinstance(group.error, HostLostError)
    for _ in range(200):
        if group.lost:
            break
        threading.Event().wait(0.01)
    assert group.lost
    assert "host 1" in group.lost[0]
    group.broadcaster.close()


def test_a_missing_follower_times_out_naming_it() -> None:
    broadcaster = StepBroadcaster(0, 2, lambda _: None, host="127.0.0.1")
    with pytest.raises(TimeoutError, match=r"hosts \[1, 2\] did not join"):
        broadcaster.wait_for_followers(timeout=0.2)
    broadcaster.close()
