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

    def __init__(self) -> None:
        self.lost: list[str] = []
        self.broadcaster = StepBroadcaster(0, 1, self.lost.append, host="127.0.0.1")
        self.leader = BroadcastingEngine(MockEngine(max_batch=2), self.broadcaster)
        self.follower_engine = MockEngine(max_batch=2)
        self.follower = StepFollower("127.0.0.1", self.broadcaster.port, process_id=1)
        self.follower.connect(timeout=10)
        self.broadcaster.wait_for_followers(timeout=10)
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
