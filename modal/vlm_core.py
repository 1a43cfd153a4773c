"""Model-independent logic shared by the Modal VLM apps (pure Python, unit-tested with a stub `modal`).

The apps keep **no per-session state**: the server's session actor owns the
caption history and sends it with every chunk (`history`, oldest first), so any
container of the class can take any chunk, and scaling, restarts and scale-down
lose nothing.

Chunks that arrive together are captioned together: `ChunkBatcher` gathers the
requests of concurrent `infer_chunk` calls (the class runs under
`@modal.concurrent`) for at most `wait_ms`, up to `max_batch_size`, and runs
them as one padded batch on the GPU. Each request keeps its own frames, prompt
and history; one that cannot be captioned fails alone. Modal's `@modal.batched`
is not used: a class with a batched method can have no other method (`close`
must stay callable), batched methods take no default arguments (calls without
`history`, from servers of before, must keep working), every call in a batch
must pass the same number of arguments, and one exception fails the whole
batch.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence


class ChunkError(ValueError):
    """A chunk the model cannot caption (for example, no frame decodes)."""


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


def clean_history(history: Any, max_entries: int, max_chars: int = 300) -> list[str]:
    """The caller's history as at most `max_entries` non-empty strings, newest kept; anything else is dropped."""
    if not isinstance(history, (list, tuple)) or max_entries <= 0:
        return []
    entries = [" ".join(str(h).split())[:max_chars] for h in history if isinstance(h, str) and h.strip()]
    return entries[-max_entries:]


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
    """One `infer_chunk` call, as the server sends it (SPEC §7)."""

    frames: Sequence[bytes]
    start_ts_s: float
    end_ts_s: float
    prompt: str
    session_id: str
    history: Sequence[str] = ()


@dataclass
class Prepared:
    """A request ready for the GPU: its sampled images and its full prompt. `images` empty: nothing to caption."""

    images: list[Any]
    prompt: str


def prepare(request: ChunkRequest, *, decode: Callable[[bytes], Optional[Any]], max_frames: int, max_history: int) -> Prepared:
    """Sample, decode and prompt one request; raises ChunkError when frames came and none decodes."""
    if len(request.frames) == 0:
        return Prepared([], "")
    decoded, _skipped = decode_all(request.frames, decode)
    if not decoded:
        raise ChunkError(f"none of the {len(request.frames)} frames decoded as an image")
    images = sample_evenly(decoded, max_frames)
    history = clean_history(request.history, max_history)
    return Prepared(images, build_prompt(request.prompt, history, request.start_ts_s, request.end_ts_s, len(images)))


def result_of(request: ChunkRequest, text: str, tokens: int, latency_ms: float) -> dict:
    """What `infer_chunk` returns (the server validates it with zod)."""
    return {
        "caption": first_sentence(text),
        "chunk_start_s": float(request.start_ts_s),
        "chunk_end_s": float(request.end_ts_s),
        "latency_ms": round(latency_ms, 1),
        "tokens_generated": int(tokens),
    }


GenerateBatch = Callable[[list[Prepared]], list[tuple[str, int]]]


@dataclass
class _Waiting:
    item: Prepared
    future: "asyncio.Future[tuple[str, int]]"
    arrived: float


@dataclass
class BatchStats:
    """What the batcher has done: batches run, their sizes, and requests failed."""

    batches: int = 0
    sizes: list[int] = field(default_factory=list)
    failed: int = 0


class ChunkBatcher:
    """
    Dynamic batching inside one container: requests submitted while the GPU
    is busy, or within `wait_ms` of the first one of a batch, run together, at
    most `max_batch_size` at a time, in arrival order; results go back to
    their own callers. One batch runs at a time (one GPU; a lock keeps it so
    even while a cancelled worker's thread finishes).

    When a batch fails, its halves are run; a half that fails is split again
    (bisection), so one request that cannot be captioned costs about
    2·log2(batch) more runs rather than one per member, and a batch too large
    for the GPU's memory is captioned in halves. When both halves fail, the
    fault is not one request's: their members are run one by one (a batch of
    16 that always fails costs 19 runs). A request fails only after it failed
    alone. Requests whose callers went away are not run. Should the worker
    itself stop (cancelled, or anything that is not an `Exception`), every
    request it holds fails with `RuntimeError` rather than waiting for ever.

    `generate_batch` runs in a worker thread (`run_blocking`, default
    `asyncio.to_thread`), so the event loop keeps taking requests meanwhile.
    """

    def __init__(
        self,
        generate_batch: GenerateBatch,
        *,
        max_batch_size: int,
        wait_ms: float,
        run_blocking: Callable[..., Awaitable[Any]] = asyncio.to_thread,
    ) -> None:
        if max_batch_size < 1 or wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and wait_ms >= 0")
        self.generate_batch = generate_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000
        self.run_blocking = run_blocking
        self.stats = BatchStats()
        self._queue: list[_Waiting] = []
        self._running: list[_Waiting] = []
        self._arrived: Optional[asyncio.Event] = None
        self._worker: Optional[asyncio.Task] = None
        self._gpu = threading.Lock()

    async def submit(self, item: Prepared) -> tuple[str, int]:
        """The (text, tokens generated) of one request, once its batch has run."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop.create_future(), loop.time())
        if self._worker is None or self._worker.done():
            # Requests of an event loop that has gone (no worker left to serve them) are dropped.
            self._queue = [w for w in self._queue if w.future.get_loop() is loop and not w.future.done()]
            self._queue.append(waiting)
            self._arrived = asyncio.Event()  # an Event belongs to the loop it is first awaited in
            self._worker = loop.create_task(self._drain())
            self._worker.add_done_callback(self._worker_stopped)
        else:
            self._queue.append(waiting)
            assert self._arrived is not None
            self._arrived.set()
        return await waiting.future

    def _worker_stopped(self, worker: asyncio.Task) -> None:
        """A worker that ended other than by emptying the queue fails what it held (even cancelled before its first step)."""
        if not worker.cancelled() and worker.exception() is None:
            return
        stopped = RuntimeError(f"the batch worker stopped: {'cancelled' if worker.cancelled() else repr(worker.exception())}")
        for waiting in self._running:
            _settle(waiting.future, error=stopped)
        self._running = []
        if worker is self._worker:  # no newer worker has taken the queue over
            for waiting in self._queue:
                _settle(waiting.future, error=stopped)
            self._queue.clear()

    async def _drain(self) -> None:
        assert self._arrived is not None
        while self._queue:
            # Wait for the batch to fill, at most wait_s after its first request arrived
            # (requests that came while the previous batch ran have waited already).
            deadline = self._queue[0].arrived + self.wait_s
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = _live(self._queue[: self.max_batch_size])
            del self._queue[: self.max_batch_size]
            if batch:
                self._running = batch
                await self._isolate(batch, await self._attempt(batch))
                self._running = []

    def _generate(self, items: list[Prepared]) -> list[tuple[str, int]]:
        with self._gpu:
            return self.generate_batch(items)

    async def _attempt(self, batch: list[_Waiting]) -> Optional[Exception]:
        """Runs `batch` as one; on success settles every member and answers None, else answers the error."""
        self.stats.batches += 1
        self.stats.sizes.append(len(batch))
        try:
            outputs = await self.run_blocking(self._generate, [w.item for w in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"generate_batch returned {len(outputs)} results for {len(batch)} requests")
        except Exception as error:  # noqa: BLE001 - the caller isolates the member that failed
            return error
        for waiting, output in zip(batch, outputs):
            _settle(waiting.future, result=output)
        return None

    async def _isolate(self, tried: list[_Waiting], error: Optional[Exception]) -> None:
        """`tried` ran as one batch and failed with `error` (None: it went through): finds who cannot be captioned."""
        if error is None:
            return
        if len(tried) == 1:
            self.stats.failed += 1
            _settle(tried[0].future, error=error)
            return
        live = _live(tried)
        if len(live) <= 1:
            for waiting in live:
                await self._isolate([waiting], await self._attempt([waiting]))
            return
        half = len(live) // 2
        failed = []
        for part in (live[:half], live[half:]):
            part = _live(part)
            part_error = await self._attempt(part) if part else None
            if part_error is not None:
                failed.append((part, part_error))
        if len(failed) == 2:
            # Both halves fail: not one request's fault. Each member alone.
            for part, part_error in failed:
                if len(part) == 1:
                    await self._isolate(part, part_error)
                    continue
                for waiting in _live(part):
                    await self._isolate([waiting], await self._attempt([waiting]))
            return
        for part, part_error in failed:
            await self._isolate(part, part_error)


def _live(batch: list[_Waiting]) -> list[_Waiting]:
    """The requests whose callers still wait."""
    return [w for w in batch if not w.future.done()]


def _settle(future: "asyncio.Future", *, result: Any = None, error: Optional[BaseException] = None) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def caption_chunk(
    request: ChunkRequest,
    *,
    batcher: ChunkBatcher,
    decode: Callable[[bytes], Optional[Any]],
    max_frames: int,
    max_history: int,
    clock: Callable[[], float] = time.perf_counter,
    run_blocking: Callable[..., Awaitable[Any]] = asyncio.to_thread,
) -> dict:
    """One `infer_chunk`: decode off the event loop, caption in the next batch, answer this caller alone."""
    started = clock()
    prepared = await run_blocking(lambda: prepare(request, decode=decode, max_frames=max_frames, max_history=max_history))
    if not prepared.images:
        return result_of(request, "", 0, 0.0)
    text, tokens = await batcher.submit(prepared)
    return result_of(request, text, tokens, (clock() - started) * 1000)


def _env_number(name: str, default: Any, parse: Callable[[str], Any], kind: str, minimum: Any, maximum: Any) -> Any:
    """A number setting; unset or blank gives `default`. Raises ValueError naming `name` when invalid."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_int(name: str, default: int, *, minimum: Optional[int] = None) -> int:
    """A whole-number setting (see `_env_number`)."""
    return _env_number(name, default, int, "a whole number", minimum, None)


def env_float(name: str, default: float, *, minimum: Optional[float] = None, maximum: Optional[float] = None) -> float:
    """A finite number setting (see `_env_number`)."""
    return _env_number(name, default, float, "a number", minimum, maximum)


def env_str(name: str, default: str) -> str:
    """A non-blank text setting; unset or blank gives `default`."""
    return os.environ.get(name, "").strip() or default


@dataclass(frozen=True)
class ServingKnobs:
    """
    Every setting of one app, all read from `<PREFIX>_*` when the app file is
    imported: by `modal deploy` on the deployer's machine, which checks them
    (ValueError naming the variable) and bakes them into the image's
    environment (`container_env`), and again in each container, which so reads
    the same values.
    """

    prefix: str
    model_id: str
    gpu: str
    max_batch_size: int
    batch_wait_ms: float
    min_containers: int
    max_containers: int
    scaledown_window_s: int
    max_frame_edge: int
    max_frames_per_chunk: int
    max_history_entries: int
    max_new_tokens: int
    temperature: float
    top_p: float

    @classmethod
    def from_env(cls, prefix: str, *, model_id: str, max_frame_edge: int) -> "ServingKnobs":
        knobs = cls(
            prefix=prefix,
            model_id=env_str(f"{prefix}_MODEL_ID", model_id),
            gpu=env_str(f"{prefix}_GPU", "L40S"),
            max_batch_size=env_int(f"{prefix}_MAX_BATCH_SIZE", 16, minimum=1),
            batch_wait_ms=env_float(f"{prefix}_BATCH_WAIT_MS", 30, minimum=0),
            min_containers=env_int(f"{prefix}_MIN_CONTAINERS", 0, minimum=0),
            max_containers=env_int(f"{prefix}_MAX_CONTAINERS", 4, minimum=1),
            scaledown_window_s=env_int(f"{prefix}_SCALEDOWN_WINDOW_S", 300, minimum=1),
            max_frame_edge=env_int(f"{prefix}_MAX_FRAME_EDGE", max_frame_edge, minimum=1),
            max_frames_per_chunk=env_int(f"{prefix}_MAX_FRAMES_PER_CHUNK", 6, minimum=1),
            max_history_entries=env_int(f"{prefix}_MAX_HISTORY_ENTRIES", 6, minimum=0),
            max_new_tokens=env_int(f"{prefix}_MAX_NEW_TOKENS", 64, minimum=1),
            temperature=env_float(f"{prefix}_TEMPERATURE", 0.2, minimum=0),
            top_p=env_float(f"{prefix}_TOP_P", 0.9, minimum=0.01, maximum=1),
        )
        if knobs.min_containers > knobs.max_containers:
            raise ValueError(
                f"{prefix}_MIN_CONTAINERS ({knobs.min_containers}) must not exceed {prefix}_MAX_CONTAINERS ({knobs.max_containers})"
            )
        return knobs

    def container_env(self) -> dict[str, str]:
        """The settings as `<PREFIX>_*` variables, for the image: the container reads what the deployer checked."""
        return {
            f"{self.prefix}_{name.upper()}": str(value)
            for name, value in vars(self).items()
            if name != "prefix"
        }


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


def chat_messages(items: Sequence[Prepared]) -> list[list[dict]]:
    """One chat per request: its images, then its prompt (the shape both apps' processors take)."""
    return [
        [{"role": "user", "content": [*({"type": "image", "image": img} for img in item.images), {"type": "text", "text": item.prompt}]}]
        for item in items
    ]


def split_generated(output_ids: Any, prompt_length: int, stop_ids: set[int]) -> list[tuple[list[int], int]]:
    """
    Each row's new token ids (after the left-padded prompt), cut at the first stop
    token, with how many were generated. `output_ids` is a (batch, length) tensor or
    a list of lists.
    """
    rows = output_ids.tolist() if hasattr(output_ids, "tolist") else output_ids
    out = []
    for row in rows:
        new = list(row[prompt_length:])
        for i, token in enumerate(new):
            if token in stop_ids:
                new = new[:i]
                break
        out.append((new, len(new)))
    return out


def gemma3_generate_batch(model: Any, processor: Any, items: list[Prepared], *, max_new_tokens: int, temperature: float, top_p: float) -> list[tuple[str, int]]:
    """
    Gemma 3: one padded `generate` for the whole batch (prompts left-padded, so every
    row's new tokens start at the same index). Returns (text, tokens generated) per
    request, in order.
    """
    import torch

    inputs = processor.apply_chat_template(
        chat_messages(items),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    ).to(model.device, dtype=torch.bfloat16)
    prompt_length = inputs["input_ids"].shape[-1]
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=top_p,
        )
    return decode_rows(processor, output, prompt_length, model)


def decode_rows(processor: Any, output: Any, prompt_length: int, model: Any) -> list[tuple[str, int]]:
    """Texts and token counts of a batched `generate`'s rows."""
    tokenizer = processor.tokenizer
    stop_ids = {tokenizer.pad_token_id}
    eos = model.generation_config.eos_token_id
    stop_ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    stop_ids.discard(None)
    return [(tokenizer.decode(ids, skip_special_tokens=True), n) for ids, n in split_generated(output, prompt_length, stop_ids)]


def qwen_generate_batch(model: Any, processor: Any, items: list[Prepared], *, max_new_tokens: int, temperature: float) -> list[tuple[str, int]]:
    """Qwen2.5-VL (StreamingVLM): one padded `generate` for the batch; the processor takes every request's images in order."""
    import torch

    texts = [processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chat_messages(items)]
    images = [image for item in items for image in item.images]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt").to(model.device)
    prompt_length = inputs["input_ids"].shape[-1]
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
        )
    return decode_rows(processor, output, prompt_length, model)
