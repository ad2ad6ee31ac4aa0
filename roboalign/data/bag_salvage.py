"""Read what a killed recorder left: a rosbag2 MCAP without footer or ``metadata.yaml``, read as a record stream.

A bag writer that is SIGKILLed leaves ``bag/bag.mcap`` truncated after its last complete chunk and no
``metadata.yaml``, so ``rosbags`` refuses to open it. MCAP is a sequence of self-delimiting records, so the
``mcap`` package's :class:`~mcap.stream_reader.StreamReader` reads every complete record up to the cut;
:func:`salvage` returns those messages and :func:`repair_bag` rewrites them as a complete bag (the original
file is kept as ``bag.crashed/``) so ``ros2 bag play`` and ``rosbags`` open it again; :func:`recover_crashed`
does that for every episode of a record folder left "running" by a dead recorder and marks it "incomplete".
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CRASHED_SUFFIX = ".crashed"
HEAD_BYTES = 64  # CDR encapsulation + std_msgs/Header (stamp, a short frame_id)


@dataclass
class SalvagedTopic:
    topic: str
    msgtype: str
    msgdef: str  # ros2msg text with its dependencies (the MCAP schema)
    encoding: str  # message encoding, "cdr" for ROS 2


@dataclass
class Salvage:
    """Messages of a truncated MCAP in file order: ``messages`` = (log time ns, topic, raw CDR bytes)."""

    path: Path
    topics: dict[str, SalvagedTopic] = field(default_factory=dict)
    messages: list[tuple[int, str, bytes]] = field(default_factory=list)
    truncated: bool = False  # the file ends inside a record (no footer)
    stop_reason: str = ""


def mcap_file(bag_dir: Path) -> Path:
    """The single ``.mcap`` file of a rosbag2 folder; raises naming the folder when there is none or several."""
    files = sorted(bag_dir.glob("*.mcap"))
    if len(files) != 1:
        raise FileNotFoundError(f"{bag_dir}: expected one .mcap file, found {[f.name for f in files]}")
    return files[0]


def salvage(path: Path, head_only: Callable[[str], bool] | None = None,
            select: dict[str, set[int]] | None = None) -> Salvage:
    """Every complete message of an MCAP file, also one cut short by a crash (no footer, partial last record).

    ``head_only(msgtype)``: keep only the first ``HEAD_BYTES`` of such messages (their header: large images are
    read in full later, only those needed); ``select``: keep only these per-topic message ordinals of these
    topics (file order), nothing else.
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Footer, Message, Schema
    from mcap.stream_reader import StreamReader

    out = Salvage(path=path, truncated=True)
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        try:
            for rec in StreamReader(f, skip_magic=False).records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec
                    s = schemas.get(rec.schema_id)
                    out.topics[rec.topic] = SalvagedTopic(rec.topic, s.name if s else "", s.data.decode() if s else "",
                                                          rec.message_encoding)
                elif isinstance(rec, Message) and rec.channel_id in channels:
                    topic = channels[rec.channel_id].topic
                    k = seen[topic] = seen.get(topic, -1) + 1
                    if select is not None and k not in select.get(topic, ()):
                        continue
                    head = head_only is not None and head_only(out.topics[topic].msgtype)
                    out.messages.append((rec.log_time, topic, bytes(rec.data[:HEAD_BYTES] if head else rec.data)))
                elif isinstance(rec, Footer):
                    out.truncated = False
        except (McapError, EOFError, ValueError, OSError) as e:  # the cut: a partial record at the end
            out.stop_reason = f"{type(e).__name__}: {e}".rstrip(": ")
    return out


def _rihs01(msgtype: str, msgdef: str) -> str:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(msgdef, msgtype))
    return store.hash_rihs01(msgtype)


def write_bag(bag_dir: Path, s: Salvage) -> None:
    """Write the salvaged messages as a complete MCAP rosbag2 at ``bag_dir`` (which must not exist)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t.topic: w.add_connection(t.topic, t.msgtype, msgdef=t.msgdef, rihs01=_rihs01(t.msgtype, t.msgdef),
                                           serialization_format=t.encoding or "cdr")
                 for t in s.topics.values() if t.msgtype}
        for stamp, topic, data in sorted(s.messages, key=lambda m: m[0]):
            if topic in conns:
                w.write(conns[topic], stamp, data)


def bag_is_complete(bag_dir: Path) -> bool:
    return (bag_dir / "metadata.yaml").is_file()


def repair_bag(bag_dir: Path) -> Salvage | None:
    """Make a crashed bag folder readable again; None when it was complete already.

    The salvaged messages are written to a new bag at ``bag_dir`` and the original folder is kept beside it
    as ``<bag_dir>.crashed`` (nothing is deleted).
    """
    bag_dir = Path(bag_dir)
    if bag_is_complete(bag_dir):
        return None
    s = salvage(mcap_file(bag_dir))
    tmp_parent = bag_dir.parent / f".{bag_dir.name}.repair"
    shutil.rmtree(tmp_parent, ignore_errors=True)
    tmp_parent.mkdir()
    write_bag(tmp_parent / bag_dir.name, s)
    crashed = bag_dir.with_name(bag_dir.name + CRASHED_SUFFIX)
    bag_dir.rename(crashed)
    (tmp_parent / bag_dir.name).rename(bag_dir)
    tmp_parent.rmdir()
    return s


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process ``pid`` from /proc, or None: no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """What identifies a recorder process beyond its pid (which the system reuses): its start time and
    command line, written into ``episode.json`` beside the pid."""
    pid = os.getpid() if pid is None else pid
    stat = _proc_stat(pid)
    return {"pid": pid, "pid_start": stat[1] if stat else -1, "cmdline": _cmdline(pid)}


def _posix_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_recorder(meta: dict[str, Any]) -> bool:
    """Whether the process that recorded ``meta`` still runs: the pid exists, is no zombie (exited, not yet
    reaped by its parent), and is the same process (start time; an ``episode.json`` without one: a command
    line of ours), not another process that got the pid."""
    try:
        pid = int(meta.get("pid"))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    if not Path("/proc/self/stat").is_file():  # no procfs: the pid is all there is
        return _posix_alive(pid)
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if int(meta.get("pid_start", -1)) >= 0:
        return stat[1] == int(meta["pid_start"])
    cmdline = _cmdline(pid)
    return bool(cmdline) and "roboalign" in cmdline


def recover_crashed(root: Path, logger: Any = None, force: bool = False) -> list[Path]:
    """Repair every recorded episode under ``root`` left "running" by a recorder that no longer exists (the
    bridge's ``BagRecorder`` on start, ``roboalign dataset repair``); mark it "incomplete" in ``episode.json``.

    Returns the repaired episode folders. An episode whose recorder process is still alive (:func:`live_recorder`:
    neither gone, nor a zombie, nor another process with the same pid) is left alone, unless ``force``.
    """
    done = []
    for meta_path in sorted(Path(root).glob("*/episode.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("outcome") != "running":
            continue
        if not force and meta.get("pid") != os.getpid() and live_recorder(meta):
            if logger is not None:
                logger.warning(f"{meta_path.parent.name}: still being recorded by process {meta.get('pid')} "
                               f"({_cmdline(int(meta['pid']))[:120]}); left alone (stop that recorder first, or "
                               "roboalign dataset repair --force if it is not recording)")
            continue
        folder = meta_path.parent
        bag = folder / meta.get("bag", "bag")
        try:
            s = repair_bag(bag) if bag.is_dir() else None
        except (OSError, ValueError) as e:
            s, why = None, f"bag not repaired ({e})"
        else:
            why = "bag complete" if s is None else (f"{len(s.messages)} messages recovered, the original kept as "
                                                    f"{bag.name}.crashed")
        meta.update(outcome="incomplete", message=f"recorder stopped during the episode (killed or crashed); {why}")
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(meta_path)
        if logger is not None:
            logger.warning(f"recorded episode {folder.name} was cut short by a crash: {why}; marked incomplete")
        done.append(folder)
    return done
