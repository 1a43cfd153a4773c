"""Model-independent logic shared by the Modal VLM apps (pure Python, unit-tested with a stub `modal`).

Both apps keep a rolling caption history *per session_id* (bounded entries per
session, bounded number of sessions, least recently used evicted), so two
wearers never see each other's history; sample at most N frames evenly (first
and latest kept); skip frames that do not decode; and build one prompt that
names the window and the recent captions.
"""

from __future__ import annotations

import io
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional, Sequence


class ChunkError(ValueError):
    """A chunk the model cannot caption (for example, no frame decodes)."""


class SessionHistories:
    """Recent captions per session: at most `max_entries` each, at most `max_sessions` sessions (LRU)."""

    def __init__(self, max_entries: int = 6, max_sessions: int = 256) -> None:
        if max_entries < 0 or max_sessions < 1:
            raise ValueError("max_entries must be >= 0 and max_sessions >= 1")
        self.max_entries = max_entries
        self.max_sessions = max_sessions
        self._sessions: "OrderedDict[str, Deque[str]]" = OrderedDict()

    def get(self, session_id: str) -> list[str]:
        history = self._sessions.get(session_id)
        if history is None:
            return []
        self._sessions.move_to_end(session_id)
        return list(history)

    def add(self, session_id: str, caption: str) -> None:
        history = self._sessions.get(session_id)
        if history is None:
            history = deque(maxlen=self.max_entries)
            self._sessions[session_id] = history
        self._sessions.move_to_end(session_id)
        if self.max_entries > 0 and caption:
            history.append(caption)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)


def sample_evenly(items: Sequence[Any], max_items: int) -> list[Any]:
    """At most `max_items` of `items`, evenly spread, first and last included."""
    n = len(items)
    if max_items <= 0 or n == 0:
        return []
    if n <= max_items:
        return list(items)
    if max_items == 1:
        return [items[-1]]
    step = (n - 1) / (max_items - 1)
    return [items[round(i * step)] for i in range(max_items)]


def decode_all(frames: Sequence[bytes], decode: Callable[[bytes], Optional[Any]]) -> tuple[list[Any], int]:
    """Decoded images in order and how many frames were skipped because they did not decode."""
    images = []
    skipped = 0
    for frame in frames:
        try:
            image = decode(frame)
        except Exception:  # noqa: BLE001 - any decoder failure means "not an image"
            image = None
        if image is None:
            skipped += 1
        else:
            images.append(image)
    return images, skipped


def build_prompt(base_prompt: str, history: Sequence[str], start_s: float, end_s: float, n_frames: int) -> str:
    lines = [
        base_prompt.strip(),
        f"The {n_frames} images are frames from {start_s:.1f} s to {end_s:.1f} s of the wearer's view, in order.",
    ]
    if history:
        lines.append("Earlier captions of this wearer's view, oldest first (do not repeat them word for word):")
        lines.extend(f"- {caption}" for caption in history)
    lines.append("Answer with one short present-tense sentence.")
    return "\n".join(lines)


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The model's answer as one sentence: first line, first sentence, trimmed."""
    text = " ".join(text.strip().split())
    for end in (". ", "! ", "? "):
        index = text.find(end)
        if index != -1:
            text = text[: index + 1]
            break
    return text[:max_chars].strip()


@dataclass
class ChunkRequest:
    frames: Sequence[bytes]
    start_ts_s: float
    end_ts_s: float
    prompt: str
    session_id: str


def caption_chunk(
    request: ChunkRequest,
    *,
    histories: SessionHistories,
    decode: Callable[[bytes], Optional[Any]],
    generate: Callable[[list[Any], str], tuple[str, int]],
    max_frames: int,
    clock: Callable[[], float],
) -> dict:
    """Runs one chunk: sample, decode, prompt with this session's history, generate, remember."""
    started = clock()
    result = {
        "caption": "",
        "chunk_start_s": float(request.start_ts_s),
        "chunk_end_s": float(request.end_ts_s),
        "latency_ms": 0.0,
        "tokens_generated": 0,
    }
    if len(request.frames) == 0:
        return result
    decoded, _skipped = decode_all(request.frames, decode)
    if not decoded:
        raise ChunkError(f"none of the {len(request.frames)} frames decoded as an image")
    images = sample_evenly(decoded, max_frames)
    prompt = build_prompt(request.prompt, histories.get(request.session_id), request.start_ts_s, request.end_ts_s, len(images))
    text, tokens = generate(images, prompt)
    caption = first_sentence(text)
    histories.add(request.session_id, caption)
    result.update(caption=caption, tokens_generated=int(tokens), latency_ms=round((clock() - started) * 1000, 1))
    return result


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def decode_frame(data: bytes, max_edge: int) -> Optional[Any]:
    """A JPEG/PNG as an RGB image no larger than max_edge, or None when it does not decode (Pillow, in the image)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # noqa: BLE001
        return None
    img = img.convert("RGB")
    img.thumbnail((max_edge, max_edge))
    return img


def infer_for(session: Any, frames: Sequence[bytes], start_ts_s: float, end_ts_s: float, prompt: str, session_id: str, decode: Callable[[bytes, int], Optional[Any]]) -> dict:
    """`infer_chunk` of an app class: its histories, frame limits and `generate`, timed with a monotonic clock."""
    return caption_chunk(
        ChunkRequest(frames, start_ts_s, end_ts_s, prompt, session_id),
        histories=session.histories,
        decode=lambda data: decode(data, session.max_edge),
        generate=session.generate,
        max_frames=session.max_frames,
        clock=time.perf_counter,
    )
