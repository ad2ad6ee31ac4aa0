"""Demonstration data: the episode file format, dataset folders, normalisation stats, LIBERO demo reader.

- :mod:`roboalign.data.episodes`: :class:`Episode`, one HDF5 file per episode, atomic writer, reader, validation.
- :mod:`roboalign.data.dataset`: :class:`EpisodeDataset` (a folder), split by episode, NormStats, :class:`ChunkDataset`.
- :mod:`roboalign.data.libero_hdf5`: LIBERO's official robomimic-layout HDF5 demos -> Episodes.
"""

from roboalign.data.dataset import ChunkDataset, EpisodeDataset, EpisodeInfo, write_meta
from roboalign.data.episodes import (
    CorruptEpisodeError,
    Episode,
    episode_files,
    read_episode,
    read_header,
    validate_dir,
    write_episode,
)
from roboalign.data.libero_hdf5 import read_libero_hdf5

__all__ = [
    "ChunkDataset",
    "CorruptEpisodeError",
    "Episode",
    "EpisodeDataset",
    "EpisodeInfo",
    "episode_files",
    "read_episode",
    "read_header",
    "read_libero_hdf5",
    "validate_dir",
    "write_episode",
    "write_meta",
]
