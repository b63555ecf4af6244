"""One SSH board, one lane: a lab whose nodes (or targets) reach the same board twice is refused before any job.
The lanes are real ``Lane`` objects of real target profiles (their SSH launchers name the board they reach); only
the node each sits on is stated, as two machines would report it."""
from __future__ import annotations

import dataclasses

import pytest

from harness.config.paths import targets_dir
from harness.config.targets import load_target
from harness.errors import HarnessInputError
from harness.launch.cluster import Lane
from harness.run.lab import LaneState, refuse_shared_boards


def lane(target, node: str, ip: str) -> dict:
    """A lane of ``target`` on node ``node`` at ``ip``, as ``LaneState.describe()`` gives it to the check."""
    identity = Lane(target, False).identity() | {"hostname": node, "node_ip": ip, "node_id": f"{node}-id" * 4}
    return LaneState(f"{target.name}#0", target, None, None, identity).describe()


def test_two_nodes_declaring_one_ssh_board_are_refused_naming_both_and_the_board():
    rpi4 = load_target(targets_dir() / "rpi4.toml")
    lanes = [lane(rpi4, "bench-a", "10.0.0.1"), lane(rpi4, "bench-b", "10.0.0.2")]
    assert lanes[0]["board"] == "pi@rpi4.local:22"
    with pytest.raises(HarnessInputError) as refused:
        refuse_shared_boards(lanes)
    text = str(refused.value)
    assert len(text.splitlines()) == 1 and "board rpi4.local:22" in text, text
    assert "node bench-a (10.0.0.1" in text and "node bench-b (10.0.0.2" in text and "target rpi4" in text


def test_two_targets_naming_one_board_are_refused_whoever_logs_in():
    rpi4 = load_target(targets_dir() / "rpi4.toml")
    again = dataclasses.replace(rpi4, name="rpi4-root", ssh=dataclasses.replace(rpi4.ssh, user="root",
                                                                                 host="RPI4.local"))
    with pytest.raises(HarnessInputError, match="target rpi4 and node bench-a .* as target rpi4-root"):
        refuse_shared_boards([lane(rpi4, "bench-a", "10.0.0.1"), lane(again, "bench-a", "10.0.0.1")])


def test_distinct_boards_local_targets_and_each_nodes_own_loopback_pass():
    rpi4, rpi5 = (load_target(targets_dir() / f"{name}.toml") for name in ("rpi4", "rpi5"))
    local = load_target(targets_dir() / "x86-cpu.toml")
    refuse_shared_boards([lane(rpi4, "a", "10.0.0.1"), lane(rpi5, "b", "10.0.0.2"), lane(local, "a", "10.0.0.1"),
                          lane(local, "b", "10.0.0.2")])
    loop = dataclasses.replace(rpi4, name="loop", ssh=dataclasses.replace(rpi4.ssh, host="127.0.0.1", port=2222))
    refuse_shared_boards([lane(loop, "a", "10.0.0.1"), lane(loop, "b", "10.0.0.2")])  # two machines' loopbacks
    with pytest.raises(HarnessInputError, match="board 127.0.0.1:2222 on 10.0.0.1"):
        refuse_shared_boards([lane(loop, "a", "10.0.0.1"), lane(loop, "b", "10.0.0.1")])  # one machine's, twice
