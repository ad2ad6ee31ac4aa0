"""The alignment tests' scripted pick-and-place episodes (defined in ``roboalign.bench.toy_episodes``)."""

from roboalign.bench.toy_episodes import OBJECTS, make_episode, make_episodes, write_dataset

__all__ = ["OBJECTS", "make_episode", "make_episodes", "write_dataset"]
